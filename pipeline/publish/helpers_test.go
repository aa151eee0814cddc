package publish

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
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

// request is one request a recording proxy saw.
type request struct {
	Method, Path, Query string
	Bytes               int64 // request body bytes
	Status              int
}

// proxy is a recording reverse proxy on 127.0.0.1, plain HTTP, in front of a registry.
// fail, when set, answers a request itself instead of forwarding it: it returns the status
// to answer, or 0 to forward. That is a fake registry failure (no real registry can be told
// to fail on cue); everything else reaches the real registry.
type proxy struct {
	Host string // HOST:PORT to push to

	mu   sync.Mutex
	log  []request
	fail func(r *http.Request) int
}

func newProxy(t *testing.T, reg *testbench.Registry) *proxy {
	p := &proxy{}
	target, err := url.Parse(reg.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// Keep the proxy's Host and scheme so that the registry's Location headers point
			// back through the proxy.
			pr.Out.Host = pr.In.Host
			pr.Out.Header.Set("X-Forwarded-Proto", "http")
		},
		Transport: reg.Transport(),
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery}
		cb := &countingBody{r: r.Body}
		r.Body = cb
		p.mu.Lock()
		fail := p.fail
		p.mu.Unlock()
		status := 0
		if fail != nil {
			status = fail(r)
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		if status != 0 {
			io.Copy(io.Discard, r.Body)
			http.Error(sw, `{"errors":[{"code":"UNAVAILABLE","message":"fake failure"}]}`, status)
		} else {
			rp.ServeHTTP(sw, r)
		}
		rec.Bytes, rec.Status = cb.n, sw.status
		p.mu.Lock()
		p.log = append(p.log, rec)
		p.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	p.Host = strings.TrimPrefix(srv.URL, "http://")
	return p
}

// take returns the requests seen since the last take.
func (p *proxy) take() []request {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.log
	p.log = nil
	return l
}

type countingBody struct {
	r io.ReadCloser
	n int64
}

func (c *countingBody) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}
func (c *countingBody) Close() error { return c.r.Close() }

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) { s.status = code; s.ResponseWriter.WriteHeader(code) }

// uploads sums up a request log: the digests of committed blob uploads, the manifest PUTs
// (by path), the blob body bytes sent.
type uploads struct {
	Blobs     []string
	Manifests []string
	BlobBytes int64
	Writes    int // POST, PATCH, PUT, DELETE requests
}

func summarize(reqs []request) uploads {
	var u uploads
	for _, r := range reqs {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			u.Writes++
		}
		switch {
		case strings.Contains(r.Path, "/blobs/uploads/"):
			u.BlobBytes += r.Bytes
			if r.Method == http.MethodPut && r.Status < 300 {
				q, _ := url.ParseQuery(r.Query)
				u.Blobs = append(u.Blobs, q.Get("digest"))
			}
		case strings.Contains(r.Path, "/manifests/") && r.Method == http.MethodPut && r.Status < 300:
			u.Manifests = append(u.Manifests, r.Path[strings.LastIndex(r.Path, "/")+1:])
		}
	}
	return u
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
