package testbench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// PrometheusBinary is Debian's Prometheus server (package prometheus).
const PrometheusBinary = "/usr/bin/prometheus"

// PromTarget is one thing the bench's Prometheus scrapes: an address serving /metrics, and
// labels it adds to every series (e.g. host: the name pushdeploy knows the host by).
type PromTarget struct {
	Addr   string
	Labels map[string]string
}

// Prometheus is a Prometheus server started for a test on 127.0.0.1.
type Prometheus struct {
	// URL is the base of its HTTP API, "http://127.0.0.1:PORT".
	URL string
	log *bytes.Buffer
}

// Log is what the server printed.
func (p *Prometheus) Log() string { return p.log.String() }

// PrometheusScrapeInterval is how often the bench's Prometheus scrapes its targets: short,
// so that a rate over a few seconds has samples.
const PrometheusScrapeInterval = 200 * time.Millisecond

// StartPrometheus starts Prometheus on a free 127.0.0.1 port with its own data directory,
// scraping targets every PrometheusScrapeInterval, waits until it is ready and stops it when
// the test ends. It skips the test (Unavailable) when the binary is missing.
func StartPrometheus(t testing.TB, targets ...PromTarget) *Prometheus {
	t.Helper()
	if _, err := os.Stat(PrometheusBinary); err != nil {
		Unavailable(t, "%s: %v (apt-get install prometheus)", PrometheusBinary, err)
	}
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n  evaluation_interval: 1s\nscrape_configs:\n",
		PrometheusScrapeInterval, PrometheusScrapeInterval)
	fmt.Fprintf(&b, "  - job_name: app\n    static_configs:\n")
	for _, tg := range targets {
		fmt.Fprintf(&b, "      - targets: [%q]\n", tg.Addr)
		if len(tg.Labels) > 0 {
			fmt.Fprintf(&b, "        labels:\n")
			for k, v := range tg.Labels {
				fmt.Fprintf(&b, "          %s: %q\n", k, v)
			}
		}
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
	p := &Prometheus{URL: fmt.Sprintf("http://127.0.0.1:%d", port), log: &bytes.Buffer{}}
	cmd := exec.Command(PrometheusBinary, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--log.level=warn")
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		Unavailable(t, "starting prometheus: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	// Ready when its readiness endpoint says so: the observed state, polled.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get(p.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-exited:
			t.Fatalf("prometheus exited before it was ready:\n%s", p.Log())
		case <-ctx.Done():
			t.Fatalf("prometheus not ready after a minute:\n%s", p.Log())
		case <-tick.C:
		}
	}
}

// WaitForSeries waits until an instant query of Prometheus returns at least one series (its
// first scrapes have landed), polling the observed state; it fails the test after a minute
// with what the server says of its targets.
func (p *Prometheus) WaitForSeries(t testing.TB, query string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get(p.URL + "/api/v1/query?query=" + url.QueryEscape(query))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && !strings.Contains(string(b), `"result":[]`) {
				return
			}
		}
		select {
		case <-ctx.Done():
			targets := Get(p.URL + "/api/v1/targets")
			t.Fatalf("prometheus has no series for %s after a minute; its targets: %s\n%s", query, targets, p.Log())
		case <-tick.C:
		}
	}
}
