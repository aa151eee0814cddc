package ssh

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/sync/errgroup"

	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// Host is one server of a target.
type Host struct {
	t    *Target
	addr string
	user string
	path string

	mu   sync.Mutex
	c    *sshconn.Client
	last Upload
	// asking is closed when a question ArtifactDigest left running is answered (nil when
	// none is).
	asking chan struct{}
	told   *toldStat // what the host's chunk index told last (trust.go)
}

// asked records a question left running on the host.
func (h *Host) asked(done chan struct{}) {
	h.mu.Lock()
	h.asking = done
	h.mu.Unlock()
}

// settle waits for a question left running, so that the next script finds its shell idle
// rather than start another.
func (h *Host) settle(ctx context.Context) {
	h.mu.Lock()
	done := h.asking
	h.asking = nil
	h.mu.Unlock()
	if done != nil {
		select {
		case <-done:
		case <-ctx.Done():
		}
	}
}

// Upload is what the last Prepare on a host sent.
type Upload struct {
	// Files are the paths uploaded, Bytes their size.
	Files []string
	Bytes int64
}

// Name is the host's address, "host:port".
func (h *Host) Name() string { return h.addr }

// Address is the host part of the address, for health-check URLs.
func (h *Host) Address() string {
	host, _, err := net.SplitHostPort(h.addr)
	if err != nil {
		return h.addr
	}
	return host
}

// Path is the application's directory on the host.
func (h *Host) Path() string { return h.path }

