package pipeline_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/assemble"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/docker"
	"github.com/pushdeploy/pushdeploy/targets/ssh"
)

// Issue 11, cases 1 and 2 on servers: every command run for a release gets the same
// PUSHDEPLOY_* variables, health templates prove the version, a host must stay healthy for
// the stability window, and every remote command is bounded.

// serverBench is a file deploy to real sshd hosts through pipeline.Deploy.
type serverBench struct {
	t       *testing.T
	hosts   []*testbench.SSHHost
	secrets pipeline.Secrets
	maker   pipeline.TargetMaker
	log     bytes.Buffer
}

func newServerBench(t *testing.T, n int) *serverBench {
	hosts := testbench.SSHHosts(t, n)
	return &serverBench{t: t, hosts: hosts, secrets: pipeline.Secrets{SSHKey: hosts[0].ClientKey, KnownHosts: testbench.KnownHostsOf(hosts)}}
}

// appDir is where host h keeps the application.
func appDir(h *testbench.SSHHost) string { return filepath.Join(h.Dir, "app") }

// perHostMaker makes the file's ssh target with each host's own application directory (the
// bench's hosts share this machine's disk; the file has one path for all), with the file's
// restart settings.
func (b *serverBench) perHostMaker() pipeline.TargetMaker {
	return func(_ context.Context, f *config.File, name string, s *pipeline.Secrets) (targets.Target, error) {
		env, err := f.Env(name)
		if err != nil {
			return nil, err
		}
		var hc []ssh.HostConfig
		for _, h := range b.hosts {
			hc = append(hc, ssh.HostConfig{Addr: h.Addr, User: h.User, Path: appDir(h)})
		}
		opts := []ssh.Option{ssh.PrivateKey(s.SSHKey), ssh.KnownHosts(s.KnownHosts), ssh.ManifestCache("")}
		if env.SSH.Restart != "" {
			opts = append(opts, ssh.Restart(env.SSH.Restart))
		}
		if d := env.SSH.RestartTimeout.Duration; d > 0 {
			opts = append(opts, ssh.RestartTimeout(d))
		}
		for _, p := range env.SSH.Shared {
			// As assemble does: a last element with a dot is a file (.env), else a directory.
			if strings.Contains(filepath.Base(p), ".") && !strings.HasSuffix(p, "/") {
				opts = append(opts, ssh.SharedFiles(p))
			} else {
				opts = append(opts, ssh.Shared(strings.TrimSuffix(p, "/")))
			}
		}
		return ssh.New(f.App, name, hc, opts...)
	}
}

// file parses an environments file of one ssh environment "staging" on the bench's hosts,
// whose path is the first host's application directory; rest is the environment's further
// keys, indented by four spaces.
func (b *serverBench) file(ssh, rest string) *config.File {
	b.t.Helper()
	h := b.hosts[0]
	src := fmt.Sprintf("app: web\nenvironments:\n  staging:\n    ssh:\n      hosts: [%q]\n      user: %s\n      path: %s\n%s%s",
		h.Addr, h.User, appDir(h), ssh, rest)
	f, err := config.Parse("pushdeploy.yaml", []byte(src))
	if err != nil {
		b.t.Fatalf("the test's environments file: %v\n%s", err, src)
	}
	return f
}

// deploy deploys a release of version whose files are files.
func (b *serverBench) deploy(f *config.File, version string, files map[string]string) (*pipeline.Record, error) {
	b.t.Helper()
	dir := b.t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
	return b.deployDir(f, version, dir)
}

// deployDir deploys the files in dir as a release of version.
func (b *serverBench) deployDir(f *config.File, version, dir string) (*pipeline.Record, error) {
	b.t.Helper()
	maker := b.maker
	if maker == nil {
		maker = assemble.Maker(assemble.Extra{})
	}
	start := b.log.Len()
	// A guard against a hung deploy, not a timing assertion.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rec, err := pipeline.Deploy(ctx, pipeline.Request{
		File: f, Env: "staging", Deployer: "ci", PipelineID: "run-7", ApprovedBy: "alice",
		Source:  pipeline.Source{Revision: strings.Repeat("ab", 20), Version: version},
		Secrets: b.secrets, Targets: maker, Artifact: &pipeline.Artifact{Dir: dir}, Log: &b.log,
	})
	b.t.Logf("deploy %s:\n%s", version, b.log.String()[start:])
	return rec, err
}

// current is what host h's current release holds in file VERSION ("" when nothing is live).
func current(h *testbench.SSHHost) string {
	b, _ := os.ReadFile(filepath.Join(appDir(h), "current", "VERSION"))
	return strings.TrimSpace(string(b))
}

// assertFleet checks that every host serves version, the lock is free and the record says
// outcome.
func (b *serverBench) assertFleet(rec *pipeline.Record, outcome, version string) {
	b.t.Helper()
	if rec == nil || rec.Outcome != outcome {
		b.t.Errorf("record %+v; want outcome %q", rec, outcome)
	}
	for _, h := range b.hosts {
		if got := current(h); got != version {
			b.t.Errorf("%s runs %q; want %q", h.Name, got, version)
		}
		if _, err := os.Stat(filepath.Join(appDir(h), ".pushdeploy", "lock")); err == nil {
			b.t.Errorf("%s: the deploy lock is still held after the deploy", h.Name)
		}
	}
}

