package docker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

// TestCanaryOnDockerHosts: canary steps on three Docker hosts: one host, an analysis of its
// error rate in a real Prometheus scraping every container's /metrics, then the rest. A
// release whose error rate rises is undone on the canary host; the other hosts never get a
// container of it.
func TestCanaryOnDockerHosts(t *testing.T) {
	b := newBenchN(t, 3)
	ports := []int{b.port, freePort(t), freePort(t)}
	var tg []testbench.PromTarget
	for i, h := range b.hosts {
		tg = append(tg, testbench.PromTarget{Addr: fmt.Sprintf("127.0.0.1:%d", ports[i]), Labels: map[string]string{"host": h.Addr}})
	}
	prom := testbench.StartPrometheus(t, tg...)
	testbench.Traffic(t, ports...)
	// The release's error rate comes with its deploy's settings (HELLO_ERROR_RATE).
	target := func(errorRate string) *Target {
		opts := []Option{withHostScope()}
		for i, h := range b.hosts {
			opts = append(opts, WithHostEnv(h.Addr, fmt.Sprintf("HELLO_ADDR=127.0.0.1:%d", ports[i]), "HELLO_ERROR_RATE="+errorRate))
		}
		return b.target(opts...)
	}
	an, err := pipeline.AnalysisFromConfig("errors", &config.Analysis{
		Prometheus: prom.URL,
		Query:      `sum(rate(hello_http_requests_total{code="500",host=~"{{.Hosts}}"}[2s])) / sum(rate(hello_http_requests_total{host=~"{{.Hosts}}"}[2s]))`,
		Condition:  "< 0.05", Interval: config.Duration{Duration: 500 * time.Millisecond}, Count: 2, Tries: 8,
	})
	if err != nil {
		t.Fatal(err)
	}
	steps := pipeline.WithSteps(pipeline.Step{Hosts: 1}, pipeline.Step{Analysis: an})
	image := func(v string) (string, string) {
		return b.image(v, func(s *testbench.HelloImage) { s.CheckEnvAddr = true })
	}
	ref, dg := image("v1")
	r1 := b.release("20261202T000001Z", "v1", ref, dg)
	if err := b.rollout(target("0"), r1, steps); err != nil {
		t.Fatalf("v1: %v", err)
	}
	prom.WaitForSeries(t, "hello_http_requests_total")
	ref, dg = image("v2")
	r2 := b.release("20261202T000002Z", "v2", ref, dg)
	err = b.rollout(target("0.5"), r2, steps)
	if pipeline.ExitCode(err) != pipeline.ExitRolledBack || !strings.Contains(err.Error(), `analysis: "errors" failed:`) {
		t.Fatalf("v2 with half its requests failing: %v", err)
	}
	for i, h := range b.hosts {
		if got := healthAt(fmt.Sprintf("127.0.0.1:%d", ports[i])); got != "200 ok v1" {
			t.Errorf("%s serves %q after the canary's rollback, want v1", h.Addr, got)
		}
	}
	// The hosts after the canary have v1's container and never got one of v2.
	containers := func(host, release string) int {
		cs, err := b.cli.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(
			filters.Arg("label", LabelApp+"="+b.app), filters.Arg("label", LabelHost+"="+host), filters.Arg("label", LabelRelease+"="+release))})
		if err != nil {
			t.Fatal(err)
		}
		return len(cs)
	}
	for _, h := range b.hosts[1:] {
		if n1, n2 := containers(h.Addr, r1.ID), containers(h.Addr, r2.ID); n1 != 1 || n2 != 0 {
			t.Errorf("%s has %d container(s) of v1 and %d of the bad canary; want 1 and none", h.Addr, n1, n2)
		}
	}
}
