package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/ssh"
)

// Issue 11 (cases 3, 4, 6, 7, 8): every deploy report is the truth about the fleet. These
// tests run the deploy flow against real sshd hosts (the servers target) and read the
// hosts afterwards.

// fleet is n sshd hosts and an environment "test" of app "myapp" on them, each host
// deploying into its own directory.
type fleet struct {
	hosts   []*testbench.SSHHost
	secrets pipeline.Secrets
	log     bytes.Buffer
}

func newFleet(t *testing.T, n int) *fleet {
	t.Helper()
	hosts := testbench.SSHHosts(t, n)
	return &fleet{hosts: hosts, secrets: pipeline.Secrets{SSHKey: hosts[0].ClientKey, KnownHosts: testbench.KnownHostsOf(hosts)}}
}

func (f *fleet) appDir(i int) string { return filepath.Join(f.hosts[i].Dir, "myapp") }

// file is the environments file: the hosts, then extra settings of the environment (YAML
// at the environment's indentation).
func (f *fleet) file(t *testing.T, extra string) *config.File {
	t.Helper()
	var hs []string
	for _, h := range f.hosts {
		hs = append(hs, fmt.Sprintf("%q", h.Addr))
	}
	src := fmt.Sprintf(`app: myapp
environments:
  test:
    ssh:
      hosts: [%s]
      user: %s
      path: /srv/myapp
%s`, strings.Join(hs, ", "), f.hosts[0].User, extra)
	file, err := config.Parse("pushdeploy.yaml", []byte(src))
	if err != nil {
		t.Fatalf("the test's environments file: %v", err)
	}
	return file
}

// maker makes the servers target of the file's environment with each host's own path.
func (f *fleet) maker() pipeline.TargetMaker {
	return func(_ context.Context, _ *config.File, name string, s *pipeline.Secrets) (targets.Target, error) {
		var hc []ssh.HostConfig
		for i, h := range f.hosts {
			hc = append(hc, ssh.HostConfig{Addr: h.Addr, User: h.User, Path: f.appDir(i)})
		}
		return ssh.New("myapp", name, hc, ssh.PrivateKey(s.SSHKey), ssh.KnownHosts(s.KnownHosts), ssh.ManifestCache(""))
	}
}

func (f *fleet) envs(file *config.File) *pipeline.Environments {
	return &pipeline.Environments{File: file, Secrets: f.secrets, Targets: f.maker(), Log: &f.log, Deployer: "tester"}
}

// deploy runs the deploy flow of art; hook (if not nil) runs the hooks that run "in a
// container".
func (f *fleet) deploy(t *testing.T, file *config.File, deployer string, art *pipeline.Artifact, hook func(ctx context.Context, cmd string) error) (*pipeline.Record, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log bytes.Buffer
	req := pipeline.Request{
		File: file, Env: "test", Deployer: deployer, PipelineID: "run-" + deployer,
		Source:  pipeline.Source{Version: "v-" + deployer},
		Secrets: f.secrets, Targets: f.maker(), Artifact: art, Log: &log,
	}
	if hook != nil {
		req.RunHook = func(ctx context.Context, _, cmd string, _ map[string]string) ([]byte, error) {
			return nil, hook(ctx, cmd)
		}
	}
	rec, err := pipeline.Deploy(ctx, req)
	t.Logf("deploy by %s:\n%s", deployer, log.String())
	return rec, err
}

// writeFiles makes an artifact directory holding index.html with content.
func writeFiles(t *testing.T, content string) *pipeline.Artifact {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return &pipeline.Artifact{Dir: dir}
}

// serves is what host i's live release holds in index.html ("" when nothing is live).
func (f *fleet) serves(i int) string {
	b, err := os.ReadFile(filepath.Join(f.appDir(i), "current", "index.html"))
	if err != nil {
		return ""
	}
	return string(b)
}

func (f *fleet) assertServes(t *testing.T, want string) {
	t.Helper()
	for i, h := range f.hosts {
		if got := f.serves(i); got != want {
			t.Errorf("%s serves %q; want %q", h.Name, got, want)
		}
	}
}