// pushdeployVars reads a file of "env | grep ^PUSHDEPLOY_" lines, sorted.
func pushdeployVars(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the command did not write its environment: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestEveryCommandGetsTheRecord: the restart command, the health command and a hook on the
// hosts see the same, full set of PUSHDEPLOY_* variables (a health command used to get only
// PUSHDEPLOY_RELEASE), and a health command can prove the version by them.
func TestEveryCommandGetsTheRecord(t *testing.T) {
	b := newServerBench(t, 2)
	b.maker = b.perHostMaker()
	dump := func(name string) string {
		return `env | grep ^PUSHDEPLOY_ | grep -v ^PUSHDEPLOY_PATH= > "$PUSHDEPLOY_APP_DIR/` + name + `"`
	}
	// Each command writes its variables beside the releases ($PWD is path/current).
	dir := `PUSHDEPLOY_APP_DIR=$(cd .. && pwd -P); `
	f := b.file(fmt.Sprintf("      restart: '%s%s'\n", dir, dump("restart.env")), fmt.Sprintf(`    health:
      command: '%s%s && grep -qx "$PUSHDEPLOY_VERSION" VERSION'
      interval: 100ms
      retries: 3
      stable: 200ms
    hooks:
      where: hosts
      post_deploy: ['%s%s']
`, dir, dump("health.env"), dir, dump("hook.env")))
	rec, err := b.deploy(f, "1.0.0", map[string]string{"VERSION": "1.0.0\n"})
	if err != nil {
		t.Fatal(err)
	}
	b.assertFleet(rec, pipeline.OutcomeDeployed, "1.0.0")
	for _, h := range b.hosts {
		restart := pushdeployVars(t, filepath.Join(appDir(h), "restart.env"))
		for _, want := range []string{
			"PUSHDEPLOY_APP=web", "PUSHDEPLOY_ENV=staging", "PUSHDEPLOY_KIND=ssh", "PUSHDEPLOY_RELEASE=" + rec.Release,
			"PUSHDEPLOY_VERSION=1.0.0", "PUSHDEPLOY_DIGEST=" + rec.Digest, "PUSHDEPLOY_DEPLOYER=ci",
			"PUSHDEPLOY_APPROVED_BY=alice", "PUSHDEPLOY_PIPELINE_ID=run-7", "PUSHDEPLOY_REVISION=" + strings.Repeat("ab", 20),
		} {
			if !strings.Contains(restart+"\n", want+"\n") {
				t.Errorf("%s: the restart command's variables lack %s:\n%s", h.Name, want, restart)
			}
		}
		for _, other := range []string{"health.env", "hook.env"} {
			if got := pushdeployVars(t, filepath.Join(appDir(h), other)); got != restart {
				t.Errorf("%s: %s differs from the restart command's variables:\n%s\nwant:\n%s", h.Name, other, got, restart)
			}
		}
	}
	// A release whose files say another version than the deploy does fails its check.
	rec, err = b.deploy(f, "2.0.0", map[string]string{"VERSION": "1.0.0-stale\n"})
	if err == nil {
		t.Fatal("a release that does not serve its version was deployed")
	}
	b.assertFleet(rec, pipeline.OutcomeRolledBack, "1.0.0")
}

// TestStabilityWindowOnServers: a health check that passes once and then fails is not a
// healthy host: the deploy rolls back.
func TestStabilityWindowOnServers(t *testing.T) {
	b := newServerBench(t, 1)
	// Version 2 answers its first check, then never again.
	f := b.file("", `    health:
      command: '[ "$PUSHDEPLOY_VERSION" != 2.0.0 ] || { [ ! -e ../once ] && touch ../once; }'
      interval: 100ms
      retries: 3
      stable: 500ms
`)
	rec, err := b.deploy(f, "1.0.0", map[string]string{"VERSION": "1.0.0\n"})
	if err != nil {
		t.Fatal(err)
	}
	b.assertFleet(rec, pipeline.OutcomeDeployed, "1.0.0")
	rec, err = b.deploy(f, "2.0.0", map[string]string{"VERSION": "2.0.0\n"})
	if err == nil || !strings.Contains(err.Error(), "stability window") || !strings.Contains(err.Error(), "passed, then failed") {
		t.Fatalf("deploy of a release that fails after its first check: %v; want a failure in the stability window", err)
	}
	b.assertFleet(rec, pipeline.OutcomeRolledBack, "1.0.0")
}

// hung is a command that would run for ~11 days, marked so that the test can find it.
func hung(t *testing.T) (cmd, marker string) {
	n := 900000 + rand.IntN(99999)
	return fmt.Sprintf("sleep %d", n), fmt.Sprintf("sleep %d", n)
}

// assertKilled checks that no process runs cmd line marker on this machine (the bench's
// hosts are this machine).
func assertKilled(t *testing.T, marker string) {
	t.Helper()
	// The kill is sent before the deploy returns; the process may take a moment to go.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := exec.Command("pgrep", "-f", "^"+marker+"$").Output()
		if err != nil {
			return // pgrep: no process
		}
		if time.Now().After(deadline) {
			t.Errorf("the timed-out command %q still runs on the host (pids %s)", marker, bytes.TrimSpace(out))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHungCommandsAreBounded: a restart command, a health command and a post-deploy hook on
// the hosts that hang are each killed at their timeout; the host fails, the deploy rolls
// back, the lock is free, and the hung process does not survive on the host.
func TestHungCommandsAreBounded(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ssh, rest func(hang string) string
		says      string
	}{
		{"restart", func(hang string) string {
			return fmt.Sprintf("      restart: 'if [ \"$PUSHDEPLOY_VERSION\" = 2.0.0 ]; then %s; fi'\n      restart_timeout: 1s\n", hang)
		}, func(string) string { return "" }, "restart command timed out after 1s"},
		{"health command", func(string) string { return "" }, func(hang string) string {
			return fmt.Sprintf("    health:\n      command: 'if [ \"$PUSHDEPLOY_VERSION\" = 2.0.0 ]; then %s; fi'\n      timeout: 1s\n      retries: 2\n      interval: 10ms\n      stable: 10ms\n", hang)
		}, "timed out after 1s"},
		{"hook on hosts", func(string) string { return "" }, func(hang string) string {
			return fmt.Sprintf("    hooks:\n      where: hosts\n      timeout: 1s\n      post_deploy: ['if [ \"$PUSHDEPLOY_VERSION\" = 2.0.0 ]; then %s; fi']\n", hang)
		}, "timed out after 1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newServerBench(t, 1)
			hang, marker := hung(t)
			f := b.file(tc.ssh(hang), tc.rest(hang))
			rec, err := b.deploy(f, "1.0.0", map[string]string{"VERSION": "1.0.0\n"})
			if err != nil {
				t.Fatal(err)
			}
			b.assertFleet(rec, pipeline.OutcomeDeployed, "1.0.0")
			rec, err = b.deploy(f, "2.0.0", map[string]string{"VERSION": "2.0.0\n"})
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("deploy with a hung %s: %v; want an error saying %q", tc.name, err, tc.says)
			}
			b.assertFleet(rec, pipeline.OutcomeRolledBack, "1.0.0")
			assertKilled(t, marker)
		})
	}
}

