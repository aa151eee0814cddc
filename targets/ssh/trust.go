package ssh

import (
	"context"
	"fmt"
	"strings"

	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// Trusting size and modification time, as rsync does by default.
//
// A machine that has not hashed the artifacts before (a fresh CI runner) asks the first
// host, before the digest is known, for the chunks of its live release's manifest: each
// chunk's content sum, a short sum of its lines without the hashes (path, kind, mode, size,
// link and the modification time the deploying machine saw) and its last path. A local
// range of entries whose stat lines hash the same is taken as that chunk, unread; every
// other file is hashed. The digest covers the chunks' content sums (Manifest.Digest), so it
// is the same whichever way a chunk's sum was learnt, and the host checks the manifest it
// writes against it.
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
// and nothing is trusted.

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

// liveChunks reads, in one round trip, the chunks of the live release's manifest (gzipped):
// nil when nothing is live or the live release has no manifest.
func (h *Host) liveChunks(ctx context.Context) ([]liveChunk, error) {
	s := fmt.Sprintf(`cd %s 2>/dev/null || exit 0
l=$(readlink current 2>/dev/null) || exit 0
case $l in releases/*) ;; *) exit 0 ;; esac
mf=".pushdeploy/releases/${l#releases/}.manifest"
[ -f "$mf" ] || exit 0
c=$(mktemp -d) || exit 1
awk -v d="$c" '%s' "$mf" > "$c/Zl" && (cd "$c" && set -- c* && if [ -e "$1" ]; then sha256sum -- c* | cut -c1-64 > Zc && sha256sum -- s* | cut -c1-16 > Zs && paste -d' ' Zc Zs Zl | gzip -c; fi)
rm -rf "$c"
`, sshconn.Quote(h.path), trustAWK)
	out, err := h.script(ctx, s)
	if err != nil || len(out) == 0 {
		return nil, err
	}
	text, err := gunzip(out)
	if err != nil {
		return nil, fmt.Errorf("reading the live manifest's chunks on %s: %w", h.addr, err)
	}
	var cs []liveChunk
	for _, l := range lines(text) {
		f := strings.Split(l, " ")
		if len(f) != 3 || len(f[0]) != 64 || len(f[1]) != 16 {
			return nil, fmt.Errorf("reading the live manifest's chunks on %s: malformed line %q", h.addr, l)
		}
		cs = append(cs, liveChunk{sum: f[0], stat: f[1], last: f[2]})
	}
	return cs, nil
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
			out, err := h.script(ctx, fmt.Sprintf("cd %s || exit 1\nmf=%s\nw=%s\n%s\n", sshconn.Quote(h.path),
				sshconn.Quote(".pushdeploy/releases/"+p.live+".manifest"), sshconn.Quote(want), chunkScript))
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
	for _, ci := range same {
		// A complete m restats every shared chunk, so that the host's manifest is m's text
		// (checked whole); a partial one those it hashed.
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
