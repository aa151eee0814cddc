package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/assemble"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/targets/docker"
)

// Issue 15 on servers: bake, canary steps with analysis against a real Prometheus,
// pause/resume/abort through the lock, irreversible releases. The application is
// examples/hello, run on every sshd host from its release directory on a port of its own,
// with /health and /metrics (an error counter whose rate each release sets).

// helloFleet is n sshd hosts that run examples/hello from the release deployed.
type helloFleet struct {
	*serverBench
	ports []int
}

func newHelloFleet(t *testing.T, n int) *helloFleet {
	b := newServerBench(t, n)
	f := &helloFleet{serverBench: b}
	b.maker = b.perHostMaker()
	for _, h := range b.hosts {
		f.ports = append(f.ports, testbench.HelloServer(t, h, appDir(h)))
	}
	return f
}

// helloHealth checks the host's own port.
var helloHealth = `    health:
      command: '` + testbench.HelloHealthCommand + `'
      interval: 100ms
      retries: 50
      stable: 300ms
`

// file is the fleet's environment with rest (the environment's further keys).
func (f *helloFleet) file(rest string) *config.File {
	f.t.Helper()
	var hosts []string
	for _, h := range f.hosts {
		hosts = append(hosts, strconv.Quote(h.Addr))
	}
	h := f.hosts[0]
	src := fmt.Sprintf("app: web\nenvironments:\n  staging:\n    ssh:\n      hosts: [%s]\n      user: %s\n      path: %s\n      restart: %s\n%s%s",
		strings.Join(hosts, ", "), h.User, appDir(h), strconv.Quote(testbench.HelloRestart), helloHealth, rest)
	cf, err := config.Parse("pushdeploy.yaml", []byte(src))
	if err != nil {
		f.t.Fatalf("the test's environments file: %v\n%s", err, src)
	}
	return cf
}

// release deploys hello as version, with env (HELLO_* variables) in its hello.env.
func (f *helloFleet) release(cf *config.File, version string, env map[string]string) (*pipeline.Record, error) {
	return f.releaseWith(cf, version, env, nil)
}

func (f *helloFleet) releaseWith(cf *config.File, version string, env map[string]string, edit func(*pipeline.Request)) (*pipeline.Record, error) {
	f.t.Helper()
	dir := f.t.TempDir()
	testbench.HelloRelease(f.t, dir, version, env)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // a guard against a hung deploy
	defer cancel()
	req := pipeline.Request{
		File: cf, Env: "staging", Deployer: "ci", PipelineID: "run-15",
		Source:  pipeline.Source{Revision: strings.Repeat("cd", 20), Version: version},
		Secrets: f.secrets, Targets: f.maker, Artifact: &pipeline.Artifact{Dir: dir}, Log: &f.log,
	}
	if edit != nil {
		edit(&req)
	}
	start := f.log.Len()
	rec, err := pipeline.Deploy(ctx, req)
	f.t.Logf("deploy %s:\n%s", version, f.log.String()[start:])
	return rec, err
}

// serves is what host i's hello answers on /health.
func (f *helloFleet) serves(i int) string {
	return testbench.Get(fmt.Sprintf("http://127.0.0.1:%d/health", f.ports[i]))
}

// ran is every "release version" host i ever started.
func (f *helloFleet) ran(i int) string {
	b, _ := os.ReadFile(filepath.Join(appDir(f.hosts[i]), "ran.log"))
	return string(b)
}

// hasRelease says whether host i has (or had, unpruned) a release directory id.
func (f *helloFleet) hasRelease(i int, id string) bool {
	_, err := os.Stat(filepath.Join(appDir(f.hosts[i]), "releases", id))
	return err == nil
}

// stepOutcomes is the record's steps as "step=outcome".
func stepOutcomes(rec *pipeline.Record) string {
	var out []string
	for _, s := range rec.Steps {
		out = append(out, s.Step+"="+s.Outcome)
	}
	return strings.Join(out, ", ")
}

