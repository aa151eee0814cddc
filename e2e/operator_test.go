package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSandbox is `dagger call sandbox` with nothing configured: an SSH host as a Dagger
// service, examples/hello deployed and serving, a broken build rolled back, the build
// serving again, the file to go real printed. The stage lines stream to the progress
// output while the function runs.
func TestSandbox(t *testing.T) {
	e := needEngine(t)
	r := e.dagger(t, e.module, nil, "call", "sandbox")
	r.report(t, false)
	if r.err != nil {
		t.Fatalf("dagger call sandbox: %v\nstdout:\n%s\nstderr (end):\n%s", r.err, r.stdout, tailOf(r.stderr, 6000))
	}
	mustContain(t, "the sandbox's result", r.stdout,
		"== serving: GET /health -> ok ", "ROLLED BACK", "== serving the build again: GET /health -> ok ",
		"environments:\n  staging:\n    ssh:")
	// The stage lines are in the progress output (stderr) too, as the function printed them.
	mustContain(t, "the progress output", r.stderr, "==> lock: ok", "==> deploy: FAILED")
}

// TestDebug is `dagger call debug --env staging`: a container with the environment's access.
// ssh reaches the host by the alias the config names, with the environment's key and
// known_hosts; the key is a file, never in the environment.
func TestDebug(t *testing.T) {
	e := needEngine(t)
	a := newSSHApp(t, e)
	base := []string{"call", "--source", ".", "--ssh-key", "env:SSH_KEY", "debug", "--env", "staging"}
	out := e.ok(t, a.dir, a.env, append(base, "with-exec", "--args", "sh,-c,ssh staging-1 echo reached $(hostname 2>/dev/null || echo host) && ls /src/pushdeploy.yaml", "stdout")...)
	mustContain(t, "ssh from the debug container", out, "reached", "/src/pushdeploy.yaml")
	env := e.ok(t, a.dir, a.env, append(base, "with-exec", "--args", "env", "stdout")...)
	if strings.Contains(env, strings.TrimSpace(a.keyValue)[40:80]) {
		t.Errorf("the debug container's environment holds the SSH key")
	}
	mustContain(t, "the debug container's environment", env, "PUSHDEPLOY_ENV=staging", "PUSHDEPLOY_KIND=ssh")
	cfg := e.ok(t, a.dir, a.env, append(base, "file", "--path", "/root/.ssh/config", "contents")...)
	mustContain(t, "the debug container's ssh config", cfg, "Host staging-1", "HostName "+e.hostAddr, "StrictHostKeyChecking yes")
}

// TestLogsAndExec is `logs` and `exec` through dagger call on a deployed server: the logs
// command the file names and a command run in the live release, each line prefixed by the
// host; a command failing on the host fails the call.
func TestLogsAndExec(t *testing.T) {
	e := needEngine(t)
	a := newSSHApp(t, e)
	file := filepath.Join(a.dir, "pushdeploy.yaml")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	withLogs := strings.Replace(string(b), "  staging:\n    ssh:\n", "  staging:\n    ssh:\n      logs: echo logged $PUSHDEPLOY_RELEASE since=$PUSHDEPLOY_LOGS_SINCE\n", 1)
	if err := os.WriteFile(file, []byte(withLogs), 0o644); err != nil {
		t.Fatal(err)
	}
	pd := func(args ...string) []string {
		return append([]string{"call", "--source", ".", "--revision", "r1", "--ssh-key", "env:SSH_KEY"}, args...)
	}
	rec := parseRecord(t, e.ok(t, a.dir, a.env, pd("deploy", "--env", "staging", "--skip-tests", "--format", "json")...))
	host := a.hosts[0].Addr
	out := e.ok(t, a.dir, a.env, pd("logs", "--env", "staging", "--since", "10m")...)
	mustContain(t, "logs", out, "logged "+rec.Release+" since=600", host+" | ")
	out = e.ok(t, a.dir, a.env, pd("exec", "--env", "staging", "--cmd", "ls app && echo in $PUSHDEPLOY_RELEASE")...)
	mustContain(t, "exec", out, "in "+rec.Release, host)
	msg := e.fails(t, a.dir, a.env, pd("exec", "--env", "staging", "--args", "false")...)
	mustContain(t, "a failing exec", msg, host, "exit 1")
}
