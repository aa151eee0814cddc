package publish

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
)

const commit = "0123456789abcdef0123456789abcdef01234567"

func TestPublishMultiTag(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, b bench) {
		ctx := context.Background()
		p := testbench.NewRegistryProxy(t, b.reg)
		img, layers := image(t, 3, 1024, map[string]string{LabelRevision: commit, LabelVersion: "v1.2.3"})
		want := digestOf(t, img)
		tags := Tags(SourceMeta{Commit: commit, Branch: "feature/login", Tag: "v1.2.3"}, true)

		ref, err := Publish(ctx, img, p.Host+"/app", tags, b.opts...)
		if err != nil {
			t.Fatal(err)
		}
		if ref != p.Host+"/app@"+want {
			t.Fatalf("Publish returned %q, want %q", ref, p.Host+"/app@"+want)
		}
		u := testbench.SummarizeUploads(p.Take())
		// Every blob once (layers + config), then the manifest once per tag.
		if len(u.Blobs) != len(layers)+1 {
			t.Errorf("blob uploads %v, want %d (layers + config, once each)", u.Blobs, len(layers)+1)
		}
		wantManifests := tags
		if !slices.Equal(u.Manifests, wantManifests) {
			t.Errorf("manifest PUTs %v, want %v", u.Manifests, wantManifests)
		}
		for _, tag := range tags {
			if got := headDigest(t, p.Host+"/app:"+tag, b.opts); got != want {
				t.Errorf("tag %q points at %s, want %s", tag, got, want)
			}
		}
		info, err := Inspect(ctx, ref, b.opts...)
		if err != nil {
			t.Fatal(err)
		}
		if info.Revision != commit || info.Version != "v1.2.3" || info.Digest != want || info.Ref != ref || info.Created.IsZero() {
			t.Errorf("Inspect = %+v", info)
		}
		p.Take()

		// The same image again: nothing is written.
		if _, err := Publish(ctx, img, p.Host+"/app", tags, b.opts...); err != nil {
			t.Fatal(err)
		}
		if u := testbench.SummarizeUploads(p.Take()); u.Writes != 0 {
			t.Errorf("re-publishing the same image wrote %d times: %+v", u.Writes, u)
		}
	})
}

func TestPublishUntagged(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, b bench) {
		p := testbench.NewRegistryProxy(t, b.reg)
		img, _ := image(t, 1, 256, nil)
		want := digestOf(t, img)
		ref, err := Publish(context.Background(), img, p.Host+"/app", nil, b.opts...)
		if err != nil {
			t.Fatal(err)
		}
		if u := testbench.SummarizeUploads(p.Take()); !slices.Equal(u.Manifests, []string{want}) {
			t.Errorf("manifest PUTs %v, want one by digest", u.Manifests)
		}
		if got := headDigest(t, ref, b.opts); got != want {
			t.Errorf("%s resolves to %s", ref, got)
		}
	})
}

func TestRepublishOneChangedLayer(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, b bench) {
		ctx := context.Background()
		p := testbench.NewRegistryProxy(t, b.reg)
		img1, layers := image(t, 10, 4096, nil)
		if _, err := Publish(ctx, img1, p.Host+"/app", []string{"main"}, b.opts...); err != nil {
			t.Fatal(err)
		}
		p.Take()

		_, fresh := image(t, 1, 4096, nil)
		layers2 := slices.Clone(layers)
		layers2[4] = fresh[0]
		img2 := imageOf(t, layers2, nil)
		ref, err := Publish(ctx, img2, p.Host+"/app", []string{"main", "abcdef1"}, b.opts...)
		if err != nil {
			t.Fatal(err)
		}
		want := digestOf(t, img2)
		if !strings.HasSuffix(ref, "@"+want) {
			t.Fatalf("Publish returned %q, want digest %s", ref, want)
		}
		u := testbench.SummarizeUploads(p.Take())
		changedDigest, _ := fresh[0].Digest()
		cfgDigest, _ := img2.ConfigName()
		got := slices.Clone(u.Blobs)
		sort.Strings(got)
		wantBlobs := []string{changedDigest.String(), cfgDigest.String()}
		sort.Strings(wantBlobs)
		// The config necessarily changes with a layer (it lists the layers' diff IDs).
		if !slices.Equal(got, wantBlobs) {
			t.Errorf("blob uploads %v, want only the changed layer and the new config %v", got, wantBlobs)
		}
		size, _ := fresh[0].Size()
		cfgRaw, _ := img2.RawConfigFile()
		if u.BlobBytes != size+int64(len(cfgRaw)) {
			t.Errorf("blob bytes sent %d, want %d (changed layer %d + config %d)", u.BlobBytes, size+int64(len(cfgRaw)), size, len(cfgRaw))
		}
		if wantM := []string{"main", "abcdef1"}; !slices.Equal(u.Manifests, wantM) {
			t.Errorf("manifest PUTs %v, want %v", u.Manifests, wantM)
		}
	})
}