// TestBakeRollsBackAFailureDuringIt: after each batch the deploy keeps probing for the
// bake; the record says how long it baked; a release that passes its health check and then
// fails during the first batch's bake is rolled back there, and the second batch's host is
// never touched.
func TestBakeRollsBackAFailureDuringIt(t *testing.T) {
	f := newHelloFleet(t, 2)
	cf := f.file("    batches: 1\n    bake: 3s\n")
	rec, err := f.release(cf, "v1", nil)
	if err != nil {
		t.Fatalf("v1: %v", err)
	}
	if rec.BakedMs != 6000 || stepOutcomes(rec) != "bake: 3s=ok, bake: 3s=ok" {
		t.Errorf("v1 record: baked %dms, steps %s; want 6000ms over two bakes", rec.BakedMs, stepOutcomes(rec))
	}
	// v2 answers its first checks (the switch's, the stability window's), then fails: in
	// the bake, at about a second of it.
	rec, err = f.release(cf, "v2", map[string]string{"HELLO_FAIL_AFTER": "15"})
	if err == nil {
		t.Fatal("a release failing during its bake deployed")
	}
	if code := pipeline.ExitCode(err); code != pipeline.ExitRolledBack {
		t.Errorf("exit code %d, want %d: %v", code, pipeline.ExitRolledBack, err)
	}
	if !strings.Contains(err.Error(), "bake: health check") || rec.Outcome != pipeline.OutcomeRolledBack {
		t.Errorf("outcome %q, error %v; want rolled back at the bake", rec.Outcome, err)
	}
	if rec.Hosts[0].Step != pipeline.StepBake || rec.Hosts[1].Outcome != pipeline.OutcomeSkipped {
		t.Errorf("hosts %+v; want the first failed at bake, the second not started", rec.Hosts)
	}
	if len(rec.Steps) != 1 || rec.Steps[0].Outcome != "failed" || rec.BakedMs <= 0 || rec.BakedMs >= 3000 {
		t.Errorf("steps %s, baked %dms; want one failed bake, cut short", stepOutcomes(rec), rec.BakedMs)
	}
	for i := range f.hosts {
		if got := f.serves(i); got != "200 ok v1" {
			t.Errorf("host %d serves %q after the rollback, want v1", i, got)
		}
	}
	if strings.Contains(f.ran(1), "v2") || f.hasRelease(1, rec.Release) {
		t.Errorf("the second host was touched by v2: ran %q", f.ran(1))
	}
}

// canarySteps is the environment of a canary over the fleet analysed by prom.
func canarySteps(prom string) string {
	return fmt.Sprintf(`    steps:
      - hosts: 1
      - bake: 1s
      - analysis: errors
      - percent: 50
      - analysis: errors
    analysis:
      errors:
        prometheus: %s
        query: 'sum(rate(hello_http_requests_total{code="500",host=~"{{.Hosts}}"}[2s])) / sum(rate(hello_http_requests_total{host=~"{{.Hosts}}"}[2s]))'
        condition: "< 0.05"
        interval: 500ms
        count: 2
        tries: 6
`, prom)
}

