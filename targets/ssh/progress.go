package ssh

import (
	"io"
	"sync/atomic"

	"github.com/pushdeploy/pushdeploy/targets"
)

// uploadProgress counts what an upload to one host has sent and tells targets.Progress.
type uploadProgress struct {
	p     targets.Progress
	host  string
	files int
	bytes int64
	sentF atomic.Int64
	sentB atomic.Int64
}

func newUploadProgress(p targets.Progress, host string, send []*Entry) *uploadProgress {
	u := &uploadProgress{p: p, host: host, files: len(send)}
	for _, e := range send {
		u.bytes += e.Size
	}
	u.report(false, nil)
	return u
}

func (u *uploadProgress) report(done bool, err error) {
	u.p.Upload(u.host, targets.Transfer{Files: int(u.sentF.Load()), TotalFiles: u.files,
		Bytes: u.sentB.Load(), TotalBytes: u.bytes, Done: done, Err: err})
}

// fileSent counts a file whose content has all been written.
func (u *uploadProgress) fileSent() {
	u.sentF.Add(1)
	u.report(false, nil)
}

// reader counts what is read from r as sent (it is written as it is read).
func (u *uploadProgress) reader(r io.Reader) io.Reader { return countingReader{r, u} }

type countingReader struct {
	r io.Reader
	u *uploadProgress
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.u.sentB.Add(int64(n))
		c.u.report(false, nil)
	}
	return n, err
}
