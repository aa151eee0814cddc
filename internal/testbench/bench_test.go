package testbench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// TestWholeBench starts what every later test stands on — five sshd hosts, one Docker
// Engine, the in-process registry and the distribution registry with htpasswd and TLS —
// reports each one's start time, and checks that each answers: a key login over SSH with
// host-key verification, a ping of the engine, /v2/ of each registry.
func TestWholeBench(t *testing.T) {
	start := time.Now()
	hosts := SSHHosts(t, 5)
	sshTime := time.Since(start)
	d := StartDockerd(t)
	inproc := InProcessRegistry(t)
	dist := DistributionRegistry(t, RegistryTLS())

	var lines []string
	for _, h := range hosts {
		lines = append(lines, fmt.Sprintf("sshd %s at %s: %s", h.Name, h.Addr, h.Started.Round(time.Millisecond)))
	}
	lines = append(lines,
		fmt.Sprintf("5 sshd hosts together: %s", sshTime.Round(time.Millisecond)),
		fmt.Sprintf("dockerd at %s: %s", d.Socket, d.Started.Round(time.Millisecond)),
		fmt.Sprintf("registry %s at %s: %s", inproc.Name, inproc.Host, inproc.StartupTime.Round(time.Millisecond)),
		fmt.Sprintf("registry %s (htpasswd, TLS) at %s: %s", dist.Name, dist.Host, dist.StartupTime.Round(time.Millisecond)))
	t.Log("bench start times:\n  " + strings.Join(lines, "\n  "))

	kh := KnownHostsOf(hosts)
	for _, h := range hosts {
		signer, err := ssh.ParsePrivateKey(h.ClientKey)
		if err != nil {
			t.Fatal(err)
		}
		cb, err := knownhostsCallback(t, kh)
		if err != nil {
			t.Fatal(err)
		}
		c, err := ssh.Dial("tcp", h.Addr, &ssh.ClientConfig{User: h.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: cb, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatalf("ssh to %s: %v", h.Addr, err)
		}
		c.Close()
	}
	cli, err := client.NewClientWithOpts(client.WithHost(d.Host()), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Ping(context.Background()); err != nil {
		t.Fatalf("pinging dockerd: %v", err)
	}
	for _, r := range []*Registry{inproc, dist} {
		c := &http.Client{Transport: r.Transport(), Timeout: 10 * time.Second}
		resp, err := c.Get(r.URL + "/v2/")
		if err != nil {
			t.Fatalf("registry %s: %v", r.Name, err)
		}
		resp.Body.Close()
		want := http.StatusOK
		if r.User != "" {
			want = http.StatusUnauthorized
		}
		if resp.StatusCode != want {
			t.Errorf("registry %s /v2/ answered %d, want %d", r.Name, resp.StatusCode, want)
		}
	}
}

func knownhostsCallback(t *testing.T, content []byte) (ssh.HostKeyCallback, error) {
	f := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(f, content, 0o600); err != nil {
		return nil, err
	}
	return knownhosts.New(f)
}
