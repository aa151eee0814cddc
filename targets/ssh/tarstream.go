package ssh

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/flate"
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

	"github.com/klauspost/compress/zstd"
	"golang.org/x/crypto/blake2b"

	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// The files of a release made from nothing (direct) go, when the host has GNU tar and GNU
// head, as one stream over one SSH session instead of SFTP: SFTP costs about 440 bytes a
// file in requests and replies, and the streamed check's list 80 more. The stream is cut in
// batches of about streamBatch bytes of content, each a line with its length and then a
// tar archive, compressed so that only the tar headers and padding are: with zstd where
// the host has it (compressed frames for the headers, raw frames for the content, which
// zstd -d copies), else gzip (one member a batch: small compressed deflate blocks for the
// headers, stored blocks for the content). The content itself is not compressed: no CPU is
// spent on content that is usually compressed already. About 80-100 bytes a file in all.
// On the host `head -c` reads each batch exactly (GNU head reads no more than it is asked),
// `zstd -dc | tar -x` (or gzip) writes its files at their paths, and while the next batch
// streams, the batch's files are hashed from disk in the background (b2sum where the host
// has it: it is 3 times as fast as sha256sum without SHA instructions; the content's
// BLAKE2b is computed here as it is sent, besides the SHA-256 that checks it against the
// manifest): the host prints one SHA-256 of the hashing's lines for the batch, which is
// compared here with the lines' expected sum. A batch that differs is checked file by file
// against the manifest to name the files.

// streamBatch is the size of content after which a batch of the stream ends: the host
// hashes a batch while the next one comes, so the last one is what is left to check when
// the last byte is out.
const streamBatch = 4 << 20

// tarReady is what treeScript's tarProbe prints when the host can take the stream, then
// the words zstd and b2sum for the programs it has.
const tarReady = "pushdeploy-tar-stream"

// tarProbe, added to the tree script, says whether the host has GNU tar and GNU head, and
// zstd and b2sum.
const tarProbe = `case "$(tar --version 2>/dev/null)$(head --version 2>/dev/null)" in *"GNU tar"*"GNU coreutils"*)
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

// tarCodec frames a batch: zstd or gzip (see above).
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
			c.zw, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderCRC(false),
				zstd.WithSingleSegment(true), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
		}
		return c.zw.EncodeAll(raw, nil)
	}
	if c.fw == nil {
		c.fw, _ = flate.NewWriter(nil, flate.BestCompression)
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

// contentSize is the length of n bytes of content, framed.
func (c *tarCodec) contentSize(n int64) int64 {
	blocks := (n + c.maxBlock() - 1) / c.maxBlock()
	if c.zstd {
		return 9 + 3*max(blocks, 1) + n // the frame's header, the blocks' headers
	}
	return 5*blocks + n
}

// overhead is the length of a batch's framing besides the headers' and the content's.
func (c *tarCodec) overhead() int64 {
	if c.zstd {
		return 0
	}
	return 10 + 5 + 8 // gzip's header, the last (empty) block, gzip's trailer
}

// contentHeader writes what comes before n bytes of content: a zstd frame's header.
func (c *tarCodec) contentHeader(w io.Writer, n int64) {
	if c.zstd {
		var b [9]byte
		binary.LittleEndian.PutUint32(b[:4], 0xfd2fb528)
		b[4] = 2<<6 | 1<<5 // the content's size in 4 bytes; one segment (no window size)
		binary.LittleEndian.PutUint32(b[5:], uint32(n))
		w.Write(b[:])
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

// tarHeads are a batch's tar headers, each after the padding of the content before it,
// and the archive's end: raw, and compressed.
type tarHeads struct {
	raw, z [][]byte
}

func (t *tarHeads) make(c *tarCodec, files []*Entry) error {
	t.raw, t.z = t.raw[:0], t.z[:0]
	var pad int64 // the padding the previous file's content needs
	add := func(raw []byte) { t.raw, t.z = append(t.raw, raw), append(t.z, c.compress(raw)) }
	for _, e := range files {
		var hb bytes.Buffer
		hb.Write(make([]byte, pad))
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: e.Path, Mode: 0o600, Size: e.Size, ModTime: time.Unix(0, 0)}
		if err := tar.NewWriter(&hb).WriteHeader(hdr); err != nil {
			return fmt.Errorf("making the tar header of %q: %w", e.Path, err)
		}
		add(hb.Bytes())
		pad = (512 - e.Size%512) % 512
	}
	add(make([]byte, pad+1024))
	return nil
}

// size is the length of the batch.
func (t *tarHeads) size(c *tarCodec, files []*Entry) int64 {
	n := c.overhead()
	for _, z := range t.z {
		n += int64(len(z))
	}
	for _, e := range files {
		n += c.contentSize(e.Size)
	}
	return n
}

// tarScript is the host's side of the stream, in release directory rel; the batches'
// file lists go to list (made and removed here).
func tarScript(th tarHost, rel, list string) string {
	q := sshconn.Quote
	unpack, sum := "gzip -dc", "sha256sum"
	if th.zstd {
		unpack = "zstd -dcq"
	}
	if th.b2sum {
		sum = "b2sum"
	}
	return fmt.Sprintf(`set -e
