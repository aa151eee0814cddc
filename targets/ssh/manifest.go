package ssh

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Entry is one file, directory or symlink of a release tree.
type Entry struct {
	// Path is slash-separated and relative to the release root ("assets/app.js").
	Path string
	// Kind is 'f' (regular file), 'd' (directory) or 'l' (symlink).
	Kind byte
	// Mode holds the permission bits, setuid, setgid and sticky as in chmod ("0755").
	Mode uint32
	// Size and SHA256 (hex) describe a regular file's content.
	Size   int64
	SHA256 string
	// Link is a symlink's target, as written.
	Link string
	// Mtime is a regular file's modification time (Unix nanoseconds) as the deploying
	// machine saw it, 0 when unknown or too recent to be trusted (see racyWindow). It is
	// recorded with the release on the host, so that a later deploy from any machine can
	// trust a file whose size and modification time are unchanged (as rsync does); it is no
	// part of the tree's digest.
	Mtime int64
}

// Manifest describes a release tree: every entry, sorted by path. Its text form (one line an
// entry) is stored with each release on the host. Its lines are cut into content-defined
// chunks, and the tree's digest is the SHA-256 of the list of its chunks' SHA-256 (a
// two-level hash tree): a machine that trusts a chunk of the live release (every file's
// size and modification time unchanged) takes that chunk's sum from the host without
// reading its files.
//
// A manifest built with trust is partial: the files of its trusted chunks have no SHA256
// until a host that lacks those chunks needs their lines (hashChunks).
type Manifest struct {
	Entries []Entry
	byPath  map[string]*Entry
	dir     string // the artifacts, read when trusted chunks are hashed; "" when parsed

	mu     sync.Mutex // guards the SHA256 of trusted chunks' entries, chunks' trust and text
	chunks []chunk
	text   []byte // the text form; nil while partial

	indexOnce sync.Once
	indexText string // indexScript's, made once: the same for every host
}

// chunk is a run of a manifest's entries [lo, hi) that ends after a file whose hash starts
// with "0" and an octal digit (1 in 32 files), or at the end: a change moves no boundary but
// its own.
type chunk struct {
	sum    string // hex SHA-256 of the chunk's content lines
	lo, hi int
	// trusted: taken from a host's live release by size and modification time, not hashed.
	trusted bool
	// restat: hashed because size or modification time differed from the live release's;
	// where its content is the live one's, the host's lines take its modification times.
	restat bool
}

// escape writes p as one space-free word: Go quoting, spaces as \x20.
func escape(p string) string {
	return strings.ReplaceAll(strconv.Quote(p), " ", `\x20`)
}

// contentLine is the entry's line without its modification time: what the digest covers.
func (e *Entry) contentLine() string {
	hash, link := "-", "-"
	if e.Kind == 'f' {
		hash = e.SHA256
	}
	if e.Kind == 'l' {
		link = escape(e.Link)
	}
	return fmt.Sprintf("%s %c%04o %d %s %s", escape(e.Path), e.Kind, e.Mode, e.Size, hash, link)
}

// sameContent says whether e and o have the same content line (contentLine), without
// formatting either: a deploy to many hosts compares every entry once a host.
func (e *Entry) sameContent(o *Entry) bool {
	return e.Path == o.Path && e.Kind == o.Kind && e.Mode == o.Mode && e.Size == o.Size &&
		(e.Kind != 'f' || e.SHA256 == o.SHA256) && (e.Kind != 'l' || e.Link == o.Link)
}

// line is the entry's line in the text form: the content line and the modification time.
func (e *Entry) line() string { return e.contentLine() + " " + e.mtimeField() }

func (e *Entry) mtimeField() string {
	if e.Kind == 'f' && e.Mtime != 0 {
		return strconv.FormatInt(e.Mtime, 10)
	}
	return "-"
}

// statLine is what size-and-mtime trust compares: the line without the hash. A file whose
// modification time is unknown here never matches (a host's "-" is no time).
func (e *Entry) statLine() string {
	if e.Kind == 'f' && e.Mtime == 0 {
		return e.statLineWith("?")
	}
	return e.hostStatLine()
}

// hostStatLine is statLine as the host makes it of the entry's manifest line (fields 1, 2,
// 3, 6 and 5): an unknown modification time is "-" there, which no statLine is.
func (e *Entry) hostStatLine() string { return e.statLineWith(e.mtimeField()) }