func TestWrongPassword(t *testing.T) {
	reg := testbench.DistributionRegistry(t, testbench.RegistryTLS())
	img, _ := image(t, 1, 256, nil)
	const wrong = "not-the-password-4f1c"
	_, err := Publish(context.Background(), img, reg.Repo("team/app"), []string{"main"},
		WithBasicAuth(reg.User, wrong), WithRootCAs(reg.CertPool))
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("want ErrUnauthorized, got %v", err)
	}
	msg := err.Error()
	t.Logf("wrong password: %v", err)
	for _, want := range []string{reg.Host, `"team/app"`, "401"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %s", msg, want)
		}
	}
	mustNotContain(t, msg, wrong, "the password")
	mustNotContain(t, msg, reg.Password, "the registry's password")

	// Anonymous against an authenticated registry: the same clear error.
	_, err = Inspect(context.Background(), reg.Repo("team/app:main"), WithRootCAs(reg.CertPool))
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), reg.Host) {
		t.Fatalf("anonymous: want ErrUnauthorized naming %s, got %v", reg.Host, err)
	}
}

func TestUnknownCA(t *testing.T) {
	reg := testbench.DistributionRegistry(t, testbench.RegistryTLS())
	img, _ := image(t, 1, 256, nil)
	_, err := Publish(context.Background(), img, reg.Repo("team/app"), []string{"main"},
		WithBasicAuth(reg.User, reg.Password))
	if !errors.Is(err, ErrUntrusted) {
		t.Fatalf("want ErrUntrusted, got %v", err)
	}
	t.Logf("unknown CA: %v", err)
	if !strings.Contains(err.Error(), reg.Host) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("error %q does not name the registry and the certificate", err)
	}
	mustNotContain(t, err.Error(), reg.Password, "the password")

	// The CA as PEM (what a secret carries) fixes it.
	if _, err := Publish(context.Background(), img, reg.Repo("team/app"), []string{"main"},
		WithBasicAuth(reg.User, reg.Password), WithCAPEM(reg.CAPEM)); err != nil {
		t.Fatalf("with the CA: %v", err)
	}
}

func TestImmutableTagConflict(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, b bench) {
		ctx := context.Background()
		p := testbench.NewRegistryProxy(t, b.reg)
		repo := p.Host + "/app"
		img1, _ := image(t, 2, 512, nil)
		img2, _ := image(t, 2, 512, nil)
		d1, d2 := digestOf(t, img1), digestOf(t, img2)
		tags := Tags(SourceMeta{Commit: commit, Branch: "main", Tag: "v2.0.0"}, true)
		if _, err := Publish(ctx, img1, repo, tags, b.opts...); err != nil {
			t.Fatal(err)
		}
		p.Take()

		// Another image under the same SHA tag: refused, and nothing written.
		_, err := Publish(ctx, img2, repo, tags, b.opts...)
		if !errors.Is(err, ErrImmutableTag) {
			t.Fatalf("want ErrImmutableTag, got %v", err)
		}
		t.Logf("immutable: %v", err)
		for _, tag := range []string{commit, commit[:7], "v2.0.0"} {
			if !strings.Contains(err.Error(), `"`+tag+`"`) {
				t.Errorf("error %q does not name tag %q", err, tag)
			}
		}
		if u := testbench.SummarizeUploads(p.Take()); u.Writes != 0 {
			t.Errorf("a refused publish wrote %d times: %+v", u.Writes, u)
		}
		for _, tag := range tags {
			if got := headDigest(t, repo+":"+tag, b.opts); got != d1 {
				t.Errorf("after the refusal %q points at %s, want %s", tag, got, d1)
			}
		}

		// Branch tags and latest move.
		if _, err := Publish(ctx, img2, repo, []string{"main", "latest"}, b.opts...); err != nil {
			t.Fatal(err)
		}
		if got := headDigest(t, repo+":main", b.opts); got != d2 {
			t.Errorf("main points at %s, want %s", got, d2)
		}
		// Forced, the SHA tag moves too.
		if _, err := Publish(ctx, img2, repo, []string{commit}, with(b.opts, WithForce(true))...); err != nil {
			t.Fatal(err)
		}
		if got := headDigest(t, repo+":"+commit, b.opts); got != d2 {
			t.Errorf("forced: %q points at %s, want %s", commit, got, d2)
		}
	})
}

