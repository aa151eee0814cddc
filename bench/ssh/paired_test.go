package sshbench

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// paired measures several ways of doing the same thing in turn within each iteration, so
// that a machine whose load changes (other builds on its two cores) weighs on each alike;
// each way's mean wall time and bytes on the wire are reported.
type paired struct {
	names []string
	wall  map[string]time.Duration
	wire  map[string]int64
}

func newPaired(names ...string) *paired {
	return &paired{names: names, wall: map[string]time.Duration{}, wire: map[string]int64{}}
}

// measure times run (everything it does, as one deploy or one rsync) and counts p's bytes.
func (pr *paired) measure(p *proxy, name string, run func()) {
	p.reset()
	t0 := time.Now()
	run()
	pr.wall[name] += time.Since(t0)
	pr.wire[name] += p.total()
}

func (pr *paired) report(b *testing.B) {
	for _, n := range pr.names {
		b.ReportMetric(pr.wall[n].Seconds()/float64(b.N), n+"-s")
		b.ReportMetric(float64(pr.wire[n])/float64(b.N), n+"-B")
	}
}

// BenchmarkOneFileChangedPaired: BenchmarkOneFileChanged's fresh-machine cases and rsync,
// in turn each iteration: a fresh machine (no hash cache, no manifest cache) deploying one
// changed file, rsync of the same change, then both again after every file got a new
// modification time (a fresh checkout or build). Both get the same new time, so that in the
// next iteration's first case both find the times they last recorded (else pushdeploy's
// would find every file changed since its last deploy, rsync's none).
func BenchmarkOneFileChangedPaired(b *testing.B) {
	be := newBench(b, 1)
	src := makeTree(b)
	p := be.proxies[0]
	be.deployOne(b, "app", 0, "r0", src)
	rsyncDest := filepath.Join(be.hosts[0].Dir, "rsync-app")
	be.rsync(b, 0, src, rsyncDest)
	pr := newPaired("fresh", "rsync", "fresh-new-mtimes", "rsync-new-mtimes")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, checkoutFirst := range []bool{false, true} {
			suffix := ""
			if checkoutFirst {
				suffix = "-new-mtimes"
			}
			at := time.Now().Add(-time.Minute)
			changeOne(b, src)
			if checkoutFirst {
				checkoutAt(b, src, at)
			}
			os.RemoveAll(be.cache)
			id := fmt.Sprintf("p%d%s", seq.Add(1), suffix)
			pr.measure(p, "fresh"+suffix, func() { be.deployOne(b, "app", 0, id, src) })
			changeOne(b, src)
			if checkoutFirst {
				checkoutAt(b, src, at)
			}
			pr.measure(p, "rsync"+suffix, func() { be.rsync(b, 0, src, rsyncDest) })
		}
	}
	pr.report(b)
}

// BenchmarkFirstDeploy100MbitPaired: BenchmarkFirstDeploy100Mbit's two, in turn each
// iteration.
func BenchmarkFirstDeploy100MbitPaired(b *testing.B) {
	be := newNetnsBench(b, 1, "100mbit")
	src := makeTree(b)
	p := be.proxies[0]
	pr := newPaired("pushdeploy", "rsync")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		os.RemoveAll(be.cache)
		app := fmt.Sprintf("first%d", seq.Add(1))
		pr.measure(p, "pushdeploy", func() { be.deployOne(b, app, 0, "r1", src) })
		dest := filepath.Join(be.hosts[0].Dir, fmt.Sprintf("rsync-first%d", seq.Add(1)))
		pr.measure(p, "rsync", func() { be.rsync(b, 0, src, dest) })
	}
	pr.report(b)
}
