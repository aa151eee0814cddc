package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// rollout deploys r with the pipeline's engine, as the CLI does.
func (b *bench) rollout(tg *Target, r targets.Release, opts ...pipeline.Option) error {
	b.t.Helper()
	var log bytes.Buffer
	_, err := pipeline.Rollout(context.Background(), tg, r, append([]pipeline.Option{pipeline.WithLogger(&log)}, opts...)...)
	b.t.Logf("rollout %s:\n%s", r.ID, log.String())
	return err
}

// deployV1 deploys a healthy v1 and returns its release.
func (b *bench) deployV1(tg *Target) targets.Release {
	b.t.Helper()
	ref, dg := b.image("v1", nil)
	r := b.release("20261127T000001Z", "v1", ref, dg)
	if err := b.rollout(tg, r); err != nil {
		b.t.Fatalf("deploying v1: %v", err)
	}
	b.expect(b.name(r.ID), "200 ok v1")
	return r
}

func (b *bench) name(id string) string { return b.app + "-test-" + id }

// kept returns the ids of the releases kept on the target's first host.
func (b *bench) kept(tg *Target) []string {
	b.t.Helper()
	st, err := tg.Hosts()[0].Status(context.Background())
	if err != nil {
		b.t.Fatal(err)
	}
	var out []string
	for _, k := range st.Kept {
		out = append(out, k.ID)
	}
	return out
}

// failedAt asserts a rolled-back deploy error at step whose message has every part.
func failedAt(t *testing.T, err error, step string, parts ...string) {
	t.Helper()
	var de *pipeline.DeployError
	if !errors.As(err, &de) {
		t.Fatalf("error = %v, want a *pipeline.DeployError", err)
	}
	if de.Step != step {
		t.Errorf("failed at step %q, want %q: %v", de.Step, step, err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error does not say %q: %v", p, err)
		}
	}
	if len(de.RollbackErrors) > 0 {
		t.Errorf("rollback failed: %v", de.RollbackErrors)
	}
}

