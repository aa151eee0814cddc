// Package sshbench measures the server target against the seed's way of deploying files,
// `rsync -a -e ssh`, on the same real sshd hosts, side by side in one run:
//
//   - a release of 2,000 files / 50 MB: the first (full) deploy, then deploys with one
//     file changed; wall time and the bytes on the wire, counted at the TCP level in both
//     directions by a proxy in front of sshd that both tools go through;
//   - fan-out of a one-file change to 20 hosts in parallel, against a loop of 20
//     single-host deploys, and one host alone;
//   - redeploying the live release to 5 hosts (a no-op).
//
// pushdeploy's wall time includes building the local manifest (hashing the 50 MB, or, on a
// machine that never hashed them, asking the host which files to trust), a new
// SSH connection per deploy (as rsync's ssh makes one), the restart-free switch and, for
// the single-host cases, Prepare and Activate; the fan-out cases go through
// pipeline.Rollout (lock, status, journal). rsync only copies: it switches nothing.
//
//	go test ./bench/ssh -run '^$' -bench . -benchtime 3x
package sshbench

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/ssh"
)

const (
	nFiles   = 2000
	fileSize = 50 << 20 / nFiles // 26,214 bytes: 2,000 files make 50 MB
)

// testUser has /bin/sh and no startup files, for both tools alike.
var testUser = testbench.SSHUser("pdtest")

// proxy forwards 127.0.0.1:port to an sshd and counts the bytes both ways.
type proxy struct {
	l      net.Listener
	to     string
	up     atomic.Int64 // client -> server
	down   atomic.Int64 // server -> client
	active atomic.Int64 // connections open
	closed atomic.Bool
}

// counter counts what is written through it, as it is written.
type counter struct {
	w io.Writer
	n *atomic.Int64
}

func (c counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func newProxy(b testing.TB, to string) *proxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	p := &proxy{l: l, to: to}
	go p.serve()
	b.Cleanup(func() { p.closed.Store(true); l.Close() })
	return p
}

func (p *proxy) Addr() string { return p.l.Addr().String() }

func (p *proxy) Port() int { return p.l.Addr().(*net.TCPAddr).Port }

func (p *proxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.to)
		if err != nil {
			c.Close()
			continue
		}
		pipe := func(dst, src net.Conn, n *atomic.Int64) {
			io.Copy(counter{dst, n}, src)
			dst.(*net.TCPConn).CloseWrite()
		}
		p.active.Add(1)
		go func() {
			defer p.active.Add(-1)
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); pipe(s, c, &p.up) }()
			go func() { defer wg.Done(); pipe(c, s, &p.down) }()
			wg.Wait()
			c.Close()
			s.Close()
		}()
	}
}

func (p *proxy) reset() { p.up.Store(0); p.down.Store(0) }

// total is the bytes both ways, once every connection through the proxy has closed (the
// last packets of a disconnect count too).
func (p *proxy) total() int64 {
	deadline := time.Now().Add(5 * time.Second)
	for p.active.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // waiting for connections to wind down, bounded
	}
	return p.up.Load() + p.down.Load()
}

// bench is hosts, each behind a counting proxy, with known_hosts naming the proxies.
type bench struct {
	hosts   []*testbench.SSHHost
	proxies []*proxy
	known   []byte
	keyFile string
	khFile  string
	cache   string
}

func newBench(b *testing.B, n int, opts ...testbench.SSHOption) *bench {
	return newBenchT(b, n, opts...)
}

func newBenchT(b testing.TB, n int, opts ...testbench.SSHOption) *bench {
	hosts := testbench.SSHHosts(b, n, append([]testbench.SSHOption{testUser}, opts...)...)
	be := &bench{hosts: hosts, cache: b.TempDir()}
	for _, h := range hosts {
		p := newProxy(b, h.Addr)
		be.proxies = append(be.proxies, p)
		line := strings.Replace(string(h.KnownHosts), fmt.Sprintf("]:%d ", h.Port), fmt.Sprintf("]:%d ", p.Port()), 1)
		be.known = append(be.known, line...)
	}
	dir := b.TempDir()
	be.keyFile, be.khFile = filepath.Join(dir, "id"), filepath.Join(dir, "known_hosts")
	os.WriteFile(be.keyFile, hosts[0].ClientKey, 0o600)
	os.WriteFile(be.khFile, be.known, 0o600)
	return be
}

func (be *bench) target(b *testing.B, app string, idx ...int) *ssh.Target {
	return be.targetT(b, app, idx...)
}

