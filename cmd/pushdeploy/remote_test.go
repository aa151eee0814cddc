package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/pipeline"
)

// fileEnv is newSSHEnv's host described by a pushdeploy.yaml instead of flags, with the
// ssh section's further keys extra (at its indentation), and the credential flags.
func fileEnv(t *testing.T, extra string) (*sshEnv, []string) {
	t.Helper()
	e := newSSHEnv(t)
	app := fmt.Sprintf("exit-%d", os.Getpid())
	src := fmt.Sprintf("app: %s\nenvironments:\n  staging:\n    ssh:\n      hosts: [%q]\n      user: %s\n      path: %s\n%s",
		app, e.h.Addr, e.h.User, filepath.Join(e.h.Dir, "app"), extra)
	if err := os.WriteFile("pushdeploy.yaml", []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	var creds []string
	for i := 0; i < len(e.args); i += 2 {
		switch e.args[i] {
		case "--env", "--ssh-key", "--known-hosts", "--deployer":
			creds = append(creds, e.args[i], e.args[i+1])
		}
	}
	return e, creds
}

func (e *sshEnv) replacements() map[string]string {
	return map[string]string{e.h.Addr: "HOST", e.h.Dir: "DIR", fmt.Sprintf("exit-%d", os.Getpid()): "APP"}
}

// TestLogsCommand: pushdeploy logs on a real server: the file's logs command runs in the
// live release with --since passed on, every line prefixed by the host; text and JSON
// golden; nothing live, no logs command, --follow with JSON and an unreachable host each
// fail with their own exit code.
func TestLogsCommand(t *testing.T) {
	e, creds := fileEnv(t, `      logs: 'cat app; echo "since=${PUSHDEPLOY_LOGS_SINCE:-none} follow=${PUSHDEPLOY_LOGS_FOLLOW:-no} $PUSHDEPLOY_APP $PUSHDEPLOY_VERSION in $(pwd)"'`+"\n")
	logs := append([]string{"logs"}, creds...)

	out := wantExit(t, pipeline.ExitFailed, logs...)
	if !strings.Contains(out, e.h.Addr+" has no live release") {
		t.Errorf("logs with nothing deployed: %s", out)
	}
	wantExit(t, pipeline.ExitOK, append(append([]string{"deploy"}, creds...), "--artifacts", e.artifacts, "--version", "v1")...)

	stdout, stderr, err := runSplit(t, append(logs, "--since", "2m")...)
	if err != nil {
		t.Fatalf("logs: %v\n%s", err, stderr)
	}
	golden(t, "logs.golden", stdout, e.replacements())
	stdout, _, err = runSplit(t, append(logs, "-o", "json")...)
	if err != nil {
		t.Fatalf("logs -o json: %v", err)
	}
	golden(t, "logs.json.golden", stdout, e.replacements())

	if out := wantExit(t, pipeline.ExitUsage, append(logs, "--follow", "-o", "json")...); !strings.Contains(out, "--follow") {
		t.Errorf("--follow with json: %s", out)
	}
	wantExit(t, pipeline.ExitUsage, append(logs, "--since", "-5m")...)
	wantExit(t, pipeline.ExitUsage, append(logs, "--host", "10.1.1.1")...)
	wantExit(t, pipeline.ExitUnreachable, append(logs, "--hosts", closedAddr(t))...)

	// The same host described by flags alone: no logs command, the error says what to add.
	os.Remove("pushdeploy.yaml")
	out = wantExit(t, pipeline.ExitFailed, e.cmd("logs")...)
	if !strings.Contains(out, `names no logs command`) || !strings.Contains(out, "logs:") {
		t.Errorf("logs without a logs command: %s", out)
	}
}

// TestExecCommand: pushdeploy exec on a real server: the words after -- run in the live
// release with its variables; a failing command exits 1 with a line per host on stderr;
// text and JSON golden; no command is a usage error, an unreachable host exit 7.
func TestExecCommand(t *testing.T) {
	e, creds := fileEnv(t, "")
	exec := append([]string{"exec"}, creds...)
	if out := wantExit(t, pipeline.ExitFailed, append(exec, "--", "true")...); !strings.Contains(out, "has no live release") {
		t.Errorf("exec with nothing deployed: %s", out)
	}
	wantExit(t, pipeline.ExitOK, append(append([]string{"deploy"}, creds...), "--artifacts", e.artifacts, "--version", "v1")...)

	cmd := append(exec, "--", "sh", "-c", `cat app; echo "$PUSHDEPLOY_VERSION $PUSHDEPLOY_DEPLOYER in $(pwd)"; exit 3`)
	stdout, stderr, err := runSplit(t, cmd...)
	if pipeline.ExitCode(err) != pipeline.ExitFailed {
		t.Fatalf("exec exit 3: %v\n%s", err, stderr)
	}
	golden(t, "exec.golden", "stdout:\n"+stdout+"stderr:\n"+stderr, e.replacements())
	stdout, _, err = runSplit(t, append(exec, "-o", "json", "--", "sh", "-c", "echo $PUSHDEPLOY_APP; exit 3")...)
	if pipeline.ExitCode(err) != pipeline.ExitFailed {
		t.Fatalf("exec -o json: %v", err)
	}
	golden(t, "exec.json.golden", stdout, e.replacements())

	// Without --, the command's own flags are its own.
	if out := wantExit(t, pipeline.ExitOK, append(exec, "printf", "%s.", "-n", "--x")...); !strings.Contains(out, "| -n.--x.") {
		t.Errorf("exec printf -n: %s", out)
	}
	wantExit(t, pipeline.ExitUsage, exec...)
	wantExit(t, pipeline.ExitUsage, append(exec, "--host", "10.1.1.1", "--", "true")...)
	wantExit(t, pipeline.ExitOK, append(exec, "--host", "127.0.0.1", "--", "true")...)
	wantExit(t, pipeline.ExitUnreachable, append(exec, "--hosts", closedAddr(t), "--", "true")...)
}

// closedAddr is a loopback address nobody listens at.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestStatusExitUnreachable: status exits 7 when a server, or the cluster, cannot be
// reached, and 0 when it can.
func TestStatusExitUnreachable(t *testing.T) {
	e := newSSHEnv(t)
	wantExit(t, pipeline.ExitOK, e.cmd("status", "--no-check")...)
	down := closedAddr(t)
	out := wantExit(t, pipeline.ExitUnreachable, replaced(e.cmd("status", "--no-check"), "--hosts", down)...)
	if !strings.Contains(out, down) {
		t.Errorf("status does not name the host: %s", out)
	}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: %q, insecure-skip-tls-verify: true}}]\n"+
		"users: [{name: u, user: {token: t0ken-not-secret}}]\ncontexts: [{name: x, context: {cluster: c, user: u, namespace: default}}]\ncurrent-context: x\n", "https://"+closedAddr(t))
	if err := os.WriteFile(kc, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	wantExit(t, pipeline.ExitUnreachable, "status", "--no-check", "--env", "staging", "--app", "web", "--kind", "kubernetes",
		"--deployment", "web", "--kubeconfig", "file:"+kc)
}
