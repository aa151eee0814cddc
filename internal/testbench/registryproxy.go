package testbench

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// ProxyRequest is one request a RegistryProxy saw.
type ProxyRequest struct {
	Method, Path, Query string
	// Bytes is the size of the request body that went through.
	Bytes int64
	// Status is the answer's status code.
	Status int
}

// RegistryProxy is a recording reverse proxy on 127.0.0.1 (plain HTTP) in front of a
// registry: push to Host instead of the registry's own host to see every request.
type RegistryProxy struct {
	// Host is the proxy's HOST:PORT, the registry part of references that go through it.
	Host string

	mu   sync.Mutex
	log  []ProxyRequest
	fail func(r *http.Request) int
}

// NewRegistryProxy starts a recording proxy in front of reg and stops it when the test ends.
// The proxy keeps the client's Host and tells the registry the scheme is http, so the
// registry's upload Location headers point back through the proxy.
func NewRegistryProxy(t testing.TB, reg *Registry) *RegistryProxy {
	t.Helper()
	p := &RegistryProxy{}
	target, err := url.Parse(reg.URL)
	if err != nil {
		t.Fatalf("registry proxy: %v", err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.Out.Header.Set("X-Forwarded-Proto", "http")
		},
		Transport: reg.Transport(),
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := ProxyRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery}
		cb := &proxyCountingBody{r: r.Body}
		r.Body = cb
		p.mu.Lock()
		fail := p.fail
		p.mu.Unlock()
		status := 0
		if fail != nil {
			status = fail(r)
		}
		sw := &proxyStatusWriter{ResponseWriter: w, status: http.StatusOK}
		if status != 0 {
			_, _ = io.Copy(io.Discard, r.Body)
			http.Error(sw, `{"errors":[{"code":"UNAVAILABLE","message":"injected failure"}]}`, status)
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

// Repo returns the reference of a repository through the proxy: "HOST:PORT/name".
func (p *RegistryProxy) Repo(name string) string { return p.Host + "/" + name }

// Fail makes the proxy answer a request itself with the status f returns (0: forward it).
// This injects failures a real registry cannot be told to produce; nil stops injecting.
func (p *RegistryProxy) Fail(f func(r *http.Request) int) {
	p.mu.Lock()
	p.fail = f
	p.mu.Unlock()
}

// Take returns the requests seen since the last Take.
func (p *RegistryProxy) Take() []ProxyRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.log
	p.log = nil
	return l
}

// Uploads sums up a request log.
type Uploads struct {
	// Blobs are the digests of committed blob uploads, in order.
	Blobs []string
	// Manifests are the references (digest or tag) of successful manifest PUTs, in order.
	Manifests []string
	// BlobBytes is the request body bytes sent to blob upload endpoints.
	BlobBytes int64
	// Bytes is the request body bytes of every request.
	Bytes int64
	// Writes counts the requests other than GET and HEAD.
	Writes int
}

// SummarizeUploads sums up the requests of a RegistryProxy.
func SummarizeUploads(reqs []ProxyRequest) Uploads {
	var u Uploads
	for _, r := range reqs {
		u.Bytes += r.Bytes
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

type proxyCountingBody struct {
	r io.ReadCloser
	n int64
}

func (c *proxyCountingBody) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

func (c *proxyCountingBody) Close() error { return c.r.Close() }

type proxyStatusWriter struct {
	http.ResponseWriter
	status int
}

func (s *proxyStatusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}