// TestDockerPreflightBeforeTheLock: a Docker deploy user that cannot write the state
// directory, or an engine socket that is not there, is found by the preflight (at the end of
// the gates): before the lock, before any notification, nothing changed. (The fixed /var/lib/pushdeploy used to
// fail a non-root user at the lock, after a failure notification.)
func TestDockerPreflightBeforeTheLock(t *testing.T) {
	d := testbench.SharedDockerd(t)
	hosts := testbench.SSHHosts(t, 1)
	hook := newReceiver(t)
	secrets := pipeline.Secrets{SSHKey: hosts[0].ClientKey, KnownHosts: testbench.KnownHostsOf(hosts)}
	for _, tc := range []struct {
		name, keys string
		extra      assemble.Extra
		says       []string
	}{
		{"state dir", "      state_dir: /proc/pushdeploy\n", assemble.Extra{Docker: []docker.Option{docker.WithSocket(d.Socket)}},
			[]string{`state directory "/proc/pushdeploy/web-staging"`, hosts[0].Addr, "docker.state_dir"}},
		{"socket", "      socket: /run/pushdeploy-no-such.sock\n", assemble.Extra{},
			[]string{"unix:/run/pushdeploy-no-such.sock", hosts[0].Addr, "docker.socket"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := fmt.Sprintf("app: web\nenvironments:\n  staging:\n    docker:\n      hosts: [%q]\n      user: %s\n%s    notifications:\n      webhook: {url: %q}\n",
				hosts[0].Addr, hosts[0].User, tc.keys, hook.URL)
			f, err := config.Parse("pushdeploy.yaml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			var log bytes.Buffer
			rec, err := pipeline.Deploy(context.Background(), pipeline.Request{
				File: f, Env: "staging", Secrets: secrets, Targets: assemble.Maker(tc.extra), Log: &log,
				Artifact: &pipeline.Artifact{Image: "127.0.0.1:1/web@sha256:" + strings.Repeat("0", 64)},
			})
			t.Logf("deploy:\n%s", log.String())
			if err == nil || !strings.HasPrefix(err.Error(), "gates: ") {
				t.Fatalf("deploy: %v; want the preflight to refuse it, at the end of the gates", err)
			}
			for _, w := range tc.says {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if stageOutcome(rec, "lock") != "" {
				t.Errorf("stages %q: the lock stage ran", stageNames(rec))
			}
			if bodies, _ := hook.take(); len(bodies) != 0 {
				t.Errorf("a refused deploy notified: %q", bodies)
			}
		})
	}
}