func TestPromoteAcrossRegistries(t *testing.T) {
	ctx := context.Background()
	rs := registries(t)
	staging, prod := rs[0], rs[1] // in-process -> distribution (auth + TLS)
	img, _ := image(t, 3, 2048, map[string]string{LabelRevision: commit})
	src, err := Publish(ctx, img, staging.reg.Repo("staging/app"), []string{"main"}, staging.opts...)
	if err != nil {
		t.Fatal(err)
	}
	p := testbench.NewRegistryProxy(t, prod.reg)
	dst, err := Promote(ctx, src, p.Host+"/prod/app", []string{commit, "v1.0.0"},
		with(prod.opts, WithSourceOptions(staging.opts...))...)
	if err != nil {
		t.Fatal(err)
	}
	want := digestOf(t, img)
	if dst != p.Host+"/prod/app@"+want {
		t.Fatalf("Promote returned %q, want the same digest %s", dst, want)
	}
	info, err := Inspect(ctx, p.Host+"/prod/app:v1.0.0", prod.opts...)
	if err != nil || info.Digest != want || info.Revision != commit {
		t.Fatalf("Inspect after promote = %+v, %v", info, err)
	}
	if u := testbench.SummarizeUploads(p.Take()); len(u.Blobs) != 4 {
		t.Errorf("promote uploaded blobs %v, want 3 layers + config", u.Blobs)
	}

	// And back, with the destination's credentials as the source's (Docker config form).
	back, err := Promote(ctx, prod.reg.Repo("prod/app@"+want), staging.reg.Repo("again/app"), []string{"main"},
		WithSourceOptions(WithDockerConfig(prod.reg.DockerConfigJSON()), WithRootCAs(prod.reg.CertPool)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(back, "@"+want) {
		t.Fatalf("Promote back returned %q, want digest %s", back, want)
	}

	// Within one registry the blobs are mounted, not sent again.
	p.Take()
	same, err := Promote(ctx, p.Host+"/prod/app@"+want, p.Host+"/prod/other", []string{"main"},
		with(prod.opts, WithSourceOptions(prod.opts...))...)
	if err != nil || !strings.HasSuffix(same, "@"+want) {
		t.Fatalf("same-registry promote = %q, %v", same, err)
	}
	if u := testbench.SummarizeUploads(p.Take()); u.BlobBytes != 0 || len(u.Manifests) != 1 {
		t.Errorf("same-registry promote sent %d blob bytes and manifests %v, want 0 bytes (mounts) and 1 manifest", u.BlobBytes, u.Manifests)
	}

	// Promotion needs a digest.
	_, err = Promote(ctx, staging.reg.Repo("staging/app:main"), p.Host+"/prod/app", nil, prod.opts...)
	if !errors.Is(err, ErrInvalidReference) || !strings.Contains(err.Error(), "staging/app:main") {
		t.Fatalf("promoting a tag: want ErrInvalidReference naming it, got %v", err)
	}
	// Wrong source credentials: named as the source registry.
	_, err = Promote(ctx, prod.reg.Repo("prod/app@"+want), staging.reg.Repo("x/app"), nil,
		WithSourceOptions(WithBasicAuth(prod.reg.User, "wrong-pass-93"), WithRootCAs(prod.reg.CertPool)))
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), prod.reg.Host) {
		t.Fatalf("bad source credentials: want ErrUnauthorized naming %s, got %v", prod.reg.Host, err)
	}
	mustNotContain(t, err.Error(), "wrong-pass-93", "the password")
}

func TestMalformedReference(t *testing.T) {
	ctx := context.Background()
	reg := testbench.InProcessRegistry(t)
	img, _ := image(t, 1, 128, nil)
	cases := []struct {
		name string
		call func() error
		want string
	}{
		{"repository with spaces", func() error {
			_, err := Publish(ctx, img, reg.Host+"/Bad Repo", nil)
			return err
		}, "Bad Repo"},
		{"repository with a tag", func() error {
			_, err := Publish(ctx, img, reg.Host+"/app:v1", nil)
			return err
		}, "app:v1"},
		{"bad tag", func() error {
			_, err := Publish(ctx, img, reg.Host+"/app", []string{"main", "-bad tag!"})
			return err
		}, "-bad tag!"},
		{"inspect", func() error {
			_, err := Inspect(ctx, "::not a ref::")
			return err
		}, "::not a ref::"},
		{"promote source", func() error {
			_, err := Promote(ctx, "nope@sha256:123", reg.Host+"/app", nil)
			return err
		}, "nope@sha256:123"},
		{"promote destination", func() error {
			_, err := Promote(ctx, reg.Host+"/a@sha256:"+strings.Repeat("a", 64), "UPPER/Case", nil)
			return err
		}, "UPPER/Case"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			if !errors.Is(err, ErrInvalidReference) {
				t.Fatalf("want ErrInvalidReference, got %v", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not name %q", err, c.want)
			}
		})
	}
}

