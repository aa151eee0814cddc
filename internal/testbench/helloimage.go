package testbench

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// HelloImage describes an image of the example service examples/hello: its static binary at
// /hello on an empty base, the way its Dockerfile builds it, made without a Docker build.
type HelloImage struct {
	// Version is what /health answers ("ok <Version>"), set as $HELLO_VERSION.
	Version string
	// Addr is the address the service listens on ($HELLO_ADDR), e.g. "127.0.0.1:18080".
	// Containers run with host networking, so each test picks its own port.
	Addr string
	// HealthCheck adds a HEALTHCHECK that runs `/hello -check http://<Addr>/health`.
	HealthCheck bool
	// FailHealth makes /health answer 503 ($HELLO_FAIL_HEALTH=1).
	FailHealth bool
	// CheckEnvAddr makes the HEALTHCHECK read the address from $HELLO_ADDR when it runs, so
	// that containers given their own HELLO_ADDR (several test hosts on one engine) check
	// their own port. It puts busybox in the image as /bin/sh.
	CheckEnvAddr bool
	// ExitAtOnce makes the service exit with status 1 as it starts (it cannot listen on
	// the address it is given).
	ExitAtOnce bool
}

// Busybox is the static busybox (Debian's busybox-static) that CheckEnvAddr images carry.
const Busybox = "/bin/busybox"

// HealthInterval is the HEALTHCHECK interval of HelloImage images; with 2 retries, a
// failing image is unhealthy after about three intervals.
const HealthInterval = 300 * time.Millisecond

var helloBuild struct {
	once sync.Once
	path string
	err  error
}

// HelloBinary builds examples/hello (CGO_ENABLED=0, static) and returns the binary's path.
// The binary is cached in the user's cache directory, keyed by the sources and the Go
// version, so later test runs reuse it.
func HelloBinary(t testing.TB) string {
	t.Helper()
	helloBuild.once.Do(func() { helloBuild.path, helloBuild.err = buildHello() })
	if helloBuild.err != nil {
		t.Fatal(helloBuild.err)
	}
	return helloBuild.path
}

func buildHello() (string, error) {
	_, file, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(file), "..", "..", "examples", "hello")
	files, err := filepath.Glob(filepath.Join(src, "*.go"))
	if err != nil || len(files) == 0 {
		return "", fmt.Errorf("building examples/hello: no sources in %s", src)
	}
	h := sha256.New()
	fmt.Fprintln(h, runtime.Version(), runtime.GOARCH)
	for _, f := range append(files, filepath.Join(src, "go.mod")) {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("building examples/hello: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(b))
		h.Write(b)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	out := filepath.Join(cache, "pushdeploy", fmt.Sprintf("hello-%x", h.Sum(nil)[:8]))
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", fmt.Errorf("building examples/hello: %w", err)
	}
	tmp := fmt.Sprintf("%s.%d", out, os.Getpid())
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", tmp, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("building examples/hello: %w: %s", err, b)
	}
	// Concurrent test binaries may race here: the rename is atomic and either copy is good.
	if err := os.Rename(tmp, out); err != nil {
		return "", fmt.Errorf("building examples/hello: %w", err)
	}
	return out, nil
}

// PushHello builds the image spec describes and pushes it to repo on reg. It returns the
// digest-pinned reference ("127.0.0.1:PORT/repo@sha256:...") and the digest.
func PushHello(t testing.TB, reg *Registry, repo string, spec HelloImage) (ref, digest string) {
	t.Helper()
	img, err := helloImage(HelloBinary(t), spec)
	if err != nil {
		t.Fatalf("building hello image: %v", err)
	}
	tag, err := name.NewTag(reg.Repo(repo)+":"+spec.Version, name.Insecure)
	if err != nil {
		t.Fatalf("hello image reference: %v", err)
	}
	if err := remote.Write(tag, img, remote.WithAuth(reg.Authenticator()), remote.WithTransport(reg.Transport())); err != nil {
		t.Fatalf("pushing %s: %v", tag, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return reg.Repo(repo) + "@" + d.String(), d.String()
}

func helloImage(binary string, spec HelloImage) (v1.Image, error) {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o755, Size: int64(len(bin)), Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	if spec.CheckEnvAddr {
		bb, err := os.ReadFile(Busybox)
		if err != nil {
			return nil, fmt.Errorf("a shell for the health check: %w (install busybox-static)", err)
		}
		for _, h := range []*tar.Header{
			{Name: "bin/", Mode: 0o755, Typeflag: tar.TypeDir},
			{Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb)), Typeflag: tar.TypeReg},
			{Name: "bin/sh", Linkname: "busybox", Mode: 0o777, Typeflag: tar.TypeSymlink},
		} {
			if err := tw.WriteHeader(h); err != nil {
				return nil, err
			}
			if h.Typeflag == tar.TypeReg {
				if _, err := tw.Write(bb); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerBytes)), nil })
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	addr := spec.Addr
	if spec.ExitAtOnce {
		addr = "127.0.0.1:notaport"
	}
	cfg := v1.Config{
		Entrypoint: []string{"/hello"},
		Env:        []string{"HELLO_VERSION=" + spec.Version, "HELLO_ADDR=" + addr},
		Labels:     map[string]string{"org.opencontainers.image.title": "hello", "org.opencontainers.image.version": spec.Version},
	}
	if spec.FailHealth {
		cfg.Env = append(cfg.Env, "HELLO_FAIL_HEALTH=1")
	}
	if spec.HealthCheck {
		cfg.Healthcheck = &v1.HealthConfig{
			Test:     []string{"CMD", "/hello", "-check", "http://" + spec.Addr + "/health"},
			Interval: HealthInterval,
			Timeout:  2 * time.Second,
			Retries:  2,
		}
		if spec.CheckEnvAddr {
			cfg.Healthcheck.Test = []string{"CMD-SHELL", `exec /hello -check "http://$HELLO_ADDR/health"`}
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Config = runtime.GOARCH, "linux", cfg
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	return mutate.ConfigFile(img, cf)
}
