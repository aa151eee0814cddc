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

	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// The files of a release made from nothing (direct) go, when the host has GNU tar and GNU
// head, as one stream over one SSH session instead of SFTP: SFTP costs about 440 bytes a
// file in requests and replies, and the streamed check's list 80 more. The stream is cut in
// batches of about streamBatch bytes of content, each a line with its length and then one
// gzip member that holds a tar archive: the tar headers and padding in small compressed
// deflate blocks, the files' content in stored blocks (not compressed: no CPU spent on
// content that is usually compressed already), about 100 bytes a file in all. On the host
// `head -c` reads each batch exactly (GNU head reads no more than it is asked), `gzip -dc |
// tar -x` writes its files at their paths, and while the next batch streams the batch's
// files are hashed from disk in the background: the host prints one sum of sha256sum's
// lines for the batch, which is compared here with the sum of the lines the manifest gives.
// A batch that differs is checked file by file to name the files.

// streamBatch is the size of content after which a batch of the stream ends: the host
// hashes a batch while the next one comes, so the last one is what is left to check when
// the last byte is out.
const streamBatch = 4 << 20

// tarReady is what treeScript's tarProbe prints when the host can take the stream.
const tarReady = "pushdeploy-tar-stream"

// tarProbe, added to the tree script, says whether the host has GNU tar and GNU head.
const tarProbe = `case "$(tar --version 2>/dev/null)$(head --version 2>/dev/null)" in *"GNU tar"*"GNU coreutils"*) echo ` + tarReady + ` ;; esac
`

// tarBatch is one batch of the stream: files[lo:hi] of the files sent.
type tarBatch struct {
	lo, hi int
	sum    string // the expected sum of the host's sha256sum lines, once it is sent
}

// storedSize is the length of n bytes in stored deflate blocks.
func storedSize(n int64) int64 { return n + 5*((n+0xffff-1)/0xffff) }

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

// tarHeads are a batch's tar headers, each after the padding of the content before it,
// and the archive's end: raw, and compressed as deflate blocks (none the last).
type tarHeads struct {
	raw, z [][]byte
	fw     *flate.Writer
}

func (t *tarHeads) make(files []*Entry) error {
	if t.fw == nil {
		t.fw, _ = flate.NewWriter(nil, flate.BestCompression)
	}
	t.raw, t.z = t.raw[:0], t.z[:0]
	var pad int64 // the padding the previous file's content needs
	add := func(raw []byte) {
		var out bytes.Buffer
		t.fw.Reset(&out)
		t.fw.Write(raw)
		t.fw.Flush() // ends on a byte, with an empty stored block; not the last block
		t.raw, t.z = append(t.raw, raw), append(t.z, out.Bytes())
	}
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

// size is the length of the batch's gzip member.
func (t *tarHeads) size(files []*Entry) int64 {
	n := int64(10 + 5 + 8) // gzip's header, the last (empty) block, gzip's trailer
	for _, z := range t.z {
		n += int64(len(z))
	}
	for _, e := range files {
		n += storedSize(e.Size)
	}
	return n
}

// tarScript is the host's side of the stream, in release directory rel; the batches'
// file lists go to list (made and removed here).
func tarScript(rel, list string) string {
	q := sshconn.Quote
	return fmt.Sprintf(`set -e
umask 022
mkdir -p %[2]s
cd %[1]s
k=0
while read -r n; do
  head -c "$n" | gzip -dc | tar -xmf - --no-same-owner -v --quoting-style=literal --index-file=%[2]s/$k
  ( tr '\n' '\0' < %[2]s/$k | xargs -0 -r sha256sum -- | sha256sum | { read -r s _; echo "$k $s"; } ) &
  k=$((k+1))
done
wait
rm -rf %[2]s
`, q(rel), q(list))
}

// sendTar sends files to the release directory as one stream (see above) and returns
// once the host has checked every batch.
func (h *Host) sendTar(ctx context.Context, id, dir string, files []*Entry, prog *uploadProgress) error {
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
		werr = h.writeTar(pw, dir, files, bs, prog)
		if werr != nil {
			cancel(werr) // the host stops; what it wrote is in no complete release
		}
		pw.CloseWithError(werr)
	}()
	var out bytes.Buffer
	rel := h.path + "/releases/" + id
	err = c.RunCmd(ctx, sshconn.Cmd{Line: tarScript(rel, h.staging(id)+".stream"), Stdin: pr, Stdout: &out})
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
// sent is what the manifest says.
func (h *Host) writeTar(w io.Writer, dir string, files []*Entry, bs []*tarBatch, prog *uploadProgress) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	buf := make([]byte, 0xffff)
	var th tarHeads
	for _, b := range bs {
		fs := files[b.lo:b.hi]
		if err := th.make(fs); err != nil {
			return err
		}
		sum := sha256.New()
		for _, e := range fs {
			fmt.Fprintf(sum, "%s  %s\n", e.SHA256, e.Path)
		}
		b.sum = hex.EncodeToString(sum.Sum(nil))
		fmt.Fprintf(bw, "%d\n", th.size(fs))
		bw.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}) // gzip: deflate, no name, no time
		crc := crc32.NewIEEE()
		var isize uint32
		head := func(i int) {
			bw.Write(th.z[i])
			crc.Write(th.raw[i])
			isize += uint32(len(th.raw[i]))
		}
		for i, e := range fs {
			head(i)
			if err := sendStored(bw, buf, filepath.Join(dir, filepath.FromSlash(e.Path)), e, crc, prog); err != nil {
				return fmt.Errorf("uploading %q to %s: %w", e.Path, h.addr, err)
			}
			isize += uint32(e.Size)
			prog.fileSent()
		}
		head(len(fs))
		bw.Write([]byte{1, 0, 0, 0xff, 0xff}) // the last block, empty
		var tr [8]byte
		binary.LittleEndian.PutUint32(tr[:4], crc.Sum32())
		binary.LittleEndian.PutUint32(tr[4:], isize)
		if _, err := bw.Write(tr[:]); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// sendStored writes e's content in stored deflate blocks, hashing it: a file that changed
// since the manifest was made is refused.
func sendStored(w io.Writer, buf []byte, local string, e *Entry, crc hash.Hash32, prog *uploadProgress) error {
	f, err := os.Open(local)
	if err != nil {
		return err
	}
	defer f.Close()
	sum := sha256.New()
	r := prog.reader(f)
	for left := e.Size; left > 0; {
		n := min(left, int64(len(buf)))
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return errors.New("the file changed since the artifacts' digest was taken")
			}
			return err
		}
		w.Write([]byte{0, byte(n), byte(n >> 8), ^byte(n), ^byte(n >> 8)})
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		sum.Write(buf[:n])
		crc.Write(buf[:n])
		left -= n
	}
	if hex.EncodeToString(sum.Sum(nil)) != e.SHA256 {
		return errors.New("the file changed since the artifacts' digest was taken")
	}
	return nil
}