// LastUpload reports what the last Prepare sent to this host.
func (h *Host) LastUpload() Upload {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

func (h *Host) meta() string { return h.path + "/.pushdeploy" }

// client returns the host's connection, dialling it when there is none or the last one
// broke.
func (h *Host) client(ctx context.Context) (*sshconn.Client, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.c != nil {
		return h.c, nil
	}
	opts := h.t.o.conn(h.user)
	if h.t.o.jump != "" {
		opts = append(opts, sshconn.Jump(h.t.o.jump, h.t.o.conn(h.t.o.user)...))
	}
	c, err := sshconn.Dial(ctx, h.addr, opts...)
	if err != nil {
		var op *net.OpError
		var hk *sshconn.HostKeyError
		if errors.As(err, &op) && !errors.As(err, &hk) {
			return nil, fmt.Errorf("host %s is unreachable: %w", h.addr, err)
		}
		return nil, err // names the host: a host key, a login refused
	}
	h.c = c
	go func() {
		c.SSH().Wait()
		h.mu.Lock()
		if h.c == c {
			h.c = nil
		}
		h.mu.Unlock()
	}()
	return c, nil
}

func (h *Host) closeConn() {
	h.mu.Lock()
	c := h.c
	h.c = nil
	h.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// inlineScript is the size up to which a script is sent as it is; larger ones (with
// manifest lines) go gzipped, as the command's input.
const inlineScript = 16 << 10

// script runs a shell script on the host, in one of its long-lived shells (runner.go), and
// returns its stdout.
func (h *Host) script(ctx context.Context, s string) ([]byte, error) {
	h.t.forget(h) // known.go
	var out bytes.Buffer
	cmd := sshconn.Cmd{Line: s, Stdout: &out}
	if len(s) > inlineScript {
		var in bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&in, gzip.BestSpeed)
		zw.Write([]byte(s))
		zw.Close()
		cmd = sshconn.Cmd{Line: "gzip -dc | sh", Stdin: &in, Stdout: &out}
	}
	err := h.inShell(ctx, cmd)
	return out.Bytes(), err
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func checkID(id string) error {
	if !idRE.MatchString(id) || len(id) > 200 {
		return fmt.Errorf("release id %q: must be a plain name (letters, digits, . _ -)", id)
	}
	return nil
}

// releaseMeta is what path/.pushdeploy/releases/<id>.json holds. It is written last: a
// release directory without it is incomplete and is neither listed nor activated.
type releaseMeta struct {
	ID         string    `json:"id"`
	App        string    `json:"app"`
	Env        string    `json:"env"`
	Version    string    `json:"version,omitempty"`
	Digest     string    `json:"digest"`
	Tree       string    `json:"tree"`
	Files      int       `json:"files"`
	Bytes      int64     `json:"bytes"`
	Created    time.Time `json:"created"`
	Deployer   string    `json:"deployer,omitempty"`
	PipelineID string    `json:"pipelineId,omitempty"`
	ApprovedBy string    `json:"approvedBy,omitempty"`
	Revision   string    `json:"revision,omitempty"`
}

// release is the release the metadata describes, for its PUSHDEPLOY_* variables.
func (m *releaseMeta) release() targets.Release {
	return targets.Release{ID: m.ID, App: m.App, Env: m.Env, Version: m.Version, Digest: m.Digest,
		Deployer: m.Deployer, PipelineID: m.PipelineID, ApprovedBy: m.ApprovedBy, Revision: m.Revision}
}

func (m *releaseMeta) kept() targets.Kept {
	return targets.Kept{ID: m.ID, Version: m.Version, Digest: m.Digest, Created: m.Created}
}

// probe is what one round trip tells about the host before a deploy.
type probe struct {
	live     string       // live release id, "" when none
	liveSum  string       // sha256 of the live release's manifest text, "" when it has none
	liveMeta *releaseMeta // the live release's metadata
	have     *releaseMeta // the metadata of the release asked about, when it is kept
	// chunks are the short sums of the live manifest's chunks (of their content lines), in
	// order, and bodies the lines of those the probe was not told of, by index; nil when
	// not sent.
	chunks []string
	bodies map[int]string
}

// chunkBodyEnd ends a chunk's text in the probe's output (manifest lines start with '"').
const chunkBodyEnd = "PUSHDEPLOY_CHUNK_END"

// probe reads the host's state. With m, the manifest about to be deployed, and a live
// manifest that is not the one this machine last left live there (liveHint), the same round
// trip brings the live manifest's chunk sums and the lines of the chunks m lacks: a fresh
// machine learns what differs without further round trips.
func (h *Host) probe(ctx context.Context, id string, m *Manifest) (*probe, error) {
	h.settle(ctx)
	q := sshconn.Quote
	want, hint := "", h.t.liveHint(h)
	if hint != "" && h.t.cached(hint) != nil {
		m = nil // most likely live, and known here: no chunks needed
	}
	if m != nil {
		want = wantList(m)
	}
	// Builtins but for the manifest's sum (and its chunks, when asked for): the metadata is
	// one line.
	s := fmt.Sprintf(`cd -P %[1]s 2>/dev/null || exit 0
%[6]scase $l in releases/*) i=${l#releases/}; echo "live $i"
  mf=".pushdeploy/releases/$i.manifest"
  if [ -f "$mf" ]; then
    s=$(sha256sum < "$mf"); s=${s%%%% *}
    echo "livesum $s"
    w=%[3]s
    if [ -n "$w" ] && [ "$s" != %[4]s ]; then
%[5]s
    fi
  fi
  j=; [ -f ".pushdeploy/releases/$i.json" ] && { read -r j <".pushdeploy/releases/$i.json" || [ -n "$j" ]; } && printf 'livemeta %%s\n' "$j" ;;
esac
j=; [ -n %[2]s ] && [ -f .pushdeploy/releases/%[2]s.json ] && [ -d releases/%[2]s ] && { read -r j <.pushdeploy/releases/%[2]s.json || [ -n "$j" ]; } && printf 'have %%s\n' "$j"
exit 0
`, q(h.path), q(id), q(want), q(hint), probeChunks, liveLine)
	if want != "" {
		// Chunks' lines (their hashes) come gzipped; a probe without them forks no gzip.
		s = "{\n" + s + "} | gzip -c\n"
	}
	out, err := h.script(ctx, s)
	if err != nil {
		return nil, err
	}
	if want != "" {
		if out, err = gunzip(out); err != nil {
			return nil, fmt.Errorf("reading the state of %s: %w", h.addr, err)
		}
	}
	return h.parseProbe(out, want)
}

// parseProbe reads the probe's output (and that of chunkScript alone); want is the list of
// short sums the host was told of.
func (h *Host) parseProbe(out []byte, want string) (*probe, error) {
	p := &probe{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	var body *strings.Builder // the text of the chunk being read
	for sc.Scan() {
		if body != nil {
			if sc.Text() == chunkBodyEnd {
				p.bodies[len(p.chunks)-1] = body.String()
				body = nil
			} else {
				body.WriteString(sc.Text() + "\n")
			}
			continue
		}
		k, v, _ := strings.Cut(sc.Text(), " ")
		switch k {
		case "live":
			p.live = v
		case "livesum":
			p.liveSum = v
		case "chunk":
			p.chunks = append(p.chunks, v)
			if !strings.Contains(want, " "+v+" ") {
				if p.bodies == nil {
					p.bodies = map[int]string{}
				}
				body = &strings.Builder{}
			}
		case "livemeta", "have":
			var m releaseMeta
			if err := json.Unmarshal([]byte(v), &m); err != nil {
				return nil, fmt.Errorf("reading release metadata on %s: %w", h.addr, err)
			}
			if k == "have" {
				p.have = &m
			} else {
				p.liveMeta = &m
			}
		}
	}
	if p.chunks == nil && want != "" && p.liveSum != "" && sc.Err() == nil {
		p.chunks = []string{} // asked, and the live manifest is empty
	}
	return p, sc.Err()
}

func gunzip(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

// Plan says what deploying r would change here, and changes nothing.
func (h *Host) Plan(ctx context.Context, r targets.Release) (targets.Change, error) {
	ch := targets.Change{Host: h.addr}
	m, err := h.t.manifestOf(r)
	if err != nil {
		return ch, err
	}
	p, err := h.probe(ctx, r.ID, nil)
	if err != nil {
		return ch, fmt.Errorf("planning on %s: %w", h.addr, err)
	}
	ch.Live = p.live
	if p.liveMeta != nil && p.liveMeta.Digest == r.Digest && r.Digest != "" {
		ch.Noop = true
		ch.Summary = "already live"
		return ch, nil
	}
	rg, err := h.regions(ctx, p, m)
	if err != nil {
		return ch, err
	}
	d := diffManifests(rg.base, rg.cur)
	ch.Add, ch.Update, ch.Remove, ch.Bytes = d.added, d.updated, d.removedPaths(rg.cur), d.bytes
	ch.Summary = fmt.Sprintf("%d to add, %d to change, %d to remove, %d bytes to send", len(ch.Add), len(ch.Update), len(ch.Remove), ch.Bytes)
	return ch, nil
}

// Prepare stages r as path/releases/<r.ID>: hard links of the live release, then only what
// changed goes over SFTP, verified on the host before it is renamed into place. The live
// release is never written to. Preparing a release that is already kept with the same
// content does nothing.
func (h *Host) Prepare(ctx context.Context, r targets.Release) error {
	if err := checkID(r.ID); err != nil {
		return err
	}
	// Refuses trees with escaping symlinks or special files before anything is touched.
	m, err := h.t.manifestOf(r)
	if err != nil {
		return err
	}
	p, err := h.probe(ctx, r.ID, m)
	if err != nil {
		return fmt.Errorf("preparing %q on %s: %w", r.ID, h.addr, err)
	}
	if p.have != nil {
		if p.have.Tree == m.Digest() {
			h.setLast(Upload{})
			newUploadProgress(targets.ProgressOf(ctx), h.addr, nil).report(true, nil)
			return nil
		}
		return fmt.Errorf("preparing %q on %s: a release with this id and other content is kept there; discard it first", r.ID, h.addr)
	}
	if p.live == r.ID {
		return fmt.Errorf("preparing %q on %s: it is the live release but has no metadata; refusing to overwrite it", r.ID, h.addr)
	}
	rg, err := h.regions(ctx, p, m)
	if err != nil {
		return err
	}
	from := ""
	if rg.base != nil {
		from = p.live
	}
	d := diffManifests(rg.base, rg.cur)
	prog := newUploadProgress(targets.ProgressOf(ctx), h.addr, d.send)
	if err := h.stageAndPlace(ctx, r, m, rg, from, d, prog); err != nil {
		prog.report(true, err)
		return err
	}
	prog.report(true, nil)
	if m.complete() {
		h.t.remember(m) // the next deploy from this machine need not download it
		h.t.setLiveHint(h, m.sum())
	} else {
		h.t.setLiveHint(h, "") // the host's text is not known here whole
	}
	up := Upload{}
	for _, e := range d.send {
		up.Files = append(up.Files, e.Path)
		up.Bytes += e.Size
	}
	h.setLast(up)
	return nil
}

// stageAndPlace makes the release directory, uploads what d sends, verifies it on the host
// and completes the release.
func (h *Host) stageAndPlace(ctx context.Context, r targets.Release, m *Manifest, rg region, from string, d *diff, prog *uploadProgress) error {
	// A release made from nothing shares no file with the live one: the files go straight
	// to their paths in it (after the tree is made; its manifest is written meanwhile),
	// verified there, with no renames. Else staging the release tree and uploading to the
	// staging directory overlap.
	direct := from == "" && plainNames(d.send)
	// A large one goes as one tar stream when the host can take it (tarstream.go), which
	// the tree script says; else over SFTP.
	tarMaybe := direct && streamed(d.send) && tarNames(d.send)
	// The SFTP session, when something is sent: opened beside the staging script when the
	// release is staged from the live one (the script need not wait for it).
	var sc *sftp.Client
	var stop func() bool
	defer func() {
		if sc != nil {
			stop()
			sc.Close()
		}
	}()
	openSFTP := func() error {
		if len(d.send) == 0 || sc != nil {
			return nil
		}
		c, err := h.client(ctx)
		if err != nil {
			return err
		}
		s, err := c.SFTP()
		if err != nil {
			return err
		}
		sc, stop = s, context.AfterFunc(ctx, func() { s.Close() })
		return nil
	}
	stage := func(ctx context.Context) error {
		if _, err := h.script(ctx, h.stageScript(r.ID, from, m, rg, d)); err != nil {
			return fmt.Errorf("staging release %q on %s: %w", r.ID, h.addr, err)
		}
		return nil
	}
	// A large upload is verified as it lands: the host's hashing overlaps the transfer
	// instead of following it.
	var v *streamVerifier
	sent := func(i int) {
		prog.fileSent()
		if v != nil {
			name := strconv.Itoa(i)
			if direct {
				name = d.send[i].Path
			}
			v.add(d.send[i].SHA256, name)
		}
	}
	useTar := false
	newVerifier := func() {
		if streamed(d.send) && !useTar {
			dir := h.staging(r.ID)
			if direct {
				dir = h.path + "/releases/" + r.ID
			}
			v = h.newStreamVerifier(ctx, dir, len(d.send))
		}
	}
	var err error
	if direct {
		if !tarMaybe {
			if err := openSFTP(); err != nil {
				return err
			}
		}
		tree := h.treeScript(r.ID, from, d)
		if tarMaybe {
			tree += tarProbe
		}
		out, serr := h.script(ctx, tree)
		if serr != nil {
			return h.explainWrite(ctx, fmt.Errorf("staging release %q on %s: %w", r.ID, h.addr, serr))
		}
		var th tarHost
		if tarMaybe {
			th, useTar = parseTarProbe(out)
		}
		if tarMaybe && !useTar {
			if err := openSFTP(); err != nil {
				return err
			}
		}
		newVerifier()
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error {
			if _, err := h.script(gctx, h.manifestScript(r.ID, from, m, rg)); err != nil {
				return fmt.Errorf("staging release %q on %s: %w", r.ID, h.addr, err)
			}
			return nil
		})
		if useTar {
			g.Go(func() error { return h.sendTar(gctx, th, r.ID, r.Artifacts, d, prog) })
		} else {
			g.Go(func() error { return h.upload(gctx, sc, r.ID, r.Artifacts, d.send, prog, sent, true) })
		}
		err = g.Wait()
	} else {
		newVerifier()
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return stage(gctx) })
		g.Go(func() error {
			if err := openSFTP(); err != nil {
				return err
			}
			return h.upload(gctx, sc, r.ID, r.Artifacts, d.send, prog, sent, false)
		})
		err = g.Wait()
	}
	var verr error
	if v != nil {
		if verr = v.wait(); verr != nil {
			verr = fmt.Errorf("verifying the files uploaded to %s for release %q: %w", h.addr, r.ID, names(verr, d.send))
		}
	}
	if err != nil {
		return h.explainWrite(ctx, err)
	}
	if verr != nil {
		return verr
	}
	verified := v != nil || useTar
	meta := releaseMeta{ID: r.ID, App: r.App, Env: r.Env, Version: r.Version, Digest: r.Digest, Tree: m.Digest(),
		Files: len(m.Entries), Bytes: m.Bytes(), Created: time.Now().UTC(), Deployer: r.Deployer, PipelineID: r.PipelineID,
		ApprovedBy: r.ApprovedBy, Revision: r.Revision}
	finalize := h.finalizeScript(r.ID, d, meta)
	if verified && !(useTar && plainModes(d.send)) { // the stream gives plain modes itself
		finalize = h.modesScript(r.ID, d.send) + finalize // after the renames
	}
	switch n := len(d.send); {
	case n > 0 && direct:
		s := finalize
		if !verified {
			s = h.verifyScript(r.ID, d, true) + finalize
		}
		if _, err := h.script(ctx, s); err != nil {
			return fmt.Errorf("verifying the files of release %q on %s: %w", r.ID, h.addr, names(err, d.send))
		}
	case n > 0 && n <= shellMoves:
		// A few files: verify, move and complete in one script, one round trip.
		s := h.verifyScript(r.ID, d, false) + h.moveScript(r.ID, d.send) + finalize
		if _, err := h.script(ctx, s); err != nil {
			return fmt.Errorf("verifying and placing the files of release %q on %s: %w", r.ID, h.addr, names(err, d.send))
		}
	default:
		if n > 0 && !verified {
			if _, err := h.script(ctx, h.verifyScript(r.ID, d, false)); err != nil {
				return fmt.Errorf("verifying the files uploaded to %s for release %q: %w", h.addr, r.ID, names(err, d.send))
			}
		}
		if n > 0 {
			if err := h.place(ctx, sc, r.ID, d.send); err != nil {
				return err
			}
		}
		if _, err := h.script(ctx, finalize); err != nil {
			return fmt.Errorf("completing release %q on %s: %w", r.ID, h.addr, err)
		}
	}
	return nil
}

func (h *Host) setLast(u Upload) {
	h.mu.Lock()
	h.last = u
	h.mu.Unlock()
}

// explainWrite says what a failed SFTP write most likely was: sftp-server answers a full
// filesystem (ENOSPC) with a bare SSH_FX_FAILURE ("Failure"), so the host is asked how much
// room the application's filesystem has and whether the login may write there.
func (h *Host) explainWrite(ctx context.Context, err error) error {
	var se *sftp.StatusError
	sftpErr := errors.As(err, &se) && (se.FxCode() == sftp.ErrSSHFxFailure || se.FxCode() == sftp.ErrSSHFxPermissionDenied)
	// The staging script, which runs beside the upload, may meet the full disk first.
	full := strings.Contains(err.Error(), "No space left on device")
	if !sftpErr && !full && !errors.Is(err, os.ErrPermission) {
		return err
	}
	dir := h.meta() + "/staging"
	out, serr := h.script(context.WithoutCancel(ctx), fmt.Sprintf(`p=%s
while [ ! -e "$p" ]; do p=$(dirname "$p"); done
df -Pk "$p" | awk 'NR==2 {print $4}'
if [ -w "$p" ]; then echo writable; else echo "not writable: $p"; fi`, sshconn.Quote(dir)))
	if serr != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 2 {
		return err
	}
	if kb, perr := strconv.ParseInt(strings.TrimSpace(lines[0]), 10, 64); perr == nil && kb < 1024 {
		return fmt.Errorf("no space left on host %s: the filesystem of %s has %d KiB free: %w", h.addr, h.path, kb, err)
	}
	if w := strings.TrimSpace(lines[1]); strings.HasPrefix(w, "not writable: ") {
		return fmt.Errorf("permission denied on host %s: user %q cannot write %s: %w", h.addr, h.user, strings.TrimPrefix(w, "not writable: "), err)
	}
	return err
}

// names turns staging numbers in sha256sum's complaints ("3: FAILED") into paths.
func names(err error, sent []*Entry) error {
	var ee *sshconn.ExitError
	if !errors.As(err, &ee) {
		return err
	}
	re := regexp.MustCompile(`(?m)^(.+): FAILED.*$`)
	out := re.ReplaceAllStringFunc(ee.Output, func(s string) string {
		name := re.FindStringSubmatch(s)[1]
		if n, err := strconv.Atoi(name); err == nil && n < len(sent) {
			return fmt.Sprintf("%q: content differs from what was sent", sent[n].Path)
		}
		for _, e := range sent { // verified at their paths (direct)
			if e.Path == name {
				return fmt.Sprintf("%q: content differs from what was sent", name)
			}
		}
		return s
	})
	cp := *ee
	cp.Output = out
	return &cp
}

func (h *Host) staging(id string) string { return h.meta() + "/staging/" + id }

// upload sends files to the staging directory, numbered in order, o.parallel at a time.
// With direct, they go to their paths in the release instead.
// sent is told the index of each file whose content is all written.
func (h *Host) upload(ctx context.Context, sc *sftp.Client, id, dir string, files []*Entry, prog *uploadProgress, sent func(int), direct bool) error {
	if len(files) == 0 {
		return nil
	}
	st, rel := h.staging(id), h.path+"/releases/"+id+"/"
	if !direct {
		if err := sc.MkdirAll(st); err != nil {
			return fmt.Errorf("uploading to %s: creating %s: %w", h.addr, st, err)
		}
	}
	return h.each(ctx, files, func(i int, e *Entry) error {
		to := st + "/" + strconv.Itoa(i)
		if direct {
			to = rel + e.Path
		}
		if err := sendFile(sc, filepath.Join(dir, filepath.FromSlash(e.Path)), to, e, prog); err != nil {
			return fmt.Errorf("uploading %q to %s: %w", e.Path, h.addr, err)
		}
		sent(i)
		return nil
	})
}

// place renames the verified staged files into the release (SFTP posix-rename: no process
// per file on the host). A rename replaces the hard link at the path, never the file the
// live release shares.
func (h *Host) place(ctx context.Context, sc *sftp.Client, id string, files []*Entry) error {
	st, rel := h.staging(id), h.path+"/releases/"+id+"/"
	return h.each(ctx, files, func(i int, e *Entry) error {
		if err := sc.PosixRename(st+"/"+strconv.Itoa(i), rel+e.Path); err != nil {
			return fmt.Errorf("placing %q in release %q on %s: %w", e.Path, id, h.addr, err)
		}
		return nil
	})
}

// shellMoves is the number of files up to which the host's shell moves them into place
// (one process each) in the script that also verifies and completes the release; more
// are renamed over SFTP, many requests in flight and no process per file.
const shellMoves = 16

// moveScript renames staged files into the release with mv.
func (h *Host) moveScript(id string, files []*Entry) string {
	var b strings.Builder
	fmt.Fprintf(&b, "cd %s\n", sshconn.Quote(h.path))
	for i, e := range files {
		fmt.Fprintf(&b, "mv -f .pushdeploy/staging/%s/%d %s\n", id, i, sshconn.Quote("releases/"+id+"/"+e.Path))
	}
	return b.String()
}

// each runs fn for every file, o.parallel at a time, and stops at the first error.
func (h *Host) each(ctx context.Context, files []*Entry, fn func(int, *Entry) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(h.t.o.parallel)
	for i, e := range files {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			err := fn(i, e)
			if err != nil && ctx.Err() != nil {
				return fmt.Errorf("%w (%v)", ctx.Err(), err)
			}
			return err
		})
	}
	return g.Wait()
}

