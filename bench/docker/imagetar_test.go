package dockerbench

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline/publish"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/docker"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// Image without a registry: a one-layer change (a new 1 MiB top layer on a 30 MiB base and
// the hello binary) sent to a Docker host three ways, each timed from the image tarball on
// the deploying machine to the image in the host's engine, bytes counted at the TCP level:
//
//   - pushdeploy: the docker target's Prepare of a release with ImageArchive (the layers
//     the engine lacks, over the SSH connection; plus creating the container);
//   - `ssh host docker load < image.tar`, the whole tarball (what `docker save | ssh docker
//     load` sends);
//   - a registry: push the tarball (pipeline/publish, only missing blobs) to Debian's
//     distribution registry, then `ssh host docker pull` by digest (only missing layers).
const (
	baseSize = 30 << 20
	topSize  = 1 << 20
)

// tcpCounter is a TCP proxy on 127.0.0.1 that counts the bytes through it, both ways.
type tcpCounter struct {
	l      net.Listener
	to     string
	n      atomic.Int64
	active atomic.Int64
}

func newCounter(b testing.TB, to string) *tcpCounter {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	p := &tcpCounter{l: l, to: to}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			p.active.Add(1)
			done := make(chan struct{}, 2)
			cp := func(dst, src net.Conn) {
				io.Copy(countingWriter{dst, &p.n}, src)
				dst.(*net.TCPConn).CloseWrite()
				done <- struct{}{}
			}
			go cp(s, c)
			go cp(c, s)
			go func() { <-done; <-done; c.Close(); s.Close(); p.active.Add(-1) }()
		}
	}()
	b.Cleanup(func() { l.Close() })
	return p
}

// countingWriter counts as it writes, so that a kept-alive connection counts too.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

func (p *tcpCounter) addr() string { return p.l.Addr().String() }
func (p *tcpCounter) port() int    { return p.l.Addr().(*net.TCPAddr).Port }

// take returns the bytes counted since the last take.
func (p *tcpCounter) take() int64 { return p.n.Swap(0) }

func fileLayer(b testing.TB, path string, n int) v1.Layer {
	data := make([]byte, n)
	rand.Read(data)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: path, Mode: 0o644, Size: int64(n), Typeflag: tar.TypeReg})
	tw.Write(data)
	tw.Close()
	raw := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil })
	if err != nil {
		b.Fatal(err)
	}
	return l
}

type imageBench struct {
	b     *testing.B
	d     *testbench.Dockerd
	host  *testbench.SSHHost
	ssh   *tcpCounter
	known []byte
	key   string
	kh    string
	base  v1.Layer
	hello []v1.Layer
	cfg   *v1.ConfigFile
	dir   string
}

func newImageBench(b *testing.B) *imageBench {
	ib := &imageBench{b: b, d: testbench.SharedDockerd(b), host: testbench.SSHHosts(b, 1, noRehashWait)[0], dir: b.TempDir()}
	ib.ssh = newCounter(b, ib.host.Addr)
	ib.known = []byte(strings.Replace(string(ib.host.KnownHosts), fmt.Sprintf("]:%d ", ib.host.Port), fmt.Sprintf("]:%d ", ib.ssh.port()), 1))
	ib.key, ib.kh = filepath.Join(ib.dir, "key"), filepath.Join(ib.dir, "known_hosts")
	os.WriteFile(ib.key, ib.host.ClientKey, 0o600)
	os.WriteFile(ib.kh, ib.known, 0o600)
	ib.base = fileLayer(b, "base.bin", baseSize)
	p := filepath.Join(ib.dir, "hello.tar")
	testbench.WriteHelloTarball(b, p, testbench.HelloImage{Version: "v1", Addr: "127.0.0.1:1"})
	hello, err := tarball.ImageFromPath(p, nil)
	if err != nil {
		b.Fatal(err)
	}
	if ib.hello, err = hello.Layers(); err != nil {
		b.Fatal(err)
	}
	if ib.cfg, err = hello.ConfigFile(); err != nil {
		b.Fatal(err)
	}
	return ib
}

// image writes base + hello + a new top layer as a tarball; it returns the path, the image
// ID and the top layer's compressed size.
func (ib *imageBench) image(tag string) (path, id string, top int64, img v1.Image) {
	t := fileLayer(ib.b, "top.bin", topSize)
	img, err := mutate.AppendLayers(empty.Image, append(append([]v1.Layer{ib.base}, ib.hello...), t)...)
	if err != nil {
		ib.b.Fatal(err)
	}
	c, _ := img.ConfigFile()
	c = c.DeepCopy()
	c.Architecture, c.OS, c.Config = ib.cfg.Architecture, ib.cfg.OS, ib.cfg.Config
	if img, err = mutate.ConfigFile(img, c); err != nil {
		ib.b.Fatal(err)
	}
	path = filepath.Join(ib.dir, tag+".tar")
	ref, _ := name.NewTag("bench.local/img:" + tag)
	if err := tarball.WriteToFile(path, ref, img); err != nil {
		ib.b.Fatal(err)
	}
	if tag == "1" {
		fi, _ := os.Stat(path)
		ib.b.Logf("image tarball: %d bytes", fi.Size())
	}
	cn, _ := img.ConfigName()
	top, _ = t.Size()
	return path, cn.String(), top, img
}

