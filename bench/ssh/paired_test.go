package sshbench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
)

// paired measures several ways of doing the same thing in turn within each iteration, so
// that a machine whose load changes (other builds on its two cores) weighs on each alike;
// each way's mean wall time and bytes on the wire are reported.
// With a host (withCPU), the processor time each used there and here is reported too.
type paired struct {
	names []string
	wall  map[string]time.Duration
	wire  map[string]int64
	host  *testbench.SSHHost
	hcpu  map[string]time.Duration
	lcpu  map[string]time.Duration
}

func newPaired(names ...string) *paired {
	return &paired{names: names, wall: map[string]time.Duration{}, wire: map[string]int64{},
		hcpu: map[string]time.Duration{}, lcpu: map[string]time.Duration{}}
}

// withCPU makes measure count the processor time of h's sshd and its sessions (host-cpu-s)
// and of this process and its children (local-cpu-s: the deploy, or rsync and ssh; both
// with the counting proxy's copying).
func (pr *paired) withCPU(h *testbench.SSHHost) *paired { pr.host = h; return pr }

// measure times run (everything it does, as one deploy or one rsync) and counts p's bytes.
func (pr *paired) measure(p *proxy, name string, run func()) {
	p.reset()
	var h0, l0 time.Duration
	if pr.host != nil {
		testbench.WaitSSHIdle([]*testbench.SSHHost{pr.host}, 10*time.Second)
		h0, l0 = pr.host.CPU(), localCPU()
	}
	t0 := time.Now()
	run()
	pr.wall[name] += time.Since(t0)
	pr.wire[name] += p.total()
	if pr.host != nil {
		// Outside the wall time: the sessions' processes have ended and were counted.
		testbench.WaitSSHIdle([]*testbench.SSHHost{pr.host}, 10*time.Second)
		pr.hcpu[name] += pr.host.CPU() - h0
		pr.lcpu[name] += localCPU() - l0
	}
}

func (pr *paired) report(b *testing.B) {
	for _, n := range pr.names {
		b.ReportMetric(pr.wall[n].Seconds()/float64(b.N), n+"-s")
		b.ReportMetric(float64(pr.wire[n])/float64(b.N), n+"-B")
		if pr.host != nil {
			b.ReportMetric(pr.hcpu[n].Seconds()/float64(b.N), n+"-host-cpu-s")
			b.ReportMetric(pr.lcpu[n].Seconds()/float64(b.N), n+"-local-cpu-s")
		}
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

// BenchmarkFirstDeploy100MbitPaired: BenchmarkFirstDeploy100Mbit's, in turn each
// iteration: pushdeploy (a tar stream), pushdeploy where the host has no GNU tar (SFTP),
// rsync.
func BenchmarkFirstDeploy100MbitPaired(b *testing.B) {
	noTar, path := tarSwitch(b)
	be := newNetnsBench(b, 1, "100mbit", path)
	firstDeploys(b, be, noTar, newPaired("pushdeploy", "pushdeploy-sftp", "rsync"))
}

// tarSwitch is a host PATH whose tar is the real one until noTar(true) makes it fail (as
// on a host without GNU tar): the target then sends over SFTP.
func tarSwitch(b *testing.B) (noTar func(bool), path testbench.SSHOption) {
	real, err := exec.LookPath("tar")
	if err != nil {
		b.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "pdbench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	off := filepath.Join(dir, "off")
	os.WriteFile(filepath.Join(dir, "tar"), []byte("#!/bin/sh\n[ ! -e "+off+" ] || exit 1\nexec "+real+" \"$@\"\n"), 0o755)
	return func(on bool) {
		if on {
			os.WriteFile(off, nil, 0o644)
		} else {
			os.Remove(off)
		}
	}, testbench.SSHSetEnv("PATH", dir+":/usr/local/bin:/usr/bin:/bin")
}

// firstDeploys measures pr's ways of a first deploy of the bench's tree to be's host. Each
// iteration starts with the next way (-benchtime a multiple of 3 gives each place alike):
// in runs with one order, the one first took 10-20 % longer on this machine.
func firstDeploys(b *testing.B, be *bench, noTar func(bool), pr *paired) {
	src := makeTree(b)
	p := be.proxies[0]
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range pr.names {
			name := pr.names[(i+j)%len(pr.names)]
			if name == "rsync" {
				dest := filepath.Join(be.hosts[0].Dir, fmt.Sprintf("rsync-first%d", seq.Add(1)))
				pr.measure(p, name, func() { be.rsync(b, 0, src, dest) })
				continue
			}
			noTar(name == "pushdeploy-sftp")
			os.RemoveAll(be.cache)
			app := fmt.Sprintf("first%d", seq.Add(1))
			pr.measure(p, name, func() { be.deployOne(b, app, 0, "r1", src) })
		}
	}
	noTar(false)
	pr.report(b)
}

// BenchmarkFirstDeployPaired: BenchmarkFirstDeploy100MbitPaired's three with no shaping
// (loopback, where the processor time decides, the host's and the deploying side's sharing
// the machine's cores), with the processor time each used.
func BenchmarkFirstDeployPaired(b *testing.B) {
	noTar, path := tarSwitch(b)
	be := newBench(b, 1, path)
	firstDeploys(b, be, noTar, newPaired("pushdeploy", "pushdeploy-sftp", "rsync").withCPU(be.hosts[0]))
}