// sendFile sends e's content, hashing what it reads: a file that changed since the
// manifest was made is refused here, before the host's own check.
func sendFile(sc *sftp.Client, local, remote string, e *Entry, prog *uploadProgress) error {
	src, err := os.Open(local)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := sc.OpenFile(remote, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return err
	}
	sum := sha256.New()
	// A LimitedReader tells the SFTP client the size, for concurrent writes.
	if _, err := dst.ReadFrom(&io.LimitedReader{R: prog.reader(io.TeeReader(src, sum)), N: e.Size}); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	if hex.EncodeToString(sum.Sum(nil)) != e.SHA256 {
		return errors.New("the file changed since the artifacts' digest was taken")
	}
	return nil
}

const heredoc = "PUSHDEPLOY_EOF"

// stageScript makes releases/<id> from the live release (hard links) or empty, removes what
// is gone, creates new directories and symlinks, links the shared paths, and writes the new
// manifest: the live one with rg's changes, checked against m (its text when m is complete,
// else its digest).
//
// The hard links (cp -al of a few thousand files, the largest part of the host's work) are
// made in the background while the manifest is written and checked: what is done in the new
// tree then waits for them, and so does a script that fails before.
func (h *Host) stageScript(id, from string, m *Manifest, rg region, d *diff) string {
	if from == "" {
		return h.treeScript(id, from, d) + h.manifestScript(id, from, m, rg)
	}
	return h.treeHead(id) + fmt.Sprintf("cp -al %s releases/%s &\nlinking=$!\ntrap 'wait $linking 2>/dev/null || :' EXIT\n", sshconn.Quote("releases/"+from), id) +
		h.manifestScript(id, from, m, rg) + "wait $linking\ntrap - EXIT\n" + h.treeTail(id, d)
}