// statLineWith is the entry's line without the hash, with mt as its modification time.
func (e *Entry) statLineWith(mt string) string {
	link := "-"
	if e.Kind == 'l' {
		link = escape(e.Link)
	}
	return fmt.Sprintf("%s %c%04o %d %s %s", escape(e.Path), e.Kind, e.Mode, e.Size, mt, link)
}

func (e *Entry) endsChunk() bool {
	return e.Kind == 'f' && len(e.SHA256) >= 2 && e.SHA256[0] == '0' && e.SHA256[1] >= '0' && e.SHA256[1] <= '7'
}

func parseLine(l string) (Entry, error) {
	f := strings.Split(l, " ")
	if (len(f) != 5 && len(f) != 6) || len(f[1]) < 2 {
		return Entry{}, fmt.Errorf("malformed manifest line %q", l)
	}
	var e Entry
	var err error
	if e.Path, err = strconv.Unquote(f[0]); err != nil {
		return Entry{}, fmt.Errorf("malformed path in manifest line %q", l)
	}
	e.Kind = f[1][0]
	m, err := strconv.ParseUint(f[1][1:], 8, 32)
	if err != nil {
		return Entry{}, fmt.Errorf("malformed mode in manifest line %q", l)
	}
	e.Mode = uint32(m)
	if e.Size, err = strconv.ParseInt(f[2], 10, 64); err != nil {
		return Entry{}, fmt.Errorf("malformed size in manifest line %q", l)
	}
	if e.Kind == 'f' {
		e.SHA256 = f[3]
	}
	if e.Kind == 'l' {
		if e.Link, err = strconv.Unquote(f[4]); err != nil {
			return Entry{}, fmt.Errorf("malformed link in manifest line %q", l)
		}
	}
	if len(f) == 6 && f[5] != "-" && e.Kind == 'f' {
		if e.Mtime, err = strconv.ParseInt(f[5], 10, 64); err != nil {
			return Entry{}, fmt.Errorf("malformed modification time in manifest line %q", l)
		}
	}
	return e, nil
}

// sortEntries sorts entries as the host's `LC_ALL=C sort` sorts their lines: by the escaped
// path, which decides every comparison of two lines (no escaped path is a prefix of
// another's: each ends with its one unescaped quote).
func sortEntries(entries []Entry) {
	keys := make(map[string]string, len(entries))
	for i := range entries {
		keys[entries[i].Path] = escape(entries[i].Path)
	}
	sort.Slice(entries, func(i, j int) bool { return keys[entries[i].Path] < keys[entries[j].Path] })
}

// newManifest makes the manifest of entries whose hashes are all known.
func newManifest(entries []Entry) *Manifest {
	sortEntries(entries)
	m := &Manifest{Entries: entries}
	m.index()
	m.chunks = cutChunks(entries, 0, len(entries))
	m.buildText()
	return m
}

func (m *Manifest) index() {
	m.byPath = make(map[string]*Entry, len(m.Entries))
	for i := range m.Entries {
		m.byPath[m.Entries[i].Path] = &m.Entries[i]
	}
}

func (m *Manifest) buildText() {
	var b bytes.Buffer
	for i := range m.Entries {
		b.WriteString(m.Entries[i].line())
		b.WriteByte('\n')
	}
	m.text = b.Bytes()
}

// cutChunks cuts entries[lo:hi], whose hashes are known and which start a chunk, into chunks.
func cutChunks(entries []Entry, lo, hi int) []chunk {
	var out []chunk
	h := sha256.New()
	start := lo
	for i := lo; i < hi; i++ {
		io.WriteString(h, entries[i].contentLine()+"\n")
		if entries[i].endsChunk() || i == hi-1 {
			out = append(out, chunk{sum: hex.EncodeToString(h.Sum(nil)), lo: start, hi: i + 1})
			h.Reset()
			start = i + 1
		}
	}
	return out
}

// ParseManifest reads a manifest's text form.
func ParseManifest(text []byte) (*Manifest, error) {
	var entries []Entry
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		if sc.Text() == "" {
			continue
		}
		e, err := parseLine(sc.Text())
		if err != nil {
			return nil, err
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return newManifest(entries), nil
}

// Text is the manifest's text form, one entry a line; nil while the manifest is partial.
func (m *Manifest) Text() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.text
}

// Digest is "sha256:" and the hex SHA-256 of the lines of its chunks' hex SHA-256, each
// with a newline.
func (m *Manifest) Digest() string { return "sha256:" + m.root() }

