package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/image"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/targets"
)

// randomLayer is a layer of one file of n random bytes at path.
func randomLayer(t testing.TB, path string, n int) v1.Layer {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: path, Mode: 0o644, Size: int64(n), Typeflag: tar.TypeReg})
	tw.Write(data)
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// stackedHello is the bench's hello image for version with layers below it (base) and one
// above it (top): base, hello, top.
func (b *bench) stackedHello(version string, base, top v1.Layer) v1.Image {
	b.t.Helper()
	p := filepath.Join(b.t.TempDir(), "hello.tar")
	testbench.WriteHelloTarball(b.t, p, testbench.HelloImage{Version: version, Addr: b.addr(), HealthCheck: true})
	hello, err := tarball.ImageFromPath(p, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	ls, err := hello.Layers()
	if err != nil {
		b.t.Fatal(err)
	}
	cf, err := hello.ConfigFile()
	if err != nil {
		b.t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, append(append([]v1.Layer{base}, ls...), top)...)
	if err != nil {
		b.t.Fatal(err)
	}
	c, _ := img.ConfigFile()
	c = c.DeepCopy()
	c.Architecture, c.OS, c.Config, c.Created = cf.Architecture, cf.OS, cf.Config, cf.Created
	img, err = mutate.ConfigFile(img, c)
	if err != nil {
		b.t.Fatal(err)
	}
	return img
}

// tarRelease writes img as a tarball and returns the release that sends it.
func (b *bench) tarRelease(id, version string, img v1.Image) targets.Release {
	b.t.Helper()
	p := filepath.Join(b.t.TempDir(), version+".tar")
	tag, _ := name.NewTag("pushdeploy.test/" + b.app + ":" + version)
	if err := tarball.WriteToFile(p, tag, img); err != nil {
		b.t.Fatal(err)
	}
	cn, err := img.ConfigName()
	if err != nil {
		b.t.Fatal(err)
	}
	return targets.Release{ID: id, App: b.app, Env: "test", Version: version, Digest: cn.String(), Image: cn.String(), ImageArchive: p, Deployer: "tester"}
}

func TestImageTarballSendsOnlyMissingLayers(t *testing.T) {
	b := newBench(t)
	ctx := context.Background()
	tg := b.target()
	h := tg.Hosts()[0]
	// A base no other test's image has, so that the first deploy sends every layer.
	base := randomLayer(t, "base.bin", 1<<20)

	r1 := b.tarRelease("20261127T000001Z", "v1", b.stackedHello("v1", base, randomLayer(t, "version", 64<<10)))
	if err := deploy(ctx, h, r1); err != nil {
		t.Fatal(err)
	}
	b.expect(b.app+"-test-"+r1.ID, "200 ok v1")
	if st := tg.LastSend(h.Name()); st.Layers != 3 || st.Sent != 3 {
		t.Errorf("first deploy sent %d of %d layers, want all 3", st.Sent, st.Layers)
	}

	// One layer changed: only it travels; the engine loads the image from that alone.
	top := randomLayer(t, "version", 64<<10)
	r2 := b.tarRelease("20261127T000002Z", "v2", b.stackedHello("v2", base, top))
	if err := deploy(ctx, h, r2); err != nil {
		t.Fatal(err)
	}
	b.expect(b.app+"-test-"+r2.ID, "200 ok v2")
	size, _ := top.Size()
	if st := tg.LastSend(h.Name()); st.Layers != 3 || st.Sent != 1 || st.LayerBytes != size {
		t.Errorf("one-layer change sent %d of %d layers, %d bytes; want 1 layer of %d bytes", st.Sent, st.Layers, st.LayerBytes, size)
	}
	// What landed is the tarball's image: its ID is the config digest.
	in, err := b.cli.ImageInspect(ctx, r2.Image)
	if err != nil || in.ID != r2.Image {
		t.Fatalf("engine has %q (%v), want image %s", in.ID, err, r2.Image)
	}
	st, err := h.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Live == nil || st.Live.Digest != r2.Digest || st.Live.Image != r2.Image {
		t.Errorf("live = %+v, want image %s", st.Live, r2.Image)
	}

	// Rollback needs nothing sent: the kept container has its image.
	if err := h.Activate(ctx, r1.ID); err != nil {
		t.Fatal(err)
	}
	// As the pipeline does after a switch: the container's own health check first.
	if err := h.(targets.SelfChecker).CheckHealth(ctx, r1.ID); err != nil {
		t.Fatal(err)
	}
	b.expect(b.app+"-test-"+r1.ID, "200 ok v1")
}

func TestImageFromOCILayout(t *testing.T) {
	b := newBench(t)
	ctx := context.Background()
	h := b.target().Hosts()[0]
	img := b.stackedHello("v1", randomLayer(t, "base.bin", 4096), randomLayer(t, "version", 512))
	dir := filepath.Join(t.TempDir(), "oci")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	cn, _ := img.ConfigName()
	r := targets.Release{ID: "20261127T000001Z", App: b.app, Env: "test", Version: "v1", Digest: cn.String(), Image: cn.String(), ImageArchive: dir}
	if err := deploy(ctx, h, r); err != nil {
		t.Fatal(err)
	}
	b.expect(b.app+"-test-"+r.ID, "200 ok v1")
}

func TestImageTarballRefusals(t *testing.T) {
	b := newBench(t)
	ctx := context.Background()
	h := b.target().Hosts()[0]
	r := b.tarRelease("20261127T000001Z", "v1", b.stackedHello("v1", randomLayer(t, "base.bin", 4096), randomLayer(t, "version", 512)))

	// The tarball holds another image than the release names.
	other := r
	other.Image, other.Digest = "sha256:"+strings.Repeat("ab", 32), "sha256:"+strings.Repeat("ab", 32)
	err := h.Prepare(ctx, other)
	if err == nil || !strings.Contains(err.Error(), "not the release's") {
		t.Errorf("prepare with a tarball of another image = %v, want it refused", err)
	}
	// No tarball, and the host lacks the image.
	other.ImageArchive = ""
	err = h.Prepare(ctx, other)
	if err == nil || !strings.Contains(err.Error(), "no image tarball") {
		t.Errorf("prepare of an image the host lacks, without a tarball = %v, want it refused", err)
	}
	// A tarball with a registry reference.
	other = r
	other.Image = b.reg.Repo(b.app) + "@" + r.Digest
	if err := h.Prepare(ctx, other); err == nil || !strings.Contains(err.Error(), "image ID") {
		t.Errorf("prepare of a tarball named by a registry reference = %v, want it refused", err)
	}
	if got := b.running(); len(got) != 0 {
		t.Errorf("running after refusals: %q", got)
	}
}

// TestLoadNeedsTheLayersTheEngineLacks: the engine's loader reads an omitted layer's file
// only when it lacks the layer's chain, so an archive without a layer the engine lacks fails
// (what sendImage's second, whole send is for), and the same archive loads once the engine
// has that layer.
func TestLoadNeedsTheLayersTheEngineLacks(t *testing.T) {
	b := newBench(t)
	ctx := context.Background()
	tg := b.target()
	h := tg.hosts[0]
	cli, err := h.engine(ctx)
	if err != nil {
		t.Fatal(err)
	}
	base := randomLayer(t, "base.bin", 4096)
	r := b.tarRelease("20261127T000001Z", "v1", b.stackedHello("v1", base, randomLayer(t, "version", 512)))
	a, err := OpenImageArchive(r.ImageArchive)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	t.Cleanup(func() { b.cli.ImageRemove(context.Background(), a.ID, image.RemoveOptions{Force: true}) })
	onlyTop := []bool{false, true, true}
	if _, err := h.load(ctx, cli, a, onlyTop); err == nil {
		t.Fatal("an archive without a layer the engine lacks loaded")
	}
	// The base alone, as an image of its own: then its chain is there.
	baseOnly := b.tarRelease("20261127T000002Z", "base", mustImage(t, base))
	ba, err := OpenImageArchive(baseOnly.ImageArchive)
	if err != nil {
		t.Fatal(err)
	}
	defer ba.Close()
	t.Cleanup(func() { b.cli.ImageRemove(context.Background(), ba.ID, image.RemoveOptions{Force: true}) })
	if _, err := h.load(ctx, cli, ba, []bool{true}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.load(ctx, cli, a, onlyTop); err != nil {
		t.Fatalf("with the base's chain on the engine, the archive without it: %v", err)
	}
	if in, err := b.cli.ImageInspect(ctx, a.ID); err != nil || in.ID != a.ID {
		t.Errorf("engine has %q (%v), want %s", in.ID, err, a.ID)
	}
}

func mustImage(t *testing.T, layers ...v1.Layer) v1.Image {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := img.ConfigFile()
	c = c.DeepCopy()
	c.OS, c.Architecture = "linux", runtime.GOARCH
	img, err = mutate.ConfigFile(img, c)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