// treeScript is stageScript's release tree.
func (h *Host) treeScript(id, from string, d *diff) string {
	q := sshconn.Quote
	var b strings.Builder
	rel := "releases/" + id
	if from != "" {
		fmt.Fprintf(&b, "cp -al %s %s\n", q("releases/"+from), rel)
	} else {
		fmt.Fprintf(&b, "mkdir %s\n", rel)
	}
	return h.treeHead(id) + b.String() + h.treeTail(id, d)
}

// treeHead is treeScript up to making the release directory: the checks, and what an
// earlier attempt left.
func (h *Host) treeHead(id string) string {
	q := sshconn.Quote
	var b strings.Builder
	rel := "releases/" + id
	// Builtins where they do (every program costs the host a fork and an exec): the
	// directories are made when missing, the live link read with cd -P, the release's
	// leftovers removed when there are any.
	fmt.Fprintf(&b, "set -e\numask 022\ncd -P %s 2>/dev/null || { mkdir -p %s; cd -P %s; }\n", q(h.path), q(h.path), q(h.path))
	fmt.Fprintf(&b, "[ -d releases ] && [ -d shared ] && [ -d .pushdeploy/releases ] || mkdir -p releases shared .pushdeploy/releases\n%s", liveLine)
	fmt.Fprintf(&b, "[ \"$l\" != %s ] || { echo 'release %s is live: refusing to restage it' >&2; exit 3; }\n", q(rel), id)
	fmt.Fprintf(&b, "if [ -e .pushdeploy/releases/%s.json ] || [ -e %s ] || [ -L %s ]; then rm -rf .pushdeploy/releases/%s.json %s; fi\n", id, rel, rel, id, rel)
	return b.String()
}