func TestRetryOn503(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, b bench) {
		ctx := context.Background()
		p := testbench.NewRegistryProxy(t, b.reg)
		// Fake failures (injected by the proxy: no real registry fails on cue): the first two manifest PUTs and the first two upload starts answer
		// 503, as an overloaded registry or its load balancer would, and the first two reads
		// of the tag answer 429, as a rate limit would.
		var manifestPuts, uploadStarts, tagHeads atomic.Int32
		p.Fail(func(r *http.Request) int {
			switch {
			case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/"):
				if manifestPuts.Add(1) <= 2 {
					return http.StatusServiceUnavailable
				}
			case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/"):
				if uploadStarts.Add(1) <= 2 {
					return http.StatusServiceUnavailable
				}
			case r.Method == http.MethodHead && strings.HasSuffix(r.URL.Path, "/manifests/main"):
				if tagHeads.Add(1) <= 2 {
					return http.StatusTooManyRequests
				}
			}
			return 0
		})
		img, _ := image(t, 2, 512, nil)
		ref, err := Publish(ctx, img, p.Host+"/app", []string{"main"}, with(b.opts, fastRetry)...)
		if err != nil {
			t.Fatal(err)
		}
		if got := headDigest(t, ref, b.opts); got != digestOf(t, img) {
			t.Fatalf("after retries the registry holds %s", got)
		}
		var n503, n429 int
		for _, r := range p.Take() {
			switch r.Status {
			case http.StatusServiceUnavailable:
				n503++
			case http.StatusTooManyRequests:
				n429++
			}
		}
		if n503 != 4 || n429 != 2 || manifestPuts.Load() < 3 || uploadStarts.Load() < 3 || tagHeads.Load() < 3 {
			t.Fatalf("want 4 fake 503s and 2 fake 429s then success, saw %d and %d (manifest PUTs %d, upload starts %d, tag HEADs %d)",
				n503, n429, manifestPuts.Load(), uploadStarts.Load(), tagHeads.Load())
		}

		// A registry that keeps failing: the error says so after the retries.
		p.Fail(func(r *http.Request) int {
			if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
				return http.StatusServiceUnavailable
			}
			return 0
		})
		img2, _ := image(t, 1, 512, nil)
		_, err = Publish(ctx, img2, p.Host+"/app", []string{"other"}, with(b.opts, fastRetry)...)
		if err == nil || !strings.Contains(err.Error(), "503") && !strings.Contains(err.Error(), "UNAVAILABLE") {
			t.Fatalf("want a 503 error after retries, got %v", err)
		}
	})
}

func TestDockerConfigCredentials(t *testing.T) {
	reg := testbench.DistributionRegistry(t, testbench.RegistryTLS())
	img, _ := image(t, 1, 256, nil)
	ref, err := Publish(context.Background(), img, reg.Repo("team/app"), []string{"main"},
		WithDockerConfig(reg.DockerConfigJSON()), WithRootCAs(reg.CertPool))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(ref, "@"+digestOf(t, img)) {
		t.Fatalf("got %q", ref)
	}
	// A malformed config: a clear error that does not echo the content.
	secretish := `{"auths": {"x": {"auth": "c2VjcmV0LXRva2Vu"}}` // truncated JSON
	_, err = Publish(context.Background(), img, reg.Repo("team/app"), nil, WithDockerConfig([]byte(secretish)))
	if err == nil || !strings.Contains(err.Error(), "docker config") {
		t.Fatalf("want a docker config error, got %v", err)
	}
	mustNotContain(t, err.Error(), "c2VjcmV0LXRva2Vu", "the config content")
	// Both kinds of credentials: rejected.
	_, err = Publish(context.Background(), img, reg.Repo("team/app"), nil,
		WithDockerConfig(reg.DockerConfigJSON()), WithBasicAuth("u", "p"))
	if err == nil || !strings.Contains(err.Error(), "not both") {
		t.Fatalf("want a combination error, got %v", err)
	}
}