// TestCanaryAnalysisAgainstPrometheus: a canary of one host, a bake, an analysis of its
// error rate in a real Prometheus scraping every host's /metrics, two thirds, an analysis,
// the rest. A good release passes every step; a release whose error rate rises is rolled
// back at the canary's analysis, and the other hosts never ran it.
func TestCanaryAnalysisAgainstPrometheus(t *testing.T) {
	f := newHelloFleet(t, 3)
	var tg []testbench.PromTarget
	for i, h := range f.hosts {
		tg = append(tg, testbench.PromTarget{Addr: fmt.Sprintf("127.0.0.1:%d", f.ports[i]), Labels: map[string]string{"host": h.Addr}})
	}
	prom := testbench.StartPrometheus(t, tg...)
	testbench.Traffic(t, f.ports...)
	prom.WaitForSeries(t, "up")
	cf := f.file(canarySteps(prom.URL))
	for _, v := range []string{"v1", "v2"} {
		rec, err := f.release(cf, v, map[string]string{"HELLO_ERROR_RATE": "0"})
		if err != nil {
			t.Fatalf("%s: %v\nprometheus:\n%s", v, err, prom.Log())
		}
		if got := stepOutcomes(rec); got != "bake: 1s=ok, analysis: errors=ok, analysis: errors=ok" {
			t.Errorf("%s: steps %s", v, got)
		}
		for i := range f.hosts {
			if got := f.serves(i); got != "200 ok "+v {
				t.Errorf("%s: host %d serves %q", v, i, got)
			}
		}
	}
	rec, err := f.release(cf, "v3", map[string]string{"HELLO_ERROR_RATE": "0.5"})
	if err == nil {
		t.Fatal("a release with half its requests failing passed the canary")
	}
	if code := pipeline.ExitCode(err); code != pipeline.ExitRolledBack {
		t.Errorf("exit code %d, want %d: %v", code, pipeline.ExitRolledBack, err)
	}
	if !strings.Contains(err.Error(), `analysis: "errors" failed:`) || !strings.Contains(err.Error(), "want < 0.05") {
		t.Errorf("error %v; want the analysis's failure with the value it saw", err)
	}
	if len(rec.Steps) != 2 || rec.Steps[1].Outcome != "failed" || rec.Rollback == nil || len(rec.Rollback.Hosts) != 1 || rec.Rollback.Hosts[0] != f.hosts[0].Addr {
		t.Errorf("steps %s, rollback %+v; want the canary's analysis failed and only the canary rolled back", stepOutcomes(rec), rec.Rollback)
	}
	if got := f.serves(0); got != "200 ok v2" {
		t.Errorf("the canary serves %q after its rollback, want v2", got)
	}
	if !strings.Contains(f.ran(0), rec.Release+" v3") {
		t.Errorf("the canary never ran v3: %q", f.ran(0))
	}
	for i := 1; i < 3; i++ {
		if got := f.serves(i); got != "200 ok v2" {
			t.Errorf("host %d serves %q, want v2", i, got)
		}
		if strings.Contains(f.ran(i), "v3") || f.hasRelease(i, rec.Release) {
			t.Errorf("host %d was touched by the bad canary: ran %q", i, f.ran(i))
		}
		if rec.Hosts[i].Outcome != pipeline.OutcomeSkipped {
			t.Errorf("host %d's outcome %q, want %q", i, rec.Hosts[i].Outcome, pipeline.OutcomeSkipped)
		}
	}
}

// logWatch is a deploy's log that signals each line containing a watched text.
type logWatch struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	waits map[string]chan struct{}
}

func newLogWatch(texts ...string) *logWatch {
	w := &logWatch{waits: map[string]chan struct{}{}}
	for _, s := range texts {
		w.waits[s] = make(chan struct{})
	}
	return w
}

func (w *logWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for s, c := range w.waits {
		if bytes.Contains(w.buf.Bytes(), []byte(s)) {
			select {
			case <-c:
			default:
				close(c)
			}
		}
	}
	return len(p), nil
}

// wait blocks until the log says text, or the deploy ended.
func (w *logWatch) wait(t *testing.T, text string, ended <-chan struct{}) {
	t.Helper()
	select {
	case <-w.waits[text]:
	case <-ended:
		t.Fatalf("the deploy ended before it logged %q:\n%s", text, w.String())
	}
}