// treeTail is treeScript in the release directory once it is made: what is gone removed,
// new directories, symlinks, the shared paths linked.
func (h *Host) treeTail(id string, d *diff) string {
	q := sshconn.Quote
	var b strings.Builder
	fmt.Fprintf(&b, "cd %s\n", sshconn.Quote(h.path+"/releases/"+id))
	var rm, mk []string
	for _, p := range d.remove {
		rm = append(rm, q(p))
	}
	for _, e := range d.mkdir {
		mk = append(mk, q(e.Path)) // parents come first: the paths are sorted
	}
	chunks(rm, func(ps []string) { fmt.Fprintf(&b, "rm -rf -- %s\n", strings.Join(ps, " ")) })
	// Writable while staging; the modes are set at the end.
	chunks(mk, func(ps []string) { fmt.Fprintf(&b, "mkdir -m 0700 -- %s\n", strings.Join(ps, " ")) })
	for _, e := range d.links {
		fmt.Fprintf(&b, "rm -f -- %s; ln -s -- %s %s\n", q(e.Path), q(e.Link), q(e.Path))
	}
	link := func(p string, dir bool) {
		shared := h.path + "/shared/" + p
		if dir {
			fmt.Fprintf(&b, "[ -e %s ] || mkdir -p %s\n", q(shared), q(shared))
		} else {
			fmt.Fprintf(&b, "mkdir -p %s\n", q(filepathDir(shared)))
		}
		fmt.Fprintf(&b, "rm -rf -- %s; mkdir -p -- %s; ln -s -- %s %s\n", q(p), q(filepathDir(p)), q(shared), q(p))
	}
	for _, p := range h.t.o.shared {
		link(p, true)
	}
	for _, p := range h.t.o.sharedFiles {
		link(p, false)
	}
	return b.String()
}

