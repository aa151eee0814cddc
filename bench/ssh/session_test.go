package sshbench

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// BenchmarkConnectAndRun: a new connection and its first command (`true`), straight to an
// sshd on 127.0.0.1 (no proxy: a proxy's own delayed ACKs would stand in for the client's):
// what every deploy to a host starts with. The peer is OpenSSH's `ssh host true`, what
// rsync pays for each host.
func BenchmarkConnectAndRun(b *testing.B) {
	h := testbench.SSHHosts(b, 1, testUser)[0]
	dir := b.TempDir()
	key, known := filepath.Join(dir, "id"), filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(key, h.ClientKey, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(known, h.KnownHosts, 0o600); err != nil {
		b.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(h.Addr)
	b.Run("pushdeploy", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			c, err := sshconn.Dial(context.Background(), h.Addr, sshconn.User(h.User), sshconn.PrivateKey(h.ClientKey), sshconn.KnownHosts(h.KnownHosts))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.Output(context.Background(), "true"); err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	})
	b.Run("openssh", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			cmd := exec.Command("ssh", "-p", port, "-i", key, "-o", "UserKnownHostsFile="+known, "-o", "StrictHostKeyChecking=yes",
				"-o", "BatchMode=yes", h.User+"@"+host, "true")
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("ssh: %v: %s", err, out)
			}
		}
	})
}
