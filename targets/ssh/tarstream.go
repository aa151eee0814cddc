package ssh

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/crypto/blake2b"

	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// The files of a release made from nothing (direct) go, when the host has GNU tar, as one
// tar stream over one SSH session instead of SFTP: SFTP costs about 440 bytes a file in
// requests and replies, and the streamed check's list 80 more. Only the tar headers and
// padding are compressed: with zstd where the host has it (a compressed frame for each
// file's header, a raw frame for its content, which zstd -d copies), else gzip (one member:
// small compressed deflate blocks for the headers, stored blocks for the content). No CPU
// is spent on content that is usually compressed already; about 80-100 bytes a file in all.
// On the host one `zstd -dc | tar -xv` (or gzip) writes the files at their paths and names
// each as it reaches its header, that is once the file before it is written whole. The
// files are checked in batches of about streamBatch bytes of content: when the first file
// of the next batch is named, the batch's files are hashed from disk in the background
// while the stream goes on (b2sum where the host has it: 3 times as fast as sha256sum
// without SHA instructions; the content's BLAKE2b is computed here as it is sent, besides
// the SHA-256 that checks it against the manifest), and the host prints one SHA-256 of the
// hashing's lines for the batch, compared here with the lines' expected sum. Only the last
// batch is left to check when the last byte is out. A batch that differs is checked file by
// file against the manifest to name the files.

// streamBatch is the size of content after which a batch of the stream ends: the host
// hashes a batch while the next one comes, so the last one is what is left to check when
// the last byte is out.
const streamBatch = 4 << 20

// tarReady is what treeScript's tarProbe prints when the host can take the stream, then
// the words zstd and b2sum for the programs it has.
const tarReady = "pushdeploy-tar-stream"

// tarProbe, added to the tree script, says whether the host has GNU tar, and zstd and
// b2sum.
const tarProbe = `case "$(tar --version 2>/dev/null)" in *"GNU tar"*)
  echo ` + tarReady + ` $(command -v zstd >/dev/null && echo zstd) $(command -v b2sum >/dev/null && echo b2sum) ;;
esac
`

// tarHost is what the probe found on the host.
type tarHost struct{ zstd, b2sum bool }

// parseTarProbe reads the probe's line from the tree script's output; ok is false when
// the host cannot take the stream.
func parseTarProbe(out []byte) (th tarHost, ok bool) {
	for _, l := range lines(out) {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != tarReady {
			continue
		}
		for _, w := range f[1:] {
			th.zstd = th.zstd || w == "zstd"
			th.b2sum = th.b2sum || w == "b2sum"
		}
		return th, true
	}
	return th, false
}

// tarBatch is one batch of the stream: files[lo:hi] of the files sent.
type tarBatch struct {
	lo, hi int
	sum    string // the expected sum of the host's sha256sum lines, once it is sent
}

// tarBatches cuts files into batches of about streamBatch bytes of content.
func tarBatches(files []*Entry) []*tarBatch {
	var bs []*tarBatch
	var content int64
	lo := 0
	for i, e := range files {
		content += e.Size
		if content >= streamBatch || i == len(files)-1 {
			bs = append(bs, &tarBatch{lo: lo, hi: i + 1})
			lo, content = i+1, 0
		}
	}
	return bs
}

// tarCodec frames the stream: zstd or gzip (see above).
type tarCodec struct {
	zstd bool
	fw   *flate.Writer
	zw   *zstd.Encoder
}

// compress makes raw (padding and tar headers) deflate blocks (none the last) or a zstd
// frame.
func (c *tarCodec) compress(raw []byte) []byte {
	if c.zstd {
		if c.zw == nil {
			c.zw, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderCRC(false),
				zstd.WithSingleSegment(true), zstd.WithEncoderConcurrency(1)) // 88 bytes for the bench's header, 11 µs (best: 79, 53 µs)
		}
		return c.zw.EncodeAll(raw, nil)
	}
	if c.fw == nil {
		c.fw, _ = flate.NewWriter(nil, 4) // 76 bytes for the bench's header, 7 µs (9: 75, 60 µs)
	}
	var out bytes.Buffer
	c.fw.Reset(&out)
	c.fw.Write(raw)
	c.fw.Flush() // ends on a byte, with an empty stored block; not the last block
	return out.Bytes()
}

// maxBlock is the largest block of content: a stored deflate block, or a raw zstd block.
func (c *tarCodec) maxBlock() int64 {
	if c.zstd {
		return 128 << 10
	}
	return 0xffff
}