// manifestScript is stageScript's manifest: the live one minus what changed plus the new
// lines, sorted as Go sorts; lines whose content stays take new modification times.
func (h *Host) manifestScript(id, from string, m *Manifest, rg region) string {
	q := sshconn.Quote
	var b strings.Builder
	fmt.Fprintf(&b, "set -e\ncd %s\n", q(h.path))
	// The first line keeps awk's first input non-empty (NR==FNR would else match the second).
	del, add := []string{"-"}, []string(nil)
	if rg.base != nil {
		for i := range rg.base.Entries {
			o := &rg.base.Entries[i]
			switch e := rg.cur.Get(o.Path); {
			case e == nil || !e.sameContent(o):
				del = append(del, escape(o.Path))
			case e.mtimeField() != o.mtimeField():
				del = append(del, escape(o.Path)+" "+e.mtimeField())
			}
		}
	}
	for i := range rg.cur.Entries {
		e := &rg.cur.Entries[i]
		if o := rg.base.Get(e.Path); o == nil || !o.sameContent(e) {
			add = append(add, e.line())
		}
	}
	for i := range rg.restat {
		del = append(del, escape(rg.restat[i].Path)+" "+rg.restat[i].mtimeField())
	}
	baseFile := "/dev/null"
	if rg.base != nil {
		baseFile = ".pushdeploy/releases/" + from + ".manifest"
	}
	mf := ".pushdeploy/releases/" + id + ".manifest"
	// A line "path" deletes the path's line, "path mtime" sets its modification time; the
	// new lines follow a line "+" (no path's line is "+": each starts with a quote).
	fmt.Fprintf(&b, "awk 'NR==FNR { if ($0 == \"+\") a = 1; else if (a) print; else if (NF > 1) t[$1] = $2; else d[$1] = 1; next } ($1 in d) { next } ($1 in t) { $6 = t[$1] } { print }' - %s <<'%s' | LC_ALL=C sort > %s.tmp\n%s+\n%s%s\n",
		q(baseFile), heredoc, mf, joinLines(del), joinLines(add), heredoc)
	// The manifest's chunk index (trust.go) is written with it, once the manifest is
	// checked to be m's text: whole, or (m partial) its chunk sums and its stat lines, which
	// are what the index is made of.
	const differs = "{ echo 'the manifest written on the host differs from the local one' >&2; exit 4; }"
	if m.complete() {
		fmt.Fprintf(&b, "s=$(sha256sum < %s.tmp)\ns=${s%%%% *}\n[ \"$s\" = %s ] || %s\n", mf, m.sum(), differs)
	} else {
		// One sha256sum: the stat lines', the manifest's and each chunk's sums, in that order.
		fmt.Fprintf(&b, "c=$(mktemp -d)\nawk -v d=\"$c\" '%s { print $1, $2, $3, $6, $5 > (d \"/a\") }' %s.tmp\n", rootAWK, mf)
		fmt.Fprintf(&b, "sha256sum -- \"$c/a\" %s.tmp \"$c\"/0* > \"$c/z\"\n{ read -r st _; read -r s _; } < \"$c/z\"\n", mf)
		fmt.Fprintf(&b, "r=$(awk 'NR > 2 { print substr($0, 1, 64) }' \"$c/z\" | sha256sum)\nrm -rf \"$c\"\n")
		fmt.Fprintf(&b, "[ \"${r%%%% *}\" = %s ] && [ \"$st\" = %s ] || %s\n", m.root(), m.statTextSum(), differs)
	}
	fmt.Fprintf(&b, "ix=.pushdeploy/releases/%s.chunks\n%s", id, indexScript(m))
	fmt.Fprintf(&b, "mv -f %s.tmp %s\n", mf, mf)
	return b.String()
}

func filepathDir(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "."
	}
	return p[:i]
}

func lines(text []byte) []string {
	s := strings.TrimSuffix(string(text), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func joinLines(ls []string) string {
	if len(ls) == 0 {
		return ""
	}
	return strings.Join(ls, "\n") + "\n"
}

// verifyScript checks the staged files against their hashes (which checks their sizes
// too) and gives them their modes; direct: the files at their paths in the release.
func (h *Host) verifyScript(id string, d *diff, direct bool) string {
	return h.verifyFiles(id, d.send, 0, direct)
}

// verifyFiles is verifyScript of the sent files from index off on.
func (h *Host) verifyFiles(id string, send []*Entry, off int, direct bool) string {
	var b strings.Builder
	name := func(i int, e *Entry) string { return strconv.Itoa(off + i) }
	dir := ".pushdeploy/staging/" + id
	if direct {
		name = func(_ int, e *Entry) string { return e.Path }
		dir = "releases/" + id
	}
	fmt.Fprintf(&b, "set -e\ncd %s/%s\n", sshconn.Quote(h.path), dir)
	fmt.Fprintf(&b, "sha256sum -c --quiet --strict 1>&2 <<'%s'\n", heredoc) // its complaints go to stderr, into the error
	for i, e := range send {
		fmt.Fprintf(&b, "%s  %s\n", e.SHA256, name(i, e))
	}
	fmt.Fprintf(&b, "%s\n", heredoc)
	b.WriteString(chmodByMode(send, name))
	return b.String()
}

// finalizeScript copies the files whose mode alone changed (a copy, not a chmod of the
// inode the live release shares), sets directory modes, and writes the metadata last: only
// then is the release complete.
func (h *Host) finalizeScript(id string, d *diff, meta releaseMeta) string {
	q := sshconn.Quote
	var b strings.Builder
	st := ".pushdeploy/staging/" + id
	rel := "releases/" + id
	fmt.Fprintf(&b, "set -e\ncd %s\n", q(h.path))
	for i, e := range d.chmod {
		p := q(rel + "/" + e.Path)
		fmt.Fprintf(&b, "mkdir -p %s; cp -p %s %s/m%d; chmod %04o %s/m%d; mv -f %s/m%d %s\n", st, p, st, i, e.Mode, st, i, st, i, p)
	}
	b.WriteString(chmodByMode(append(append([]*Entry{}, d.mkdir...), d.dirMode...), func(_ int, e *Entry) string { return rel + "/" + e.Path }))
	// What interrupted deploys left: release directories without metadata, staging
	// directories (deploys hold the lock: none of them is running).
	fmt.Fprintf(&b, `cd -P .
%[2]sfor d in releases/* .pushdeploy/staging/*; do
  [ -d "$d" ] && [ "${d##*/}" != %[1]s ] || continue
  case $d in releases/*) [ -f ".pushdeploy/releases/${d##*/}.json" ] || [ "$d" = "$l" ] || rm -rf -- "$d" ;; *) rm -rf -- "$d" ;; esac
done
`, id, liveLine)
	mj, _ := json.Marshal(meta)
	fmt.Fprintf(&b, "[ ! -e %s ] || rm -rf %s\nprintf '%%s\\n' %s > .pushdeploy/releases/%s.json.tmp\n", st, st, q(string(mj)), id)
	fmt.Fprintf(&b, "mv -f .pushdeploy/releases/%s.json.tmp .pushdeploy/releases/%s.json\n", id, id)
	return b.String()
}

// plainNames says whether every path can be a line of sha256sum -c as it is (no newline,
// no backslash, which it would escape).
func plainNames(files []*Entry) bool {
	for _, e := range files {
		if strings.ContainsAny(e.Path, "\n\\") {
			return false
		}
	}
	return true
}

// overlapMin is the size of upload from which its files are verified as they land.
const overlapMin = 4 << 20

// streamed says whether an upload is verified as it lands (streamVerifier); a small one is
// verified after it, in the script that completes the release: one session less.
func streamed(send []*Entry) bool {
	var total int64
	for _, e := range send {
		total += e.Size
	}
	return len(send) > shellMoves && total >= overlapMin
}

// chmodByMode gives entries their modes, a chmod a mode (and as many paths as chunks puts
// on a line), each entry at name(i, e) from the script's directory.
func chmodByMode(entries []*Entry, name func(int, *Entry) string) string {
	byMode := map[uint32][]string{}
	for i, e := range entries {
		byMode[e.Mode] = append(byMode[e.Mode], sshconn.Quote(name(i, e)))
	}
	var b strings.Builder
	for _, mode := range sortedModes(byMode) {
		chunks(byMode[mode], func(ps []string) { fmt.Fprintf(&b, "chmod %04o -- %s\n", mode, strings.Join(ps, " ")) })
	}
	return b.String()
}

// atPath is an entry's name for chmodByMode in the release directory.
func atPath(_ int, e *Entry) string { return e.Path }

func sortedModes(m map[uint32][]string) []uint32 {
	var ks []uint32
	for k := range m {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i] < ks[j] })
	return ks
}

