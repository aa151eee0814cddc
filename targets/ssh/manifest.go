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
}

// Manifest describes a release tree: every entry, sorted by path. Its text form (one line an
// entry) is stored with each release on the host, and its SHA-256 is the tree's digest.
type Manifest struct {
	Entries []Entry
	byPath  map[string]*Entry
	text    []byte
}

// escape writes p as one space-free word: Go quoting, spaces as \x20.
func escape(p string) string {
	return strings.ReplaceAll(strconv.Quote(p), " ", `\x20`)
}

func (e *Entry) line() string {
	hash, link := "-", "-"
	if e.Kind == 'f' {
		hash = e.SHA256
	}
	if e.Kind == 'l' {
		link = escape(e.Link)
	}
	return fmt.Sprintf("%s %c%04o %d %s %s", escape(e.Path), e.Kind, e.Mode, e.Size, hash, link)
}

func parseLine(l string) (Entry, error) {
	f := strings.Split(l, " ")
	if len(f) != 5 || len(f[1]) < 2 {
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
	return e, nil
}

// newManifest sorts entries as the host's `LC_ALL=C sort` sorts their lines.
func newManifest(entries []Entry) *Manifest {
	lines := make([]string, len(entries))
	idx := map[string]int{}
	for i := range entries {
		lines[i] = entries[i].line()
		idx[lines[i]] = i
	}
	sort.Strings(lines)
	m := &Manifest{byPath: map[string]*Entry{}}
	var b bytes.Buffer
	for _, l := range lines {
		m.Entries = append(m.Entries, entries[idx[l]])
		b.WriteString(l)
		b.WriteByte('\n')
	}
	for i := range m.Entries {
		m.byPath[m.Entries[i].Path] = &m.Entries[i]
	}
	m.text = b.Bytes()
	return m
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

// Text is the manifest's text form, one entry a line.
func (m *Manifest) Text() []byte { return m.text }

// Digest is "sha256:" and the hex SHA-256 of the text form.
func (m *Manifest) Digest() string { return "sha256:" + m.sum() }

func (m *Manifest) sum() string {
	s := sha256.Sum256(m.text)
	return hex.EncodeToString(s[:])
}

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
	var entries []Entry
	var files []string // of the regular entries, in order, the ones to hash
	var rels []string
	var infos []fs.FileInfo
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
			if sum, ok := cache.lookup(rel, info); ok {
				e.SHA256 = sum
			} else {
				files = append(files, fp) // hashed below, in parallel
			}
			rels, infos = append(rels, rel), append(infos, info)
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
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading artifacts in %s: %w", dir, err)
	}
	sums, err := hashFiles(files)
	if err != nil {
		return nil, fmt.Errorf("reading artifacts in %s: %w", dir, err)
	}
	for i, j := 0, 0; i < len(entries); i++ {
		if entries[i].Kind == 'f' && entries[i].SHA256 == "" {
			entries[i].SHA256 = sums[j]
			j++
		}
	}
	if cache != nil {
		byPath := map[string]string{}
		for _, e := range entries {
			if e.Kind == 'f' {
				byPath[e.Path] = e.SHA256
			}
		}
		seen := make(map[string]hashEntry, len(rels))
		for i, rel := range rels {
			if st, ok := statEntry(infos[i]); ok {
				st.Sum = byPath[rel]
				seen[rel] = st
			}
		}
		cache.save(seen)
	}
	m := newManifest(entries)
	if err := m.checkLinks(); err != nil {
		return nil, fmt.Errorf("refusing artifacts in %s: %w", dir, err)
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
		case *o != *e:
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

// A manifest travels in content-defined chunks: a chunk ends after a file whose hash starts
// with "0" and an octal digit (1 in 32 files), so that a change moves no chunk boundary but
// its own. The host cuts its manifest the same way (chunkAWK) and sends a short hash per
// chunk; only the chunks that no manifest known here holds are fetched.
const (
	chunkEnd = `$4 ~ /^0[0-7]/`
	chunkAWK = `{ f = sprintf("%s/%08d", d, n); print > f } ` + chunkEnd + ` { close(f); n++ }`
)

func endsChunk(line string) bool {
	f := strings.SplitN(line, " ", 5)
	return len(f) >= 4 && len(f[3]) >= 2 && f[3][0] == '0' && f[3][1] >= '0' && f[3][1] <= '7'
}

// chunkText cuts manifest text into chunks, each its lines with their newlines.
func chunkText(text []byte) []string {
	var out []string
	var cur strings.Builder
	for _, l := range strings.SplitAfter(string(text), "\n") {
		if l == "" {
			continue
		}
		cur.WriteString(l)
		if endsChunk(strings.TrimSuffix(l, "\n")) {
			out = append(out, cur.String())
			cur.Reset()
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

func chunkSum(chunk string) string {
	s := sha256.Sum256([]byte(chunk))
	return hex.EncodeToString(s[:8])
}
