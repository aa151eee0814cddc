package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/assemble"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/targets/docker"
)

func TestMain(m *testing.M) { os.Exit(testbench.MainWithDockerd(m)) }

// receiver is an httptest endpoint on 127.0.0.1 that records what is posted to it.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []string
	auth   []string
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, string(b))
		r.auth = append(r.auth, req.Header.Get("Authorization"))
		r.mu.Unlock()
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) take() (bodies, auth []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	bodies, auth = r.bodies, r.auth
	r.bodies, r.auth = nil, nil
	return bodies, auth
}

// closedURL is a URL on 127.0.0.1 where nothing listens.
func closedURL(t *testing.T) string {
	return fmt.Sprintf("http://127.0.0.1:%d/hook", testbench.FreePort(t))
}

// TestStagingToProduction is the seed's flow as one typed pipeline against real servers:
// staging deployed automatically from a build; production refused without approval,
// refused for a digest that is not live in staging, then promoted; a health failure in
// production rolled back with the failure notification and marker delivered; a
// notification endpoint that is down does not fail a deploy; no secret value appears in
// any output, record, marker or notification.
func TestStagingToProduction(t *testing.T) {
	d := testbench.SharedDockerd(t)
	hosts := testbench.SSHHosts(t, 2)
	reg := testbench.InProcessRegistry(t)
	stagingPort, prodPort := testbench.FreePort(t), testbench.FreePort(t)
	marker, slack, hook := newReceiver(t), newReceiver(t), newReceiver(t)

	const markerToken = "marker-token-5f1d2c9e"
	slackURL := slack.URL + "/services/T000/B000/slacksecretpath77"
	secrets := pipeline.Secrets{
		SSHKey:     hosts[0].ClientKey,
		KnownHosts: testbench.KnownHostsOf(hosts),
		Named:      map[string][]byte{"MARKER_TOKEN": []byte(markerToken), "SLACK_WEBHOOK": []byte(slackURL)},
	}
	secretValues := []string{markerToken, "slacksecretpath77", string(bytes.TrimSpace(hosts[0].ClientKey))}

	file := func(prodFailHealth bool) *config.File {
		failEnv := ""
		if prodFailHealth {
			failEnv = "\n        HELLO_FAIL_HEALTH: \"1\""
		}
		src := fmt.Sprintf(`app: hello
image:
  repository: %s/hello
environments:
  staging:
    docker:
      hosts: ["%s"]
      user: %s
      network: host
      env:
        HELLO_ADDR: "127.0.0.1:%d"
    health:
      http: {url: "http://{{.Address}}:%d/health", body: "^ok "}
      interval: 100ms
      retries: 20
    notifications:
      webhook: {url: "%s"}
  production:
    protected: true
    from: staging
    docker:
      hosts: ["%s"]
      user: %s
      network: host
      env:
        HELLO_ADDR: "127.0.0.1:%d"%s
    health:
      http: {url: "http://{{.Address}}:%d/health", body: "^ok "}
      interval: 100ms
      retries: 10
    markers:
      - url: "%s/api/markers"
        token: MARKER_TOKEN
    notifications:
      slack: {webhook: SLACK_WEBHOOK}
      webhook: {url: "%s/hook"}
`, reg.Host, hosts[0].Addr, hosts[0].User, stagingPort, stagingPort, closedURL(t),
			hosts[1].Addr, hosts[1].User, prodPort, failEnv, prodPort, marker.URL, hook.URL)
		f, err := config.Parse("pushdeploy.yaml", []byte(src))
		if err != nil {
			t.Fatalf("the test's environments file: %v", err)
		}
		return f
	}
	maker := assemble.Maker(assemble.Extra{Docker: []docker.Option{docker.WithSocket(d.Socket), docker.WithStateDir(hosts[0].Dir)}})
	var log bytes.Buffer
	version := "v1"
	deploy := func(f *config.File, env, approvedBy string, art *pipeline.Artifact) (*pipeline.Record, error) {
		t.Helper()
		start := log.Len()
		rec, err := pipeline.Deploy(context.Background(), pipeline.Request{
			File: f, Env: env, ApprovedBy: approvedBy, Deployer: "ci", PipelineID: "run-1",
			Source:  pipeline.Source{Revision: strings.Repeat(version[1:], 40), Version: version},
			Secrets: secrets, Targets: maker, Artifact: art, Log: &log,
		})
		t.Logf("deploy %s:\n%s", env, log.String()[start:])
		if rec != nil {
			b, _ := json.Marshal(rec)
			log.Write(b)
		}
		if err != nil {
			log.WriteString(err.Error())
		}
		return rec, err
	}
	tarball := func(version string) *pipeline.Artifact {
		p := filepath.Join(t.TempDir(), version+".tar")
		// One image serves both environments: each tells it its address by $HELLO_ADDR.
		testbench.WriteHelloTarball(t, p, testbench.HelloImage{Version: version, CheckEnvAddr: true, HealthCheck: true})
		return &pipeline.Artifact{ImagePath: p}
	}
	stagingURL := fmt.Sprintf("http://127.0.0.1:%d/health", stagingPort)
	prodURL := fmt.Sprintf("http://127.0.0.1:%d/health", prodPort)
	t.Cleanup(func() { removeContainers(t, d, "hello") })

	// 1. Staging builds (here: is handed the build's image tarball), publishes and deploys;
	// its notification endpoint is down, which costs a warning and nothing else.
	f := file(false)
	rec, err := deploy(f, "staging", "", tarball("v1"))
	if err != nil {
		t.Fatalf("staging deploy: %v", err)
	}
	if got := testbench.Get(stagingURL); got != "200 ok v1" {
		t.Fatalf("staging serves %q after its deploy", got)
	}
	if rec.Outcome != pipeline.OutcomeDeployed || len(rec.Warnings) != 1 || !strings.Contains(rec.Warnings[0], "webhook to 127.0.0.1:") {
		t.Errorf("staging record: outcome %q, warnings %q; want deployed with one webhook warning", rec.Outcome, rec.Warnings)
	}
	v1 := rec.Image
	if !strings.HasPrefix(v1, reg.Host+"/hello@sha256:") {
		t.Fatalf("staging deployed %q, want a digest reference in the registry", v1)
	}
	stages := strings.Join(stageNames(rec), " → ")
	if stages != "resolve → gates → build → publish → lock → pre-deploy hooks → migrate → deploy → health → post-deploy hooks → record → unlock → notify" {
		t.Errorf("stages ran in order %s", stages)
	}

	// 2. Production without approval: refused before anything changes.
	_, err = deploy(f, "production", "", nil)
	if err == nil || !strings.Contains(err.Error(), `gates: environment "production" is protected`) || !strings.Contains(err.Error(), "--approved-by") {
		t.Fatalf("unapproved production deploy: %v", err)
	}
	if got := testbench.Get(prodURL); !strings.HasPrefix(got, "error:") {
		t.Fatalf("production serves %q after a refused deploy; want nothing", got)
	}

	// 3. Approved, but asked for a digest that is not live in staging: refused, naming both.
	other := testbench.PushHelloRef(t, reg, "hello", testbench.HelloImage{Version: "v9", CheckEnvAddr: true, HealthCheck: true})
	_, err = deploy(f, "production", "alice", &pipeline.Artifact{Image: other})
	if err == nil || !strings.Contains(err.Error(), digest(other)) || !strings.Contains(err.Error(), digest(v1)) {
		t.Fatalf("production deploy of a digest not live in staging: %v; want both digests named", err)
	}
	if got := testbench.Get(prodURL); !strings.HasPrefix(got, "error:") {
		t.Fatalf("production serves %q after a refused deploy; want nothing", got)
	}

	// 4. Approved: promoted, never rebuilt, the marker and notifications arrive.
	rec, err = deploy(f, "production", "alice", nil)
	if err != nil {
		t.Fatalf("promoting to production: %v", err)
	}
	if rec.Image != v1 || rec.ApprovedBy != "alice" || testbench.Get(prodURL) != "200 ok v1" {
		t.Fatalf("production after promotion: image %q approved by %q serving %q; want %s by alice serving ok v1", rec.Image, rec.ApprovedBy, testbench.Get(prodURL), v1)
	}
	if s := stageOutcome(rec, "build"); !strings.Contains(s, "promoting") {
		t.Errorf("build stage: %q, want skipped for the promotion", s)
	}
	bodies, auth := marker.take()
	if len(bodies) != 1 || auth[0] != "Bearer "+markerToken {
		t.Fatalf("marker: %d posts, auth %q", len(bodies), auth)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(bodies[0]), &m); err != nil {
		t.Fatal(err)
	}
	if m["service"] != "hello" || m["environment"] != "production" || m["outcome"] != "success" || m["recordId"] != rec.ID || m["version"] != "v1" {
		t.Errorf("marker body %s", bodies[0])
	}
	if bodies, _ := slack.take(); len(bodies) != 1 || !strings.Contains(bodies[0], "production") {
		t.Errorf("slack: %q", bodies)
	}
	hook.take()

	// 5. Staging moves to v2; production promotes it, but is unhealthy there: it rolls back
	// to v1, and the failure notification and marker arrive.
	version = "v2"
	if _, err := deploy(f, "staging", "", tarball("v2")); err != nil || testbench.Get(stagingURL) != "200 ok v2" {
		t.Fatalf("staging v2: %v, serving %q", err, testbench.Get(stagingURL))
	}
	rec, err = deploy(file(true), "production", "alice", nil)
	if err == nil {
		t.Fatal("a production deploy whose health check fails succeeded")
	}
	if !strings.Contains(err.Error(), "deploy: host \""+hosts[1].Addr+"\": health") {
		t.Errorf("error %v; want it to name the deploy stage, the host and the health step", err)
	}
	if got := testbench.Get(prodURL); got != "200 ok v1" {
		t.Fatalf("production serves %q after the rollback, want the old release", got)
	}
	if rec.Outcome != pipeline.OutcomeRolledBack || rec.Rollback == nil {
		t.Errorf("record outcome %q rollback %+v", rec.Outcome, rec.Rollback)
	}
	bodies, _ = marker.take()
	if len(bodies) != 1 || !strings.Contains(bodies[0], `"outcome":"rolled_back"`) {
		t.Errorf("failure marker: %q", bodies)
	}
	if bodies, _ := slack.take(); len(bodies) != 1 || !strings.Contains(strings.ToLower(bodies[0]), "rolled back") {
		t.Errorf("slack failure notification: %q", bodies)
	}
	if bodies, _ := hook.take(); len(bodies) != 1 || !strings.Contains(bodies[0], `"outcome":"rolled_back"`) || !strings.Contains(bodies[0], `"approvedBy":"alice"`) {
		t.Errorf("webhook failure notification: %q", bodies)
	}

	// The history on the target keeps the records, approvals included.
	x := &pipeline.Environments{File: f, Secrets: secrets, Targets: maker}
	h, err := x.History(context.Background(), "production", 0)
	if err != nil {
		t.Fatal(err)
	}
	if hist := h.Records; len(hist) != 2 || hist[0].ApprovedBy != "alice" || hist[1].Outcome != pipeline.OutcomeRolledBack {
		t.Errorf("production history: %+v", hist)
	}
	// What production keeps for rollback: v1 alone, the failed v2 was discarded.
	if len(h.Kept) != 1 || len(h.Kept[0].Kept) != 1 || digest(h.Kept[0].Kept[0].Image) != digest(v1) {
		t.Errorf("production keeps %+v, want v1 alone", h.Kept)
	}
	st := x.Status(context.Background())
	if len(st) != 2 || st[0].Hosts[0].Live == nil || st[1].Hosts[0].Live == nil || digest(st[1].Hosts[0].Live.Image) != digest(v1) {
		t.Errorf("status: %+v", st)
	}

	// No secret value anywhere: logs, records, errors, markers, notifications.
	all := log.String() + strings.Join(marker.bodies, "") + strings.Join(slack.bodies, "") + strings.Join(hook.bodies, "")
	for _, s := range secretValues {
		if strings.Contains(all, s) {
			t.Errorf("a secret value appears in the output")
		}
	}
}

func digest(ref string) string { return ref[strings.LastIndex(ref, "@")+1:] }

func stageNames(r *pipeline.Record) (out []string) {
	for _, s := range r.Stages {
		out = append(out, s.Stage)
	}
	return out
}

func stageOutcome(r *pipeline.Record, stage string) string {
	for _, s := range r.Stages {
		if s.Stage == stage {
			return s.Outcome
		}
	}
	return ""
}

// removeContainers removes the app's containers from the shared engine.
func removeContainers(t *testing.T, d *testbench.Dockerd, app string) {
	cli, err := client.NewClientWithOpts(client.WithHost(d.Host()), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Log(err)
		return
	}
	defer cli.Close()
	ctx := context.Background()
	cs, _ := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", docker.LabelApp+"="+app))})
	for _, c := range cs {
		_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	}
}
