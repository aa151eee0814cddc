// Package publish pushes images to OCI registries with go-containerregistry: once, pinned by
// digest, under several tags without re-sending blobs, with immutable SHA and version tags;
// it promotes an image by digest from one repository or registry to another without
// rebuilding, and inspects what a reference points at. It needs no container engine.
package publish

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Errors a caller can test for with errors.Is.
var (
	// ErrInvalidReference: a repository, tag or reference does not parse.
	ErrInvalidReference = errors.New("invalid reference")
	// ErrUnauthorized: the registry answered 401 or 403.
	ErrUnauthorized = errors.New("registry denied access")
	// ErrUntrusted: the registry's TLS certificate is not trusted.
	ErrUntrusted = errors.New("registry certificate not trusted")
	// ErrNotFound: the reference does not exist in the registry.
	ErrNotFound = errors.New("not found")
	// ErrImmutableTag: a SHA or version tag already points at another digest.
	ErrImmutableTag = errors.New("immutable tag already points at another digest")
)

// Publish pushes art to repo ("registry/path", no tag) and points every tag at it, then
// returns the digest-pinned reference "repo@sha256:...". Only the blobs the repository lacks
// go up, once; each tag costs one manifest PUT (none when it already points at art; with no
// tag, the manifest is PUT by digest).
// Immutable tags (see Immutable) that point at another digest make Publish fail with
// ErrImmutableTag before anything is sent, unless WithForce. Options: WithBasicAuth,
// WithBearerToken, WithDockerConfig, WithRootCAs, WithCAPEM, WithTransport, WithForce,
// WithJobs, WithRetryBackoff, WithUserAgent.
func Publish(ctx context.Context, art Artifact, repo string, tags []string, opts ...Option) (string, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return "", fmt.Errorf("publishing to %q: %w", repo, err)
	}
	if o.sourceIsUsed {
		return "", fmt.Errorf("publishing to %q: WithSourceOptions is only for Promote", repo)
	}
	r, err := parseRepo(repo)
	if err != nil {
		return "", fmt.Errorf("publishing: %w", err)
	}
	return publish(ctx, art, r, tags, o)
}

// PublishPath opens the image at path (see Open: OCI layout directory, OCI tarball or
// docker-archive) and publishes it like Publish.
func PublishPath(ctx context.Context, path, repo string, tags []string, opts ...Option) (string, error) {
	art, _, closeFn, err := Open(path)
	if err != nil {
		return "", fmt.Errorf("publishing to %q: %w", repo, err)
	}
	defer closeFn()
	return Publish(ctx, art, repo, tags, opts...)
}

func publish(ctx context.Context, art Artifact, repo name.Repository, tags []string, o *options) (string, error) {
	if art == nil {
		return "", fmt.Errorf("publishing to %q: no image", repo)
	}
	tagRefs, err := parseTags(repo, tags)
	if err != nil {
		return "", fmt.Errorf("publishing to %q: %w", repo, err)
	}
	digest, err := art.Digest()
	if err != nil {
		return "", fmt.Errorf("publishing to %q: computing the image digest: %w", repo, err)
	}
	ropts := append(o.remoteOptions(), remote.WithContext(ctx))
	puller, err := remote.NewPuller(ropts...)
	if err != nil {
		return "", fmt.Errorf("publishing to %q: %w", repo, err)
	}
	pusher, err := remote.NewPusher(ropts...)
	if err != nil {
		return "", fmt.Errorf("publishing to %q: %w", repo, err)
	}

	// Where does each tag point now? This is also the first request, so bad credentials or
	// an untrusted certificate fail here, before anything is sent.
	type head struct {
		desc *v1.Descriptor
		err  error
	}
	heads := make([]head, len(tagRefs))
	var wg sync.WaitGroup
	for i, t := range tagRefs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			desc, err := puller.Head(ctx, t)
			heads[i] = head{desc, err}
		}()
	}
	wg.Wait()
	var move []name.Tag
	var conflicts []string
	for i, t := range tagRefs {
		desc, err := heads[i].desc, heads[i].err
		switch {
		case err == nil && desc.Digest == digest:
			continue // already there
		case err == nil && Immutable(t.TagStr()) && !o.force:
			conflicts = append(conflicts, fmt.Sprintf("%q points at %s", t.TagStr(), desc.Digest))
			continue
		case err != nil && !isNotFound(err):
			return "", describe(err, "reading tag "+quote(t.TagStr()), repo)
		}
		move = append(move, t)
	}
	if len(conflicts) > 0 {
		return "", fmt.Errorf("publishing %s to %q: %w: %s (use force to move them)",
			digest, repo, ErrImmutableTag, strings.Join(conflicts, ", "))
	}

	// Blobs (each HEADed first; only missing ones go up) and the manifest, under the first
	// tag to move, or by digest when no tag moves (then nothing is sent if it is there).
	pinned := repo.Digest(digest.String())
	var first name.Reference = pinned
	if len(move) > 0 {
		first = move[0]
		move = move[1:]
	}
	if err := pusher.Push(ctx, first, art); err != nil {
		return "", describe(err, "pushing "+digest.String()+" as "+quote(first.Identifier()), repo)
	}
	// The other tags: the same manifest, PUT once per tag, no blob checks.
	for _, t := range move {
		if err := pusher.Put(ctx, t, art); err != nil {
			return "", describe(err, "tagging "+digest.String()+" as "+quote(t.TagStr()), repo)
		}
	}
	return pinned.String(), nil
}

