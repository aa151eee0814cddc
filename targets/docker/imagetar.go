package docker

// Images without a registry: a release whose ImageArchive names an image tarball (docker
// save, go-containerregistry's tarball.Write, Dagger's Container.asTarball, an OCI layout) is
// sent to each host over the SSH connection the target already has, as unregistry's
// `docker pussh` does, and only the layers the host's engine lacks travel.
//
// How: the engine is asked which layer chains it holds (the RootFS of every image it
// keeps), then it gets a `docker load` archive (manifest.json, the config, the layers) that
// omits every layer whose chain it has. The engine's loader (moby image/tarexport, Load)
// looks each layer's chain ID up in its layer store first and reads the layer's file only
// when the chain is missing, so an omitted layer is never looked for. The image that
// landed is checked: its ID must be the tarball's config digest.

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/pushdeploy/pushdeploy/pipeline/publish"
	"github.com/pushdeploy/pushdeploy/targets"
)

// imageID is an engine's image ID, the digest of the image's config: what a release without
// a registry names its image by.
var imageID = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)

// IsImageID reports whether ref is an image ID ("sha256:<64 hex>"), the Image of a release
// sent over SSH rather than pulled from a registry.
func IsImageID(ref string) bool { return imageID.MatchString(ref) }

// ImageArchive is an image tarball read for sending to hosts.
type ImageArchive struct {
	// ID is the image's config digest: the engine's image ID once loaded.
	ID string
	// Layers are the image's layers, base first; DiffIDs their uncompressed digests.
	Layers  []v1.Layer
	DiffIDs []digest.Digest
	// Sizes are the layers' sizes as sent (the blob's size in the archive).
	Sizes []int64

	config  []byte
	closeFn func() error
}

// OpenImageArchive reads the image tarball or OCI layout at path: one image (a
// multi-platform index is refused: a host runs one platform's image).
func OpenImageArchive(path string) (*ImageArchive, error) {
	art, _, closeFn, err := publish.Open(path)
	if err != nil {
		return nil, err
	}
	a, err := readArchive(art)
	if err != nil {
		closeFn()
		return nil, fmt.Errorf("reading image %q: %w", path, err)
	}
	a.closeFn = closeFn
	return a, nil
}

func readArchive(art publish.Artifact) (*ImageArchive, error) {
	img, ok := art.(v1.Image)
	if !ok {
		return nil, errors.New("a multi-platform image index: a Docker host without a registry gets one image; export the hosts' platform only")
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("its config: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("its config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("its layers: %w", err)
	}
	if len(layers) != len(cf.RootFS.DiffIDs) {
		return nil, fmt.Errorf("%d layers but %d diff ids in its config", len(layers), len(cf.RootFS.DiffIDs))
	}
	a := &ImageArchive{ID: digest.FromBytes(cfg).String(), Layers: layers, config: cfg}
	for i, l := range layers {
		a.DiffIDs = append(a.DiffIDs, digest.Digest(cf.RootFS.DiffIDs[i].String()))
		n, err := l.Size()
		if err != nil {
			return nil, fmt.Errorf("the size of layer %d: %w", i+1, err)
		}
		a.Sizes = append(a.Sizes, n)
	}
	return a, nil
}

// Close removes what opening the archive unpacked.
func (a *ImageArchive) Close() error {
	if a.closeFn == nil {
		return nil
	}
	return a.closeFn()
}

// ChainIDs are the chain IDs of the image's layer prefixes: ChainIDs()[i] names layers 0..i
// stacked, as the engine's layer store does.
func (a *ImageArchive) ChainIDs() []digest.Digest {
	out := make([]digest.Digest, len(a.DiffIDs))
	for i, d := range a.DiffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		out[i] = digest.FromString(out[i-1].String() + " " + d.String())
	}
	return out
}

// WriteLoad writes a `docker load` archive of the image that carries only the layers for
// which send is true. It returns the bytes of layers written.
func (a *ImageArchive) WriteLoad(w io.Writer, send []bool) (int64, error) {
	tw := tar.NewWriter(w)
	hexID := strings.TrimPrefix(a.ID, "sha256:")
	type item struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	m := []item{{Config: hexID + ".json", RepoTags: []string{}}}
	for i := range a.Layers {
		m[0].Layers = append(m[0].Layers, fmt.Sprintf("%s/layer.tar", strings.TrimPrefix(a.DiffIDs[i].String(), "sha256:")))
	}
	mj, err := json.Marshal(m)
	if err != nil {
		return 0, err
	}
	put := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	// The engine reads manifest.json and the config only once the whole archive is in.
	if err := put("manifest.json", mj); err != nil {
		return 0, err
	}
	if err := put(hexID+".json", a.config); err != nil {
		return 0, err
	}
	var sent int64
	for i, l := range a.Layers {
		if !send[i] {
			continue
		}
		rc, err := l.Compressed()
		if err != nil {
			return sent, fmt.Errorf("reading layer %d: %w", i+1, err)
		}
		err = tw.WriteHeader(&tar.Header{Name: m[0].Layers[i], Mode: 0o644, Size: a.Sizes[i], Typeflag: tar.TypeReg})
		if err == nil {
			var n int64
			n, err = io.Copy(tw, rc)
			sent += n
		}
		rc.Close()
		if err != nil {
			return sent, fmt.Errorf("sending layer %d: %w", i+1, err)
		}
	}
	return sent, tw.Close()
}

// archives opens each image tarball once for all of a target's hosts.
type archives struct {
	mu sync.Mutex
	m  map[string]*archiveOnce
}

type archiveOnce struct {
	once sync.Once
	a    *ImageArchive
	err  error
}