umask 022
mkdir -p %[2]s
cd %[1]s
k=0
while read -r n; do
  head -c "$n" | %[3]s | tar -xmf - --no-same-owner -v --quoting-style=literal --index-file=%[2]s/$k
  ( tr '\n' '\0' < %[2]s/$k | xargs -0 -r %[4]s -- | sha256sum | { read -r s _; echo "$k $s"; } ) &
  k=$((k+1))
done
wait
rm -rf %[2]s
`, q(rel), q(list), unpack, sum)
}

// sendTar sends files to the release directory as one stream (see above) and returns
// once the host has checked every batch.
func (h *Host) sendTar(ctx context.Context, th tarHost, id, dir string, files []*Entry, prog *uploadProgress) error {
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
	err = c.RunCmd(ctx, sshconn.Cmd{Line: tarScript(th, rel, h.staging(id)+".stream"), Stdin: pr, Stdout: &out})
	pr.CloseWithError(io.ErrClosedPipe)
	<-wrote
	if werr != nil {
		return werr
	}
	if err != nil {
		return fmt.Errorf("uploading to %s: %w", h.addr, err)
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

// writeTar writes the batches to w, reading each file from dir and checking that what is
// sent is what the manifest says; each batch's expected sum is set once it is written.
func (h *Host) writeTar(w io.Writer, th tarHost, dir string, files []*Entry, bs []*tarBatch, prog *uploadProgress) error {
	c := &tarCodec{zstd: th.zstd}
	bw := bufio.NewWriterSize(w, 64<<10)
	buf := make([]byte, c.maxBlock())
	var heads tarHeads
	for _, b := range bs {
		fs := files[b.lo:b.hi]
		if err := heads.make(c, fs); err != nil {
			return err
		}
		fmt.Fprintf(bw, "%d\n", heads.size(c, fs))
		crc := crc32.NewIEEE() // gzip's
		var isize uint32
		if !c.zstd {
			bw.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}) // deflate, no name, no time
		}
		head := func(i int) {
			bw.Write(heads.z[i])
			if !c.zstd {
				crc.Write(heads.raw[i])
				isize += uint32(len(heads.raw[i]))
			}
		}
		lines := sha256.New() // the host's hashing's lines
		for i, e := range fs {
			head(i)
			var sum hash.Hash
			if th.b2sum {
				sum, _ = blake2b.New512(nil)
			}
			if err := sendContent(bw, c, buf, filepath.Join(dir, filepath.FromSlash(e.Path)), e, crc, sum, prog); err != nil {
				return fmt.Errorf("uploading %q to %s: %w", e.Path, h.addr, err)
			}
			isize += uint32(e.Size)
			if sum != nil {
				fmt.Fprintf(lines, "%x  %s\n", sum.Sum(nil), e.Path)
			} else {
				fmt.Fprintf(lines, "%s  %s\n", e.SHA256, e.Path)
			}
			prog.fileSent()
		}
		head(len(fs))
		b.sum = hex.EncodeToString(lines.Sum(nil))
		if !c.zstd {
			bw.Write([]byte{1, 0, 0, 0xff, 0xff}) // the last block, empty
			var tr [8]byte
			binary.LittleEndian.PutUint32(tr[:4], crc.Sum32())
			binary.LittleEndian.PutUint32(tr[4:], isize)
			bw.Write(tr[:])
		}
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
