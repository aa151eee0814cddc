package ssh_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/ssh"
)

// End-to-end: the shared engine (pipeline.Rollout) driving this target against real sshd.

func rollout(t *testing.T, tg *ssh.Target, r targets.Release, opts ...pipeline.Option) (*pipeline.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return pipeline.Rollout(ctx, tg, r, append([]pipeline.Option{pipeline.WithOwner("tester", "test-"+r.ID)}, opts...)...)
}

// unhealthy is a command health check that fails for release <id> on hosts whose app
// directory holds a file "unhealthy-<id>" (the check runs in path/current, a link to
// path/releases/<id>).
var unhealthy = pipeline.WithHealthCheck(pipeline.HealthCheck{Command: `test ! -e "../../unhealthy-$PUSHDEPLOY_RELEASE"`, Retries: 2, Interval: 10 * time.Millisecond})

func TestRolloutHealthFailureOnOneOfThreeRollsAllBack(t *testing.T) {
	hosts := testbench.SSHHosts(t, 3, testUser)
	tg := newTarget(t, hosts)
	if _, err := rollout(t, tg, release(t, tg, "r1", writeTree(t, v1)), unhealthy); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(appDir(hosts[1]), "unhealthy-r2"), nil, 0o644)
	v2 := tree{"index.html": "<h1>v2</h1>"}
	res, err := rollout(t, tg, release(t, tg, "r2", writeTree(t, v2)), unhealthy)
	if err == nil {
		t.Fatal("deploy succeeded although a host is unhealthy")
	}
	for _, want := range []string{hosts[1].Addr, "health"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if res == nil || res.Record.Outcome != pipeline.OutcomeRolledBack {
		t.Fatalf("result %+v; want rolled back", res)
	}
	for _, h := range hosts {
		assertCurrent(t, h, v1)
		// Switched to r2, then back to r1, restarted each time.
		if got := restarts(t, h); strings.Join(got, ",") != "r1 r1,r2 r2,r1 r1" {
			t.Errorf("%s: restarts %q; want r1, r2, then r1 again", h.Name, got)
		}
		if _, err := os.Stat(filepath.Join(appDir(h), "releases", "r2")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: the failed release was not discarded", h.Name)
		}
	}
	// The history on every host says what happened.
	for _, h := range hosts {
		b, _ := os.ReadFile(filepath.Join(appDir(h), ".pushdeploy", "history.jsonl"))
		if !strings.Contains(string(b), `"rolled back"`) {
			t.Errorf("%s: history %s has no rolled-back record", h.Name, b)
		}
	}
}

func TestRolloutFirstDeployFailureLeavesNothingLive(t *testing.T) {
	hosts := testbench.SSHHosts(t, 2, testUser)
	tg := newTarget(t, hosts)
	os.MkdirAll(appDir(hosts[0]), 0o777)
	os.WriteFile(filepath.Join(appDir(hosts[0]), "unhealthy-r1"), nil, 0o644)
	if _, err := rollout(t, tg, release(t, tg, "r1", writeTree(t, v1)), unhealthy); err == nil {
		t.Fatal("deploy succeeded although a host is unhealthy")
	}
	for _, h := range hosts {
		assertCurrent(t, h, nil)
	}
}

func TestRolloutRedeployAndManualRollback(t *testing.T) {
	hosts := testbench.SSHHosts(t, 2, testUser)
	tg := newTarget(t, hosts)
	r1 := release(t, tg, "r1", writeTree(t, v1))
	if _, err := rollout(t, tg, r1); err != nil {
		t.Fatal(err)
	}
	// The same artifacts again, under a new id: nothing to do.
	again := release(t, tg, "r1b", writeTree(t, v1))
	res, err := rollout(t, tg, again)
	if err != nil || res.Record.Outcome != pipeline.OutcomeUnchanged {
		t.Fatalf("redeploy = %+v, %v; want unchanged", res, err)
	}
	v2 := tree{"index.html": "two"}
	if _, err := rollout(t, tg, release(t, tg, "r2", writeTree(t, v2))); err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		assertCurrent(t, h, v2)
	}
	if _, err := pipeline.Rollback(context.Background(), tg, "", pipeline.WithOwner("tester", "rb")); err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		assertCurrent(t, h, v1)
	}
	if _, err := pipeline.Rollback(context.Background(), tg, "r2", pipeline.WithOwner("tester", "rb")); err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		assertCurrent(t, h, v2)
	}
}

