// Package dockerbench measures replacing the running container on a Docker host: deploy wall
// time, and the downtime a client polling the service sees, for pushdeploy's Docker target
// and for the seed's shell sequence run over `ssh` on the same host
// (`docker pull; docker stop; docker rm; docker run -d`).
//
// Both use the bench's real dockerd reached through a real sshd, and a new image version
// each iteration (pushed before the timer starts). The poller GETs /health every
// pollEvery; a failed request is one that errors or does not answer 200.
//
//	go test ./bench/docker -run '^$' -bench . -benchtime 5x
package dockerbench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/docker"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

func TestMain(m *testing.M) { os.Exit(testbench.MainWithDockerd(m)) }

const (
	pollEvery   = 5 * time.Millisecond
	maxRequests = 50000            // per iteration
	maxPoll     = 2 * time.Minute  // per iteration
	recoverIn   = 30 * time.Second // the service must answer again this soon after a deploy
)

// poller counts the requests that fail while a deploy runs.
type poller struct {
	url  string
	stop chan struct{}
	done chan struct{}

	mu        sync.Mutex
	ok, fail  int
	downSince time.Time     // start of the current failing stretch, zero when up
	down      time.Duration // failing stretches so far
	longest   time.Duration
	lastOK    time.Time // start of the last request that succeeded
}

func startPoller(url string) *poller {
	p := &poller{url: url, stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	return p
}

func (p *poller) run() {
	defer close(p.done)
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	end := time.Now().Add(maxPoll)
	for n := 0; n < maxRequests && time.Now().Before(end); n++ {
		start := time.Now()
		resp, err := c.Get(p.url)
		good := err == nil && resp.StatusCode == http.StatusOK
		if err == nil {
			resp.Body.Close()
		}
		p.mu.Lock()
		switch {
		case good:
			p.ok++
			p.lastOK = start
			if !p.downSince.IsZero() {
				d := start.Sub(p.downSince)
				p.down += d
				p.longest = max(p.longest, d)
				p.downSince = time.Time{}
			}
		default:
			p.fail++
			if p.downSince.IsZero() {
				p.downSince = start
			}
		}
		p.mu.Unlock()
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
	}
}

// upAfter reports whether a request that started after t succeeded.
func (p *poller) upAfter(t time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastOK.After(t) && p.downSince.IsZero()
}

// finish stops the poller once the service answers again after t, and returns the counts.
func (p *poller) finish(b *testing.B, t time.Time) (fail int, down time.Duration) {
	deadline := time.After(recoverIn)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for !p.upAfter(t) {
		select {
		case <-deadline:
			b.Fatalf("%s did not answer 200 within %s of the deploy", p.url, recoverIn)
		case <-p.done:
			b.Fatalf("the poller stopped (%d requests or %s) before %s answered again", maxRequests, maxPoll, p.url)
		case <-tick.C:
		}
	}
	close(p.stop)
	<-p.done
	return p.fail, p.down
}

type world struct {
	b    *testing.B
	d    *testbench.Dockerd
	host *testbench.SSHHost
	reg  *testbench.Registry
	addr string
	app  string
}

func newWorld(b *testing.B, app string) *world {
	w := &world{b: b, d: testbench.SharedDockerd(b), host: testbench.SSHHosts(b, 1, noRehashWait)[0], reg: testbench.InProcessRegistry(b), app: app}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	w.addr = l.Addr().String()
	l.Close()
	b.Cleanup(func() {
		out, err := exec.Command("sh", "-c", fmt.Sprintf("docker -H unix://%s ps -aq --filter name=%s | xargs -r docker -H unix://%s rm -f",
			w.d.Socket, app, w.d.Socket)).CombinedOutput()
		if err != nil {
			b.Logf("removing containers: %v: %s", err, out)
		}
	})
	return w
}

func (w *world) image(i int) (ref, digest string) {
	return testbench.PushHello(w.b, w.reg, w.app, testbench.HelloImage{Version: fmt.Sprintf("v%d", i), Addr: w.addr, HealthCheck: true, CheckEnvAddr: true})
}

// measure runs deploy b.N times, each with a new image, and reports the downtime seen at
// url ("" means the service's own port).
func measure(b *testing.B, w *world, url string, first func(ref, digest string), deploy func(i int, ref, digest string)) {
	ref, dg := w.image(0)
	first(ref, dg)
	if url == "" {
		url = "http://" + w.addr + "/health"
	}
	// `docker run -d` returns before the service listens: wait until it answers.
	for deadline := time.Now().Add(recoverIn); get(url) != http.StatusOK; {
		if time.Now().After(deadline) {
			b.Fatalf("%s does not answer 200 after the first deploy", url)
		}
		<-time.After(pollEvery)
	}
	var fails int
	var down, worst time.Duration
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		b.StopTimer()
		ref, dg := w.image(i)
		p := startPoller(url)
		for !p.upAfter(time.Now().Add(-time.Hour)) { // the service answers before we start
			select {
			case <-p.done:
				b.Fatal("the poller stopped before the service answered")
			case <-time.After(pollEvery):
			}
		}
		b.StartTimer()
		deploy(i, ref, dg)
		b.StopTimer()
		f, d := p.finish(b, time.Now())
		fails += f
		down += d
		worst = max(worst, d)
	}
	b.ReportMetric(float64(fails)/float64(b.N), "failed-req/op")
	b.ReportMetric(float64(down.Milliseconds())/float64(b.N), "downtime-ms/op")
	b.ReportMetric(float64(worst.Milliseconds()), "worst-downtime-ms")
}