func (m *Manifest) root() string {
	h := sha256.New()
	for _, c := range m.chunks {
		io.WriteString(h, c.sum+"\n")
	}
	return hex.EncodeToString(h.Sum(nil))
}

// sum is the SHA-256 of the text form ("" while partial): the name of a manifest in the
// cache, and what the host's copy is checked against.
func (m *Manifest) sum() string {
	t := m.Text()
	if t == nil {
		return ""
	}
	s := sha256.Sum256(t)
	return hex.EncodeToString(s[:])
}

// complete says whether every hash is known.
func (m *Manifest) complete() bool { return m.Text() != nil }

// Get returns the entry at p, nil when there is none.
func (m *Manifest) Get(p string) *Entry {
	if m == nil {
		return nil
	}
	return m.byPath[p]
}

// Bytes is the size of every regular file.
func (m *Manifest) Bytes() int64 {
	var n int64
	for _, e := range m.Entries {
		n += e.Size
	}
	return n
}

// shortSums are the first 16 hex digits of every chunk's sum, in order.
func (m *Manifest) shortSums() []string {
	out := make([]string, len(m.chunks))
	for i, c := range m.chunks {
		out[i] = c.sum[:16]
	}
	return out
}

// hashChunks hashes the files of the trusted chunks among idx and checks each against the
// sum it was trusted with; then their entries are known. A mismatch is a file whose content
// differs from the live release's though its size and modification time are the same.
func (m *Manifest) hashChunks(idx []int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var files []string
	var at []int
	var todo []int
	for _, ci := range idx {
		c := m.chunks[ci]
		if !c.trusted {
			continue
		}
		todo = append(todo, ci)
		for i := c.lo; i < c.hi; i++ {
			if m.Entries[i].Kind == 'f' {
				files = append(files, filepath.Join(m.dir, filepath.FromSlash(m.Entries[i].Path)))
				at = append(at, i)
			}
		}
	}
	if len(todo) == 0 {
		return nil
	}
	sums, err := hashFiles(files)
	if err != nil {
		return fmt.Errorf("reading artifacts in %s: %w", m.dir, err)
	}
	for j, i := range at {
		m.Entries[i].SHA256 = sums[j]
	}
	for _, ci := range todo {
		c := &m.chunks[ci]
		got := cutChunks(m.Entries, c.lo, c.hi)
		if len(got) != 1 || got[0].sum != c.sum {
			return fmt.Errorf("reading artifacts in %s: files from %q to %q have the size and modification time of the live release's but other content: deploy with checksum on (ssh.checksum: true, --checksum) to compare contents",
				m.dir, m.Entries[c.lo].Path, m.Entries[c.hi-1].Path)
		}
		c.trusted = false
	}
	for _, c := range m.chunks {
		if c.trusted {
			return nil
		}
	}
	m.buildText()
	return nil
}

// hashAll makes the manifest complete.
func (m *Manifest) hashAll() error {
	idx := make([]int, len(m.chunks))
	for i := range idx {
		idx[i] = i
	}
	return m.hashChunks(idx)
}

// entriesOf copies the entries of chunks idx, which must be known (not trusted).
func (m *Manifest) entriesOf(idx []int) []Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Entry
	for _, ci := range idx {
		c := m.chunks[ci]
		out = append(out, m.Entries[c.lo:c.hi]...)
	}
	return out
}

// BuildManifest walks dir (symlinks are not followed) and hashes every regular file. It
// refuses, before anything is sent anywhere, what could not be deployed safely: symlinks
// that are absolute or resolve outside the tree, device files, sockets and pipes, and any
// path under a skipped prefix (shared paths, linked from the host's shared directory).
func BuildManifest(dir string, skip ...string) (*Manifest, error) {
	return buildManifest(dir, nil, skip...)
}

// buildManifest is BuildManifest taking the sums of unchanged files from cache (nil: none)
// and leaving the new ones there.
func buildManifest(dir string, cache *hashCache, skip ...string) (*Manifest, error) {
	w, err := walkTree(dir, cache, skip...)
	if err != nil {
		return nil, err
	}
	return w.manifest(nil)
}

// racyWindow: a file modified this close to the walk that reads it may change again within
// the same clock tick after it; its modification time is neither trusted nor recorded.
const racyWindow = 2 * time.Second

// walked is an artifact tree as stat saw it, sorted as manifests are.
type walked struct {
	dir     string
	entries []Entry
	cache   *hashCache
	infos   map[string]hashEntry // regular files' stat, for the hash cache
	// unhashed is the size and number of the regular files whose sums the cache did not
	// have.
	unhashed      int64
	unhashedFiles int
}

