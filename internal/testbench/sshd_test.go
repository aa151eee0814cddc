package testbench_test

import (
	"context"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

func TestSSHHostsKillAndRestart(t *testing.T) {
	hosts := testbench.SSHHosts(t, 3, testUser)
	for _, h := range hosts {
		if h.Started <= 0 || !strings.HasPrefix(string(h.KnownHosts), "[127.0.0.1]:") {
			t.Fatalf("host %s: Started %s, known_hosts %q", h.Name, h.Started, h.KnownHosts)
		}
	}
	h := hosts[1]
	dial := func() (*sshconn.Client, error) {
		return sshconn.Dial(context.Background(), h.Addr, sshconn.User(h.User), sshconn.PrivateKey(h.ClientKey), sshconn.KnownHosts(testbench.KnownHostsOf(hosts)))
	}
	c, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	// A session left running dies with the server.
	errc := make(chan error, 1)
	go func() { _, _, err := c.Run(context.Background(), "echo started; exec sleep 600"); errc <- err }()
	h.Kill()
	if err := <-errc; err == nil {
		t.Fatal("a session survived Kill")
	}
	c.Close()
	if _, err := dial(); err == nil {
		t.Fatal("dial after Kill succeeded")
	}
	if err := h.Restart(); err != nil {
		t.Fatal(err)
	}
	c, err = dial()
	if err != nil {
		t.Fatalf("dial after Restart: %v", err)
	}
	c.Close()
}

func TestSSHUser(t *testing.T) {
	h := testbench.SSHHosts(t, 1, testbench.SSHUser("pdtest"))[0]
	c, err := sshconn.Dial(context.Background(), h.Addr, sshconn.User(h.User), sshconn.PrivateKey(h.ClientKey), sshconn.KnownHosts(h.KnownHosts))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out, err := c.Output(context.Background(), "id -un && touch "+sshconn.Quote(h.Dir+"/w"))
	if err != nil || string(out) != "pdtest\n" {
		t.Fatalf("id -un = %q, %v", out, err)
	}
}

var testUser = testbench.SSHUser("pdtest")

func TestSSHNetns(t *testing.T) {
	hosts := testbench.SSHHosts(t, 2, testUser, testbench.SSHNetns())
	seen := map[string]bool{}
	for _, h := range hosts {
		if !strings.HasPrefix(h.Addr, "10.200.") || !strings.HasSuffix(h.Addr, ":22") || seen[h.Addr] {
			t.Fatalf("host %s at %s; want its own 10.200.x.y:22", h.Name, h.Addr)
		}
		seen[h.Addr] = true
		c, err := sshconn.Dial(context.Background(), h.Addr, sshconn.User(h.User), sshconn.PrivateKey(h.ClientKey), sshconn.KnownHosts(testbench.KnownHostsOf(hosts)))
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.Output(context.Background(), "ip -o -4 addr show dev eth0")
		c.Close()
		host, _, _ := strings.Cut(h.Addr, ":")
		if err != nil || !strings.Contains(string(out), host+"/24") {
			t.Fatalf("%s: eth0 in the namespace: %q, %v", h.Name, out, err)
		}
	}
	if err := hosts[0].Restart(); err != nil {
		t.Fatal(err)
	}
}