func get(url string) int {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func BenchmarkDeploy(b *testing.B) {
	b.Run("pushdeploy", func(b *testing.B) {
		w := newWorld(b, "benchpd")
		tg, err := docker.New(w.app, "bench", []string{w.host.Addr},
			docker.WithSSH(sshconn.PrivateKey(w.host.ClientKey), sshconn.KnownHosts(w.host.KnownHosts)),
			docker.WithSocket(w.d.Socket), docker.WithStateDir(w.host.Dir), docker.WithNetwork("host"))
		if err != nil {
			b.Fatal(err)
		}
		defer tg.Close()
		var log bytes.Buffer
		rollout := func(i int, ref, dg string) {
			r := targets.Release{ID: fmt.Sprintf("20261127T%06dZ", i), App: w.app, Env: "bench", Version: fmt.Sprintf("v%d", i), Digest: dg, Image: ref}
			log.Reset()
			if _, err := pipeline.Rollout(context.Background(), tg, r, pipeline.WithLogger(&log), pipeline.WithStable(0)); err != nil {
				b.Fatalf("%v\n%s", err, log.String())
			}
		}
		measure(b, w, "", func(ref, dg string) { rollout(0, ref, dg) }, rollout)
	})

	// Blue-green behind nginx on the host: the poller goes through the proxy.
	b.Run("pushdeploy-bluegreen", func(b *testing.B) {
		w := newWorld(b, "benchbg")
		other, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(w.addr)
		_, port2, _ := net.SplitHostPort(other.Addr().String())
		other.Close()
		proxy := testbench.StartNginx(b, "server 127.0.0.1:"+port+" max_fails=0;", "server 127.0.0.1:"+port2+" backup max_fails=0;")
		var slots [2]int
		fmt.Sscan(port, &slots[0])
		fmt.Sscan(port2, &slots[1])
		tg, err := docker.New(w.app, "bench", []string{w.host.Addr},
			docker.WithSSH(sshconn.PrivateKey(w.host.ClientKey), sshconn.KnownHosts(w.host.KnownHosts)),
			docker.WithSocket(w.d.Socket), docker.WithStateDir(w.host.Dir), docker.WithNetwork("host"),
			docker.WithBlueGreen(docker.BlueGreen{
				Ports: slots,
				Env:   []string{"HELLO_ADDR=127.0.0.1:{{.Port}}"},
				Switch: `printf 'server 127.0.0.1:{{.Port}} max_fails=0;\nserver 127.0.0.1:{{.Other}} backup max_fails=0;\n' > ` +
					proxy.Upstream + " && " + proxy.Reload(),
			}))
		if err != nil {
			b.Fatal(err)
		}
		defer tg.Close()
		var log bytes.Buffer
		rollout := func(i int, ref, dg string) {
			r := targets.Release{ID: fmt.Sprintf("20261127T%06dZ", i), App: w.app, Env: "bench", Version: fmt.Sprintf("v%d", i), Digest: dg, Image: ref}
			log.Reset()
			if _, err := pipeline.Rollout(context.Background(), tg, r, pipeline.WithLogger(&log), pipeline.WithStable(0)); err != nil {
				b.Fatalf("%v\n%s", err, log.String())
			}
		}
		measure(b, w, "http://"+proxy.Addr+"/health", func(ref, dg string) { rollout(0, ref, dg) }, rollout)
	})

	b.Run("seed-shell", func(b *testing.B) {
		w := newWorld(b, "benchseed")
		dir := b.TempDir()
		key, kh := filepath.Join(dir, "key"), filepath.Join(dir, "known_hosts")
		if err := os.WriteFile(key, w.host.ClientKey, 0o600); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(kh, w.host.KnownHosts, 0o600); err != nil {
			b.Fatal(err)
		}
		cli, err := client.NewClientWithOpts(client.WithHost(w.d.Host()), client.WithAPIVersionNegotiation())
		if err != nil {
			b.Fatal(err)
		}
		defer cli.Close()
		var toHealthy time.Duration
		// The seed's Jenkins step, with host networking for -p 8080:8080 (the bench's engine
		// has no bridge). The seed does not wait for the health check; toHealthy adds the
		// wait for the container's first passing HEALTHCHECK (the engine asked every
		// pollEvery, from this machine), the time pushdeploy's health stage waits for.
		seed := func(i int, ref, _ string) {
			start := time.Now()
			defer func() {
				if i == 0 {
					return
				}
				b.StopTimer()
				defer b.StartTimer()
				for {
					c, err := cli.ContainerInspect(context.Background(), w.app)
					if err == nil && c.State != nil && c.State.Health != nil && c.State.Health.Status == "healthy" {
						break
					}
					if time.Since(start) > recoverIn {
						b.Fatalf("the seed's container is not healthy after %s", recoverIn)
					}
					time.Sleep(pollEvery) // polling the engine, as a user's script would (bench only)
				}
				toHealthy += time.Since(start)
			}()
			script := strings.Join([]string{
				"export DOCKER_HOST=" + sshconn.Quote("unix://"+w.d.Socket),
				"docker pull -q " + sshconn.Quote(ref),
				"docker stop " + w.app + " || true",
				"docker rm " + w.app + " || true",
				"docker run -d --name " + w.app + " --network host " + sshconn.Quote(ref),
			}, "; ")
			cmd := exec.Command("ssh", "-i", key, "-o", "UserKnownHostsFile="+kh, "-o", "StrictHostKeyChecking=yes",
				"-o", "BatchMode=yes", "-p", fmt.Sprint(w.host.Port), w.host.User+"@127.0.0.1", script)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("seed deploy: %v: %s", err, out)
			}
		}
		measure(b, w, "", func(ref, dg string) { seed(0, ref, dg) }, seed)
		b.ReportMetric(float64(toHealthy.Milliseconds())/float64(b.N), "to-healthy-ms/op")
	})
}