// contentHeader writes what comes before n bytes of content: a zstd frame's header.
func (c *tarCodec) contentHeader(w io.Writer, n int64) {
	if c.zstd {
		var b [13]byte
		binary.LittleEndian.PutUint32(b[:4], 0xfd2fb528)
		if n < 1<<32 {
			b[4] = 2<<6 | 1<<5 // the content's size in 4 bytes; one segment (no window size)
			binary.LittleEndian.PutUint32(b[5:], uint32(n))
			w.Write(b[:9])
		} else {
			b[4] = 3<<6 | 1<<5 // in 8 bytes
			binary.LittleEndian.PutUint64(b[5:], uint64(n))
			w.Write(b[:13])
		}
		if n == 0 {
			w.Write([]byte{1, 0, 0}) // the last block: raw, empty
		}
	}
}

// blockHeader writes what comes before a block of n bytes of content.
func (c *tarCodec) blockHeader(w io.Writer, n int, last bool) {
	if c.zstd {
		v := uint32(n) << 3 // raw
		if last {
			v |= 1
		}
		w.Write([]byte{byte(v), byte(v >> 8), byte(v >> 16)})
		return
	}
	w.Write([]byte{0, byte(n), byte(n >> 8), ^byte(n), ^byte(n >> 8)})
}

// tarHead is the padding of the content before e, and e's tar header; with e nil, the
// archive's end.
func tarHead(pad int64, e *Entry) ([]byte, error) {
	var hb bytes.Buffer
	hb.Write(make([]byte, pad))
	if e == nil {
		hb.Write(make([]byte, 1024))
		return hb.Bytes(), nil
	}
	// tar -p gives the file this mode (plainModes: the finalizing script chmods the others).
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: e.Path, Mode: int64(e.Mode & 0o777), Size: e.Size, ModTime: time.Unix(0, 0)}
	if err := tar.NewWriter(&hb).WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("making the tar header of %q: %w", e.Path, err)
	}
	return hb.Bytes(), nil
}

// tarNames says whether every path can be a tar member's name as it is (UTF-8, which
// PAX headers need for long or non-ASCII names).
func tarNames(files []*Entry) bool {
	for _, e := range files {
		if !utf8.ValidString(e.Path) {
			return false
		}
	}
	return true
}

// plainModes says whether the files' modes are permission bits alone (no setuid, setgid,
// sticky), which tar -p sets as they are.
func plainModes(files []*Entry) bool {
	for _, e := range files {
		if e.Mode&^0o777 != 0 {
			return false
		}
	}
	return true
}

// tarScript is the host's side of the stream, in release directory rel; the batches'
// file lists go to directory list (made and removed here); bs are the batches.
func tarScript(th tarHost, rel, list string, bs []*tarBatch) string {
	q := sshconn.Quote
	unpack, sum := "gzip -dc", "sha256sum"
	if th.zstd {
		unpack = "zstd -dcq"
	}
	if th.b2sum {
		sum = "b2sum"
	}
	var ends []string
	for _, b := range bs {
		ends = append(ends, strconv.Itoa(b.hi))
	}
	// tar's status comes as a line no name can be (names are relative), as dash has no
	// pipefail.
	return fmt.Sprintf(`set -e
umask 022
l=%[2]s
mkdir -p "$l"
cd %[1]s
check() { tr '\n' '\0' < "$l/$1" | xargs -0 -r %[4]s -- | sha256sum | { read -r s _; echo "$1 $s"; }; }
{ %[3]s | tar -xpmvf - --no-same-owner --quoting-style=literal || echo "/failed $?"; } | {
  set -- %[5]s
  b=0 i=0 st=0
  exec 3> "$l/0"
  while IFS= read -r n; do
    case $n in /failed*) st=${n#/failed }; continue ;; esac
    if [ $# -gt 1 ] && [ "$i" -eq "$1" ]; then
      exec 3>&-
      check $b &
      b=$((b+1))
      shift
      exec 3> "$l/$b"
    fi
    printf '%%s\n' "$n" >&3
    i=$((i+1))
  done
  exec 3>&-
  check $b &
  wait
  rm -rf "$l"
  exit $st
}
`, q(rel), q(list), unpack, sum, strings.Join(ends, " "))
}

