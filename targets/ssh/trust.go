package ssh

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// Trusting size and modification time, as rsync does by default.
//
// A machine that has not hashed the artifacts before (a fresh CI runner) asks the first
// host, before the digest is known, for the chunks of its live release's manifest: each
// chunk's content sum, a short sum of its lines without the hashes (path, kind, mode, size,
// link and the modification time the deploying machine saw) and its last path: the chunk
// index kept with each release (below), one file read. A local range of entries whose stat
// lines hash the same is taken as that chunk, unread; every other file is hashed. The digest
// covers the chunks' content sums (Manifest.Digest), so it is the same whichever way a
// chunk's sum was learnt, and the host checks the manifest it writes against it: its text
// when every file was hashed here, else its chunk sums and its stat lines.
//
// Why this is as safe as rsync's default: a trusted file is one whose size and modification
// time are those a deploying machine recorded with the same content, so it is not sent and
// stays what the live release has; a file changed in place to the same size with its
// modification time set back (touch -d, tar -x, cp -p, rsync -t) would not be seen, which is
// rsync's trade-off without --checksum. Everything that is sent is hashed here and verified
// on the host, and files modified less than racyWindow before the deploy read them are
// neither trusted nor recorded. Checksum (ssh.checksum: true, --checksum) turns trust off:
// every file is hashed, as rsync --checksum reads every file. Files are hashed while the
// host's answer is awaited; when all are hashed before it comes, their exact sums are used
// and nothing is trusted (the answer still tells which chunks' times are the host's, so
// that the staging script carries only the other chunks' new times).

// chunkScript prints, for the manifest file $mf, "chunk <short sum>" for each chunk of its
// content lines, each followed, when its short sum is not in $w (" a b "), by its lines and
// chunkBodyEnd.
const chunkScript = `c=$(mktemp -d) && awk -v d="$c" '` + chunkAWK + `' "$mf" && (cd "$c" && set -- c* && if [ -e "$1" ]; then sha256sum -- "$@"; fi) | while read -r sum f; do
  k=${sum%"${sum#????????????????}"}
  echo "chunk $k"
  case $w in *" $k "*) ;; *) cat "$c/f${f#c}"; echo ` + chunkBodyEnd + ` ;; esac
done
rm -rf "$c"`

// wantList is m's short chunk sums as chunkScript's $w.
func wantList(m *Manifest) string {
	return " " + strings.Join(m.shortSums(), " ") + " "
}

// The chunk index: what liveChunks and the probe need of a release's manifest, written on
// the host with the manifest (.pushdeploy/releases/<id>.chunks), so that the trust answer
// is the file as it is and the probe's chunk list one awk, where both would otherwise cut the
// manifest into chunk files and hash them (a dozen processes). Its first line is
// indexMagic, the SHA-256 of the manifest's text it was made from and that of the lines
// after it; the lines are liveChunks' ("<chunk sum> <short stat sum> <last path>"). An index
// is used only when its manifest sum is the live manifest's (checked on the host: a manifest
// changed since, or an index of an older one, is not used), and its lines only when they
// hash to its second sum (checked here: a damaged index is not trusted; everything is hashed
// then). Releases without one (made by an older pushdeploy) get the manifest cut as before.
// What the index tells is checked as the manifest's chunk sums are: the host checks the
// manifest it writes against the digest, so a wrong index can fail a deploy but never make a
// changed file be taken as unchanged and skipped.
const indexMagic = "pushdeploy-chunks 1"

// indexLines are the chunk index's lines of m (known for a partial m too: the trusted chunks'
// sums and every entry's stat line are).
func (m *Manifest) indexLines() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	for ci, c := range m.chunks {
		fmt.Fprintf(&b, "%s %s %s\n", c.sum, m.chunkStat(ci), escape(m.Entries[c.hi-1].Path))
	}
	return b.String()
}

