package pipeline

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/pipeline/publish"
)

// registryPublisher publishes with the publish package, configured from the file.
type registryPublisher struct {
	// extra are options the caller adds (a CA for a private registry, a transport).
	extra []publish.Option
}

// NewPublisher is the default Publisher with extra publish options.
func NewPublisher(extra ...publish.Option) Publisher { return registryPublisher{extra: extra} }

func repoOf(img *config.Image) string {
	if img.Registry == "" {
		return img.Repository
	}
	return strings.TrimSuffix(img.Registry, "/") + "/" + img.Repository
}

func (p registryPublisher) options(img *config.Image, secrets *Secrets) ([]publish.Option, error) {
	opts := append([]publish.Option(nil), p.extra...)
	if img.Username != "" {
		pw, err := secrets.Resolve(img.Password, secrets.RegistryPassword, "image.password")
		if err != nil {
			return nil, err
		}
		if len(pw) == 0 {
			return nil, fmt.Errorf("image.username %q is set but no registry password was passed (--registry-password)", img.Username)
		}
		opts = append(opts, publish.WithBasicAuth(img.Username, strings.TrimSpace(string(pw))))
	}
	return opts, nil
}

// tags are the tags the file's policy asks for.
func tags(img *config.Image, src Source) []string {
	var meta publish.SourceMeta
	if img.Tags.CommitTag() {
		meta.Commit = src.Revision
	}
	if img.Tags.Branch {
		meta.Branch = src.Branch
	}
	if img.Tags.VersionTag() {
		meta.Tag = src.Tag
	}
	return append(publish.Tags(meta, img.Tags.Latest), img.Tags.Extra...)
}

func (p registryPublisher) Publish(ctx context.Context, path string, img *config.Image, src Source, secrets *Secrets) (string, error) {
	opts, err := p.options(img, secrets)
	if err != nil {
		return "", err
	}
	return publish.PublishPath(ctx, path, repoOf(img), tags(img, src), opts...)
}

func (p registryPublisher) Promote(ctx context.Context, digestRef string, img *config.Image, src Source, secrets *Secrets) (string, error) {
	repo := repoOf(img)
	if strings.HasPrefix(digestRef, repo+"@") {
		return digestRef, nil // live in the source environment from this very repository
	}
	opts, err := p.options(img, secrets)
	if err != nil {
		return "", err
	}
	// The source registry takes the same credentials: one registry login per file.
	opts = append(opts, publish.WithSourceOptions(opts...))
	return publish.Promote(ctx, digestRef, repo, tags(img, src), opts...)
}

// Resolve resolves a tag to its digest reference in the registry, with the file's
// registry credentials when the reference is in the file's repository's registry.
func (p registryPublisher) Resolve(ctx context.Context, ref string, img *config.Image, secrets *Secrets) (string, error) {
	opts := append([]publish.Option(nil), p.extra...)
	if img != nil && sameRegistry(ref, repoOf(img)) {
		o, err := p.options(img, secrets)
		if err != nil {
			return "", err
		}
		opts = o
	}
	info, err := publish.Inspect(ctx, ref, opts...)
	if err != nil {
		return "", err
	}
	return info.Ref, nil
}

// sameRegistry says whether two references name the same registry.
func sameRegistry(a, b string) bool {
	ra, err := name.ParseReference(a)
	if err != nil {
		return false
	}
	rb, err := name.NewRepository(b)
	if err != nil {
		return false
	}
	return ra.Context().RegistryStr() == rb.RegistryStr()
}