func (be *bench) targetT(b testing.TB, app string, idx ...int) *ssh.Target {
	var hc []ssh.HostConfig
	for _, i := range idx {
		hc = append(hc, ssh.HostConfig{Addr: be.proxies[i].Addr(), User: be.hosts[i].User, Path: filepath.Join(be.hosts[i].Dir, app)})
	}
	t, err := ssh.New(app, "bench", hc, ssh.PrivateKey(be.hosts[0].ClientKey), ssh.KnownHosts(be.known), ssh.ManifestCache(be.cache))
	if err != nil {
		b.Fatal(err)
	}
	return t
}

// settle waits until every connection through the proxies has closed, so that the
// sessions' processor time has reached their sshd.
func (be *bench) settle() {
	for _, p := range be.proxies {
		p.total()
	}
}

func all(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// deployOne is what a CLI deploy to one host does: connect, hash the artifacts, prepare,
// switch.
func (be *bench) deployOne(b *testing.B, app string, host int, id, dir string) {
	t := be.target(b, app, host)
	defer t.Close()
	d, err := t.ArtifactDigest(dir)
	if err != nil {
		b.Fatal(err)
	}
	r := targets.Release{ID: id, App: app, Env: "bench", Digest: d, Artifacts: dir}
	ctx := context.Background()
	h := t.Hosts()[0]
	if err := h.Prepare(ctx, r); err != nil {
		b.Fatal(err)
	}
	if err := h.Activate(ctx, id); err != nil {
		b.Fatal(err)
	}
}

func (be *bench) rollout(b *testing.B, app, id, dir string, idx []int) {
	be.rolloutT(b, app, id, dir, idx)
}

func (be *bench) rolloutT(b testing.TB, app, id, dir string, idx []int) {
	t := be.targetT(b, app, idx...)
	defer t.Close()
	d, err := t.ArtifactDigest(dir)
	if err != nil {
		b.Fatal(err)
	}
	r := targets.Release{ID: id, App: app, Env: "bench", Digest: d, Artifacts: dir}
	if _, err := pipeline.Rollout(context.Background(), t, r, pipeline.WithOwner("bench", id)); err != nil {
		b.Fatal(err)
	}
}

func (be *bench) rsync(b testing.TB, host int, src, dest string) {
	e := fmt.Sprintf("ssh -p %d -i %s -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o BatchMode=yes", be.proxies[host].Port(), be.keyFile, be.khFile)
	out, err := exec.Command("rsync", "-a", "-e", e, src+"/", fmt.Sprintf("%s@127.0.0.1:%s/", be.hosts[host].User, dest)).CombinedOutput()
	if err != nil {
		b.Fatalf("rsync: %v: %s", err, out)
	}
}

// makeTree writes nFiles random files of fileSize in 20 directories.
func makeTree(b *testing.B) string { return makeTreeT(b) }

func makeTreeT(b testing.TB) string {
	dir := b.TempDir()
	buf := make([]byte, fileSize)
	for i := 0; i < nFiles; i++ {
		p := filepath.Join(dir, fmt.Sprintf("d%02d", i%20), fmt.Sprintf("f%04d.bin", i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		rand.Read(buf)
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	// Built a while ago, as artifacts are by the time they are deployed: no file is within
	// the racy window of a deploy's walk (modified so recently that its time is not
	// recorded).
	checkout(b, dir)
	return dir
}

// changeOne gives one file new content of the same size.
func changeOne(b *testing.B, dir string) { changeOneT(b, dir) }

func changeOneT(b testing.TB, dir string) {
	buf := make([]byte, fileSize)
	rand.Read(buf)
	if err := os.WriteFile(filepath.Join(dir, "d07", "f0007.bin"), buf, 0o644); err != nil {
		b.Fatal(err)
	}
}

// seq makes names unique across the runs the benchmark framework makes.
var seq atomic.Int64

func report(b *testing.B, wire int64) {
	b.ReportMetric(float64(wire)/float64(b.N), "wire-B/op")
}

// BenchmarkFirstDeploy: the full 50 MB to a fresh directory.
func BenchmarkFirstDeploy(b *testing.B) {
	be := newBench(b, 1)
	src := makeTree(b)
	p := be.proxies[0]
	b.Run("pushdeploy", func(b *testing.B) {
		var wire int64
		for i := 0; i < b.N; i++ {
			os.RemoveAll(be.cache) // nothing known about the host
			p.reset()
			be.deployOne(b, fmt.Sprintf("first%d", seq.Add(1)), 0, "r1", src)
			wire += p.total()
		}
		report(b, wire)
	})
	b.Run("rsync", func(b *testing.B) {
		var wire int64
		for i := 0; i < b.N; i++ {
			p.reset()
			be.rsync(b, 0, src, filepath.Join(be.hosts[0].Dir, fmt.Sprintf("rsync-first%d", seq.Add(1))))
			wire += p.total()
		}
		report(b, wire)
	})
}

// BenchmarkOneFileChanged: one 26 KB file of the 2,000 changes between deploys.
func BenchmarkOneFileChanged(b *testing.B) {
	be := newBench(b, 1)
	src := makeTree(b)
	p := be.proxies[0]
	be.deployOne(b, "app", 0, "r0", src)
	rsyncDest := filepath.Join(be.hosts[0].Dir, "rsync-app")
	be.rsync(b, 0, src, rsyncDest)
	id := 0
	// cold: this machine never saw the host (no hash cache, no manifest cache), as a CI
	// runner; checkout: and every file has a new modification time, as a fresh git checkout
	// (or a build) gives them: size-and-mtime trust has nothing to trust.
	for _, c := range []struct {
		name           string
		cold, checkout bool
	}{{"pushdeploy", false, false}, {"pushdeploy-cold-cache", true, false}, {"pushdeploy-cold-new-mtimes", true, true}} {
		b.Run(c.name, func(b *testing.B) {
			var wire int64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				changeOne(b, src)
				if c.cold {
					os.RemoveAll(be.cache) // this machine never saw the live manifest
				}
				if c.checkout {
					checkout(b, src)
				}
				id++
				p.reset()
				b.StartTimer()
				be.deployOne(b, "app", 0, fmt.Sprintf("r%d", id), src)
				wire += p.total()
				b.Logf("up %d down %d", p.up.Load(), p.down.Load())
			}
			report(b, wire)
		})
	}
	for _, c := range []struct {
		name     string
		checkout bool
	}{{"rsync", false}, {"rsync-new-mtimes", true}} {
		b.Run(c.name, func(b *testing.B) {
			var wire int64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				changeOne(b, src)
				if c.checkout {
					checkout(b, src)
				}
				p.reset()
				b.StartTimer()
				be.rsync(b, 0, src, rsyncDest)
				wire += p.total()
			}
			report(b, wire)
		})
	}
}

// checkout gives every file of dir a new modification time (a minute ago), as a fresh
// checkout or build on a CI runner does.
func checkout(b testing.TB, dir string) { checkoutAt(b, dir, time.Now().Add(-time.Minute)) }

// checkoutAt gives every file of dir the modification time t.
func checkoutAt(b testing.TB, dir string, t time.Time) {
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			err = os.Chtimes(p, t, t)
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFanOut20: a one-file change to 20 hosts through pipeline.Rollout, in one batch,
// against 20 single-host rollouts in a row, and one host alone.
func BenchmarkFanOut20(b *testing.B) {
	const n = 20
	be := newBench(b, n)
	src := makeTree(b)
	be.rollout(b, "app", "r0", src, all(n))
	id := 0
	next := func(b *testing.B) string {
		b.StopTimer()
		changeOne(b, src)
		id++
		b.StartTimer()
		return fmt.Sprintf("r%d", id)
	}
	// host-cpu-ms/op is what the sshd processes and their sessions used: with 20 hosts on
	// one machine, that work shares its cores, which separate hosts would not.
	hostCPU := func() time.Duration {
		var d time.Duration
		for _, h := range be.hosts {
			d += h.CPU()
		}
		return d
	}
	measure := func(b *testing.B, deploy func(id string)) {
		var cpu time.Duration
		for i := 0; i < b.N; i++ {
			id := next(b)
			c0 := hostCPU()
			deploy(id)
			b.StopTimer()
			be.settle()
			cpu += hostCPU() - c0
			b.StartTimer()
		}
		b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "host-cpu-ms/op")
	}
	b.Run("one-host", func(b *testing.B) {
		measure(b, func(id string) { be.rollout(b, "app", id, src, []int{0}) })
	})
	b.Run("parallel-20", func(b *testing.B) {
		measure(b, func(id string) { be.rollout(b, "app", id, src, all(n)) })
	})
	b.Run("sequential-20", func(b *testing.B) {
		measure(b, func(id string) {
			for h := 0; h < n; h++ {
				be.rollout(b, "app", id, src, []int{h})
			}
		})
	})
}

// BenchmarkRedeployLive5: deploying the release that is live on 5 hosts, from a new process
// (new connections, no cached manifest), is a no-op.
func BenchmarkRedeployLive5(b *testing.B) {
	const n = 5
	be := newBench(b, n)
	src := makeTree(b)
	be.rollout(b, "app", "r0", src, all(n))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		be.rollout(b, "app", fmt.Sprintf("again%d", i), src, all(n))
	}
}