// chunkStat is the short sum of chunk ci's stat lines as the host makes them.
func (m *Manifest) chunkStat(ci int) string {
	h := sha256.New()
	for i := m.chunks[ci].lo; i < m.chunks[ci].hi; i++ {
		io.WriteString(h, m.Entries[i].hostStatLine()+"\n")
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// statTextSum is the SHA-256 of every entry's hostStatLine: with the chunk sums, what the
// host's copy of a partial manifest is checked against, so that its index (made here) is
// that of its text.
func (m *Manifest) statTextSum() string {
	h := sha256.New()
	for i := range m.Entries {
		io.WriteString(h, m.Entries[i].hostStatLine()+"\n")
	}
	return hex.EncodeToString(h.Sum(nil))
}

// parseIndex reads a chunk index's text, or liveChunks' lines computed on the host;
// manifest is the sum of the manifest's text an index was made from ("" for computed lines).
func parseIndex(text []byte, addr string) (cs []liveChunk, manifest string, err error) {
	body := text
	if bytes.HasPrefix(text, []byte(indexMagic+" ")) {
		hdr, rest, _ := bytes.Cut(text, []byte("\n"))
		f := strings.Fields(string(hdr))
		sum := sha256.Sum256(rest)
		if len(f) != 4 || f[3] != hex.EncodeToString(sum[:]) {
			return nil, "", fmt.Errorf("reading the live release's chunk index on %s: it is damaged (its lines are not those it was written with)", addr)
		}
		body, manifest = rest, f[2]
	}
	for _, l := range lines(body) {
		f := strings.Split(l, " ")
		if len(f) != 3 || len(f[0]) != 64 || len(f[1]) != 16 {
			return nil, "", fmt.Errorf("reading the live manifest's chunks on %s: malformed line %q", addr, l)
		}
		cs = append(cs, liveChunk{sum: f[0], stat: f[1], last: f[2]})
	}
	return cs, manifest, nil
}

// toldStat is what a host's index told of its live manifest's chunks: the short stat sum
// of each chunk, by content sum.
type toldStat struct {
	manifest string // the sum of the manifest's text
	stat     map[string]string
}

// statTold returns the stat sums told of the live manifest whose text has sum manifest, nil
// when the host told none of it.
func (h *Host) statTold(manifest string) map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.told == nil || manifest == "" || h.told.manifest != manifest {
		return nil
	}
	return h.told.stat
}

// indexScript writes the chunk index of the manifest $mf.tmp, whose text's SHA-256 is in $s,
// to $ix; its lines are m's.
func indexScript(m *Manifest) string {
	m.indexOnce.Do(func() {
		body := m.indexLines()
		sum := sha256.Sum256([]byte(body))
		m.indexText = fmt.Sprintf("printf '%%s %%s %%s\\n%%s' %s \"$s\" %s %s > \"$ix\"\n", sshconn.Quote(indexMagic), hex.EncodeToString(sum[:]), sshconn.Quote(body))
	})
	return m.indexText
}

// indexAWK prints, reading a chunk index and then its manifest, what chunkScript prints.
const indexAWK = `FNR == NR { if (FNR > 1) k[n++] = substr($1, 1, 16); next }
!o { s = k[c]; print "chunk " s; b = index(w, " " s " ") == 0; o = 1 }
b { print }
` + chunkEnd + ` { if (b) print "` + chunkBodyEnd + `"; c++; o = 0 }
END { if (o && b) print "` + chunkBodyEnd + `" }`

// indexHeader reads the first line of the chunk index $ix of the manifest $mf into $hdr
// ("" when it has none).
const indexHeader = `ix="${mf%.manifest}.chunks" hdr=
[ -f "$ix" ] && { read -r hdr <"$ix" || :; }
`

// probeChunks is the probe's chunk listing of the live manifest $mf, whose sum is $s, for
// the short sums $w: from its index when it has one made from this text, else by cutting it.
const probeChunks = indexHeader + `case $hdr in
"` + indexMagic + ` $s "*) awk -v w="$w" '` + indexAWK + `' "$ix" "$mf" ;;
*) ` + chunkScript + ` ;;
esac`

// liveChunks reads, in one round trip, the chunks of the live release's manifest (gzipped):
// its index when it has one made from its text, else computed. Nil when nothing is live or
// the live release has no manifest.
func (h *Host) liveChunks(ctx context.Context) ([]liveChunk, error) {
	s := fmt.Sprintf(`cd -P %s 2>/dev/null || exit 0
%scase $l in releases/*) ;; *) exit 0 ;; esac
mf=".pushdeploy/releases/${l#releases/}.manifest"
[ -f "$mf" ] || exit 0
%scase $hdr in "%s "*)
  s=$(sha256sum <"$mf") || exit 1
  case $hdr in "%s ${s%%%% *} "*) exec gzip -c <"$ix" ;; esac ;;
esac
c=$(mktemp -d) || exit 1
awk -v d="$c" '%s' "$mf" > "$c/Zl" && (cd "$c" && set -- c* && if [ -e "$1" ]; then sha256sum -- c* | cut -c1-64 > Zc && sha256sum -- s* | cut -c1-16 > Zs && paste -d' ' Zc Zs Zl | gzip -c; fi)
rm -rf "$c"
`, sshconn.Quote(h.path), liveLine, indexHeader, indexMagic, indexMagic, trustAWK)
	out, err := h.script(ctx, s)
	if err != nil || len(out) == 0 {
		return nil, err
	}
	text, err := gunzip(out)
	if err != nil {
		return nil, fmt.Errorf("reading the live manifest's chunks on %s: %w", h.addr, err)
	}
	cs, manifest, err := parseIndex(text, h.addr)
	if err == nil && manifest != "" {
		told := &toldStat{manifest: manifest, stat: make(map[string]string, len(cs))}
		for _, c := range cs {
			told.stat[c.sum] = c.stat
		}
		h.mu.Lock()
		h.told = told
		h.mu.Unlock()
	}
	return cs, err
}

// region is what Prepare and Plan compare of the live release's manifest and m.
type region struct {
	// base is the live manifest, or the entries of its chunks m lacks; nil when nothing is
	// live (or its manifest cannot be read: everything is sent).
	base *Manifest
	// cur is m, or the entries of m's chunks the live manifest lacks.
	cur *Manifest
	// restat are m's entries in chunks both have whose modification times the host's lines
	// are to take (they were hashed because the times differed).
	restat []Entry
}

// regions compares the live release's manifest with m: with the live manifest known whole
// here and m complete, both whole; else by chunk, the live chunks m lacks (their lines
// brought by the probe, or fetched) against m's chunks the live manifest lacks (hashed here
// when they were trusted).
func (h *Host) regions(ctx context.Context, p *probe, m *Manifest) (region, error) {
	if p.live == "" || p.liveSum == "" {
		return region{cur: m}, m.hashAll()
	}
	var have map[string]bool
	var baseEntries []Entry
	if b := h.t.cached(p.liveSum); b != nil {
		if m.complete() {
			return region{base: b, cur: m}, nil
		}
		mine := setOf(m.shortSums())
		have = setOf(b.shortSums())
		var idx []int
		for ci, s := range b.shortSums() {
			if !mine[s] {
				idx = append(idx, ci)
			}
		}
		baseEntries = b.entriesOf(idx)
	} else {
		if p.chunks == nil {
			// Not brought by the probe (this machine expected another live manifest).
			want := wantList(m)
			out, err := h.script(ctx, fmt.Sprintf("cd %s || exit 1\nmf=%s\nw=%s\ns=$(sha256sum < \"$mf\") || exit 1\ns=${s%%%% *}\n%s\n", sshconn.Quote(h.path),
				sshconn.Quote(".pushdeploy/releases/"+p.live+".manifest"), sshconn.Quote(want), probeChunks))
			if err != nil {
				return region{}, fmt.Errorf("reading the manifest of live release %q on %s: %w", p.live, h.addr, err)
			}
			got, err := h.parseProbe(out, want)
			if err != nil {
				return region{}, err
			}
			p.chunks, p.bodies = got.chunks, got.bodies
		}
		have = setOf(p.chunks)
		var text strings.Builder
		for i := range p.chunks {
			text.WriteString(p.bodies[i])
		}
		b, err := ParseManifest([]byte(text.String()))
		if err != nil {
			// Not in canonical form (edited by hand?): deploy as if there were no base.
			return region{cur: m}, m.hashAll()
		}
		baseEntries = b.Entries
	}
	var need, same []int
	for ci, s := range m.shortSums() {
		if have[s] {
			same = append(same, ci)
		} else {
			need = append(need, ci)
		}
	}
	if err := m.hashChunks(need); err != nil {
		return region{}, err
	}
	rg := region{base: newManifest(baseEntries), cur: newManifest(m.entriesOf(need))}
	whole := m.complete()
	told := h.statTold(p.liveSum)
	for _, ci := range same {
		// A complete m restats every shared chunk, so that the host's manifest is m's text
		// (checked whole), but those whose stat lines the host's index told are the same
		// (if it told wrong, the check fails: every file was hashed here); a partial one
		// those it hashed.
		if whole && told != nil && told[m.chunks[ci].sum] == m.chunkStat(ci) {
			continue
		}
		if whole || m.chunks[ci].restat {
			rg.restat = append(rg.restat, m.entriesOf([]int{ci})...)
		}
	}
	return rg, nil
}

func setOf(s []string) map[string]bool {
	out := make(map[string]bool, len(s))
	for _, v := range s {
		out[v] = true
	}
	return out
}
