package kubernetes_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	k8sbench "github.com/pushdeploy/pushdeploy/internal/testbench/k8s"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/targets/kubernetes"
)

// TestCanaryStepsOnDeployments: the canary steps of servers, on Kubernetes, where each
// Deployment is a host: one Deployment first, an analysis of its error rate in a real
// Prometheus, then the rest. The exporter Prometheus scrapes answers, per Deployment, the
// error rate of the image the Deployment runs (read from the API server at each scrape):
// the bad image's is 0.5. A good release passes; the bad one is undone on the canary
// Deployment and the other Deployments are never patched (their generation stays).
func TestCanaryStepsOnDeployments(t *testing.T) {
	t.Parallel()
	c := k8sbench.Shared(t)
	ns := c.Namespace(t)
	names := []string{"web-1", "web-2", "web-3"}
	for _, n := range names {
		deployment(t, c, ns, n, 1, 600)
	}
	bad := release("bad", "registry.test/shop")
	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, n := range names {
			d, err := c.Client.AppsV1().Deployments(ns).Get(r.Context(), n, metav1.GetOptions{})
			if err != nil {
				continue
			}
			rate := 0.0
			if strings.Contains(d.Spec.Template.Spec.Containers[0].Image, bad.Digest) {
				rate = 0.5
			}
			fmt.Fprintf(w, "shop_error_ratio{deployment=\"deployment/%s\"} %g\n", n, rate)
		}
	}))
	t.Cleanup(exporter.Close)
	prom := testbench.StartPrometheus(t, testbench.PromTarget{Addr: strings.TrimPrefix(exporter.URL, "http://")})
	prom.WaitForSeries(t, "shop_error_ratio")
	an, err := pipeline.AnalysisFromConfig("errors", &config.Analysis{
		Prometheus: prom.URL,
		Query:      `max(shop_error_ratio{deployment=~"{{.Hosts}}"})`,
		// A range query: every point of the last 2s must pass.
		Range: config.Duration{Duration: 2e9}, Step: config.Duration{Duration: 500e6},
		Condition: "< 0.05", Interval: config.Duration{Duration: 300e6}, Count: 2, Tries: 8,
	})
	if err != nil {
		t.Fatal(err)
	}
	steps := pipeline.WithSteps(pipeline.Step{Hosts: 1}, pipeline.Step{Analysis: an})
	var ws []kubernetes.Workload
	for _, n := range names {
		ws = append(ws, kubernetes.Workload{Name: n})
	}
	tg := target(t, c.Kubeconfig, ns, ws)
	good := release("good", "registry.test/shop")
	res, err := rollout(t, tg, good, steps)
	if err != nil {
		t.Fatalf("good release: %v\n%s", err, prom.Log())
	}
	if len(res.Record.Steps) != 1 || res.Record.Steps[0].Outcome != "ok" {
		t.Errorf("good release's steps %+v", res.Record.Steps)
	}
	gens := map[string]int64{}
	for _, n := range names[1:] {
		_, d := images(t, c, ns, n)
		gens[n] = d.Generation
	}
	res, err = rollout(t, tg, bad, steps)
	if err == nil {
		t.Fatal("the bad release passed its canary analysis")
	}
	if pipeline.ExitCode(err) != pipeline.ExitRolledBack || !strings.Contains(err.Error(), "want < 0.05") {
		t.Errorf("bad release: exit %d, %v", pipeline.ExitCode(err), err)
	}
	if img, _ := images(t, c, ns, "web-1"); !strings.Contains(img, good.Digest) {
		t.Errorf("the canary Deployment runs %s after its rollback, want the good release", img)
	}
	for _, n := range names[1:] {
		img, d := images(t, c, ns, n)
		if !strings.Contains(img, good.Digest) || d.Generation != gens[n] {
			t.Errorf("%s was touched by the bad canary: %s, generation %d (was %d)", n, img, d.Generation, gens[n])
		}
	}
	if hs := res.Record.Hosts; hs[1].Outcome != pipeline.OutcomeSkipped || hs[2].Outcome != pipeline.OutcomeSkipped {
		t.Errorf("hosts %+v; want the others not started", hs)
	}
}
