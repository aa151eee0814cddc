package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
)

// sshEnv is a real sshd host and the flags of an ssh environment "staging" deploying into
// its scratch directory, with the artifact directory a deploy sends.
type sshEnv struct {
	h         *testbench.SSHHost
	args      []string
	artifacts string
}

func newSSHEnv(t *testing.T, extra ...string) *sshEnv {
	t.Helper()
	h := testbench.SSHHosts(t, 1)[0]
	dir := t.TempDir()
	key, kh := filepath.Join(dir, "key"), filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(key, h.ClientKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kh, h.KnownHosts, 0o644); err != nil {
		t.Fatal(err)
	}
	art := filepath.Join(dir, "dist")
	if err := os.MkdirAll(art, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(art, "app"), []byte("v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir) // no pushdeploy.yaml here: the flags describe the environment
	args := []string{"--env", "staging", "--app", fmt.Sprintf("exit-%d", os.Getpid()), "--kind", "ssh",
		"--hosts", h.Addr, "--user", h.User, "--path", filepath.Join(h.Dir, "app"),
		"--ssh-key", "file:" + key, "--known-hosts", "file:" + kh, "--deployer", "alice@ci"}
	return &sshEnv{h: h, args: append(args, extra...), artifacts: art}
}

func (e *sshEnv) cmd(verb ...string) []string {
	return append(append([]string{}, verb...), e.args...)
}

// exitOf runs the CLI as main does and returns the exit code main would exit with.
func exitOf(t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, err := run(t, args...)
	return pipeline.ExitCode(err), out + fmt.Sprint(err)
}

func wantExit(t *testing.T, want int, args ...string) string {
	t.Helper()
	code, out := exitOf(t, args...)
	if code != want {
		t.Fatalf("pushdeploy %s: exit %d, want %d\n%s", strings.Join(args, " "), code, want, out)
	}
	return out
}

func TestExitUsage(t *testing.T) {
	for _, args := range [][]string{
		{"deploi"},
		{"deploy", "--nope"},
		{"deploy"}, // --env is required
		{"status", "-o", "yaml"},
		{"version", "extra"},
	} {
		wantExit(t, pipeline.ExitUsage, args...)
	}
	if out := wantExit(t, pipeline.ExitUsage, "status", "-o", "yaml"); !strings.Contains(out, `unknown output format "yaml"`) {
		t.Errorf("bad format refusal: %s", out)
	}
}

func TestExitOKAndGeneric(t *testing.T) {
	wantExit(t, pipeline.ExitOK, "version")
	// An environments file that does not parse is a plain failure.
	t.Chdir(t.TempDir())
	if err := os.WriteFile("pushdeploy.yaml", []byte("app: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantExit(t, pipeline.ExitFailed, "status")
}

func TestExitRefusedAtGates(t *testing.T) {
	e := newSSHEnv(t, "--protected")
	out := wantExit(t, pipeline.ExitRefused, e.cmd("deploy", "--artifacts", e.artifacts)...)
	if !strings.Contains(out, "not approved") {
		t.Errorf("refusal does not say why: %s", out)
	}
}

func TestExitLockHeld(t *testing.T) {
	e := newSSHEnv(t)
	wantExit(t, pipeline.ExitOK, e.cmd("lock", "acquire", "--reason", "db migration")...)
	out := wantExit(t, pipeline.ExitLocked, append(e.cmd("deploy", "--artifacts", e.artifacts), "--deployer", "bob@ci")...)
	if !strings.Contains(out, `"alice@ci"`) || !strings.Contains(out, "db migration") {
		t.Errorf("refusal does not name the holder and the reason: %s", out)
	}
	// unlock refuses a live lock the same way.
	wantExit(t, pipeline.ExitLocked, e.cmd("unlock")...)
}

func TestExitRolledBack(t *testing.T) {
	e := newSSHEnv(t, "--restart", "false")
	out := wantExit(t, pipeline.ExitRolledBack, e.cmd("deploy", "--artifacts", e.artifacts)...)
	if !strings.Contains(out, "FAILED") {
		t.Errorf("no failed stage in: %s", out)
	}
}

// A restart that fails once a flag file exists, and makes it when the release is not v1: the
// deploy of v2 fails and its rollback to v1 fails too, leaving the fleet for a hand.
func TestExitRollbackFailed(t *testing.T) {
	e := newSSHEnv(t)
	flag := filepath.Join(e.h.Dir, "broken")
	restart := fmt.Sprintf(`if [ -e %[1]s ]; then exit 1; fi; [ "$PUSHDEPLOY_VERSION" = v1 ] || { touch %[1]s; exit 1; }`, flag)
	wantExit(t, pipeline.ExitOK, append(e.cmd("deploy", "--artifacts", e.artifacts, "--version", "v1"), "--restart", restart)...)
	if err := os.WriteFile(filepath.Join(e.artifacts, "app"), []byte("v2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := wantExit(t, pipeline.ExitMixed, append(e.cmd("deploy", "--artifacts", e.artifacts, "--version", "v2"), "--restart", restart)...)
	if !strings.Contains(out, "ROLLBACK FAILED") {
		t.Errorf("the failed rollback is not said: %s", out)
	}
}

func TestExitUnreachable(t *testing.T) {
	e := newSSHEnv(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	args := e.cmd("deploy", "--artifacts", e.artifacts)
	for i, a := range args {
		if a == e.h.Addr {
			args[i] = closed
		}
	}
	wantExit(t, pipeline.ExitUnreachable, args...)
}