// worthTrust says whether hashing what the cache lacks costs more than asking a host which
// files can be trusted (a round trip): from 4 MiB or 256 files (reading one costs an open
// and a close besides its bytes).
func (w *walked) worthTrust() bool {
	return w.unhashed >= 4<<20 || w.unhashedFiles >= 256
}

// walkTree reads dir's entries and their stat, with the sums cache has; it refuses what
// BuildManifest refuses.
func walkTree(dir string, cache *hashCache, skip ...string) (*walked, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("reading artifacts: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("reading artifacts: %s is not a directory", dir)
	}
	skipped := func(p string) bool {
		for _, s := range skip {
			if p == s || strings.HasPrefix(p, s+"/") {
				return true
			}
		}
		return false
	}
	w := &walked{dir: dir, cache: cache, infos: map[string]hashEntry{}}
	racy := time.Now().Add(-racyWindow).UnixNano()
	err = filepath.WalkDir(dir, func(fp string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, fp)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if skipped(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		e := Entry{Path: rel, Mode: modeBits(info.Mode())}
		switch t := info.Mode().Type(); {
		case t == 0:
			e.Kind, e.Size = 'f', info.Size()
			if mt := info.ModTime().UnixNano(); mt < racy {
				e.Mtime = mt
			}
			if sum, ok := cache.lookup(rel, info); ok {
				e.SHA256 = sum
			} else {
				w.unhashed += e.Size
				w.unhashedFiles++
			}
			if st, ok := statEntry(info); ok {
				w.infos[rel] = st
			}
		case t == fs.ModeDir:
			e.Kind = 'd'
		case t == fs.ModeSymlink:
			e.Kind = 'l'
			if e.Link, err = os.Readlink(fp); err != nil {
				return err
			}
			e.Mode = 0o777
		default:
			return fmt.Errorf("artifact %q is a %s: only files, directories and symlinks can be deployed", rel, t.String())
		}
		w.entries = append(w.entries, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading artifacts in %s: %w", dir, err)
	}
	sortEntries(w.entries)
	links := &Manifest{Entries: w.entries}
	links.index()
	if err := links.checkLinks(); err != nil {
		return nil, fmt.Errorf("refusing artifacts in %s: %w", dir, err)
	}
	return w, nil
}

// hashMissing hashes the regular files of entries[lo:hi] that have no sum yet.
func (w *walked) hashMissing(lo, hi int) error {
	var files []string
	var at []int
	for i := lo; i < hi; i++ {
		if e := &w.entries[i]; e.Kind == 'f' && e.SHA256 == "" {
			files = append(files, filepath.Join(w.dir, filepath.FromSlash(e.Path)))
			at = append(at, i)
		}
	}
	sums, err := hashFiles(files)
	if err != nil {
		return fmt.Errorf("reading artifacts in %s: %w", w.dir, err)
	}
	for j, i := range at {
		w.entries[i].SHA256 = sums[j]
	}
	return nil
}

// hashUntil hashes the files that have no sum, in order, on every CPU, until stop is
// closed: the hashing a trust answer may spare starts while the answer is awaited (when
// nothing can be trusted, as on a first deploy, none of it is lost). all: every file was
// hashed.
func (w *walked) hashUntil(stop <-chan struct{}) (all bool, err error) {
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i := range w.entries {
		e := &w.entries[i]
		if e.Kind != 'f' || e.SHA256 != "" {
			continue
		}
		select {
		case <-stop:
			return false, g.Wait()
		default:
		}
		g.Go(func() error {
			sum, err := hashFile(filepath.Join(w.dir, filepath.FromSlash(e.Path)))
			e.SHA256 = sum
			return err
		})
	}
	return true, g.Wait()
}

// liveChunk is what a host tells of one chunk of its live manifest: the sum of its content
// lines, a short sum of its lines without hashes (statLine), and its last path, escaped.
type liveChunk struct {
	sum, stat, last string
}

func statSum(entries []Entry) string {
	h := sha256.New()
	for i := range entries {
		io.WriteString(h, entries[i].statLine()+"\n")
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// manifest makes the manifest of the walked tree. With live (a host's live manifest's
// chunks), a chunk whose every entry has the live one's path, kind, mode, size, link and
// modification time is trusted: its sum is the live chunk's and its files are not read,
// as rsync's default check trusts size and modification time. Every other file is hashed.
func (w *walked) manifest(live []liveChunk) (*Manifest, error) {
	ents := w.entries
	n := len(ents)
	// The range of entries each live chunk covers, by path; the last range is what sorts
	// after the live manifest's last path.
	ranges := make([][2]int, len(live)+1)
	j := 0
	for ci, lc := range live {
		lo := j
		for j < n && escape(ents[j].Path) <= lc.last {
			j++
		}
		ranges[ci] = [2]int{lo, j}
	}
	ranges[len(live)] = [2]int{j, n}
	trusted := make([]bool, len(live))
	for ci, lc := range live {
		r := ranges[ci]
		// The last live chunk need not end at a boundary: with paths after it, its lines
		// may not be a chunk of the new tree.
		last := ci == len(live)-1 && ranges[len(live)][1] > ranges[len(live)][0]
		trusted[ci] = r[1] > r[0] && !last && statSum(ents[r[0]:r[1]]) == lc.stat
	}
	// Hash every untrusted range at once (on every CPU).
	var files []string
	var at []int
	for ci := 0; ci <= len(live); ci++ {
		if ci < len(live) && trusted[ci] {
			continue
		}
		for i := ranges[ci][0]; i < ranges[ci][1]; i++ {
			if ents[i].Kind == 'f' && ents[i].SHA256 == "" {
				files = append(files, filepath.Join(w.dir, filepath.FromSlash(ents[i].Path)))
				at = append(at, i)
			}
		}
	}
	sums, err := hashFiles(files)
	if err != nil {
		return nil, fmt.Errorf("reading artifacts in %s: %w", w.dir, err)
	}
	for k, i := range at {
		ents[i].SHA256 = sums[k]
	}
	var chunks []chunk
	for ci := 0; ci <= len(live); {
		if ci < len(live) && trusted[ci] {
			chunks = append(chunks, chunk{sum: live[ci].sum, lo: ranges[ci][0], hi: ranges[ci][1], trusted: true})
			ci++
			continue
		}
		// An untrusted run: its lines end a chunk when its last file does, else the next
		// range joins it (hashed too) until they do.
		lo, hi := ranges[ci][0], ranges[ci][1]
		ci++
		for hi > lo && !ents[hi-1].endsChunk() && ci <= len(live) {
			if err := w.hashMissing(ranges[ci][0], ranges[ci][1]); err != nil {
				return nil, err
			}
			hi = ranges[ci][1]
			ci++
		}
		for _, c := range cutChunks(ents, lo, hi) {
			c.restat = live != nil
			chunks = append(chunks, c)
		}
	}
	m := &Manifest{Entries: ents, dir: w.dir, chunks: chunks}
	m.index()
	partial := false
	for _, c := range chunks {
		partial = partial || c.trusted
	}
	if !partial {
		m.buildText()
	}
	if w.cache != nil {
		seen := make(map[string]hashEntry, len(w.infos))
		for rel, st := range w.infos {
			if e := m.Get(rel); e != nil && e.SHA256 != "" {
				st.Sum = e.SHA256
				seen[rel] = st
			}
		}
		w.cache.save(seen)
	}
	return m, nil
}

func modeBits(m fs.FileMode) uint32 {
	b := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		b |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}

// hashFiles hashes files on every CPU.
func hashFiles(files []string) ([]string, error) {
	sums := make([]string, len(files))
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, f := range files {
		g.Go(func() error {
			var err error
			sums[i], err = hashFile(f)
			return err
		})
	}
	return sums, g.Wait()
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// checkLinks refuses a symlink that is absolute or that, resolved through the tree's other
// symlinks, leads outside the tree.
func (m *Manifest) checkLinks() error {
	for _, e := range m.Entries {
		if e.Kind != 'l' {
			continue
		}
		if path.IsAbs(e.Link) {
			return fmt.Errorf("symlink %q points to the absolute path %q, outside the release", e.Path, e.Link)
		}
		dir := path.Dir(e.Path)
		if dir == "." {
			dir = ""
		}
		if _, err := m.resolve(dir+"/"+e.Link, 0); err != nil {
			return fmt.Errorf("symlink %q -> %q: %w", e.Path, e.Link, err)
		}
	}
	return nil
}

var errEscapes = errors.New("it leads outside the release directory")

// resolve follows p (relative to the root, possibly with "." and "..") component by
// component through the tree's symlinks, and fails when it climbs above the root.
func (m *Manifest) resolve(p string, depth int) (string, error) {
	if depth > 40 {
		return "", errors.New("too many levels of symlinks")
	}
	var stack []string
	parts := strings.Split(p, "/")
	for i := 0; i < len(parts); i++ {
		c := parts[i]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return "", errEscapes
			}
			stack = stack[:len(stack)-1]
			continue
		}
		cur := strings.Join(append(stack, c), "/")
		if e := m.Get(cur); e != nil && e.Kind == 'l' {
			if path.IsAbs(e.Link) {
				return "", errEscapes
			}
			target, err := m.resolve(strings.Join(stack, "/")+"/"+e.Link, depth+1)
			if err != nil {
				return "", err
			}
			stack = nil
			if target != "" {
				stack = strings.Split(target, "/")
			}
			continue
		}
		stack = append(stack, c)
	}
	return strings.Join(stack, "/"), nil
}

// diff is what turns the live tree into the new one.
type diff struct {
	send    []*Entry // regular files to upload: new, changed content, or changed kind
	chmod   []*Entry // regular files with the same content and another mode
	mkdir   []*Entry // directories that are new or change kind
	dirMode []*Entry // directories whose mode changes (set last)
	links   []*Entry // symlinks that are new or changed
	remove  []string // paths gone or changing kind (removed first)
	added   []string
	updated []string
	bytes   int64
}

func diffManifests(old, cur *Manifest) *diff {
	d := &diff{}
	for i := range cur.Entries {
		e := &cur.Entries[i]
		o := old.Get(e.Path)
		if o != nil && o.Kind != e.Kind {
			d.remove = append(d.remove, e.Path)
			o = nil
		}
		switch {
		case o == nil:
			d.added = append(d.added, e.Path)
		case !sameContent(o, e):
			d.updated = append(d.updated, e.Path)
		}
		switch e.Kind {
		case 'f':
			if o == nil || o.SHA256 != e.SHA256 || o.Size != e.Size {
				d.send = append(d.send, e)
				d.bytes += e.Size
			} else if o.Mode != e.Mode {
				d.chmod = append(d.chmod, e)
			}
		case 'd':
			if o == nil {
				d.mkdir = append(d.mkdir, e)
			} else if o.Mode != e.Mode {
				d.dirMode = append(d.dirMode, e)
			}
		case 'l':
			if o == nil || o.Link != e.Link {
				d.links = append(d.links, e)
			}
		}
	}
	if old != nil {
		for _, o := range old.Entries {
			if cur.Get(o.Path) == nil && !coveredBy(o.Path, d.remove) {
				d.remove = append(d.remove, o.Path)
			}
		}
	}
	return d
}

// sameContent compares two entries but for their modification times.
func sameContent(a, b *Entry) bool {
	x, y := *a, *b
	x.Mtime, y.Mtime = 0, 0
	return x == y
}

// coveredBy says whether p lies under one of dirs (removed with it).
func coveredBy(p string, dirs []string) bool {
	for _, d := range dirs {
		if strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// removedPaths lists what the plan shows as removed: gone from the tree (not kind changes).
func (d *diff) removedPaths(cur *Manifest) []string {
	var out []string
	for _, p := range d.remove {
		if cur.Get(p) == nil {
			out = append(out, p)
		}
	}
	return out
}

// The host cuts its manifest into chunks as cutChunks does: a chunk ends after a line whose
// hash (field 4) starts with "0" and an octal digit. Fields 1 to 5 are a line's content
// line; the sixth is its modification time.
const (
	chunkEnd = `$4 ~ /^0[0-7]/`
	// chunkAWK writes chunk N's content lines to d/cN and its lines as they are to d/fN.
	chunkAWK = `{ f = sprintf("%s/c%08d", d, n); g = sprintf("%s/f%08d", d, n); print $1, $2, $3, $4, $5 > f; print > g } ` + chunkEnd + ` { close(f); close(g); n++ }`
	// rootAWK writes chunk N's content lines to d/N: their sums, in order, hash to the root.
	rootAWK = `{ f = sprintf("%s/%08d", d, n); print $1, $2, $3, $4, $5 > f } ` + chunkEnd + ` { close(f); n++ }`
	// trustAWK writes chunk N's content lines to d/cN and its stat lines (statLine: no
	// hash, the modification time) to d/sN, and prints each chunk's last path.
	trustAWK = `{ f = sprintf("%s/c%08d", d, n); g = sprintf("%s/s%08d", d, n); print $1, $2, $3, $4, $5 > f; print $1, $2, $3, $6, $5 > g; p = $1 } ` +
		chunkEnd + ` { close(f); close(g); print p; n++; p = "" } END { if (p != "") print p }`
)