func TestRolloutLockContention(t *testing.T) {
	hosts := testbench.SSHHosts(t, 2, testUser)
	// The first deploy's restart waits for a "go" file, holding the lock meanwhile.
	slow := newTarget(t, hosts, ssh.Restart(`touch "$PUSHDEPLOY_PATH/waiting"; while [ ! -e "$PUSHDEPLOY_PATH/go" ]; do sleep 0.02; done`))
	fast := newTarget(t, hosts)
	r1 := release(t, slow, "r1", writeTree(t, v1))
	v2 := tree{"index.html": "two"}
	r2 := release(t, fast, "r2", writeTree(t, v2))

	done := make(chan error, 1)
	go func() {
		_, err := pipeline.Rollout(context.Background(), slow, r1, pipeline.WithOwner("alice", "pipeline-1"))
		done <- err
	}()
	waitFile(t, filepath.Join(appDir(hosts[0]), "waiting"), done)

	_, err := pipeline.Rollout(context.Background(), fast, r2, pipeline.WithOwner("bob", "pipeline-2"))
	var held *targets.HeldError
	if !errors.As(err, &held) || held.Holder.Owner != "alice" || !strings.Contains(err.Error(), "pipeline-1") {
		t.Fatalf("concurrent deploy = %v; want the lock held by alice's pipeline-1", err)
	}
	// A deploy that waits gets the lock once the first is done.
	waited := make(chan error, 1)
	go func() {
		_, err := pipeline.Rollout(context.Background(), fast, r2, pipeline.WithOwner("bob", "pipeline-3"), pipeline.WithLockWait(time.Minute))
		waited <- err
	}()
	for _, h := range hosts {
		os.WriteFile(filepath.Join(appDir(h), "go"), nil, 0o644)
	}
	if err := <-done; err != nil {
		t.Fatalf("first deploy: %v", err)
	}
	if err := <-waited; err != nil {
		t.Fatalf("waiting deploy: %v", err)
	}
	for _, h := range hosts {
		assertCurrent(t, h, v2)
	}
	if l, err := fast.Locker().Holder(context.Background()); err != nil || l != nil {
		t.Fatalf("lock after both deploys: %+v, %v", l, err)
	}
}

// waitFile polls for a file the host writes; a deploy ending first is a failure.
func waitFile(t *testing.T, p string, done <-chan error) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		if _, err := os.Stat(p); err == nil {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("deploy ended before %s appeared: %v", p, err)
		case <-deadline:
			t.Fatalf("%s never appeared", p)
		case <-time.After(5 * time.Millisecond): // polling the host's directory
		}
	}
}

func TestRolloutSSHDKilledMidUpload(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1, testUser)
	h := hosts[0]
	tg := newTarget(t, hosts, ssh.Parallel(1))
	if _, err := rollout(t, tg, release(t, tg, "r1", writeTree(t, v1))); err != nil {
		t.Fatal(err)
	}
	big := tree{}
	for i := 0; i < 300; i++ {
		big[fmt.Sprintf("f/%03d.bin", i)] = strings.Repeat(fmt.Sprint(i), 20000)
	}
	r2 := release(t, tg, "r2", writeTree(t, big))
	done := make(chan error, 1)
	go func() {
		_, err := rollout(t, tg, r2, pipeline.WithLockTTL(2*time.Second))
		done <- err
	}()
	staging := filepath.Join(appDir(h), ".pushdeploy", "staging", "r2")
	for {
		if ents, _ := os.ReadDir(staging); len(ents) >= 3 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("deploy ended before the kill: %v", err)
		case <-time.After(2 * time.Millisecond): // polling the host's directory
		}
	}
	h.Kill()
	if err := <-done; err == nil {
		t.Fatal("deploy succeeded although sshd was killed")
	}
	assertCurrent(t, h, v1)
	if err := h.Restart(); err != nil {
		t.Fatal(err)
	}
	assertCurrent(t, h, v1)
	// The killed deploy could not release its lock (the host was down): it expires, and a
	// rerun that waits for it succeeds.
	if _, err := rollout(t, tg, r2, pipeline.WithLockWait(time.Minute)); err != nil {
		t.Fatalf("rerun: %v", err)
	}
	assertCurrent(t, h, big)
}

func TestRolloutKeepsN(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1, testUser)
	tg := newTarget(t, hosts)
	for i := 1; i <= 5; i++ {
		v := tree{"index.html": fmt.Sprint("v", i)}
		if _, err := rollout(t, tg, release(t, tg, fmt.Sprintf("r%d", i), writeTree(t, v)), pipeline.WithKeep(3)); err != nil {
			t.Fatal(err)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(appDir(hosts[0]), "releases"))
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != "r3,r4,r5" {
		t.Fatalf("releases kept: %v; want the last 3", got)
	}
	metas, _ := filepath.Glob(filepath.Join(appDir(hosts[0]), ".pushdeploy", "releases", "*"))
	if len(metas) != 12 { // json, manifest, chunk index and activation stamp of each kept release
		t.Fatalf("metadata files %v; want those of the 3 kept releases", metas)
	}
	assertCurrent(t, hosts[0], tree{"index.html": "v5"})
	// Plan through the engine shows what would change.
	ch, err := pipeline.Plan(context.Background(), tg, release(t, tg, "r6", writeTree(t, tree{"index.html": "v6", "new": "x"})))
	if err != nil || len(ch) != 1 || ch[0].Live != "r5" || strings.Join(ch[0].Add, ",") != "new" || strings.Join(ch[0].Update, ",") != "index.html" {
		t.Fatalf("plan = %+v, %v", ch, err)
	}
}