func (s *archives) open(path string) (*ImageArchive, error) {
	s.mu.Lock()
	if s.m == nil {
		s.m = map[string]*archiveOnce{}
	}
	o := s.m[path]
	if o == nil {
		o = &archiveOnce{}
		s.m[path] = o
	}
	s.mu.Unlock()
	o.once.Do(func() { o.a, o.err = OpenImageArchive(path) })
	return o.a, o.err
}

func (s *archives) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, o := range s.m {
		if o.a != nil {
			errs = append(errs, o.a.Close())
		}
	}
	s.m = nil
	return errors.Join(errs...)
}

// chains are the layer chain IDs the engine holds: those of every image it keeps.
func (h *Host) chains(ctx context.Context, cli *client.Client) (map[digest.Digest]bool, error) {
	imgs, err := cli.ImageList(ctx, image.ListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("listing the images on %s: %w", h.addr, err)
	}
	have := map[digest.Digest]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, im := range imgs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// An image removed meanwhile only means its layers are sent.
			in, err := cli.ImageInspect(ctx, im.ID)
			if err != nil {
				return
			}
			var chain digest.Digest
			mu.Lock()
			defer mu.Unlock()
			for i, l := range in.RootFS.Layers {
				if i == 0 {
					chain = digest.Digest(l)
				} else {
					chain = digest.FromString(chain.String() + " " + l)
				}
				have[chain] = true
			}
		}()
	}
	wg.Wait()
	return have, ctx.Err()
}

// SendStats says what sending an image to a host cost.
type SendStats struct {
	// Layers is how many layers the image has, Sent how many went to the host.
	Layers, Sent int
	// LayerBytes is the size of the layers sent.
	LayerBytes int64
}

// sendImage loads r's image from its archive into the host's engine unless the engine has
// it, sending only the layers it lacks, and checks what landed.
func (h *Host) sendImage(ctx context.Context, cli *client.Client, r targets.Release) error {
	if in, err := cli.ImageInspect(ctx, r.Image); err == nil && in.ID == r.Image {
		return nil
	}
	a, err := h.t.archives.open(r.ImageArchive)
	if err != nil {
		return fmt.Errorf("sending the image of release %q to %s: %w", r.ID, h.addr, err)
	}
	if a.ID != r.Image {
		return fmt.Errorf("sending the image of release %q to %s: the tarball %q holds image %s, not the release's %s", r.ID, h.addr, r.ImageArchive, a.ID, r.Image)
	}
	have, err := h.chains(ctx, cli)
	if err != nil {
		return err
	}
	send := make([]bool, len(a.Layers))
	for i, c := range a.ChainIDs() {
		send[i] = !have[c]
	}
	st, err := h.load(ctx, cli, a, send)
	if err != nil && st.Sent < len(a.Layers) {
		// A layer counted as present may have gone since (an image removed meanwhile):
		// once more, with every layer.
		all := make([]bool, len(a.Layers))
		for i := range all {
			all[i] = true
		}
		st, err = h.load(ctx, cli, a, all)
	}
	if err != nil {
		return err
	}
	in, err := cli.ImageInspect(ctx, r.Image)
	if err != nil {
		return fmt.Errorf("sending image %s to %s: the engine does not have it after the load: %w", r.Image, h.addr, err)
	}
	if in.ID != r.Image {
		return fmt.Errorf("sending image %s to %s: the engine loaded it as %s", r.Image, h.addr, in.ID)
	}
	h.mu.Lock()
	h.sent = st
	h.mu.Unlock()
	return nil
}

// load streams the load archive to the engine and reads its answer.
func (h *Host) load(ctx context.Context, cli *client.Client, a *ImageArchive, send []bool) (SendStats, error) {
	st := SendStats{Layers: len(a.Layers)}
	for i, s := range send {
		if s {
			st.Sent++
			st.LayerBytes += a.Sizes[i]
		}
	}
	var sizes []int64
	for i, s := range send {
		if s {
			sizes = append(sizes, a.Sizes[i])
		}
	}
	pr, pw := io.Pipe()
	cw := newCountingWriter(pw, targets.ProgressOf(ctx), h.addr, sizes)
	go func() {
		_, err := a.WriteLoad(cw, send)
		pw.CloseWithError(err)
	}()
	st, err := h.readLoad(ctx, cli, a, pr, st)
	cw.end(err)
	return st, err
}

// readLoad gives the load archive to the engine and reads its answer.
func (h *Host) readLoad(ctx context.Context, cli *client.Client, a *ImageArchive, pr *io.PipeReader, st SendStats) (SendStats, error) {
	resp, err := cli.ImageLoad(ctx, pr, client.ImageLoadWithQuiet(true))
	if err != nil {
		pr.CloseWithError(err)
		return st, fmt.Errorf("loading image %s into the engine on %s: %w", a.ID, h.addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	pr.Close()
	if err != nil {
		return st, fmt.Errorf("loading image %s into the engine on %s: reading its answer: %w", a.ID, h.addr, err)
	}
	// The engine reports failures inside the stream.
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err != nil {
			break
		}
		if msg := firstNonEmpty(m.ErrorDetail.Message, m.Error); msg != "" {
			return st, fmt.Errorf("loading image %s into the engine on %s (%d of %d layers sent): %s", a.ID, h.addr, st.Sent, st.Layers, msg)
		}
	}
	return st, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// LastSend says what the last image sent to host name cost (zero when none was sent): for
// benchmarks and logs.
func (t *Target) LastSend(name string) SendStats {
	for _, h := range t.hosts {
		if h.addr == name {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.sent
		}
	}
	return SendStats{}
}