func equal(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

func TestRolloutFirstDeployAndUpgrade(t *testing.T) {
	b := newBench(t)
	tg := b.target()
	r1 := b.deployV1(tg)

	ref, dg := b.image("v2", nil)
	r2 := b.release("20261127T000002Z", "v2", ref, dg)
	if err := b.rollout(tg, r2); err != nil {
		t.Fatal(err)
	}
	b.expect(b.name(r2.ID), "200 ok v2")
	if got := b.kept(tg); !equal(got, []string{r1.ID, r2.ID}) {
		t.Errorf("kept = %q, want v1 and v2", got)
	}
	// The same digest again changes nothing.
	r2again := b.release("20261127T000003Z", "v2", ref, dg)
	if err := b.rollout(tg, r2again); err != nil {
		t.Fatal(err)
	}
	b.expect(b.name(r2.ID), "200 ok v2")
}

func TestRolloutHealthCheckFailsOldServesAgain(t *testing.T) {
	b := newBench(t)
	tg := b.target()
	r1 := b.deployV1(tg)

	ref, dg := b.image("v2", func(s *testbench.HelloImage) { s.FailHealth = true })
	r2 := b.release("20261127T000002Z", "v2", ref, dg)
	err := b.rollout(tg, r2)
	failedAt(t, err, pipeline.StepHealth, b.name(r2.ID), "is unhealthy", "503")
	b.expect(b.name(r1.ID), "200 ok v1")
	if got := b.kept(tg); !equal(got, []string{r1.ID}) {
		t.Errorf("kept = %q, want only v1 (the failed container removed)", got)
	}
}

func TestRolloutExitsAtOnce(t *testing.T) {
	b := newBench(t)
	tg := b.target()
	r1 := b.deployV1(tg)

	ref, dg := b.image("v2", func(s *testbench.HelloImage) { s.ExitAtOnce = true })
	r2 := b.release("20261127T000002Z", "v2", ref, dg)
	err := b.rollout(tg, r2)
	// hello's own last words: it cannot listen on "127.0.0.1:notaport".
	failedAt(t, err, pipeline.StepHealth, b.name(r2.ID), "exited with status 1", "notaport")
	b.expect(b.name(r1.ID), "200 ok v1")
	if got := b.kept(tg); !equal(got, []string{r1.ID}) {
		t.Errorf("kept = %q, want only v1", got)
	}
}

func TestRolloutFirstDeployFailsLeavesNothing(t *testing.T) {
	b := newBench(t)
	tg := b.target()
	ref, dg := b.image("v1", func(s *testbench.HelloImage) { s.FailHealth = true })
	r := b.release("20261127T000001Z", "v1", ref, dg)
	failedAt(t, b.rollout(tg, r), pipeline.StepHealth, "is unhealthy")
	b.expect("", "")
	if got := b.kept(tg); len(got) != 0 {
		t.Errorf("kept = %q, want nothing", got)
	}
}

func TestRolloutWithoutHealthcheckUsesPipelineCheck(t *testing.T) {
	b := newBench(t)
	tg := b.target()
	check := pipeline.WithHealthCheck(pipeline.HealthCheck{
		URL: "http://" + b.addr() + "/health", Body: "^ok ", Interval: 100 * time.Millisecond, Retries: 5,
	})
	ref, dg := b.image("v1", func(s *testbench.HelloImage) { s.HealthCheck = false })
	r1 := b.release("20261127T000001Z", "v1", ref, dg)
	if err := b.rollout(tg, r1, check); err != nil {
		t.Fatal(err)
	}
	b.expect(b.name(r1.ID), "200 ok v1")

	ref, dg = b.image("v2", func(s *testbench.HelloImage) { s.HealthCheck, s.FailHealth = false, true })
	r2 := b.release("20261127T000002Z", "v2", ref, dg)
	failedAt(t, b.rollout(tg, r2, check), pipeline.StepHealth, "status 503")
	b.expect(b.name(r1.ID), "200 ok v1")
}

func TestRolloutDigestDoesNotExist(t *testing.T) {
	b := newBench(t)
	tg := b.target()
	r1 := b.deployV1(tg)

	missing := "sha256:" + strings.Repeat("0123456789abcdef", 4)
	r2 := b.release("20261127T000002Z", "v2", b.reg.Repo(b.app)+"@"+missing, missing)
	failedAt(t, b.rollout(tg, r2), pipeline.StepPrepare, "pulling "+r2.Image)
	b.expect(b.name(r1.ID), "200 ok v1")
	if got := b.kept(tg); !equal(got, []string{r1.ID}) {
		t.Errorf("kept = %q, want only v1", got)
	}
}

func TestRolloutWrongRegistryCredentials(t *testing.T) {
	b := newBench(t)
	b.reg = testbench.DistributionRegistry(t)
	r1 := b.deployV1(b.target(WithRegistryAuth(b.reg.Host, b.reg.User, b.reg.Password)))

	// Good credentials, but for another registry: they are not sent.
	elsewhere := b.target(WithRegistryAuth("registry.example:5000", b.reg.User, b.reg.Password))
	ref0, dg0 := b.image("v2", nil)
	failedAt(t, b.rollout(elsewhere, b.release("20261127T000002Z", "v2", ref0, dg0)), pipeline.StepPrepare, "no basic auth credentials")
	b.expect(b.name(r1.ID), "200 ok v1")

	const wrong = "not-the-password-7f3a"
	tg := b.target(WithRegistryAuth(b.reg.Host, b.reg.User, wrong))
	ref, dg := b.image("v2", nil)
	r2 := b.release("20261127T000002Z", "v2", ref, dg)
	err := b.rollout(tg, r2)
	failedAt(t, err, pipeline.StepPrepare, "pulling "+ref, "unauthorized")
	if strings.Contains(err.Error(), wrong) {
		t.Errorf("the error shows the password: %v", err)
	}
	b.expect(b.name(r1.ID), "200 ok v1")
	if got := b.kept(tg); !equal(got, []string{r1.ID}) {
		t.Errorf("kept = %q, want only v1", got)
	}
}

func TestRollbackToKeptRelease(t *testing.T) {
	b := newBench(t)
	tg := b.target()
	r1 := b.deployV1(tg)
	var rs []targets.Release
	for _, v := range []string{"v2", "v3"} {
		ref, dg := b.image(v, nil)
		r := b.release("20261127T00000"+v[1:]+"Z", v, ref, dg)
		if err := b.rollout(tg, r); err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	b.expect(b.name(rs[1].ID), "200 ok v3")

	ctx := context.Background()
	if _, err := pipeline.Rollback(ctx, tg, r1.ID); err != nil {
		t.Fatal(err)
	}
	b.expect(b.name(r1.ID), "200 ok v1")
	if _, err := pipeline.Rollback(ctx, tg, "no-such-release"); err == nil {
		t.Error("rolling back to a release that is not kept succeeded")
	}
	b.expect(b.name(r1.ID), "200 ok v1")
	if got := b.kept(tg); !equal(got, []string{r1.ID, rs[0].ID, rs[1].ID}) {
		t.Errorf("kept = %q, want all three", got)
	}
}

func TestEngineUnreachable(t *testing.T) {
	b := newBench(t)
	r1 := b.deployV1(b.target())

	// A host whose engine is down: its socket is gone.
	down := testbench.StartDockerd(t)
	if err := down.Stop(); err != nil {
		t.Fatal(err)
	}
	tg := b.target(WithSocket(down.Socket))
	ref, dg := b.image("v2", nil)
	r2 := b.release("20261127T000002Z", "v2", ref, dg)
	err := b.rollout(tg, r2)
	if err == nil {
		t.Fatal("deploying through an engine that is down succeeded")
	}
	for _, want := range []string{"reaching the Docker Engine at unix:" + down.Socket, b.hosts[0].Addr} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q: %v", want, err)
		}
	}
	b.expect(b.name(r1.ID), "200 ok v1")
}