// sshDocker runs a docker command on the host through the counting proxy, stdin from in.
func (ib *imageBench) sshDocker(in io.Reader, args string) {
	cmd := exec.Command("ssh", "-i", ib.key, "-o", "UserKnownHostsFile="+ib.kh, "-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes", "-p", fmt.Sprint(ib.ssh.port()), ib.host.User+"@127.0.0.1",
		"DOCKER_HOST="+sshconn.Quote("unix://"+ib.d.Socket)+" docker "+args)
	cmd.Stdin = in
	if out, err := cmd.CombinedOutput(); err != nil {
		ib.b.Fatalf("ssh docker %s: %v: %s", args, err, out)
	}
}

func (ib *imageBench) report(wire, missing int64) {
	ib.b.ReportMetric(float64(wire)/float64(ib.b.N), "wire-B/op")
	ib.b.ReportMetric(float64(missing)/float64(ib.b.N), "missing-B/op")
	ib.b.ReportMetric(float64(wire)/float64(missing), "wire/missing")
}

func BenchmarkImageOneLayerChange(b *testing.B) {
	b.Run("pushdeploy", func(b *testing.B) {
		ib := newImageBench(b)
		tg, err := docker.New("benchimg", "bench", []string{ib.ssh.addr()},
			docker.WithSSH(sshconn.PrivateKey(ib.host.ClientKey), sshconn.KnownHosts(ib.known)),
			docker.WithSocket(ib.d.Socket), docker.WithStateDir(ib.host.Dir), docker.WithNetwork("host"))
		if err != nil {
			b.Fatal(err)
		}
		defer tg.Close()
		h := tg.Hosts()[0]
		ctx := context.Background()
		prep := func(i int, path, id string) {
			r := targets.Release{ID: fmt.Sprintf("20261127T%06dZ", i), App: "benchimg", Env: "bench", Digest: id, Image: id, ImageArchive: path}
			if err := h.Prepare(ctx, r); err != nil {
				b.Fatal(err)
			}
		}
		path, id, _, _ := ib.image("base")
		prep(0, path, id)
		defer h.Discard(ctx, "20261127T000000Z")
		var wire, missing int64
		b.ResetTimer()
		for i := 1; i <= b.N; i++ {
			b.StopTimer()
			path, id, top, _ := ib.image(fmt.Sprint(i))
			ib.ssh.take()
			b.StartTimer()
			prep(i, path, id)
			b.StopTimer()
			wire += ib.ssh.take()
			missing += top
			if st := tg.LastSend(h.Name()); st.Sent != 1 {
				b.Fatalf("sent %d layers of %d, want 1", st.Sent, st.Layers)
			}
			h.Discard(ctx, fmt.Sprintf("20261127T%06dZ", i))
		}
		ib.report(wire, missing)
	})

	b.Run("ssh-docker-load", func(b *testing.B) {
		ib := newImageBench(b)
		load := func(path string) {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			ib.sshDocker(f, "load -q")
		}
		path, _, _, _ := ib.image("base")
		load(path)
		var wire, missing int64
		b.ResetTimer()
		for i := 1; i <= b.N; i++ {
			b.StopTimer()
			path, id, top, _ := ib.image(fmt.Sprint(i))
			ib.ssh.take()
			b.StartTimer()
			load(path)
			b.StopTimer()
			wire += ib.ssh.take()
			missing += top
			ib.sshDocker(nil, "rmi -f "+id)
		}
		ib.report(wire, missing)
	})

	b.Run("registry-push-pull", func(b *testing.B) {
		ib := newImageBench(b)
		reg := testbench.DistributionRegistry(b, testbench.RegistryNoAuth())
		rc := newCounter(b, strings.TrimPrefix(strings.TrimPrefix(reg.URL, "http://"), "https://"))
		repo := rc.addr() + "/benchimg"
		ctx := context.Background()
		push := func(path string) string {
			ref, err := publish.PublishPath(ctx, path, repo, nil)
			if err != nil {
				b.Fatal(err)
			}
			return ref
		}
		path, _, _, _ := ib.image("base")
		ib.sshDocker(nil, "pull -q "+push(path))
		var wire, missing int64
		b.ResetTimer()
		for i := 1; i <= b.N; i++ {
			b.StopTimer()
			path, id, top, _ := ib.image(fmt.Sprint(i))
			ib.ssh.take()
			rc.take()
			b.StartTimer()
			ref := push(path)
			ib.sshDocker(nil, "pull -q "+ref)
			b.StopTimer()
			wire += ib.ssh.take() + rc.take()
			missing += top
			ib.sshDocker(nil, "rmi -f "+id+" "+ref)
		}
		ib.report(wire, missing)
	})
}
