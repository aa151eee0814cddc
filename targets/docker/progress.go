package docker

import (
	"io"
	"sync"

	"github.com/pushdeploy/pushdeploy/targets"
)

// pullProgress follows the engine's pull stream (one JSON message per layer event) and
// reports the pull as a Transfer of layers: the totals grow as the registry tells the
// host each layer's size, a layer counts once downloaded or found already there.
type pullProgress struct {
	p      targets.Progress
	host   string
	layers map[string]*pullLayer
	order  []string
	last   targets.Transfer
}

type pullLayer struct {
	current, total int64
	done           bool
}

func newPullProgress(p targets.Progress, host string) *pullProgress {
	return &pullProgress{p: p, host: host, layers: map[string]*pullLayer{}}
}

// message is one message of the stream: status "Pulling fs layer", "Waiting",
// "Downloading" (with progressDetail), "Download complete", "Extracting", "Pull complete",
// "Already exists"; messages without an id are about the image.
func (pp *pullProgress) message(id, status string, current, total int64) {
	switch status {
	case "Pulling fs layer", "Waiting", "Downloading", "Verifying Checksum", "Download complete", "Extracting", "Pull complete", "Already exists":
	default:
		return // about the image ("Pulling from ...", "Digest: ...", "Status: ..."), not a layer
	}
	if id == "" {
		return
	}
	l := pp.layers[id]
	if l == nil {
		l = &pullLayer{}
		pp.layers[id] = l
		pp.order = append(pp.order, id)
	}
	switch status {
	case "Downloading":
		l.current, l.total = current, max(total, l.total)
	case "Download complete", "Extracting", "Pull complete", "Already exists":
		if l.total > 0 {
			l.current = l.total
		}
		l.done = true
	}
	t := targets.Transfer{Layers: true, Pull: true, TotalFiles: len(pp.order)}
	for _, id := range pp.order {
		l := pp.layers[id]
		t.Bytes += l.current
		t.TotalBytes += l.total
		if l.done {
			t.Files++
		}
	}
	if t != pp.last {
		pp.last = t
		pp.p.Upload(pp.host, t)
	}
}

// end reports the pull over (err nil when the image is there).
func (pp *pullProgress) end(err error) {
	if len(pp.order) == 0 {
		return
	}
	t := pp.last
	t.Done, t.Err = true, err
	pp.p.Upload(pp.host, t)
}

// countingWriter reports the bytes of an image's load archive as they go to a host: the
// layers sent so far are those whose bytes all went (the archive holds them in order).
type countingWriter struct {
	w     io.Writer
	p     targets.Progress
	host  string
	sizes []int64 // of the layers sent, in order
	total int64

	mu sync.Mutex
	n  int64
}

func newCountingWriter(w io.Writer, p targets.Progress, host string, sizes []int64) *countingWriter {
	c := &countingWriter{w: w, p: p, host: host, sizes: sizes}
	for _, s := range sizes {
		c.total += s
	}
	p.Upload(host, c.transfer(false, nil))
	return c
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.mu.Lock()
	c.n += int64(n)
	c.mu.Unlock()
	c.p.Upload(c.host, c.transfer(false, nil))
	return n, err
}

func (c *countingWriter) transfer(done bool, err error) targets.Transfer {
	c.mu.Lock()
	n := c.n
	c.mu.Unlock()
	t := targets.Transfer{Layers: true, TotalFiles: len(c.sizes), TotalBytes: c.total, Bytes: min(n, c.total), Done: done, Err: err}
	var end int64
	for _, s := range c.sizes {
		end += s
		if n >= end {
			t.Files++
		}
	}
	if done && err == nil {
		t.Files, t.Bytes = len(c.sizes), c.total
	}
	return t
}

// end reports the load over.
func (c *countingWriter) end(err error) { c.p.Upload(c.host, c.transfer(true, err)) }