func chunks(s []string, fn func([]string)) {
	for len(s) > 0 {
		n := min(len(s), 500)
		fn(s[:n])
		s = s[n:]
	}
}

// Activate makes release id live (path/current replaced by rename, never absent), then
// runs the restart command. An empty id removes current: the host has no live release
// again (the rollback of a first deploy), and nothing is restarted.
func (h *Host) Activate(ctx context.Context, id string) error {
	q := sshconn.Quote
	if id == "" {
		if _, err := h.script(ctx, fmt.Sprintf("cd %s 2>/dev/null || exit 0\nrm -f current\n", q(h.path))); err != nil {
			return fmt.Errorf("removing the live release on %s: %w", h.addr, err)
		}
		return nil
	}
	if err := checkID(id); err != nil {
		return err
	}
	// One round trip: switch, then restart. The marker on stdout tells a failed restart
	// (the switch happened) from a failed switch.
	s := fmt.Sprintf(`set -e
cd %[1]s
[ -d releases/%[2]s ] && [ -f .pushdeploy/releases/%[2]s.json ] || { echo 'release %[2]s is not kept here' >&2; exit 3; }
t=.current.pushdeploy-$$
ln -sfn releases/%[2]s "$t"
mv -fT "$t" current
echo %[3]s
n=; { read -r n; } 2>/dev/null <.pushdeploy/activations || true; n=$(( ${n:-0} + 1 ))
echo $n > .pushdeploy/activations; echo $n > .pushdeploy/releases/%[2]s.activated
`, q(h.path), id, switchedMarker) + h.statusAfter()
	if h.t.o.restart != "" {
		// The restart gets the release's PUSHDEPLOY_* variables, read from the metadata
		// the release was prepared with.
		p, err := h.probe(ctx, id, nil)
		if err != nil {
			return fmt.Errorf("reading release %q on %s before restarting: %w", id, h.addr, err)
		}
		rel := targets.Release{ID: id}
		if p.have != nil {
			rel = p.have.release()
		}
		env := rel.Vars(h.t.Kind())
		env["PUSHDEPLOY_PATH"] = h.path
		keys := make([]string, 0, len(env))
		for k := range env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		s += "cd current\n"
		for _, k := range keys {
			s += fmt.Sprintf("export %s=%s\n", k, q(env[k]))
		}
		// In the login shell, as a command of its own would run; stdin is not the script.
		s += fmt.Sprintf("exec \"${SHELL:-/bin/sh}\" -c %s </dev/null\n", q(h.t.o.restart))
		// Bounded: a hung restart is killed with its process group (sshconn), the host
		// fails and the deploy rolls back.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.t.o.restartWait)
		defer cancel()
	}
	run := h.script
	if h.t.o.restart != "" {
		run = h.inSession // the user's command: see runner.go
	}
	out, err := run(ctx, s)
	if err != nil {
		if bytes.Contains(out, []byte(switchedMarker)) {
			if ctx.Err() != nil {
				return fmt.Errorf("restarting on %s after switching to %q: the restart command timed out after %s and was killed", h.addr, id, h.t.o.restartWait)
			}
			return fmt.Errorf("restarting on %s after switching to %q: %w", h.addr, id, err)
		}
		return fmt.Errorf("switching %s to release %q: %w", h.addr, id, err)
	}
	h.learnStatus(out) // known.go
	return nil
}

// Updates says whether the target has commands to run in a staged release (Updated).
func (h *Host) Updates() bool { return len(h.t.o.updated) > 0 }

// Update runs the Updated commands, in order, in path/releases/<r.ID>, a kept release that
// is not live, with r's PUSHDEPLOY_* variables and PUSHDEPLOY_PATH; each is bounded by
// UpdatedTimeout and killed with its process group when it runs longer.
func (h *Host) Update(ctx context.Context, r targets.Release) error {
	if err := checkID(r.ID); err != nil {
		return err
	}
	q := sshconn.Quote
	env := r.Vars(h.t.Kind())
	env["PUSHDEPLOY_PATH"] = h.path
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	// The values go on stdin, not on the command line, where ps on the host would show them.
	var exports strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&exports, "export %s=%s\n", k, q(env[k]))
	}
	dir := h.path + "/releases/" + r.ID
	for _, cmd := range h.t.o.updated {
		line := fmt.Sprintf(`cd %[1]s && [ -f %[2]s ] && [ "$(readlink %[3]s 2>/dev/null)" != %[4]s ] || { echo 'release %[5]s is not a staged release here' >&2; exit 3; }; eval "$(cat)"; exec "${SHELL:-/bin/sh}" -c %[6]s </dev/null`,
			q(dir), q(h.meta()+"/releases/"+r.ID+".json"), q(h.path+"/current"), q("releases/"+r.ID), r.ID, q(cmd))
		c, err := h.client(ctx)
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, h.t.o.updatedWait)
		// What the command printed is in the error (sshconn.ExitError's Output).
		err = c.RunCmd(cctx, sshconn.Cmd{Line: line, Stdin: strings.NewReader(exports.String())})
		timedOut := cctx.Err() != nil && ctx.Err() == nil
		cancel()
		switch {
		case err != nil && timedOut:
			return fmt.Errorf("running %q in release %q on %s: timed out after %s and was killed: %w", cmd, r.ID, h.addr, h.t.o.updatedWait, err)
		case err != nil:
			return fmt.Errorf("running %q in release %q on %s: %w", cmd, r.ID, h.addr, err)
		}
	}
	return nil
}

