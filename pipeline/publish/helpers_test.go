package publish

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
)

// fastRetry keeps retry tests quick; the schedule itself is go-containerregistry's.
var fastRetry = WithRetryBackoff(remote.Backoff{Duration: 5 * time.Millisecond, Factor: 2, Steps: 4})

// bench is a registry under test with the options that reach it.
type bench struct {
	name string
	reg  *testbench.Registry
	opts []Option // credentials and CA
}

// registries starts both kinds the issue asks for: go-containerregistry's in-process
// registry, and distribution 2.8 with htpasswd auth and TLS.
func registries(t *testing.T) []bench {
	inproc := testbench.InProcessRegistry(t)
	dist := testbench.DistributionRegistry(t, testbench.RegistryTLS())
	return []bench{
		{name: "in-process", reg: inproc},
		{name: "distribution", reg: dist, opts: []Option{
			WithBasicAuth(dist.User, dist.Password), WithRootCAs(dist.CertPool)}},
	}
}

func forEachRegistry(t *testing.T, f func(t *testing.T, b bench)) {
	for _, b := range registries(t) {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

func with(opts []Option, more ...Option) []Option {
	return append(append([]Option(nil), opts...), more...)
}

// image builds an OCI image of n random layers of size bytes each, with labels.
func image(t testing.TB, n int, size int64, labels map[string]string) (v1.Image, []v1.Layer) {
	t.Helper()
	var layers []v1.Layer
	for i := 0; i < n; i++ {
		l, err := random.Layer(size, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	return imageOf(t, layers, labels), layers
}

func imageOf(t testing.TB, layers []v1.Layer, labels map[string]string) v1.Image {
	t.Helper()
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.Labels = labels
	cf.Created = v1.Time{Time: time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func digestOf(t testing.TB, a Artifact) string {
	t.Helper()
	d, err := a.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// headDigest reads where ref points, through the registry's own options.
func headDigest(t *testing.T, ref string, opts []Option) string {
	t.Helper()
	info, err := Inspect(context.Background(), ref, opts...)
	if err != nil {
		t.Fatalf("inspecting %s: %v", ref, err)
	}
	return info.Digest
}

func mustNotContain(t *testing.T, s, secret, what string) {
	t.Helper()
	if secret != "" && strings.Contains(s, secret) {
		t.Fatalf("%s appears in %q", what, s)
	}
}
