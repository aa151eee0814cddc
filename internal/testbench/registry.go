package testbench

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"
	"golang.org/x/crypto/bcrypt"
)

// DistributionBinary is where Debian's docker-registry package (distribution 2.8) installs
// the registry.
const DistributionBinary = "/usr/bin/docker-registry"

// Registry is a running OCI registry a test can push to and pull from.
type Registry struct {
	// Name says which kind of registry this is ("in-process" or "distribution"), for logs.
	Name string
	// URL is the registry's base URL, "http://127.0.0.1:PORT" or "https://127.0.0.1:PORT".
	URL string
	// Host is HOST:PORT, the registry part of an image reference ("127.0.0.1:PORT/repo").
	Host string
	// User and Password are the htpasswd credentials; both empty when the registry has no
	// auth.
	User, Password string
	// CAPEM is the PEM certificate of the CA that signed the registry's TLS certificate;
	// nil for plain HTTP. Docker wants it as /etc/docker/certs.d/HOST:PORT/ca.crt
	// (TrustForDocker writes it there).
	CAPEM []byte
	// CertPool holds CAPEM; nil for plain HTTP.
	CertPool *x509.CertPool
	// PID is the registry process's id (0 in-process).
	PID int
	// StartupTime is how long the registry took to answer /v2/.
	StartupTime time.Duration

	stop func()
}

// TLS reports whether the registry serves HTTPS.
func (r *Registry) TLS() bool { return r.CAPEM != nil }

// Repo returns the reference of a repository on this registry: "HOST:PORT/name".
func (r *Registry) Repo(name string) string { return r.Host + "/" + name }

// Authenticator returns the registry's credentials for go-containerregistry: Basic auth, or
// anonymous when the registry has no auth.
func (r *Registry) Authenticator() authn.Authenticator {
	if r.User == "" {
		return authn.Anonymous
	}
	return &authn.Basic{Username: r.User, Password: r.Password}
}

// Transport returns an HTTP transport that trusts the registry's CA (a clone of
// http.DefaultTransport for plain HTTP).
func (r *Registry) Transport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if r.CertPool != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: r.CertPool, MinVersion: tls.VersionTLS12}
	}
	return tr
}

// DockerConfigJSON returns a Docker config.json that holds the registry's credentials
// (`{"auths":{"HOST:PORT":{"auth":"base64(user:password)"}}}`), or `{}` without auth.
func (r *Registry) DockerConfigJSON() []byte {
	if r.User == "" {
		return []byte("{}")
	}
	auth := base64.StdEncoding.EncodeToString([]byte(r.User + ":" + r.Password))
	return []byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, r.Host, auth))
}