const switchedMarker = "pushdeploy-switched"

// Discard removes a kept release that is not live. Discarding one that is not there does
// nothing.
func (h *Host) Discard(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	s := fmt.Sprintf(`set -e
cd -P %[1]s 2>/dev/null || exit 0
%[3]s[ "$l" != releases/%[2]s ] || { echo 'release %[2]s is live' >&2; exit 3; }
rm -f .pushdeploy/releases/%[2]s.json
rm -rf releases/%[2]s .pushdeploy/staging/%[2]s .pushdeploy/releases/%[2]s.manifest .pushdeploy/releases/%[2]s.chunks .pushdeploy/releases/%[2]s.activated
`, sshconn.Quote(h.path), id, liveLine) + h.statusAfter()
	out, err := h.script(ctx, s)
	if err != nil {
		return fmt.Errorf("discarding release %q on %s: %w", id, h.addr, err)
	}
	h.learnStatus(out) // known.go
	return nil
}

// Status reports the live release and the kept ones, oldest first. Release directories
// without metadata (an interrupted upload) are not kept releases; Detail names them.
func (h *Host) Status(ctx context.Context) (targets.Status, error) {
	if st, ok := h.t.knownStatus(h); ok {
		return st, nil
	}
	out, err := h.script(ctx, fmt.Sprintf("cd -P %s 2>/dev/null || exit 0\n%sexit 0\n", sshconn.Quote(h.path), statusLines))
	if err != nil {
		return targets.Status{Host: h.addr}, fmt.Errorf("reading the status of %s: %w", h.addr, err)
	}
	return h.parseStatus(out)
}

// liveLine sets $l to what current points to ("releases/<id>"; "" when there is none), in
// the application's directory entered with cd -P. Builtins only, but for a dangling link:
// every program a status starts costs the host more than the rest of it.
const liveLine = `p=$PWD l=
if [ -L current ]; then
  if cd -P current 2>/dev/null; then l=${PWD#"$p"/}; cd "$p"; else l=$(readlink current 2>/dev/null) || l=; fi
fi
`

// statusLines print what Status reads, in the application's directory entered with cd -P.
const statusLines = liveLine + `echo "live $l"
for d in releases/*; do [ -d "$d" ] && echo "dir ${d#releases/}"; done
for f in .pushdeploy/releases/*.json; do j=; [ -f "$f" ] && { read -r j <"$f" || [ -n "$j" ]; } && printf '%s\n' "$j"; done
for f in .pushdeploy/releases/*.activated; do [ -f "$f" ] && read -r n <"$f" && f=${f##*/} && echo "activated ${f%.activated} $n"; done
`

// parseStatus reads what statusLines printed.
func (h *Host) parseStatus(out []byte) (targets.Status, error) {
	st := targets.Status{Host: h.addr}
	var live string
	dirs := map[string]bool{}
	activated := map[string]int64{}
	var metas []releaseMeta
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "{") {
			var m releaseMeta
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				return st, fmt.Errorf("reading the status of %s: release metadata: %w", h.addr, err)
			}
			metas = append(metas, m)
			continue
		}
		k, v, _ := strings.Cut(line, " ")
		switch k {
		case "live":
			live = strings.TrimPrefix(v, "releases/")
		case "dir":
			dirs[v] = true
		case "activated": // the activation counter at the release's last switch
			id, n, _ := strings.Cut(v, " ")
			activated[id], _ = strconv.ParseInt(n, 10, 64)
		}
	}
	for _, m := range metas {
		if dirs[m.ID] {
			k := m.kept()
			k.Activated = activated[m.ID]
			st.Kept = append(st.Kept, k)
			delete(dirs, m.ID)
		}
	}
	var partial []string
	for d := range dirs {
		partial = append(partial, d)
	}
	sort.Strings(partial)
	sort.SliceStable(st.Kept, func(i, j int) bool {
		a, b := st.Kept[i], st.Kept[j]
		if !a.Created.Equal(b.Created) {
			return a.Created.Before(b.Created)
		}
		return a.ID < b.ID
	})
	for i := range st.Kept {
		if st.Kept[i].ID == live {
			k := st.Kept[i]
			st.Live = &k
		}
	}
	if live != "" && st.Live == nil {
		st.Detail = fmt.Sprintf("current points to %q, which is not a complete release", live)
	}
	if len(partial) > 0 {
		st.Detail = strings.TrimSpace(st.Detail + " incomplete release directories: " + strings.Join(partial, ", "))
	}
	return st, nil
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Run runs cmd on the host in path/current (path when nothing is live), with env added to
// its environment, and returns its output, stdout and stderr together.
func (h *Host) Run(ctx context.Context, cmd string, env map[string]string) ([]byte, error) {
	h.t.forget(h) // it may change anything (known.go)
	q := sshconn.Quote
	var b strings.Builder
	fmt.Fprintf(&b, "{ cd %s 2>/dev/null || cd %s 2>/dev/null || true; }; ", q(h.path+"/current"), q(h.path))
	keys := make([]string, 0, len(env))
	for k := range env {
		if !envName.MatchString(k) {
			return nil, fmt.Errorf("running a command on %s: environment variable name %q is not valid", h.addr, k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	// The values go on stdin, not on the command line, where ps on the host would show them.
	var exports strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&exports, "export %s=%s\n", k, q(env[k]))
	}
	if len(keys) > 0 {
		b.WriteString(`eval "$(cat)"; `)
	}
	b.WriteString(cmd)
	c, err := h.client(ctx)
	if err != nil {
		return nil, err
	}
	var out lockedBuffer
	rc := sshconn.Cmd{Line: b.String(), Stdout: &out, Stderr: &out}
	if len(keys) > 0 {
		rc.Stdin = strings.NewReader(exports.String())
	}
	err = c.RunCmd(ctx, rc)
	return out.Bytes(), err
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.b.Bytes()...)
}
