package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
)

// record is the part of a deployment record (deploy --format json) the suite reads.
type record struct {
	Action  string `json:"action"`
	Release string `json:"release"`
	Version string `json:"version"`
	Outcome string `json:"outcome"`
	Hosts   []struct {
		Host    string `json:"host"`
		Outcome string `json:"outcome"`
	} `json:"hosts"`
}

func parseRecord(t *testing.T, out string) record {
	t.Helper()
	var r record
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("reading the record: %v\n%s", err, out)
	}
	return r
}

// live is the release a host's current link points at ("" none).
func live(t *testing.T, appDir string) string {
	t.Helper()
	dst, err := os.Readlink(filepath.Join(appDir, "current"))
	if err != nil {
		return ""
	}
	return filepath.Base(dst)
}

// sshApp is examples/hello with a pushdeploy.yaml for two environments of one host each,
// the hosts listening where the engine's containers reach them.
type sshApp struct {
	dir      string
	hosts    []*testbench.SSHHost
	staging  string // the app's directory on the staging host
	prod     string
	env      []string // SSH_KEY in the caller's environment
	keyValue string
}

func newSSHApp(t *testing.T, e *engine) *sshApp {
	t.Helper()
	hosts := testbench.SSHHosts(t, 2, testbench.SSHListenHost(e.hostAddr))
	a := &sshApp{
		dir:      copyTree(t, filepath.Join(e.module, "examples", "hello")),
		hosts:    hosts,
		staging:  filepath.Join(hosts[0].Dir, "hello"),
		prod:     filepath.Join(hosts[1].Dir, "hello"),
		keyValue: string(hosts[0].ClientKey),
	}
	a.env = []string{"SSH_KEY=" + a.keyValue}
	if err := os.WriteFile(filepath.Join(a.dir, "known_hosts"), testbench.KnownHostsOf(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
	file := fmt.Sprintf(`app: hello
build:
  kind: go
environments:
  staging:
    ssh:
      hosts: [%q]
      user: %s
      key: env:SSH_KEY
      known_hosts: file:known_hosts
      path: %s
    health:
      command: test -x app
      interval: 200ms
      retries: 3
      stable: 0s
  production:
    protected: true
    ssh:
      hosts:
        - host: %q
          port: %d
          user: %s
      key: env:SSH_KEY
      known_hosts: file:known_hosts
      path: %s
`, hosts[0].Addr, hosts[0].User, a.staging, e.hostAddr, hosts[1].Port, hosts[1].User, a.prod)
	if err := os.WriteFile(filepath.Join(a.dir, "pushdeploy.yaml"), []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestSSHDeploy is the README's flow for a server over SSH, every function through dagger
// call, each checked on the host: deploy from pushdeploy.yaml (the key given as the file
// names it, and as a slot), status, plan, history, a failing health check rolled back,
// rollback, unlock, a protected environment refused and then approved; every deploy-like
// function acts on each call (never a cached answer); no secret value is ever printed.
func TestSSHDeploy(t *testing.T) {
	e := needEngine(t)
	a := newSSHApp(t, e)
	pd := func(revision string, args ...string) []string {
		return append([]string{"call", "--source", ".", "--revision", revision, "--branch", "main",
			"--source-url", "https://example.com/hello.git"}, args...)
	}

	// The file names env:SSH_KEY and the caller passes it with --secrets (issue: names
	// were never found).
	out := e.ok(t, a.dir, a.env, pd("r1", "--secrets", "env:SSH_KEY", "deploy", "--env", "staging", "--format", "json")...)
	r1 := parseRecord(t, out)
	if r1.Outcome != "deployed" || live(t, a.staging) != r1.Release {
		t.Fatalf("deploy r1: record says %s %s; the host runs %q", r1.Outcome, r1.Release, live(t, a.staging))
	}
	if _, err := os.Stat(filepath.Join(a.staging, "current", "app")); err != nil {
		t.Errorf("the live release has no app binary: %v", err)
	}

	// The same secret through its slot, as the README's deploy example does.
	status1 := e.ok(t, a.dir, a.env, pd("r1", "--ssh-key", "env:SSH_KEY", "status", "--env", "staging")...)
	mustContain(t, "status after r1", status1, r1.Release)

	// A slot holding another secret than the one the file names is an error, not a silent
	// choice.
	other := append(a.env, "OTHER_KEY=not-the-key")
	msg := e.fails(t, a.dir, other, pd("r1", "--ssh-key", "env:OTHER_KEY", "status", "--env", "staging")...)
	mustContain(t, "a slot that disagrees with the file", msg, "SSH_KEY")

	// plan of a new revision changes nothing on the host.
	plan := e.ok(t, a.dir, a.env, pd("r2", "--ssh-key", "env:SSH_KEY", "plan", "--env", "staging")...)
	mustContain(t, "plan", plan, "app")
	if live(t, a.staging) != r1.Release {
		t.Fatalf("plan changed the host: it runs %q", live(t, a.staging))
	}

	out = e.ok(t, a.dir, a.env, pd("r2", "--ssh-key", "env:SSH_KEY", "deploy", "--env", "staging", "--format", "json")...)
	r2 := parseRecord(t, out)
	if r2.Outcome != "deployed" || r2.Release == r1.Release || live(t, a.staging) != r2.Release {
		t.Fatalf("deploy r2: record says %s %s; the host runs %q", r2.Outcome, r2.Release, live(t, a.staging))
	}
	// status with the same inputs as before answers anew: not the cached r1 answer.
	status2 := e.ok(t, a.dir, a.env, pd("r1", "--ssh-key", "env:SSH_KEY", "status", "--env", "staging")...)
	mustContain(t, "status after r2 (same call as after r1)", status2, r2.Release)
	statusJSON := e.ok(t, a.dir, a.env, pd("r1", "--ssh-key", "env:SSH_KEY", "status", "--config", "pushdeploy.yaml", "--format", "json")...)
	mustContain(t, "status --format json", statusJSON, `"env": "staging"`, r2.Release)

	// The same deploy again acts: it finds r2 live and says so, under the lock.
	out = e.ok(t, a.dir, a.env, pd("r2", "--ssh-key", "env:SSH_KEY", "deploy", "--env", "staging", "--format", "json")...)
	if again := parseRecord(t, out); again.Outcome != "unchanged" {
		t.Errorf("deploying r2 again: outcome %q; want unchanged (a cached answer would repeat %q)", again.Outcome, r2.Outcome)
	}

	// A health check that fails for the new release only (the file's check overridden by
	// with-environment; it sees the release's PUSHDEPLOY_* fields) rolls back to r2.
	msg = e.fails(t, a.dir, a.env, pd("r3", "--ssh-key", "env:SSH_KEY",
		"with-environment", "--health-command", `test "$PUSHDEPLOY_VERSION" != r3`, "deploy", "--env", "staging")...)
	mustContain(t, "the failed deploy", msg, "health", "rolled back")
	if strings.Contains(msg, "ROLLBACK FAILED") {
		t.Errorf("r2 was not healthy again after the rollback:\n%s", tailOf(msg, 3000))
	}
	if got := live(t, a.staging); got != r2.Release {
		t.Fatalf("after the failed deploy the host runs %q; want r2's %q", got, r2.Release)
	}

	hist := e.ok(t, a.dir, a.env, pd("r3", "--ssh-key", "env:SSH_KEY", "history", "--env", "staging", "--format", "json")...)
	var h struct {
		Records []record `json:"records"`
	}
	if err := json.Unmarshal([]byte(hist), &h); err != nil {
		t.Fatalf("history --format json: %v\n%s", err, hist)
	}
	var outcomes []string
	for _, r := range h.Records {
		outcomes = append(outcomes, r.Outcome)
	}
	if len(h.Records) < 3 || h.Records[0].Release != r1.Release {
		t.Errorf("history has %v; want r1, r2 and the rolled-back r3", outcomes)
	}

	out = e.ok(t, a.dir, a.env, pd("r3", "--ssh-key", "env:SSH_KEY", "rollback", "--env", "staging", "--format", "json")...)
	if rb := parseRecord(t, out); rb.Action != "rollback" || live(t, a.staging) != r1.Release {
		t.Fatalf("rollback: record %+v; the host runs %q, want r1's %q", rb, live(t, a.staging), r1.Release)
	}

	out = e.ok(t, a.dir, a.env, pd("r3", "--ssh-key", "env:SSH_KEY", "unlock", "--env", "staging")...)
	mustContain(t, "unlock", out, "was not locked")

	// The operator's commands: check the fleet, show the environment as understood, hold the
	// lock for maintenance (a deploy meanwhile is refused), release it.
	out = e.ok(t, a.dir, a.env, pd("r3", "--ssh-key", "env:SSH_KEY", "check", "--env", "staging")...)
	mustContain(t, "check", out, a.hosts[0].Addr)
	out = e.ok(t, a.dir, a.env, pd("r3", "--ssh-key", "env:SSH_KEY", "config", "--env", "staging", "--format", "json")...)
	mustContain(t, "config", out, "env:SSH_KEY", a.staging)
	e.ok(t, a.dir, a.env, pd("r3", "--ssh-key", "env:SSH_KEY", "lock", "--env", "staging", "--deployer", "ops", "acquire", "--reason", "maintenance")...)
	out = e.ok(t, a.dir, a.env, pd("r3", "--ssh-key", "env:SSH_KEY", "lock", "--env", "staging", "status")...)
	mustContain(t, "lock status", out, "ops")
	msg = e.fails(t, a.dir, a.env, pd("r4", "--ssh-key", "env:SSH_KEY", "deploy", "--env", "staging")...)
	mustContain(t, "a deploy during maintenance", msg, "ops")
	if got := live(t, a.staging); got != r1.Release {
		t.Fatalf("a deploy refused by the held lock changed the host: it runs %q", got)
	}
	e.ok(t, a.dir, a.env, pd("r3", "--ssh-key", "env:SSH_KEY", "lock", "--env", "staging", "--deployer", "ops", "release")...)
	out = e.ok(t, a.dir, a.env, pd("r3", "--ssh-key", "env:SSH_KEY", "lock", "--env", "staging", "status", "--format", "json")...)
	mustContain(t, "lock status after release", out, `"held": false`)

	// A protected environment: refused without an approver, leaving the host untouched.
	msg = e.fails(t, a.dir, a.env, pd("r1", "--ssh-key", "env:SSH_KEY", "deploy", "--env", "production")...)
	mustContain(t, "the refused production deploy", msg, "approved-by")
	if got := live(t, a.prod); got != "" {
		t.Fatalf("a refused deploy changed production: it runs %q", got)
	}
	out = e.ok(t, a.dir, a.env, pd("r1", "--ssh-key", "env:SSH_KEY", "deploy", "--config", "pushdeploy.yaml", "--env", "production",
		"--approved-by", "alice", "--deployer", "ci-job", "--pipeline-id", "https://ci.example.com/runs/1", "--skip-tests", "--format", "json")...)
	if p := parseRecord(t, out); p.Outcome != "deployed" || live(t, a.prod) != p.Release {
		t.Fatalf("approved production deploy: %+v; the host runs %q", p, live(t, a.prod))
	}

	assertNoSecret(t, a.keyValue)
}

// TestSSHWithoutFile describes the environment with with-environment alone, the README's
// command for a repository without pushdeploy.yaml.
func TestSSHWithoutFile(t *testing.T) {
	e := needEngine(t)
	hosts := testbench.SSHHosts(t, 1, testbench.SSHListenHost(e.hostAddr))
	app := copyTree(t, filepath.Join(e.module, "examples", "hello"))
	// A Go project without a Dockerfile: its artifacts are the binary.
	if err := os.Remove(filepath.Join(app, "Dockerfile")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "known_hosts"), hosts[0].KnownHosts, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(hosts[0].Dir, "myapp")
	env := []string{"SSH_KEY=" + string(hosts[0].ClientKey)}
	withEnv := []string{"call", "--source", ".", "--revision", "w1", "--branch", "main",
		"--ssh-key", "env:SSH_KEY", "--known-hosts", "known_hosts",
		"with-environment", "--app", "myapp", "--kind", "ssh", "--hosts", hosts[0].Addr, "--user", hosts[0].User,
		"--path", dir, "--restart", "true", "--health-command", "test -x app"}
	out := e.ok(t, app, env, append(withEnv, "deploy", "--env", "staging", "--format", "json")...)
	r := parseRecord(t, out)
	if r.Outcome != "deployed" || live(t, dir) != r.Release {
		t.Fatalf("deploy without a file: %+v; the host runs %q", r, live(t, dir))
	}
	out = e.ok(t, app, env, append(withEnv, "status", "--env", "staging")...)
	mustContain(t, "status without a file", out, r.Release)
	assertNoSecret(t, string(hosts[0].ClientKey))
}

// assertNoSecret fails when any line of any command the suite ran printed value.
func assertNoSecret(t *testing.T, value string) {
	t.Helper()
	printed.Lock()
	defer printed.Unlock()
	all := printed.b.String()
	for _, line := range strings.Split(strings.TrimSpace(value), "\n") {
		if len(line) >= 8 && strings.Contains(all, line) {
			t.Errorf("a secret's value appears in what the dagger commands printed")
			return
		}
	}
}
