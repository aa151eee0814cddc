package publish

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Artifact is what Publish pushes: a v1.Image, or a v1.ImageIndex for a multi-platform image.
type Artifact interface {
	Digest() (v1.Hash, error)
	MediaType() (types.MediaType, error)
	RawManifest() ([]byte, error)
}

var (
	_ Artifact = v1.Image(nil)
	_ Artifact = v1.ImageIndex(nil)
)

// Format is the on-disk form an image was read from.
type Format string

const (
	// FormatOCILayout is an OCI image layout directory (oci-layout, index.json, blobs/).
	FormatOCILayout Format = "oci-layout"
	// FormatOCITarball is a tar of an OCI image layout: what Dagger's Container.AsTarball and
	// `docker buildx build --output type=oci` write.
	FormatOCITarball Format = "oci-tarball"
	// FormatDockerArchive is a `docker save` tar (manifest.json and layer tars), also what
	// go-containerregistry's tarball.Write writes.
	FormatDockerArchive Format = "docker-archive"
)

// Open reads the image at p, which is an OCI layout directory, a tar of an OCI layout (plain
// or gzip-compressed), or a docker-archive. A tar holding both index.json and manifest.json
// (what `docker save` writes since Docker 25) is read as an OCI layout. The layout's
// index.json must list exactly one manifest: an image, or an index for a multi-platform
// image. An OCI tarball is unpacked into a temporary directory that closeFn removes; call closeFn
// once the artifact has been pushed.
func Open(p string) (art Artifact, format Format, closeFn func() error, err error) {
	nop := func() error { return nil }
	st, err := os.Stat(p)
	if err != nil {
		return nil, "", nil, fmt.Errorf("opening image %q: %w", p, err)
	}
	if st.IsDir() {
		if _, err := os.Stat(filepath.Join(p, "index.json")); err != nil {
			return nil, "", nil, fmt.Errorf("opening image %q: a directory but not an OCI layout (no index.json)", p)
		}
		art, err := fromLayout(p)
		if err != nil {
			return nil, "", nil, fmt.Errorf("opening OCI layout %q: %w", p, err)
		}
		return art, FormatOCILayout, nop, nil
	}
	kind, err := tarKind(p)
	if err != nil {
		return nil, "", nil, fmt.Errorf("opening image %q: %w", p, err)
	}
	switch kind {
	case FormatDockerArchive:
		img, err := tarball.ImageFromPath(p, nil)
		if err != nil {
			return nil, "", nil, fmt.Errorf("opening docker-archive %q: %w", p, err)
		}
		return img, FormatDockerArchive, nop, nil
	default:
		dir, err := os.MkdirTemp("", "pushdeploy-oci-")
		if err != nil {
			return nil, "", nil, fmt.Errorf("opening OCI tarball %q: %w", p, err)
		}
		cleanup := func() error { return os.RemoveAll(dir) }
		if err := unpackLayout(p, dir); err != nil {
			cleanup()
			return nil, "", nil, fmt.Errorf("opening OCI tarball %q: %w", p, err)
		}
		art, err := fromLayout(dir)
		if err != nil {
			cleanup()
			return nil, "", nil, fmt.Errorf("opening OCI tarball %q: %w", p, err)
		}
		return art, FormatOCITarball, cleanup, nil
	}
}

func fromLayout(dir string) (Artifact, error) {
	lp, err := layout.FromPath(dir)
	if err != nil {
		return nil, err
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if n := len(im.Manifests); n != 1 {
		return nil, fmt.Errorf("index.json lists %d manifests, want exactly 1", n)
	}
	desc := im.Manifests[0]
	switch {
	case desc.MediaType.IsImage():
		return idx.Image(desc.Digest)
	case desc.MediaType.IsIndex():
		return idx.ImageIndex(desc.Digest)
	default:
		return nil, fmt.Errorf("index.json lists a %q, want an image or an image index", desc.MediaType)
	}
}

// tarReader opens p as a tar, through gzip when it is compressed.
func tarReader(p string) (*tar.Reader, io.Closer, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, err
	}
	magic := make([]byte, 2)
	if n, _ := f.ReadAt(magic, 0); n == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(bufio.NewReaderSize(f, 64<<10))
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("reading gzip: %w", err)
		}
		return tar.NewReader(zr), f, nil
	}
	// The file itself, not a buffer: tar skips entries it is not asked to read by seeking.
	return tar.NewReader(f), f, nil
}

// tarKind tells an OCI tarball from a docker-archive by the entries it holds.
func tarKind(p string) (Format, error) {
	tr, c, err := tarReader(p)
	if err != nil {
		return "", err
	}
	defer c.Close()
	var sawManifest bool
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("not a tar, an OCI layout or a docker-archive: %w", err)
		}
		switch cleanTarName(h.Name) {
		case "index.json", "oci-layout":
			return FormatOCITarball, nil
		case "manifest.json":
			sawManifest = true
		}
	}
	if sawManifest {
		return FormatDockerArchive, nil
	}
	return "", errors.New("a tar holding neither index.json (OCI layout) nor manifest.json (docker-archive)")
}

var layoutEntry = regexp.MustCompile(`^(oci-layout|index\.json|blobs/[a-z0-9]+/[a-f0-9]+)$`)

// unpackLayout writes the OCI layout entries of the tar at p into dir. Other entries are
// skipped, so no name can escape dir.
func unpackLayout(p, dir string) error {
	tr, c, err := tarReader(p)
	if err != nil {
		return err
	}
	defer c.Close()
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading tar: %w", err)
		}
		name := cleanTarName(h.Name)
		if h.Typeflag != tar.TypeReg || !layoutEntry.MatchString(name) {
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, tr); err != nil {
			f.Close()
			return fmt.Errorf("unpacking %q: %w", name, err)
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
}

func cleanTarName(n string) string {
	n = path.Clean("/" + strings.TrimPrefix(n, "./"))
	return strings.TrimPrefix(n, "/")
}