func (w *logWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestPauseResumeAbortInTheBake: a deploy in its bake is paused by a second caller (it says
// so in status, holds, and keeps renewing its lock), resumed, then aborted: it rolls back
// every host it switched. The two sides meet only through the lock on the host.
func TestPauseResumeAbortInTheBake(t *testing.T) {
	f := newHelloFleet(t, 1)
	cf := f.file("    lock: {ttl: 3s}\n")
	if _, err := f.release(cf, "v1", nil); err != nil {
		t.Fatalf("v1: %v", err)
	}
	cf = f.file("    lock: {ttl: 3s}\n    bake: 10m\n")
	x := &pipeline.Environments{File: cf, Secrets: f.secrets, Targets: f.maker, Deployer: "alice"}
	ctx := context.Background()
	if _, err := x.Pause(ctx, "staging"); err == nil || !strings.Contains(err.Error(), "no deploy is running") {
		t.Errorf("pause with no deploy running: %v", err)
	}
	log := newLogWatch("baking 1 host(s)", "paused by alice", "resumed:", "aborted by alice")
	ended := make(chan struct{})
	var rec *pipeline.Record
	var derr error
	go func() {
		defer close(ended)
		rec, derr = f.releaseWith(cf, "v2", nil, func(r *pipeline.Request) { r.Log = log })
	}()
	log.wait(t, "baking 1 host(s)", ended)
	st, err := x.Pause(ctx, "staging")
	if err != nil {
		t.Fatalf("pause: %v", err)
	}
	if st.Holder == nil || st.Holder.Owner != "ci" || !strings.Contains(st.Message, "pause asked") {
		t.Errorf("pause said %+v", st)
	}
	log.wait(t, "paused by alice", ended)
	// status shows the paused deploy, from the lock.
	lk := x.Status(ctx, "staging")[0].Lock
	if lk == nil || !strings.HasPrefix(lk.Phase, "paused by alice") || lk.Control == nil || lk.Control.Action != pipeline.ControlPause {
		t.Fatalf("status shows the lock %+v; want the deploy paused by alice", lk)
	}
	var out bytes.Buffer
	pipeline.RenderStatus(&out, x.Status(ctx, "staging"))
	if !strings.Contains(out.String(), "paused by alice") {
		t.Errorf("status does not show the pause:\n%s", out.String())
	}
	// Paused, the deploy keeps renewing its lock: its expiry moves past the one seen.
	first := lk.Expires
	tick := time.NewTicker(100 * time.Millisecond)
	for renewed := false; !renewed; {
		select {
		case <-ended:
			t.Fatalf("the paused deploy ended: %v\n%s", derr, log.String())
		case <-tick.C:
		}
		cur := x.Status(ctx, "staging")[0].Lock
		if cur == nil {
			t.Fatalf("the paused deploy's lock is gone:\n%s", log.String())
		}
		renewed = cur.Expires.After(first)
	}
	tick.Stop()
	if got := f.serves(0); got != "200 ok v2" {
		t.Errorf("paused in its bake, the host serves %q, want v2", got)
	}
	if _, err := x.Resume(ctx, "staging"); err != nil {
		t.Fatalf("resume: %v", err)
	}
	log.wait(t, "resumed:", ended)
	if _, err := x.Resume(ctx, "staging"); err == nil || !strings.Contains(err.Error(), "not paused") {
		t.Errorf("resume of a deploy not paused: %v", err)
	}
	if _, err := x.Abort(ctx, "staging"); err != nil {
		t.Fatalf("abort: %v", err)
	}
	<-ended
	if derr == nil || pipeline.ExitCode(derr) != pipeline.ExitRolledBack || !strings.Contains(derr.Error(), "aborted by alice") {
		t.Fatalf("aborted deploy: %v (exit %d); want rolled back, aborted by alice", derr, pipeline.ExitCode(derr))
	}
	if rec.Outcome != pipeline.OutcomeRolledBack || len(rec.Steps) != 1 || rec.Steps[0].Outcome != "aborted" {
		t.Errorf("record: outcome %q, steps %s", rec.Outcome, stepOutcomes(rec))
	}
	if got := f.serves(0); got != "200 ok v1" {
		t.Errorf("after the abort the host serves %q, want v1", got)
	}
	if lk := x.Status(ctx, "staging")[0].Lock; lk != nil {
		t.Errorf("the lock is still held after the abort: %+v", lk)
	}
	var nd *pipeline.NoDeployError
	if _, err := x.Abort(ctx, "staging"); !errors.As(err, &nd) {
		t.Errorf("abort with no deploy running: %v", err)
	}
}

// TestIrreversibleReleases: a migrate hook marked irreversible is recorded; rollback across
// it refuses, naming the release and why, unless forced. A release deployed --irreversible
// whose second host fails is not rolled back: the deploy stops, the first host keeps the
// release, and the record and exit code say the fleet's state.
func TestIrreversibleReleases(t *testing.T) {
	f := newHelloFleet(t, 2)
	cf := f.file("    batches: 1\n")
	if _, err := f.release(cf, "v1", nil); err != nil {
		t.Fatalf("v1: %v", err)
	}
	migrated := f.file("    batches: 1\n    hooks:\n      where: hosts\n      migrate: {command: 'echo \"$PUSHDEPLOY_VERSION\" >> \"${PWD%/current}/migrated\"', irreversible: true}\n")
	rec, err := f.release(migrated, "v2", nil)
	if err != nil {
		t.Fatalf("v2 with an irreversible migration: %v", err)
	}
	if !strings.Contains(rec.Irreversible, "irreversible") {
		t.Errorf("v2's record does not say it crossed an irreversible change: %+v", rec)
	}
	if b, _ := os.ReadFile(filepath.Join(appDir(f.hosts[0]), "migrated")); string(b) != "v2\n" {
		t.Errorf("the migration ran %q on the first host, want once for v2", b)
	}
	if _, err := os.Stat(filepath.Join(appDir(f.hosts[1]), "migrated")); err == nil {
		t.Error("the migration ran on the second host too; want once, on the first")
	}
	x := &pipeline.Environments{File: cf, Secrets: f.secrets, Targets: f.maker}
	ctx := context.Background()
	_, err = x.Rollback(ctx, "staging", "", "")
	var irr *pipeline.IrreversibleError
	if !errors.As(err, &irr) || irr.Release != rec.Release || pipeline.ExitCode(err) != pipeline.ExitRefused || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("rollback across the irreversible v2: %v; want refused naming %s", err, rec.Release)
	}
	if got := f.serves(0); got != "200 ok v2" {
		t.Errorf("a refused rollback changed the host: it serves %q", got)
	}
	if _, err := x.Rollback(ctx, "staging", "", "", pipeline.WithAcrossIrreversible(true)); err != nil {
		t.Fatalf("rollback --force: %v", err)
	}
	if got := f.serves(0); got != "200 ok v1" {
		t.Errorf("after rollback --force the host serves %q, want v1", got)
	}
	// v3 is irreversible as it runs, and fails on the second host only.
	os.WriteFile(filepath.Join(appDir(f.hosts[1]), "fail-v3"), nil, 0o644)
	cf = f.file("    batches: 1\n")
	rec, err = f.releaseWith(cf, "v3", nil, func(r *pipeline.Request) { r.Irreversible = true })
	if err == nil {
		t.Fatal("v3 failing on the second host deployed")
	}
	if code := pipeline.ExitCode(err); code != pipeline.ExitIrreversible || !strings.Contains(err.Error(), "no host was rolled back") {
		t.Errorf("exit code %d, error %v; want %d, saying no host was rolled back", code, err, pipeline.ExitIrreversible)
	}
	if rec.Outcome != pipeline.OutcomeFailed || rec.Rollback == nil || rec.Rollback.Stopped == "" || len(rec.Rollback.Hosts) != 0 {
		t.Fatalf("record: outcome %q, rollback %+v", rec.Outcome, rec.Rollback)
	}
	fleet := map[string]string{}
	for _, h := range rec.Rollback.Fleet {
		fleet[h.Host] = h.Version
	}
	if fleet[f.hosts[0].Addr] != "v3" || fleet[f.hosts[1].Addr] != "v3" {
		t.Errorf("the record's fleet %v; want both hosts on v3 as they are", fleet)
	}
	if got := f.serves(0); got != "200 ok v3" {
		t.Errorf("the first host serves %q, want v3 (not rolled back past the irreversible release)", got)
	}
	h, err := x.History(ctx, "staging", 0)
	if err != nil {
		t.Fatal(err)
	}
	if last := h.Records[len(h.Records)-1]; last.Irreversible == "" || last.Rollback == nil || last.Rollback.Stopped == "" {
		t.Errorf("the history's last record %+v does not say the deploy stopped at the irreversible release", last)
	}
	var out bytes.Buffer
	pipeline.RenderEnvHistory(&out, h)
	if !strings.Contains(out.String(), "failed (irreversible)") || !strings.Contains(out.String(), "deployed (irreversible)") {
		t.Errorf("history does not mark the irreversible releases:\n%s", out.String())
	}
	out.Reset()
	pipeline.RenderRecord(&out, rec)
	if !strings.Contains(out.String(), "NOT ROLLED BACK: no host was rolled back") || !strings.Contains(out.String(), f.hosts[1].Addr+" runs v3") {
		t.Errorf("the record as printed does not say the fleet's state:\n%s", out.String())
	}
}

// TestBakeOnDockerHosts: the same bake on a Docker host: the container is probed (and
// watched staying up) for the bake; a release that fails in it goes back to the previous
// container, and the record says how long it baked.
func TestBakeOnDockerHosts(t *testing.T) {
	d := testbench.SharedDockerd(t)
	hosts := testbench.SSHHosts(t, 1)
	reg := testbench.InProcessRegistry(t)
	port := testbench.FreePort(t)
	secrets := pipeline.Secrets{SSHKey: hosts[0].ClientKey, KnownHosts: testbench.KnownHostsOf(hosts)}
	maker := assemble.Maker(assemble.Extra{Docker: []docker.Option{docker.WithSocket(d.Socket), docker.WithStateDir(hosts[0].Dir)}})
	t.Cleanup(func() { removeContainers(t, d, "baker") })
	file := func(extraEnv string) *config.File {
		src := fmt.Sprintf(`app: baker
image:
  repository: %s/baker
environments:
  staging:
    docker:
      hosts: ["%s"]
      user: %s
      network: host
      env:
        HELLO_ADDR: "127.0.0.1:%d"%s
    health:
      http: {url: "http://{{.Address}}:%d/health"}
      interval: 100ms
      retries: 50
      stable: 300ms
    bake: 3s
`, reg.Host, hosts[0].Addr, hosts[0].User, port, extraEnv, port)
		cf, err := config.Parse("pushdeploy.yaml", []byte(src))
		if err != nil {
			t.Fatalf("the test's environments file: %v\n%s", err, src)
		}
		return cf
	}
	var log bytes.Buffer
	deploy := func(cf *config.File, version string) (*pipeline.Record, error) {
		ref := testbench.PushHelloRef(t, reg, "baker", testbench.HelloImage{Version: version})
		start := log.Len()
		rec, err := pipeline.Deploy(context.Background(), pipeline.Request{
			File: cf, Env: "staging", Deployer: "ci", Source: pipeline.Source{Version: version},
			Secrets: secrets, Targets: maker, Artifact: &pipeline.Artifact{Image: ref}, Log: &log,
		})
		t.Logf("deploy %s:\n%s", version, log.String()[start:])
		return rec, err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/health", port)
	rec, err := deploy(file(""), "v1")
	if err != nil {
		t.Fatalf("v1: %v", err)
	}
	if rec.BakedMs != 3000 || stepOutcomes(rec) != "bake: 3s=ok" {
		t.Errorf("v1: baked %dms, steps %s; want one bake of 3s", rec.BakedMs, stepOutcomes(rec))
	}
	rec, err = deploy(file("\n        HELLO_FAIL_AFTER: \"15\""), "v2")
	if err == nil || pipeline.ExitCode(err) != pipeline.ExitRolledBack || !strings.Contains(err.Error(), "bake: health check") {
		t.Fatalf("v2 failing in its bake: %v (exit %d)", err, pipeline.ExitCode(err))
	}
	if rec.Hosts[0].Step != pipeline.StepBake || rec.BakedMs <= 0 || rec.BakedMs >= 3000 {
		t.Errorf("v2: host %+v, baked %dms; want failed at the bake, cut short", rec.Hosts[0], rec.BakedMs)
	}
	if got := testbench.Get(url); got != "200 ok v1" {
		t.Errorf("after the rollback the host serves %q, want v1", got)
	}
}
