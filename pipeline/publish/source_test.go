package publish

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
)

// writeLayout writes an OCI layout holding the given images/indexes.
func writeLayout(t *testing.T, arts ...Artifact) string {
	t.Helper()
	dir := t.TempDir()
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range arts {
		switch a := a.(type) {
		case v1.Image:
			err = lp.AppendImage(a)
		case v1.ImageIndex:
			err = lp.AppendIndex(a)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// tarDir writes dir as a tar (gzip-compressed when gz), the way Dagger's AsTarball does.
func tarDir(t *testing.T, dir string, gz bool) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	var w io.Writer = f
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(f)
		w = zw
	}
	tw := tar.NewWriter(w)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, _ := d.Info()
		h, _ := tar.FileInfoHeader(info, "")
		h.Name = "./" + filepath.ToSlash(rel)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	tw.Close()
	if zw != nil {
		zw.Close()
	}
	f.Close()
	return out
}

func TestOpenFormats(t *testing.T) {
	ctx := context.Background()
	reg := testbench.InProcessRegistry(t)
	img, _ := image(t, 3, 1024, map[string]string{LabelRevision: commit})
	want := digestOf(t, img)

	archive := filepath.Join(t.TempDir(), "docker.tar")
	tag, _ := name.NewTag("example.com/app:latest")
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		t.Fatal(err)
	}
	layoutDir := writeLayout(t, img)

	cases := []struct {
		name   string
		path   string
		format Format
	}{
		{"oci layout directory", layoutDir, FormatOCILayout},
		{"oci tarball", tarDir(t, layoutDir, false), FormatOCITarball},
		{"gzip oci tarball", tarDir(t, layoutDir, true), FormatOCITarball},
		{"docker-archive", archive, FormatDockerArchive},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			art, format, closeFn, err := Open(c.path)
			if err != nil {
				t.Fatal(err)
			}
			defer closeFn()
			if format != c.format {
				t.Errorf("format %q, want %q", format, c.format)
			}
			d := digestOf(t, art)
			// A docker-archive keeps the layers and the config but not the manifest.
			if c.format != FormatDockerArchive && d != want {
				t.Errorf("opened %s, want %s", d, want)
			}
			ref, err := PublishPath(ctx, c.path, reg.Repo("formats/"+string(format)), []string{"main"})
			if err != nil {
				t.Fatal(err)
			}
			info, err := Inspect(ctx, ref)
			if err != nil || info.Digest != d || info.Revision != commit {
				t.Fatalf("Inspect(%s) = %+v, %v; want digest %s, revision %s", ref, info, err, d, commit)
			}
		})
	}
}

func TestOpenMultiPlatformIndex(t *testing.T) {
	ctx := context.Background()
	reg := testbench.InProcessRegistry(t)
	arm, _ := image(t, 1, 256, map[string]string{LabelRevision: "arm"})
	amd, _ := image(t, 1, 256, map[string]string{LabelRevision: "amd"})
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	path := tarDir(t, writeLayout(t, idx), false)
	ref, err := PublishPath(ctx, path, reg.Repo("multi"), []string{"v1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	if want := digestOf(t, idx); !strings.HasSuffix(ref, "@"+want) {
		t.Fatalf("published %q, want the index %s", ref, want)
	}
	info, err := Inspect(ctx, reg.Repo("multi:v1.0.0"))
	if err != nil || info.Revision != "amd" || !strings.Contains(info.MediaType, "index") {
		t.Fatalf("Inspect = %+v, %v; want the index with the linux/amd64 revision", info, err)
	}
}

func TestOpenRejects(t *testing.T) {
	img1, _ := image(t, 1, 64, nil)
	img2, _ := image(t, 1, 64, nil)
	notTar := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(notTar, []byte("hello, this is not a tar archive at all, just some text that is long enough to fill a header block maybe"), 0o644)
	emptyTar := tarDir(t, t.TempDir(), false)
	cases := []struct {
		name, path, want string
	}{
		{"missing", "/nonexistent/image.tar", "no such file"},
		{"not a tar", notTar, "not a tar"},
		{"empty tar", emptyTar, "neither index.json"},
		{"directory without index.json", t.TempDir(), "not an OCI layout"},
		{"two images in the layout", writeLayout(t, img1, img2), "2 manifests"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, _, err := Open(c.path)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.path) {
				t.Fatalf("want an error naming %q and saying %q, got %v", c.path, c.want, err)
			}
		})
	}
}

func TestInspectNotFound(t *testing.T) {
	reg := testbench.InProcessRegistry(t)
	_, err := Inspect(context.Background(), reg.Repo("nothing:here"))
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "nothing") {
		t.Fatalf("want ErrNotFound naming the repository, got %v", err)
	}
}
