// Package canarybench measures what a bad release costs on plain servers: the time from the
// start of its deploy until every host serves the previous release again, and how many
// hosts ever served it. Two ways on the same real sshd hosts, side by side in one run, the
// same release (half its requests answer 500), the same analysis against a real Prometheus
// scraping every host's /metrics:
//
//   - pushdeploy's canary (steps: hosts 1, analysis, percent 50, analysis): one host
//     switches, the analysis fails, that host goes back;
//   - switch and hope (Kamal, Capistrano, Deployer): every host switches at once, then the
//     same analysis (a post-deploy check) fails and every host goes back.
//
// Run it with:
//
//	go test ./bench/canary -run '^$' -bench . -benchtime 3x
package canarybench

import (
	"context"
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

const nHosts = 4

func BenchmarkBadCanary(b *testing.B) {
	hosts := testbench.SSHHosts(b, nHosts)
	var hc []ssh.HostConfig
	var tg []testbench.PromTarget
	var ports []int
	for _, h := range hosts {
		path := filepath.Join(h.Dir, "app")
		port := testbench.HelloServer(b, h, path)
		ports = append(ports, port)
		hc = append(hc, ssh.HostConfig{Addr: h.Addr, User: h.User, Path: path})
		tg = append(tg, testbench.PromTarget{Addr: fmt.Sprintf("127.0.0.1:%d", port), Labels: map[string]string{"host": h.Addr}})
	}
	prom := testbench.StartPrometheus(b, tg...)
	testbench.Traffic(b, ports...)
	prom.WaitForSeries(b, "up")
	target, err := ssh.New("web", "bench", hc, ssh.PrivateKey(hosts[0].ClientKey), ssh.KnownHosts(testbench.KnownHostsOf(hosts)),
		ssh.Restart(testbench.HelloRestart), ssh.ManifestCache(""))
	if err != nil {
		b.Fatal(err)
	}
	defer target.Close()
	an, err := pipeline.AnalysisFromConfig("errors", &config.Analysis{
		Prometheus: prom.URL,
		Query:      `sum(rate(hello_http_requests_total{code="500",host=~"{{.Hosts}}"}[2s])) / sum(rate(hello_http_requests_total{host=~"{{.Hosts}}"}[2s]))`,
		Condition:  "< 0.05", Interval: config.Duration{Duration: 500 * time.Millisecond}, Count: 2, Tries: 6,
	})
	if err != nil {
		b.Fatal(err)
	}
	health := pipeline.WithHealthCheck(pipeline.HealthCheck{Command: testbench.HelloHealthCommand, Interval: 100 * time.Millisecond, Retries: 50})
	release := func(version, rate string) targets.Release {
		dir := b.TempDir()
		testbench.HelloRelease(b, dir, version, map[string]string{"HELLO_ERROR_RATE": rate})
		dg, err := target.ArtifactDigest(dir)
		if err != nil {
			b.Fatal(err)
		}
		return targets.Release{ID: pipeline.NewReleaseID(time.Now()), App: "web", Env: "bench", Version: version, Digest: dg, Artifacts: dir}
	}
	for _, way := range []struct {
		name  string
		steps []pipeline.Step
	}{
		{"pushdeploy-canary", []pipeline.Step{{Hosts: 1}, {Analysis: an}, {Percent: 50}, {Analysis: an}}},
		{"switch-and-hope", []pipeline.Step{{Hosts: nHosts}, {Analysis: an}}},
	} {
		b.Run(way.name, func(b *testing.B) {
			opts := []pipeline.Option{health, pipeline.WithStable(300 * time.Millisecond), pipeline.WithSteps(way.steps...)}
			var served int
			var took time.Duration
			for i := range b.N {
				b.StopTimer()
				good := release(fmt.Sprintf("good-%s-%d", way.name, i), "0")
				if _, err := pipeline.Rollout(context.Background(), target, good, opts...); err != nil {
					b.Fatalf("good release: %v", err)
				}
				bad := release(fmt.Sprintf("bad-%s-%d", way.name, i), "0.5")
				b.StartTimer()
				start := time.Now()
				_, err := pipeline.Rollout(context.Background(), target, bad, opts...)
				took += time.Since(start)
				b.StopTimer()
				if pipeline.ExitCode(err) != pipeline.ExitRolledBack {
					b.Fatalf("bad release: want rolled back, got %v", err)
				}
				for k, h := range hc {
					ran, _ := os.ReadFile(filepath.Join(h.Path, "ran.log"))
					if strings.Contains(string(ran), bad.ID+" ") {
						served++
					}
					if got := testbench.Get(fmt.Sprintf("http://127.0.0.1:%d/health", ports[k])); got != "200 ok "+good.Version {
						b.Fatalf("after the rollback host %d serves %q, want %s", k, got, good.Version)
					}
				}
				b.StartTimer()
			}
			b.ReportMetric(took.Seconds()/float64(b.N), "s-to-rollback")
			b.ReportMetric(float64(served)/float64(b.N), "hosts-served-bad")
			b.ReportMetric(0, "ns/op")
		})
	}
}