// TrustForDocker makes a Docker daemon trust the registry's TLS certificate by writing
// CAPEM to certsDir/HOST:PORT/ca.crt (dockerd reads it on every pull; no restart needed).
// certsDir "" means /etc/docker/certs.d, the directory dockerd reads. The directory is
// removed when the test ends. Plain-HTTP registries on loopback need nothing: dockerd treats
// 127.0.0.0/8 registries as insecure.
func (r *Registry) TrustForDocker(t testing.TB, certsDir string) {
	t.Helper()
	if !r.TLS() {
		return
	}
	if certsDir == "" {
		certsDir = "/etc/docker/certs.d"
	}
	dir := filepath.Join(certsDir, r.Host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("writing the registry CA for docker: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), r.CAPEM, 0o644); err != nil {
		t.Fatalf("writing the registry CA for docker: %v", err)
	}
}

// InProcessRegistry starts go-containerregistry's in-memory registry (pkg/registry) on
// 127.0.0.1, plain HTTP and no auth, and stops it when the test ends.
func InProcessRegistry(t testing.TB) *Registry {
	t.Helper()
	start := time.Now()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	r := &Registry{Name: "in-process", URL: srv.URL, Host: host, StartupTime: time.Since(start)}
	t.Logf("registry %s at %s ready in %s", r.Name, r.Host, r.StartupTime.Round(time.Millisecond))
	return r
}

// RegistryOption configures DistributionRegistry.
type RegistryOption func(*registryOptions) error

type registryOptions struct {
	tls        bool
	auth       bool
	user       string
	password   string
	listenHost string
}

// RegistryTLS serves HTTPS with a certificate for the listen address (and "localhost")
// signed by a fresh CA. Default: plain HTTP.
func RegistryTLS() RegistryOption {
	return func(o *registryOptions) error { o.tls = true; return nil }
}

// RegistryNoAuth turns htpasswd auth off. Default: auth on.
func RegistryNoAuth() RegistryOption {
	return func(o *registryOptions) error { o.auth = false; return nil }
}

// RegistryCredentials sets the htpasswd user and password. Default: user "pushdeploy" and a
// random password.
func RegistryCredentials(user, password string) RegistryOption {
	return func(o *registryOptions) error {
		if user == "" || strings.Contains(user, ":") || password == "" {
			return errors.New("registry credentials: user must be non-empty without ':' and password non-empty")
		}
		o.user, o.password = user, password
		return nil
	}
}

// RegistryListenHost sets the IP address the registry listens on, e.g. a bridge address in
// a network namespace the test created. Default: 127.0.0.1.
func RegistryListenHost(ip string) RegistryOption {
	return func(o *registryOptions) error {
		if net.ParseIP(ip) == nil {
			return fmt.Errorf("registry listen host %q: not an IP address", ip)
		}
		o.listenHost = ip
		return nil
	}
}

func makeRegistryOptions(opts []RegistryOption) (*registryOptions, error) {
	o := &registryOptions{auth: true, user: "pushdeploy", listenHost: "127.0.0.1"}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	if o.auth && o.password == "" {
		o.password = registryRandomHex(12)
	}
	if !o.auth {
		o.user, o.password = "", ""
	}
	return o, nil
}

// DistributionRegistry starts Debian's docker-registry (distribution 2.8) as a process with
// its own configuration and filesystem storage in a temporary directory, on a free port, with
// htpasswd auth (bcrypt) unless RegistryNoAuth, and HTTPS when RegistryTLS. It returns once
// GET /v2/ answers (401 with auth, 200 without), and stops the process when the test ends.
// A missing binary makes the test Unavailable.
func DistributionRegistry(t testing.TB, opts ...RegistryOption) *Registry {
	t.Helper()
	if _, err := os.Stat(DistributionBinary); err != nil {
		Unavailable(t, "distribution registry: %v (apt-get install docker-registry)", err)
	}
	r, err := StartDistributionRegistry(t.TempDir(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop() })
	t.Logf("registry %s at %s (tls=%v auth=%v) ready in %s", r.Name, r.Host, r.TLS(), r.User != "",
		r.StartupTime.Round(time.Millisecond))
	return r
}

// StartDistributionRegistry is DistributionRegistry for a TestMain or a benchmark setup: it
// keeps its files in dir (which must exist) and the caller stops it with Stop.
func StartDistributionRegistry(dir string, opts ...RegistryOption) (*Registry, error) {
	o, err := makeRegistryOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("starting distribution registry: %w", err)
	}
	r := &Registry{Name: "distribution", User: o.user, Password: o.password}
	var certFile, keyFile, htpasswdFile string
	if o.tls {
		caPEM, certPEM, keyPEM, err := registryCertChain(o.listenHost)
		if err != nil {
			return nil, fmt.Errorf("starting distribution registry: generating a TLS certificate: %w", err)
		}
		certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
			return nil, fmt.Errorf("starting distribution registry: %w", err)
		}
		if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
			return nil, fmt.Errorf("starting distribution registry: %w", err)
		}
		r.CAPEM = caPEM
		r.CertPool = x509.NewCertPool()
		r.CertPool.AppendCertsFromPEM(caPEM)
	}
	if o.auth {
		// MinCost: distribution checks the bcrypt hash on every request; the default cost
		// makes each request ~50 ms slower for no benefit in a test.
		hash, err := bcrypt.GenerateFromPassword([]byte(o.password), bcrypt.MinCost)
		if err != nil {
			return nil, fmt.Errorf("starting distribution registry: hashing the password: %w", err)
		}
		htpasswdFile = filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswdFile, []byte(o.user+":"+string(hash)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("starting distribution registry: %w", err)
		}
	}

	// A free port can be taken between probing and the registry's bind: retry then.
	for attempt := 1; ; attempt++ {
		port, err := registryFreePort(o.listenHost)
		if err != nil {
			return nil, fmt.Errorf("starting distribution registry: finding a free port: %w", err)
		}
		r.Host = net.JoinHostPort(o.listenHost, strconv.Itoa(port))
		r.URL = "http://" + r.Host
		if o.tls {
			r.URL = "https://" + r.Host
		}
		cfg := distributionConfig(dir, r.Host, certFile, keyFile, htpasswdFile)
		cfgFile := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
			return nil, fmt.Errorf("starting distribution registry: %w", err)
		}
		err = startDistribution(r, cfgFile, filepath.Join(dir, "registry.log"), o.auth)
		if err == nil {
			return r, nil
		}
		if errors.Is(err, errRegistryAddrInUse) && attempt < 5 {
			continue
		}
		return nil, fmt.Errorf("starting distribution registry on %s: %w", r.Host, err)
	}
}

