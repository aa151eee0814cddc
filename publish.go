package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pushdeploy/pushdeploy/internal/dagger"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/publish"
)

// Publish an image once and return its digest-pinned reference (repo@sha256:...).
//
// Every deploy uses that reference. Tags come from the source: the full and short commit, the branch, the
// git tag, latest only when asked; a commit or version tag that points at another digest
// already is refused unless forced. Only the blobs the registry lacks are sent.
// +cache="never"
func (m *Pushdeploy) Publish(
	ctx context.Context,
	// The repository, "registry/path" without a tag (e.g. ghcr.io/acme/app).
	repository string,
	// The image to publish; default: build.
	// +optional
	container *dagger.Container,
	// The registry user; the password is the module's --registry-password.
	// +optional
	username string,
	// Also tag the image latest.
	// +optional
	latest bool,
	// Further tags.
	// +optional
	tags []string,
	// Move commit and version tags that point at another digest.
	// +optional
	force bool,
) (string, error) {
	if container == nil {
		var err error
		if container, err = m.Build(ctx, "", ".", "Dockerfile"); err != nil {
			return "", err
		}
	}
	dir, err := os.MkdirTemp("", "pushdeploy-publish-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	tar := filepath.Join(dir, "image.tar")
	if _, err := container.AsTarball().Export(ctx, tar); err != nil {
		return "", fmt.Errorf("exporting the image: %w", err)
	}
	opts, err := m.registryOptions(ctx, username)
	if err != nil {
		return "", err
	}
	all := append(publish.Tags(publish.SourceMeta{Commit: m.Revision, Branch: m.Branch, Tag: m.Tag}, latest), tags...)
	return publish.PublishPath(ctx, tar, repository, all, append(opts, publish.WithForce(force))...)
}

// Copy an image by digest to another repository or registry and tag it there, without rebuilding.
//
// Staging to production, without pulling it through an engine. Returns the reference in the
// destination.
// +cache="never"
func (m *Pushdeploy) Promote(
	ctx context.Context,
	// The image, pinned by digest (repo@sha256:...).
	source string,
	// The destination repository, "registry/path".
	repository string,
	// The registry user for both sides; the password is the module's --registry-password.
	// +optional
	username string,
	// Tags to set in the destination.
	// +optional
	tags []string,
) (string, error) {
	opts, err := m.registryOptions(ctx, username)
	if err != nil {
		return "", err
	}
	return publish.Promote(ctx, source, repository, tags, append(opts, publish.WithSourceOptions(opts...))...)
}

// Resolve an image reference to its digest and read its revision and version labels.
// +cache="never"
func (m *Pushdeploy) Inspect(
	ctx context.Context,
	// A tag or digest reference.
	ref string,
	// The registry user; the password is the module's --registry-password.
	// +optional
	username string,
) (string, error) {
	opts, err := m.registryOptions(ctx, username)
	if err != nil {
		return "", err
	}
	info, err := publish.Inspect(ctx, ref, opts...)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	err = pipeline.JSON(&b, info)
	return b.String(), err
}

func (m *Pushdeploy) registryOptions(ctx context.Context, username string) ([]publish.Option, error) {
	if username == "" {
		return nil, nil
	}
	if m.RegistryPassword == nil {
		return nil, fmt.Errorf("registry user %q given without a password: pass --registry-password", username)
	}
	pw, err := m.RegistryPassword.Plaintext(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the registry password secret: %w", err)
	}
	return []publish.Option{publish.WithBasicAuth(username, pw)}, nil
}

func (m *Pushdeploy) source() pipeline.Source {
	return pipeline.Source{Revision: m.Revision, Branch: m.Branch, Tag: m.Tag, Version: m.Version}
}