// sendTar sends files to the release directory as one stream (see above) and returns
// once the host has checked every batch.
func (h *Host) sendTar(ctx context.Context, th tarHost, id, dir string, d *diff, prog *uploadProgress) error {
	files := d.send
	bs := tarBatches(files)
	c, err := h.client(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	pr, pw := io.Pipe()
	var werr error
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		werr = h.writeTar(pw, th, dir, files, bs, prog)
		if werr != nil {
			cancel(werr) // the host stops; what it wrote is in no complete release
		}
		pw.CloseWithError(werr)
	}()
	var out bytes.Buffer
	rel := h.path + "/releases/" + id
	err = c.RunCmd(ctx, sshconn.Cmd{Line: tarScript(th, rel, h.staging(id)+".stream", bs), Stdin: pr, Stdout: &out})
	pr.CloseWithError(io.ErrClosedPipe) // a writer still writing is told the host is done
	<-wrote
	if werr != nil && !errors.Is(werr, io.ErrClosedPipe) {
		return werr // what stopped the stream here, before the host
	}
	if err != nil {
		return fmt.Errorf("uploading to %s: %w", h.addr, err)
	}
	if werr != nil {
		return werr
	}
	got := map[int]string{}
	for _, l := range lines(out.Bytes()) {
		k, s, _ := strings.Cut(l, " ")
		if n, err := strconv.Atoi(k); err == nil {
			got[n] = s
		}
	}
	var bad []*Entry
	for k, b := range bs {
		if got[k] != b.sum {
			bad = append(bad, files[b.lo:b.hi]...)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	// Which files: the batches that differ, checked file by file.
	if _, err := h.script(ctx, h.verifyFiles(id, bad, 0, true)); err != nil {
		return fmt.Errorf("verifying the files uploaded to %s for release %q: %w", h.addr, id, names(err, bad))
	}
	return fmt.Errorf("verifying the files uploaded to %s for release %q: the host's sums of %d files differ from the manifest's, but its check of each passed", h.addr, id, len(bad))
}

// writeTar writes the stream to w, reading each file from dir and checking that what is
// sent is what the manifest says; each batch's expected sum is set once it is written.
func (h *Host) writeTar(w io.Writer, th tarHost, dir string, files []*Entry, bs []*tarBatch, prog *uploadProgress) error {
	c := &tarCodec{zstd: th.zstd}
	bw := bufio.NewWriterSize(w, 64<<10)
	buf := make([]byte, c.maxBlock())
	crc := crc32.NewIEEE() // gzip's
	var isize uint32
	if !c.zstd {
		bw.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}) // deflate, no name, no time
	}
	var pad int64 // the padding the content before needs
	head := func(e *Entry) error {
		raw, err := tarHead(pad, e)
		if err != nil {
			return err
		}
		bw.Write(c.compress(raw))
		if !c.zstd {
			crc.Write(raw)
			isize += uint32(len(raw))
		}
		return nil
	}
	for _, b := range bs {
		lines := sha256.New() // the host's hashing's lines
		for _, e := range files[b.lo:b.hi] {
			if err := head(e); err != nil {
				return err
			}
			var sum hash.Hash
			if th.b2sum {
				sum, _ = blake2b.New512(nil)
			}
			if err := sendContent(bw, c, buf, filepath.Join(dir, filepath.FromSlash(e.Path)), e, crc, sum, prog); err != nil {
				return fmt.Errorf("uploading %q to %s: %w", e.Path, h.addr, err)
			}
			isize += uint32(e.Size)
			pad = (512 - e.Size%512) % 512
			if sum != nil {
				fmt.Fprintf(lines, "%x  %s\n", sum.Sum(nil), e.Path)
			} else {
				fmt.Fprintf(lines, "%s  %s\n", e.SHA256, e.Path)
			}
			prog.fileSent()
		}
		b.sum = hex.EncodeToString(lines.Sum(nil))
	}
	if err := head(nil); err != nil {
		return err
	}
	if !c.zstd {
		bw.Write([]byte{1, 0, 0, 0xff, 0xff}) // the last block, empty
		var tr [8]byte
		binary.LittleEndian.PutUint32(tr[:4], crc.Sum32())
		binary.LittleEndian.PutUint32(tr[4:], isize)
		bw.Write(tr[:])
	}
	return bw.Flush()
}

// sendContent writes e's content, framed, hashing it: a file that changed since the
// manifest was made is refused. With sum, its BLAKE2b is taken too.
func sendContent(w io.Writer, c *tarCodec, buf []byte, local string, e *Entry, crc hash.Hash32, sum hash.Hash, prog *uploadProgress) error {
	f, err := os.Open(local)
	if err != nil {
		return err
	}
	defer f.Close()
	sha := sha256.New()
	r := prog.reader(f)
	c.contentHeader(w, e.Size)
	for left := e.Size; left > 0; {
		n := min(left, int64(len(buf)))
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return errors.New("the file changed since the artifacts' digest was taken")
			}
			return err
		}
		left -= n
		c.blockHeader(w, int(n), left == 0)
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		sha.Write(buf[:n])
		if !c.zstd {
			crc.Write(buf[:n])
		}
		if sum != nil {
			sum.Write(buf[:n])
		}
	}
	if hex.EncodeToString(sha.Sum(nil)) != e.SHA256 {
		return errors.New("the file changed since the artifacts' digest was taken")
	}
	return nil
}