// Promote copies the image (or index) at srcDigestRef ("repo@sha256:...", pinned by digest)
// to dstRepo, on the same or another registry, without rebuilding and without a container
// engine, tags it there like Publish, and returns "dstRepo@sha256:..." (the same digest).
// Blobs the destination already has are not copied; on the same registry they are mounted.
// The destination is configured by opts, the source by WithSourceOptions.
func Promote(ctx context.Context, srcDigestRef, dstRepo string, tags []string, opts ...Option) (string, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return "", fmt.Errorf("promoting %q to %q: %w", srcDigestRef, dstRepo, err)
	}
	so, err := makeOptions(o.sourceOpts)
	if err != nil {
		return "", fmt.Errorf("promoting %q to %q: source registry: %w", srcDigestRef, dstRepo, err)
	}
	src, err := name.NewDigest(srcDigestRef)
	if err != nil {
		if _, terr := name.ParseReference(srcDigestRef); terr == nil {
			return "", fmt.Errorf("promoting %q: %w: the source must be pinned by digest (repo@sha256:...)", srcDigestRef, ErrInvalidReference)
		}
		return "", fmt.Errorf("promoting %q: %w: %w", srcDigestRef, ErrInvalidReference, err)
	}
	dst, err := parseRepo(dstRepo)
	if err != nil {
		return "", fmt.Errorf("promoting %q: %w", srcDigestRef, err)
	}
	desc, err := remote.Get(src, append(so.remoteOptions(), remote.WithContext(ctx))...)
	if err != nil {
		return "", describe(err, "reading "+src.DigestStr(), src.Context())
	}
	var art Artifact
	if desc.MediaType.IsIndex() {
		art, err = desc.ImageIndex()
	} else {
		art, err = desc.Image()
	}
	if err != nil {
		return "", describe(err, "reading "+src.DigestStr(), src.Context())
	}
	if d, err := art.Digest(); err != nil || d.String() != src.DigestStr() {
		return "", fmt.Errorf("promoting %q: the registry served %s, not the digest asked for", srcDigestRef, d)
	}
	ref, err := publish(ctx, art, dst, tags, o)
	if err != nil {
		return "", fmt.Errorf("promoting %q: %w", srcDigestRef, err)
	}
	return ref, nil
}

// Info is what a reference points at.
type Info struct {
	// Ref is the digest-pinned reference "repo@sha256:...".
	Ref string
	// Digest is the manifest (or index) digest, "sha256:...".
	Digest string
	// MediaType is the manifest's media type.
	MediaType string
	// Revision is the image's org.opencontainers.image.revision label (the commit); empty when
	// unset.
	Revision string
	// Version is the image's org.opencontainers.image.version label; empty when unset.
	Version string
	// Created is the image config's creation time; zero when unset.
	Created time.Time
}

// Label keys Inspect reads.
const (
	LabelRevision = "org.opencontainers.image.revision"
	LabelVersion  = "org.opencontainers.image.version"
)