// noRehashWait stops root's .bashrc on this machine (pyenv init) from waiting up to 60s, in
// every SSH session, for a lock file that a killed session left behind.
var noRehashWait = testbench.SSHSetEnv("PYENV_REHASH_TIMEOUT", "0")

// BenchmarkDeployPaired runs the seed's sequence and pushdeploy's default and blue-green
// deploys in turn, each iteration all three, so that the load of a shared machine falls on
// them alike: wall time only (downtime is BenchmarkDeploy's), as the seed's sequence, the
// seed's sequence until its container's first passing HEALTHCHECK, and pushdeploy's deploys
// (health check included, the stability window off). The goals: default ≤ seed to healthy
// + 150 ms; blue-green ≤ 1.5 × seed.
func BenchmarkDeployPaired(b *testing.B) {
	seedW, pdW, bgW := newWorld(b, "pairseed"), newWorld(b, "pairpd"), newWorld(b, "pairbg")
	dir := b.TempDir()
	key, kh := filepath.Join(dir, "key"), filepath.Join(dir, "known_hosts")
	os.WriteFile(key, seedW.host.ClientKey, 0o600)
	os.WriteFile(kh, seedW.host.KnownHosts, 0o600)
	cli, err := client.NewClientWithOpts(client.WithHost(seedW.d.Host()), client.WithAPIVersionNegotiation())
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	seed := func(ref string) {
		script := strings.Join([]string{
			"export DOCKER_HOST=" + sshconn.Quote("unix://"+seedW.d.Socket),
			"docker pull -q " + sshconn.Quote(ref),
			"docker stop " + seedW.app + " || true",
			"docker rm " + seedW.app + " || true",
			"docker run -d --name " + seedW.app + " --network host " + sshconn.Quote(ref),
		}, "; ")
		cmd := exec.Command("ssh", "-i", key, "-o", "UserKnownHostsFile="+kh, "-o", "StrictHostKeyChecking=yes",
			"-o", "BatchMode=yes", "-p", fmt.Sprint(seedW.host.Port), seedW.host.User+"@127.0.0.1", script)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("seed deploy: %v: %s", err, out)
		}
	}
	healthy := func(start time.Time) {
		for {
			c, err := cli.ContainerInspect(context.Background(), seedW.app)
			if err == nil && c.State != nil && c.State.Health != nil && c.State.Health.Status == "healthy" {
				return
			}
			if time.Since(start) > recoverIn {
				b.Fatalf("the seed's container is not healthy after %s", recoverIn)
			}
			time.Sleep(pollEvery) // polling the engine, as a user's script would (bench only)
		}
	}
	mk := func(w *world, opts ...docker.Option) *docker.Target {
		tg, err := docker.New(w.app, "bench", []string{w.host.Addr}, append([]docker.Option{
			docker.WithSSH(sshconn.PrivateKey(w.host.ClientKey), sshconn.KnownHosts(w.host.KnownHosts)),
			docker.WithSocket(w.d.Socket), docker.WithStateDir(w.host.Dir), docker.WithNetwork("host")}, opts...)...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { tg.Close() })
		return tg
	}
	pd := mk(pdW)
	other := testbench.FreePort(b)
	_, port, _ := net.SplitHostPort(bgW.addr)
	proxy := testbench.StartNginx(b, "server 127.0.0.1:"+port+" max_fails=0;", fmt.Sprintf("server 127.0.0.1:%d backup max_fails=0;", other))
	var slots [2]int
	fmt.Sscan(port, &slots[0])
	slots[1] = other
	bg := mk(bgW, docker.WithBlueGreen(docker.BlueGreen{
		Ports: slots,
		Env:   []string{"HELLO_ADDR=127.0.0.1:{{.Port}}"},
		Switch: `printf 'server 127.0.0.1:{{.Port}} max_fails=0;\nserver 127.0.0.1:{{.Other}} backup max_fails=0;\n' > ` +
			proxy.Upstream + " && " + proxy.Reload(),
	}))
	rollout := func(tg *docker.Target, w *world, i int, ref, dg string) {
		r := targets.Release{ID: fmt.Sprintf("20261127T%06dZ", i), App: w.app, Env: "bench", Version: fmt.Sprintf("v%d", i), Digest: dg, Image: ref}
		var log bytes.Buffer
		if _, err := pipeline.Rollout(context.Background(), tg, r, pipeline.WithLogger(&log), pipeline.WithStable(0)); err != nil {
			b.Fatalf("%v\n%s", err, log.String())
		}
	}
	var tSeed, tHealthy, tPD, tBG time.Duration
	for i := 0; i <= b.N; i++ {
		b.StopTimer()
		sRef, _ := seedW.image(i)
		pRef, pDg := pdW.image(i)
		gRef, gDg := bgW.image(i)
		b.StartTimer()
		start := time.Now()
		seed(sRef)
		s := time.Since(start)
		healthy(start)
		h := time.Since(start)
		start = time.Now()
		rollout(pd, pdW, i, pRef, pDg)
		p := time.Since(start)
		start = time.Now()
		rollout(bg, bgW, i, gRef, gDg)
		g := time.Since(start)
		if i > 0 { // the first deploy of each sets the hosts up
			tSeed, tHealthy, tPD, tBG = tSeed+s, tHealthy+h, tPD+p, tBG+g
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(tSeed.Milliseconds())/n, "seed-ms/op")
	b.ReportMetric(float64(tHealthy.Milliseconds())/n, "seed-to-healthy-ms/op")
	b.ReportMetric(float64(tPD.Milliseconds())/n, "pushdeploy-ms/op")
	b.ReportMetric(float64(tBG.Milliseconds())/n, "bluegreen-ms/op")
	b.ReportMetric(float64((tPD-tHealthy).Milliseconds())/n, "pd-minus-seed-healthy-ms/op")
	b.ReportMetric(tBG.Seconds()/tSeed.Seconds(), "bluegreen/seed")
}
