package ssh

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// streamVerifier checks a large upload on the host as it lands: one sha256sum -c, started
// with the first file, reads its list on stdin, a line as each file's upload completes
// (after SFTP closed it), so that the host hashes while the rest is sent and only the last
// files are left to check when the last byte is out.
type streamVerifier struct {
	h     *Host
	ctx   context.Context
	dir   string // the directory the names are relative to, on the host
	lines chan string
	once  sync.Once
	done  chan error
}

// batchWait is how long the feeder lets lines gather before it writes them: one SSH packet
// for the files that complete meanwhile instead of one each.
const batchWait = 5 * time.Millisecond

func (h *Host) newStreamVerifier(ctx context.Context, dir string, files int) *streamVerifier {
	return &streamVerifier{h: h, ctx: ctx, dir: dir, lines: make(chan string, files), done: make(chan error, 1)}
}

// add queues the check of one file (name relative to dir); it never blocks.
func (v *streamVerifier) add(sum, name string) {
	v.once.Do(v.start)
	v.lines <- sum + "  " + name + "\n"
}

func (v *streamVerifier) start() {
	c, err := v.h.client(v.ctx)
	if err != nil {
		v.done <- err
		go func() {
			for range v.lines {
			}
		}()
		return
	}
	pr, pw := io.Pipe()
	go func() {
		var b strings.Builder
		for l := range v.lines {
			b.WriteString(l)
			closed := false
		gather:
			for {
				select {
				case l, ok := <-v.lines:
					if !ok {
						closed = true
						break gather
					}
					b.WriteString(l)
				default:
					break gather
				}
			}
			pw.Write([]byte(b.String())) // fails once the command is gone; the rest is drained
			b.Reset()
			if closed {
				break
			}
			time.Sleep(batchWait)
		}
		pw.Close()
	}()
	go func() {
		// Its complaints go to stderr, into the error.
		err := c.RunCmd(v.ctx, sshconn.Cmd{Line: "cd " + sshconn.Quote(v.dir) + " && exec sha256sum -c --quiet --strict 1>&2", Stdin: pr})
		pr.CloseWithError(io.ErrClosedPipe)
		v.done <- err
	}()
}

// wait ends the list and returns the check's result; nil when nothing was added.
func (v *streamVerifier) wait() error {
	close(v.lines)
	started := true
	v.once.Do(func() { started = false })
	if !started {
		return nil
	}
	return <-v.done
}

// modesScript gives the sent files, at their paths in the release, their modes (after a
// streamed check, which sets none).
func (h *Host) modesScript(id string, send []*Entry) string {
	return fmt.Sprintf("set -e\ncd %s\n", sshconn.Quote(h.path+"/releases/"+id)) + chmodByMode(send, atPath)
}
