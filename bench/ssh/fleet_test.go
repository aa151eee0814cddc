package sshbench

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/ssh"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// xargsRsync is what a user would script for a fleet: `xargs -P n rsync`, one rsync per
// host, n at a time.
func (be *bench) xargsRsync(b testing.TB, n int, src, app string, idx []int) {
	var lines []string
	for _, i := range idx {
		lines = append(lines, fmt.Sprintf("%d %s@127.0.0.1:%s/", be.proxies[i].Port(), be.hosts[i].User, filepath.Join(be.hosts[i].Dir, app)))
	}
	script := fmt.Sprintf(`xargs -P %d -L 1 sh -c 'exec rsync -a -e "ssh -p $0 -i %s -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o BatchMode=yes" %s/ "$1"'`,
		n, be.keyFile, be.khFile, src)
	cmd := exec.Command("sh", "-c", script)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("xargs rsync: %v: %s", err, out)
	}
}

// BenchmarkFanOutRsync20: the baseline of BenchmarkFanOut20's parallel-20, `xargs -P 20
// rsync` of the same one-file change to the same 20 hosts, with the hosts' CPU.
func BenchmarkFanOutRsync20(b *testing.B) {
	const n = 20
	be := newBench(b, n)
	src := makeTree(b)
	be.rollout(b, "app", "r0", src, all(n))
	be.xargsRsync(b, n, src, "rsync-app", all(n))
	hostCPU := func() time.Duration {
		var d time.Duration
		for _, h := range be.hosts {
			d += h.CPU()
		}
		return d
	}
	id := 0
	for _, c := range []string{"pushdeploy-parallel-20", "xargs-P20-rsync"} {
		b.Run(c, func(b *testing.B) {
			var cpu, local time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				changeOne(b, src)
				id++
				be.settle()
				c0, l0 := hostCPU(), localCPU()
				b.StartTimer()
				if c == "xargs-P20-rsync" {
					be.xargsRsync(b, n, src, "rsync-app", all(n))
				} else {
					stopProfile := profile(b, c)
					be.rollout(b, "app", fmt.Sprintf("r%d", id), src, all(n))
					stopProfile()
				}
				b.StopTimer()
				local += localCPU() - l0
				be.settle()
				cpu += hostCPU() - c0
				b.StartTimer()
			}
			b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N)/n, "host-cpu-ms/host")
			b.ReportMetric(float64(local.Milliseconds())/float64(b.N), "local-cpu-ms/op")
		})
	}
}