// lockHolder reads the environment's lock (on the first host): nil when there is none.
func (f *fleet) lockHolder(t *testing.T, x *pipeline.Environments) *targets.Lock {
	t.Helper()
	st := x.Status(context.Background(), "test")
	if st[0].Error != "" {
		t.Fatalf("status: %s", st[0].Error)
	}
	return st[0].Lock
}

// takeLock breaks the environment's lock and takes it as owner, acquired at acquired for
// ttl (in the past: expired).
func (f *fleet) takeLock(t *testing.T, owner string, acquired time.Time, ttl time.Duration) {
	t.Helper()
	tg, err := f.maker()(context.Background(), nil, "test", &f.secrets)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	ctx := context.Background()
	if err := tg.Locker().Break(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tg.Locker().Acquire(ctx, targets.Lock{Owner: owner, PipelineID: "run-" + owner, Acquired: acquired, Expires: acquired.Add(ttl)}); err != nil {
		t.Fatal(err)
	}
}

// stageOf is the outcome of the record's stage called name, "" when it did not run.
func stageOf(r *pipeline.Record, name string) string {
	for _, s := range r.Stages {
		if s.Stage == name {
			return s.Outcome
		}
	}
	return ""
}

// Case 3: unlock refuses a lock within its TTL, naming who holds it and until when; an
// expired lock goes without --force; --force breaks a live one.
func TestUnlockRefusesLiveLockUnlessForced(t *testing.T) {
	f := newFleet(t, 1)
	x := f.envs(f.file(t, ""))
	ctx := context.Background()

	if held, err := x.Unlock(ctx, "test"); err != nil || held != nil {
		t.Fatalf("unlocking a free lock: held %v, %v; want nothing to do", held, err)
	}

	now := time.Now().UTC().Truncate(time.Second)
	f.takeLock(t, "alice", now, 10*time.Minute)
	held, err := x.Unlock(ctx, "test")
	var live *pipeline.LiveLockError
	if !errors.As(err, &live) {
		t.Fatalf("unlocking a live lock without --force: %v; want it refused", err)
	}
	until := now.Add(10 * time.Minute).Format(time.RFC3339)
	for _, want := range []string{`"alice"`, `"run-alice"`, until, "--force", `environment "test"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %s", err, want)
		}
	}
	if held == nil || held.Owner != "alice" {
		t.Errorf("refusal names holder %+v", held)
	}
	if l := f.lockHolder(t, x); l == nil || l.Owner != "alice" {
		t.Fatalf("after the refused unlock the lock is %+v; want alice's, untouched", l)
	}

	// --force breaks it.
	if held, err := x.Unlock(ctx, "test", pipeline.WithForce(true)); err != nil || held == nil || held.Owner != "alice" {
		t.Fatalf("unlock --force: held %+v, %v", held, err)
	}
	if l := f.lockHolder(t, x); l != nil {
		t.Fatalf("after unlock --force the lock is %+v; want none", l)
	}

	// An expired lock needs no --force.
	f.takeLock(t, "bob", now.Add(-time.Hour), time.Minute)
	if held, err := x.Unlock(ctx, "test"); err != nil || held == nil || held.Owner != "bob" {
		t.Fatalf("unlocking an expired lock: held %+v, %v; want it broken", held, err)
	}
	if l := f.lockHolder(t, x); l != nil {
		t.Fatalf("after unlocking an expired lock it is %+v; want none", l)
	}
}

// Case 3: a lock broken and taken by someone else while the deploy runs (here: during its
// post-deploy hook, every host switched) stops the deploy: every host of the three goes
// back to the old release, the record says ROLLED BACK and why, the thief keeps the lock.
func TestLockStolenMidDeployRollsBackEveryHost(t *testing.T) {
	f := newFleet(t, 3)
	file := f.file(t, `    lock: {ttl: 1s}
    hooks:
      timeout: 1m
      post_deploy: [integration]
`)
	x := f.envs(file)
	if _, err := f.deploy(t, file, "first", writeFiles(t, "v1"), func(context.Context, string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	f.assertServes(t, "v1")

	rec, err := f.deploy(t, file, "second", writeFiles(t, "v2"), func(ctx context.Context, _ string) error {
		// Every host runs v2 now. Someone breaks the lock and takes it.
		f.takeLock(t, "thief", time.Now().UTC(), 10*time.Minute)
		// The hook runs until the deploy stops it (or the hook's timeout, which fails the
		// test: the deploy did not notice).
		<-ctx.Done()
		return ctx.Err()
	})
	if err == nil {
		t.Fatal("a deploy that lost its lock succeeded")
	}
	// The renewal finds the lock gone or the thief's: which, depends on whether it comes
	// between the break and the take.
	if !strings.Contains(err.Error(), "deploy lock was lost") || !strings.Contains(err.Error(), "no longer ours: held by") {
		t.Errorf("error %q; want it to say the lock was lost, and to whom", err)
	}
	if rec.Outcome != pipeline.OutcomeRolledBack || rec.Rollback == nil || len(rec.Rollback.Hosts) != 3 {
		t.Errorf("record: outcome %q, rollback %+v; want rolled back on 3 hosts", rec.Outcome, rec.Rollback)
	}
	f.assertServes(t, "v1")
	if l := f.lockHolder(t, x); l == nil || l.Owner != "thief" {
		t.Errorf("after the stopped deploy the lock is %+v; want the thief's, left alone", l)
	}
	if s := stageOf(rec, "unlock"); !strings.Contains(s, "lost") {
		t.Errorf("unlock stage: %q; want a warning that the lock had been lost", s)
	}
}

// Case 3: a lock broken (not taken) during the deploy stage itself, while hosts run their
// health checks: the checks are stopped and every host returns to the old release.
func TestLockBrokenDuringHealthChecksRollsBack(t *testing.T) {
	hosts := testbench.SSHHosts(t, 3)
	var hc []ssh.HostConfig
	for _, h := range hosts {
		hc = append(hc, ssh.HostConfig{Addr: h.Addr, User: h.User, Path: filepath.Join(h.Dir, "myapp")})
	}
	tg, err := ssh.New("myapp", "test", hc, ssh.PrivateKey(hosts[0].ClientKey), ssh.KnownHosts(testbench.KnownHostsOf(hosts)), ssh.ManifestCache(""))
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	lockFile := filepath.Join(hosts[0].Dir, "myapp", ".pushdeploy", "lock")
	// Release r2's check breaks the lock on the first host, then never passes: only the
	// deploy stopping it ends it.
	health := pipeline.WithHealthCheck(pipeline.HealthCheck{
		Command: fmt.Sprintf(`[ "$PUSHDEPLOY_RELEASE" != r2 ] || { rm -f %s; while :; do sleep 0.05; done; }`, lockFile),
		Timeout: time.Minute, Retries: 1,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var log bytes.Buffer
	opts := []pipeline.Option{pipeline.WithOwner("tester", "run"), pipeline.WithLockTTL(time.Second), health, pipeline.WithLogger(&log)}
	rel := func(id, content string) targets.Release {
		a := writeFiles(t, content)
		d, err := tg.ArtifactDigest(a.Dir)
		if err != nil {
			t.Fatal(err)
		}
		return targets.Release{ID: id, App: "myapp", Env: "test", Version: content, Digest: d, Artifacts: a.Dir}
	}
	if _, err := pipeline.Rollout(ctx, tg, rel("r1", "v1"), opts...); err != nil {
		t.Fatal(err)
	}
	res, err := pipeline.Rollout(ctx, tg, rel("r2", "v2"), opts...)
	t.Logf("log:\n%s", log.String())
	var lost *pipeline.LockLostError
	if !errors.As(err, &lost) {
		t.Fatalf("deploy whose lock was broken: %v; want a lost lock", err)
	}
	if res.Record.Outcome != pipeline.OutcomeRolledBack || len(res.Record.Rollback.Hosts) != 3 {
		t.Errorf("record: outcome %q, rollback %+v; want rolled back on 3 hosts", res.Record.Outcome, res.Record.Rollback)
	}
	for _, h := range hosts {
		b, _ := os.ReadFile(filepath.Join(h.Dir, "myapp", "current", "index.html"))
		if string(b) != "v1" {
			t.Errorf("%s serves %q; want v1", h.Name, b)
		}
	}
}

// Case 3 (and 8): the first host, which holds the lock, is unreachable at the end: the
// lock cannot be released, and the unlock stage and the record say so (it used to print
// "unlock: ok"). The lock is left, live: unlock refuses it until --force.
func TestUnreachableLockHolderAtEndIsAWarning(t *testing.T) {
	f := newFleet(t, 2)
	file := f.file(t, `    hooks:
      post_deploy: [integration]
`)
	x := f.envs(file)
	rec, err := f.deploy(t, file, "first", writeFiles(t, "v1"), func(context.Context, string) error {
		f.hosts[0].Kill()
		return nil
	})
	t.Logf("outcome %q, warnings %q, error %v", rec.Outcome, rec.Warnings, err)
	s := stageOf(rec, "unlock")
	if !strings.HasPrefix(s, "warning: releasing the deploy lock") || !strings.Contains(s, "left on the target") {
		t.Errorf("unlock stage: %q; want a warning that the lock was left", s)
	}
	found := false
	for _, w := range rec.Warnings {
		found = found || strings.Contains(w, "releasing the deploy lock")
	}
	if !found {
		t.Errorf("record warnings %q do not say the lock was left", rec.Warnings)
	}
	if err := f.hosts[0].Restart(); err != nil {
		t.Fatal(err)
	}
	if l := f.lockHolder(t, x); l == nil || l.Owner != "first" {
		t.Fatalf("lock after the deploy: %+v; want first's, left behind", l)
	}
	var live *pipeline.LiveLockError
	if _, err := x.Unlock(context.Background(), "test"); !errors.As(err, &live) {
		t.Errorf("unlock of the left lock without --force: %v; want it refused", err)
	}
	if _, err := x.Unlock(context.Background(), "test", pipeline.WithForce(true)); err != nil {
		t.Errorf("unlock --force: %v", err)
	}
}

// Case 6: a second deploy of the same digest while the first still holds the lock (here:
// from the first's post-deploy hook, before it is proven) is not UNCHANGED: it is refused
// at the lock. After the first finished, the same deploy is UNCHANGED, and leaves no lock.
func TestSameDigestWhileFirstHoldsLockIsNotUnchanged(t *testing.T) {
	f := newFleet(t, 2)
	file := f.file(t, `    hooks:
      post_deploy: [integration]
`)
	x := f.envs(file)
	noHook := func(context.Context, string) error { return nil }
	if _, err := f.deploy(t, file, "first", writeFiles(t, "v1"), noHook); err != nil {
		t.Fatal(err)
	}
	v2 := writeFiles(t, "v2")
	var second *pipeline.Record
	var secondErr error
	rec, err := f.deploy(t, file, "first", v2, func(context.Context, string) error {
		second, secondErr = f.deploy(t, file, "second", v2, noHook)
		return nil
	})
	if err != nil || rec.Outcome != pipeline.OutcomeDeployed {
		t.Fatalf("first deploy: %v, %q", err, rec.Outcome)
	}
	if secondErr == nil || second.Outcome == pipeline.OutcomeUnchanged {
		t.Fatalf("second deploy of the same digest during the first: outcome %q, %v; want it refused at the lock", second.Outcome, secondErr)
	}
	if !strings.Contains(secondErr.Error(), "lock: ") || !strings.Contains(secondErr.Error(), `held by "first"`) {
		t.Errorf("second deploy's error %q; want the lock stage naming the holder", secondErr)
	}
	f.assertServes(t, "v2")

	rec, err = f.deploy(t, file, "third", v2, noHook)
	if err != nil || rec.Outcome != pipeline.OutcomeUnchanged {
		t.Fatalf("deploying the live digest: %v, %q; want unchanged", err, rec.Outcome)
	}
	if l := f.lockHolder(t, x); l != nil {
		t.Errorf("lock after an unchanged deploy: %+v; want none", l)
	}
	f.assertServes(t, "v2")
}