// Inspect resolves ref (a tag or a digest reference) to its digest and reads the revision and
// version labels of the image (for an index, of its linux/amd64 image, else its first one).
// A missing reference is ErrNotFound.
func Inspect(ctx context.Context, ref string, opts ...Option) (Info, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return Info{}, fmt.Errorf("inspecting %q: %w", ref, err)
	}
	if o.sourceIsUsed {
		return Info{}, fmt.Errorf("inspecting %q: WithSourceOptions is only for Promote", ref)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return Info{}, fmt.Errorf("inspecting %q: %w: %w", ref, ErrInvalidReference, err)
	}
	ropts := append(o.remoteOptions(), remote.WithContext(ctx))
	desc, err := remote.Get(r, ropts...)
	if err != nil {
		return Info{}, describe(err, "inspecting "+quote(r.Identifier()), r.Context())
	}
	info := Info{
		Ref:       r.Context().Digest(desc.Digest.String()).String(),
		Digest:    desc.Digest.String(),
		MediaType: string(desc.MediaType),
	}
	var img v1.Image
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return Info{}, describe(err, "inspecting "+quote(r.Identifier()), r.Context())
		}
		img, err = pickImage(idx)
		if err != nil {
			return Info{}, describe(err, "inspecting "+quote(r.Identifier()), r.Context())
		}
	} else {
		img, err = desc.Image()
		if err != nil {
			return Info{}, describe(err, "inspecting "+quote(r.Identifier()), r.Context())
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return Info{}, describe(err, "reading the image config of "+quote(r.Identifier()), r.Context())
	}
	info.Revision = cf.Config.Labels[LabelRevision]
	info.Version = cf.Config.Labels[LabelVersion]
	info.Created = cf.Created.Time
	return info, nil
}

// pickImage chooses the linux/amd64 image of an index, else its first image.
func pickImage(idx v1.ImageIndex) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var first *v1.Descriptor
	for i, d := range im.Manifests {
		if !d.MediaType.IsImage() {
			continue
		}
		if first == nil {
			first = &im.Manifests[i]
		}
		if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == "amd64" {
			return idx.Image(d.Digest)
		}
	}
	if first == nil {
		return nil, errors.New("the index holds no image")
	}
	return idx.Image(first.Digest)
}

func parseRepo(repo string) (name.Repository, error) {
	r, err := name.NewRepository(repo)
	if err != nil {
		hint := ""
		if strings.ContainsAny(repo, "@") || strings.Count(repo[strings.LastIndex(repo, "/")+1:], ":") > 0 {
			hint = " (give the repository without a tag or digest)"
		}
		return name.Repository{}, fmt.Errorf("repository %q: %w%s: %w", repo, ErrInvalidReference, hint, err)
	}
	return r, nil
}

func parseTags(repo name.Repository, tags []string) ([]name.Tag, error) {
	var out []name.Tag
	seen := map[string]bool{}
	for _, t := range tags {
		if !ValidTag(t) {
			return nil, fmt.Errorf("tag %q: %w: want [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", t, ErrInvalidReference)
		}
		if seen[t] {
			continue
		}
		seen[t] = true
		out = append(out, repo.Tag(t))
	}
	return out, nil
}

func isNotFound(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return false
	}
	if terr.StatusCode == http.StatusNotFound {
		return true
	}
	for _, d := range terr.Errors {
		if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
			return true
		}
	}
	return false
}

// describe wraps a registry error with what was being done, the registry and repository,
// and a sentinel for the common failures. Neither go-containerregistry's errors nor ours
// carry credentials.
func describe(err error, doing string, repo name.Repository) error {
	where := fmt.Sprintf("registry %q, repository %q", repo.RegistryStr(), repo.RepositoryStr())
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch {
		case terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden:
			return fmt.Errorf("%s (%s): %w: HTTP %d, check the credentials and their rights on the repository: %w",
				doing, where, ErrUnauthorized, terr.StatusCode, err)
		case isNotFound(err):
			return fmt.Errorf("%s (%s): %w: %w", doing, where, ErrNotFound, err)
		}
	}
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	var cve *tls.CertificateVerificationError
	if errors.As(err, &uae) || errors.As(err, &hne) || errors.As(err, &cie) || errors.As(err, &cve) {
		return fmt.Errorf("%s (%s): %w (give the registry's CA): %w", doing, where, ErrUntrusted, err)
	}
	return fmt.Errorf("%s (%s): %w", doing, where, err)
}

func quote(s string) string { return fmt.Sprintf("%q", s) }