// Stop stops a registry started by StartDistributionRegistry (a no-op for the others).
func (r *Registry) Stop() error {
	if r.stop != nil {
		r.stop()
	}
	return nil
}

var errRegistryAddrInUse = errors.New("address already in use")

func startDistribution(r *Registry, cfgFile, logFile string, auth bool) error {
	start := time.Now()
	logf, err := os.Create(logFile)
	if err != nil {
		return err
	}
	cmd := exec.Command(DistributionBinary, "serve", cfgFile)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("running %s: %w", DistributionBinary, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); logf.Close(); close(exited) }()
	var stopOnce sync.Once
	stop := func() {
		stopOnce.Do(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
	}

	want := http.StatusOK
	if auth {
		want = http.StatusUnauthorized
	}
	client := &http.Client{Transport: r.Transport(), Timeout: 2 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+"/v2/", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				r.stop = stop
				r.PID = cmd.Process.Pid
				r.StartupTime = time.Since(start)
				return nil
			}
			last = fmt.Sprintf("GET /v2/ answered %d, want %d", resp.StatusCode, want)
		} else {
			last = err.Error()
		}
		select {
		case <-exited:
			out, _ := os.ReadFile(logFile)
			if bytes.Contains(out, []byte("address already in use")) {
				return errRegistryAddrInUse
			}
			return fmt.Errorf("registry exited (%v): %s", waitErr, registryTail(out, 2000))
		case <-ctx.Done():
			stop()
			out, _ := os.ReadFile(logFile)
			return fmt.Errorf("not ready after 30s (last: %s): %s", last, registryTail(out, 2000))
		case <-tick.C:
		}
	}
}

func distributionConfig(dir, addr, certFile, keyFile, htpasswdFile string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
  redirect:
    disable: true
http:
  addr: %q
  secret: %q
`, filepath.Join(dir, "data"), addr, registryRandomHex(16))
	if certFile != "" {
		fmt.Fprintf(&b, "  tls:\n    certificate: %q\n    key: %q\n", certFile, keyFile)
	}
	if htpasswdFile != "" {
		fmt.Fprintf(&b, "auth:\n  htpasswd:\n    realm: pushdeploy-test\n    path: %q\n", htpasswdFile)
	}
	return b.String()
}

// registryCertChain makes a CA and a server certificate it signs, for ip and "localhost".
func registryCertChain(ip string) (caPEM, certPEM, keyPEM []byte, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pushdeploy test registry CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: ip},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP(ip)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	return caPEM, certPEM, keyPEM, nil
}

func registryFreePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func registryRandomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func registryTail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