func TestUnknownHostKeyChangesNothing(t *testing.T) {
	b := newBench(t)
	r1 := b.deployV1(b.target())

	other := testbench.SSHHosts(t, 1)
	// known_hosts holds another key for the host's address.
	forged := strings.Replace(string(other[0].KnownHosts), fmt.Sprintf("[127.0.0.1]:%d", other[0].Port), fmt.Sprintf("[127.0.0.1]:%d", b.hosts[0].Port), 1)
	tg := b.target(WithSSH(sshconn.KnownHosts([]byte(forged))))
	ref, dg := b.image("v2", nil)
	err := b.rollout(tg, b.release("20261127T000002Z", "v2", ref, dg))
	var hke *sshconn.HostKeyError
	if !errors.As(err, &hke) || !hke.Changed {
		t.Fatalf("error = %v, want a changed host key", err)
	}
	b.expect(b.name(r1.ID), "200 ok v1")
}

// lineWriter signals on a channel the first time a line containing want is written.
type lineWriter struct {
	want string
	seen chan struct{}
	once sync.Once
}

func (w *lineWriter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func TestLockContention(t *testing.T) {
	b := newBench(t)
	tg := b.target()
	r1 := b.deployV1(tg)
	ctx := context.Background()

	now := time.Now().UTC()
	other := targets.Lock{Owner: "alice@ci", PipelineID: "run-42", Acquired: now, Expires: now.Add(time.Hour)}
	if err := tg.Locker().Acquire(ctx, other); err != nil {
		t.Fatal(err)
	}
	ref, dg := b.image("v2", nil)
	r2 := b.release("20261127T000002Z", "v2", ref, dg)

	// Without waiting: refused, naming the holder; nothing changes.
	err := b.rollout(tg, r2)
	var held *targets.HeldError
	if !errors.As(err, &held) || held.Holder.Owner != "alice@ci" {
		t.Fatalf("error = %v, want the lock held by alice@ci", err)
	}
	if !strings.Contains(err.Error(), `"alice@ci"`) || !strings.Contains(err.Error(), `"run-42"`) {
		t.Errorf("error does not name the holder and her pipeline: %v", err)
	}
	b.expect(b.name(r1.ID), "200 ok v1")

	// Waiting: the deploy goes on once the holder lets go.
	w := &lineWriter{want: "waiting", seen: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := pipeline.Rollout(ctx, b.target(), r2, pipeline.WithLogger(w), pipeline.WithLockWait(time.Minute))
		done <- err
	}()
	select {
	case <-w.seen:
	case err := <-done:
		t.Fatalf("the deploy did not wait for the lock: %v", err)
	}
	b.expect(b.name(r1.ID), "200 ok v1")
	if err := tg.Locker().Release(ctx, other); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	b.expect(b.name(r2.ID), "200 ok v2")
	if l, err := tg.Locker().Holder(ctx); err != nil || l != nil {
		t.Errorf("lock after the deploy = %v, %v; want released", l, err)
	}
}

func TestHistoryAndStatus(t *testing.T) {
	b := newBench(t)
	tg := b.target()
	r1 := b.deployV1(tg)
	ctx := context.Background()
	recs, err := pipeline.History(ctx, tg, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Release != r1.ID || recs[0].Outcome != pipeline.OutcomeDeployed {
		t.Errorf("history = %+v, want the deploy of %s", recs, r1.ID)
	}
	st, err := pipeline.Status(ctx, tg)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Live == nil || st[0].Live.ID != r1.ID || !strings.Contains(st[0].Detail, "Up") {
		t.Errorf("status = %+v, want %s live and up", st, r1.ID)
	}
}

func TestContainerConfiguration(t *testing.T) {
	b := newBench(t)
	const secret = "s3cr3t-token-9b1e"
	vol := t.TempDir()
	tg := b.target(
		WithEnv("API_TOKEN="+secret, "MODE=test"),
		WithVolumes(vol+":/data:ro"),
		WithRestartPolicy("on-failure:3"),
		WithMemory("64m"),
		WithCPUs(0.5),
		WithContainerName(b.app+"-svc"),
	)
	ref, dg := b.image("v1", nil)
	r := b.release("20261127T000001Z", "v1", ref, dg)
	r.PipelineID = "run-7"
	var log bytes.Buffer
	ctx := context.Background()
	if _, err := pipeline.Rollout(ctx, tg, r, pipeline.WithLogger(&log)); err != nil {
		t.Fatal(err)
	}
	name := b.app + "-svc-" + r.ID
	b.expect(name, "200 ok v1")

	c, err := b.cli.ContainerInspect(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	wantLabels := map[string]string{LabelApp: b.app, LabelEnv: "test", LabelRelease: r.ID, LabelVersion: "v1", LabelDigest: dg, LabelImage: ref, LabelDeployer: "tester", LabelPipeline: "run-7"}
	for k, v := range wantLabels {
		if c.Config.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, c.Config.Labels[k], v)
		}
	}
	env := strings.Join(c.Config.Env, "\n")
	if !strings.Contains(env, "API_TOKEN="+secret) || !strings.Contains(env, "MODE=test") || !strings.Contains(env, "HELLO_VERSION=v1") {
		t.Errorf("container env = %q, want ours and the image's", c.Config.Env)
	}
	hc := c.HostConfig
	if hc.RestartPolicy.Name != "on-failure" || hc.RestartPolicy.MaximumRetryCount != 3 {
		t.Errorf("restart policy = %+v", hc.RestartPolicy)
	}
	if hc.Memory != 64<<20 || hc.NanoCPUs != 5e8 {
		t.Errorf("limits: memory %d, nano cpus %d", hc.Memory, hc.NanoCPUs)
	}
	if len(hc.Binds) != 1 || hc.Binds[0] != vol+":/data:ro" || string(hc.NetworkMode) != "host" {
		t.Errorf("binds %q, network %q", hc.Binds, hc.NetworkMode)
	}
	if c.Config.Image != ref {
		t.Errorf("image = %q, want the digest reference %q", c.Config.Image, ref)
	}

	// The secret reaches the container and nothing else.
	st, _ := pipeline.Status(ctx, tg)
	ch, _ := pipeline.Plan(ctx, tg, r)
	recs, _ := pipeline.History(ctx, tg, 0)
	for what, s := range map[string]string{"log": log.String(), "status": fmt.Sprint(st), "plan": fmt.Sprint(ch), "history": fmt.Sprint(recs)} {
		if strings.Contains(s, secret) {
			t.Errorf("the %s shows the secret", what)
		}
	}
}

func TestReconnectsAfterSSHDropped(t *testing.T) {
	b := newBench(t)
	tg := b.target()
	r1 := b.deployV1(tg)

	// The host's sshd dies with every session, and comes back: the same target deploys on.
	if err := b.hosts[0].Restart(); err != nil {
		t.Fatal(err)
	}
	ref, dg := b.image("v2", nil)
	r2 := b.release("20261127T000002Z", "v2", ref, dg)
	if err := b.rollout(tg, r2); err != nil {
		t.Fatal(err)
	}
	b.expect(b.name(r2.ID), "200 ok v2")
	if got := b.kept(tg); !equal(got, []string{r1.ID, r2.ID}) {
		t.Errorf("kept = %q", got)
	}
}

func TestThroughJumpHost(t *testing.T) {
	b := newBench(t)
	jump := testbench.SSHHosts(t, 1, noRehashWait)[0]
	// The Docker host is reached only through the jump host: every engine call and every
	// lock command travels two SSH hops.
	jumpOpts := []sshconn.Option{sshconn.PrivateKey(jump.ClientKey), sshconn.KnownHosts(jump.KnownHosts)}
	tg := b.target(WithSSH(sshconn.Jump(jump.Addr, jumpOpts...)))
	r1 := b.deployV1(tg)
	st, err := tg.Hosts()[0].Status(context.Background())
	if err != nil || st.Live == nil || st.Live.ID != r1.ID {
		t.Errorf("status through the jump host = %+v, %v", st, err)
	}
	if !strings.Contains(jump.Log(), "Accepted publickey") {
		t.Errorf("the jump host saw no login:\n%s", jump.Log())
	}
}
