package testbench

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// pushAndPull pushes a random image to r and reads its digest back.
func pushAndPull(t *testing.T, r *Registry) {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(r.Repo("bench/check:v1"))
	if err != nil {
		t.Fatal(err)
	}
	opts := []remote.Option{remote.WithAuth(r.Authenticator()), remote.WithTransport(r.Transport()),
		remote.WithContext(context.Background())}
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatalf("push to %s: %v", r.Name, err)
	}
	desc, err := remote.Head(ref, opts...)
	if err != nil {
		t.Fatalf("head on %s: %v", r.Name, err)
	}
	want, _ := img.Digest()
	if desc.Digest != want {
		t.Fatalf("%s holds %s, pushed %s", r.Name, desc.Digest, want)
	}
}

func TestInProcessRegistry(t *testing.T) {
	pushAndPull(t, InProcessRegistry(t))
}

func TestDistributionRegistryPlainNoAuth(t *testing.T) {
	r := DistributionRegistry(t, RegistryNoAuth())
	if r.User != "" || r.TLS() {
		t.Fatalf("want plain HTTP without auth, got user %q tls %v", r.User, r.TLS())
	}
	pushAndPull(t, r)
}

func TestDistributionRegistryTLSAuth(t *testing.T) {
	r := DistributionRegistry(t, RegistryTLS())
	if r.User == "" || r.Password == "" || !r.TLS() || r.CertPool == nil {
		t.Fatalf("want TLS with auth, got %+v", r)
	}
	pushAndPull(t, r)

	ref, _ := name.ParseReference(r.Repo("bench/check:v1"))
	// Wrong password: 401.
	_, err := remote.Head(ref, remote.WithTransport(r.Transport()),
		remote.WithAuth(&authn.Basic{Username: r.User, Password: "wrong"}))
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: want 401, got %v", err)
	}
	// Without the CA: the certificate is not trusted.
	_, err = remote.Head(ref, remote.WithAuth(r.Authenticator()))
	var uerr x509.UnknownAuthorityError
	if !errors.As(err, &uerr) {
		t.Fatalf("a client without the test CA: want an unknown-authority error, got %v", err)
	}

	// Docker trust file.
	dir := t.TempDir()
	r.TrustForDocker(t, dir)
	got, err := os.ReadFile(filepath.Join(dir, r.Host, "ca.crt"))
	if err != nil || string(got) != string(r.CAPEM) {
		t.Fatalf("ca.crt for docker: %v", err)
	}
}

func TestDistributionRegistryStop(t *testing.T) {
	r, err := StartDistributionRegistry(t.TempDir(), RegistryNoAuth())
	if err != nil {
		if _, serr := os.Stat(DistributionBinary); serr != nil {
			Unavailable(t, "distribution registry: %v", serr)
		}
		t.Fatal(err)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(r.URL + "/v2/"); err == nil {
		t.Fatalf("registry at %s still answers after Stop", r.Host)
	}
}