// profile writes a CPU profile of what runs until the returned function is called, to
// $PUSHDEPLOY_BENCH_CPUPROFILE-<name> when that is set: the deploys alone, without the
// benchmark's setup.
func profile(b *testing.B, name string) func() {
	dir := os.Getenv("PUSHDEPLOY_BENCH_CPUPROFILE")
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(dir + "-" + name)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// localCPU is the processor time this process and its finished children (rsync, ssh) have
// used: the deploying side's work.
func localCPU() time.Duration {
	var self, kids syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}

// rateLimit shapes host h's veth both ways to rate (tc tbf): the host side of the pair
// (to the host) and eth0 in its namespace (from it).
func rateLimit(b testing.TB, h *testbench.SSHHost, rate string) {
	out, err := exec.Command("ip", "-n", h.Netns, "-o", "link", "show", "eth0").Output()
	if err != nil {
		b.Fatalf("reading %s's eth0: %v", h.Netns, err)
	}
	_, peer, ok := strings.Cut(strings.Fields(string(out))[1], "@if")
	if !ok {
		b.Fatalf("no veth peer in %q", out)
	}
	peer = strings.TrimSuffix(peer, ":")
	all, err := exec.Command("ip", "-o", "link").Output()
	if err != nil {
		b.Fatal(err)
	}
	veth := ""
	for _, l := range strings.Split(string(all), "\n") {
		if strings.HasPrefix(l, peer+": ") {
			veth, _, _ = strings.Cut(strings.Fields(l)[1], "@")
		}
	}
	if veth == "" {
		b.Fatalf("no link with index %s", peer)
	}
	tbf := []string{"qdisc", "replace", "dev", "", "root", "tbf", "rate", rate, "burst", "256kb", "latency", "50ms"}
	tbf[3] = veth
	if out, err := exec.Command("tc", tbf...).CombinedOutput(); err != nil {
		b.Fatalf("tc %v: %v: %s", tbf, err, out)
	}
	tbf[3] = "eth0"
	if out, err := exec.Command("ip", append([]string{"netns", "exec", h.Netns, "tc"}, tbf...)...).CombinedOutput(); err != nil {
		b.Fatalf("tc in %s: %v: %s", h.Netns, err, out)
	}
}

// newNetnsBench is hosts in network namespaces (sshd on 10.200.X.Y:22), each behind a
// counting proxy on 127.0.0.1, optionally shaped to rate.
func newNetnsBench(b *testing.B, n int, rate string, opts ...testbench.SSHOption) *bench {
	hosts := testbench.SSHHosts(b, n, append([]testbench.SSHOption{testUser, testbench.SSHNetns()}, opts...)...)
	be := &bench{hosts: hosts, cache: b.TempDir()}
	for _, h := range hosts {
		if rate != "" {
			rateLimit(b, h, rate)
		}
		p := newProxy(b, h.Addr)
		be.proxies = append(be.proxies, p)
		_, key, _ := strings.Cut(string(h.KnownHosts), " ") // the proxy's name, the host's key
		be.known = append(be.known, fmt.Sprintf("[127.0.0.1]:%d %s", p.Port(), key)...)
	}
	dir := b.TempDir()
	be.keyFile, be.khFile = filepath.Join(dir, "id"), filepath.Join(dir, "known_hosts")
	os.WriteFile(be.keyFile, hosts[0].ClientKey, 0o600)
	os.WriteFile(be.khFile, be.known, 0o600)
	return be
}

// BenchmarkFirstDeploy100Mbit: BenchmarkFirstDeploy over a link shaped to 100 Mbit/s each
// way (tc tbf on the veth pair of a namespace host).
func BenchmarkFirstDeploy100Mbit(b *testing.B) {
	be := newNetnsBench(b, 1, "100mbit")
	src := makeTree(b)
	p := be.proxies[0]
	b.Run("pushdeploy", func(b *testing.B) {
		var wire int64
		for i := 0; i < b.N; i++ {
			os.RemoveAll(be.cache)
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

// procStatus reads a field of /proc/self/status in kB.
func procStatus(field string) int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			f := strings.Fields(l)
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// openFDs counts this process's open descriptors (names only: no sorting, no stat, so that
// sampling every 5 ms costs the deploy little).
func openFDs() int {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	return len(names) - 1 // less d itself
}

// BenchmarkFleet200: a one-file change of a 1,000-file / 7 MB tree to 200 hosts (sshd in
// network namespaces, no proxy) through pipeline.Rollout in batches of 25, against one
// host alone; the deploying process's peak RSS (VmHWM, reset before each deploy) and the
// most file descriptors it had open at once (sampled every 5 ms), and the CPU the hosts' sshd
// and sessions used per host: 200 hosts share this machine's cores, which 200 machines
// would not. The peer, in the same run: `xargs -P 25 rsync` of the same change to the same
// hosts (and rsync to one host), with the CPU it used here and on the hosts.
func BenchmarkFleet200(b *testing.B) {
	n := 200
	if s := os.Getenv("PUSHDEPLOY_BENCH_FLEET"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	hosts := testbench.SSHHosts(b, n, testUser, testbench.SSHNetns())
	known := testbench.KnownHostsOf(hosts)
	keys := b.TempDir()
	keyFile, khFile := filepath.Join(keys, "id"), filepath.Join(keys, "known_hosts")
	os.WriteFile(keyFile, hosts[0].ClientKey, 0o600)
	os.WriteFile(khFile, known, 0o600)
	src := b.TempDir()
	buf := make([]byte, 7<<20/1000)
	for i := 0; i < 1000; i++ {
		p := filepath.Join(src, fmt.Sprintf("d%02d", i%10), fmt.Sprintf("f%04d.bin", i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		rand.Read(buf)
		os.WriteFile(p, buf, 0o644)
	}
	cache := b.TempDir()
	rollout := func(b *testing.B, id string, idx []int) {
		var hc []ssh.HostConfig
		for _, i := range idx {
			hc = append(hc, ssh.HostConfig{Addr: hosts[i].Addr, User: hosts[i].User, Path: filepath.Join(hosts[i].Dir, "app")})
		}
		t, err := ssh.New("app", "bench", hc, ssh.PrivateKey(hosts[0].ClientKey), ssh.KnownHosts(known), ssh.ManifestCache(cache))
		if err != nil {
			b.Fatal(err)
		}
		defer t.Close()
		d, err := t.ArtifactDigest(src)
		if err != nil {
			b.Fatal(err)
		}
		r := targets.Release{ID: id, App: "app", Env: "bench", Digest: d, Artifacts: src}
		if _, err := pipeline.Rollout(context.Background(), t, r, pipeline.WithOwner("bench", id), pipeline.WithBatchSize(25)); err != nil {
			b.Fatal(err)
		}
	}
	// What a user would script: one rsync per host, 25 at a time.
	rsync := func(b *testing.B, idx []int) {
		var lines []string
		for _, i := range idx {
			host, _, _ := strings.Cut(hosts[i].Addr, ":")
			lines = append(lines, fmt.Sprintf("%s@%s:%s/", hosts[i].User, host, filepath.Join(hosts[i].Dir, "rsync-app")))
		}
		script := fmt.Sprintf(`xargs -P 25 -L 1 rsync -a -e "ssh -i %s -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o BatchMode=yes" %s/`, keyFile, khFile, src)
		cmd := exec.Command("sh", "-c", script)
		cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("xargs rsync: %v: %s", err, out)
		}
	}
	connect := func(b *testing.B, idx []int) {
		sem := make(chan struct{}, 25)
		var wg sync.WaitGroup
		for _, i := range idx {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				c, err := sshconn.Dial(context.Background(), hosts[i].Addr, sshconn.User(hosts[i].User), sshconn.PrivateKey(hosts[i].ClientKey), sshconn.KnownHosts(known))
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				if _, err := c.Output(context.Background(), "true"); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	rollout(b, "r0", all)
	rsync(b, all)
	id := 0
	for _, c := range []struct {
		name    string
		idx     []int
		rsync   bool
		connect bool // only connect, 25 at a time, and run one command: what any SSH tool pays
	}{
		{"one-host", []int{0}, false, false},
		{fmt.Sprintf("%d-hosts-batches-of-25", n), all, false, false},
		{"rsync-one-host", []int{0}, true, false},
		{fmt.Sprintf("rsync-%d-hosts-xargs-P25", n), all, true, false},
		{fmt.Sprintf("connect-%d-hosts-25-at-a-time", n), all, false, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			var peakRSS, peakFDs int64
			var cpu, local time.Duration
			hostCPU := func() time.Duration {
				var d time.Duration
				for _, i := range c.idx {
					d += hosts[i].CPU()
				}
				return d
			}
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				p := filepath.Join(src, "d07", "f0007.bin")
				rand.Read(buf)
				os.WriteFile(p, buf, 0o644)
				id++
				os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) // resets VmHWM
				var fds atomic.Int64
				stop := make(chan struct{})
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					tk := time.NewTicker(5 * time.Millisecond)
					defer tk.Stop()
					for {
						if f := int64(openFDs()); f > fds.Load() {
							fds.Store(f)
						}
						select {
						case <-stop:
							return
						case <-tk.C:
						}
					}
				}()
				testbench.WaitSSHIdle(hosts, time.Minute)
				c0, l0 := hostCPU(), localCPU()
				b.StartTimer()
				switch {
				case c.connect:
					connect(b, c.idx)
				case c.rsync:
					rsync(b, c.idx)
				default:
					stopProfile := profile(b, c.name)
					rollout(b, fmt.Sprintf("r%d", id), c.idx)
					stopProfile()
				}
				b.StopTimer()
				local += localCPU() - l0
				if err := testbench.WaitSSHIdle(hosts, time.Minute); err != nil {
					b.Fatal(err)
				}
				cpu += hostCPU() - c0
				close(stop)
				wg.Wait()
				peakRSS = max(peakRSS, procStatus("VmHWM"))
				peakFDs = max(peakFDs, fds.Load())
				b.StartTimer()
			}
			if !c.rsync && !c.connect {
				b.ReportMetric(float64(peakRSS)/1024, "peak-RSS-MB")
				b.ReportMetric(float64(peakFDs), "peak-fds")
			}
			b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N)/float64(len(c.idx)), "host-cpu-ms/host")
			b.ReportMetric(float64(local.Milliseconds())/float64(b.N), "local-cpu-ms/op")
		})
	}
}