// Hosts with addresses of their own (network namespaces), each serving its live release
// over HTTP with busybox httpd, which the restart command (re)starts: the HTTP health check
// of the engine, per host through {{.Address}}.
func TestRolloutHTTPHealthOnNetnsHosts(t *testing.T) {
	if _, err := exec.LookPath("busybox"); err != nil {
		testbench.Unavailable(t, "busybox (for httpd): %v", err)
	}
	hosts := testbench.SSHHosts(t, 3, testUser, testbench.SSHNetns())
	restart := `p="$PUSHDEPLOY_PATH/httpd.pid"
if [ -f "$p" ]; then old=$(cat "$p"); kill "$old" 2>/dev/null; while kill -0 "$old" 2>/dev/null; do sleep 0.01; done; fi
nohup busybox httpd -f -p 8080 -h "$PUSHDEPLOY_PATH/current" </dev/null >/dev/null 2>&1 &
echo $! > "$p"
echo "$PUSHDEPLOY_RELEASE $(basename "$(pwd -P)")" >> "$PUSHDEPLOY_PATH/restarts"`
	tg := newTarget(t, hosts, ssh.Restart(restart))
	t.Cleanup(func() {
		for _, h := range hosts {
			if b, err := os.ReadFile(filepath.Join(appDir(h), "httpd.pid")); err == nil {
				exec.Command("kill", strings.TrimSpace(string(b))).Run()
			}
		}
	})
	health := pipeline.WithHealthCheck(pipeline.HealthCheck{URL: "http://{{.Address}}:8080/health", Body: "^ok", Interval: 50 * time.Millisecond, Retries: 20, Timeout: time.Second})
	serves := func(h *testbench.SSHHost, want string) {
		t.Helper()
		host, _, _ := strings.Cut(h.Addr, ":")
		resp, err := http.Get("http://" + host + ":8080/index.html")
		if err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != want {
			t.Fatalf("%s serves %q; want %q", h.Name, b, want)
		}
	}

	v1 := tree{"index.html": "one", "health": "ok"}
	if _, err := rollout(t, tg, release(t, tg, "r1", writeTree(t, v1)), health); err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		assertCurrent(t, h, v1)
		serves(h, "one")
	}
	// A release that is not healthy: the first batch (one host) fails, goes back to r1 and
	// is restarted; the others are never touched.
	bad := tree{"index.html": "two", "health": "broken"}
	_, err := rollout(t, tg, release(t, tg, "r2", writeTree(t, bad)), health, pipeline.WithBatchSize(1))
	if err == nil || !strings.Contains(err.Error(), hosts[0].Addr) || !strings.Contains(err.Error(), "health") {
		t.Fatalf("deploy of an unhealthy release = %v; want a health failure on %s", err, hosts[0].Name)
	}
	for i, h := range hosts {
		assertCurrent(t, h, v1)
		serves(h, "one")
		want := "r1 r1"
		if i == 0 {
			want = "r1 r1,r2 r2,r1 r1"
		}
		if got := strings.Join(restarts(t, h), ","); got != want {
			t.Errorf("%s: restarts %q; want %q", h.Name, got, want)
		}
	}
}

func TestRolloutRestartFailureRollsBack(t *testing.T) {
	hosts := testbench.SSHHosts(t, 2, testUser)
	good := newTarget(t, hosts)
	if _, err := rollout(t, good, release(t, good, "r1", writeTree(t, v1))); err != nil {
		t.Fatal(err)
	}
	// The restart fails for r2 only: the switch back to r1 restarts fine.
	bad := newTarget(t, hosts, ssh.Restart(`if [ "$PUSHDEPLOY_RELEASE" = r2 ]; then echo "pm2: process myapp not found" >&2; exit 3; fi`))
	_, err := rollout(t, bad, release(t, bad, "r2", writeTree(t, tree{"index.html": "two"})))
	if err == nil {
		t.Fatal("deploy succeeded although the restart failed")
	}
	for _, want := range []string{"restarting", "pm2: process myapp not found", "exit status 3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	for _, h := range hosts {
		assertCurrent(t, h, v1)
	}
}
