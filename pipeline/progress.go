package pipeline

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/pushdeploy/pushdeploy/targets"
)

// Sent is what a deploy uploaded to one host: files (ssh), or an image's layers (Docker
// hosts without a registry, Layers true). A pull the host made itself is not in it.
type Sent struct {
	Files  int   `json:"files"`
	Bytes  int64 `json:"bytes"`
	Layers bool  `json:"layers,omitempty"`
}

// DefaultProgressEvery is how often a host's upload is reported by a line of its own when
// the progress writer is not a terminal (CI logs).
const DefaultProgressEvery = 5 * time.Second

// WithProgress draws the hosts' uploads on w as they go: a bar per host when w is a
// terminal, else a line per host when its upload starts, every DefaultProgressEvery while
// it runs, and when it ends. Default: nowhere (the record counts what each host was sent
// all the same).
func WithProgress(w io.Writer) Option {
	return func(o *options) error { o.progress = w; return nil }
}

// isTerminal says whether w is a terminal (bars) rather than a file or a pipe (lines).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressOut is where a deploy flow's progress goes: the log itself when it is a terminal
// (bars need it unwrapped), else the log with the stage lines' indent.
func progressOut(raw, log io.Writer) io.Writer {
	if isTerminal(raw) {
		return raw
	}
	return prefixed(log, "    ")
}

// progress is the targets.Progress a deploy's hosts report to: it keeps what each host was
// sent, for the record, and draws it.
type progress struct {
	mu    sync.Mutex
	last  map[string]targets.Transfer
	out   io.Writer
	every time.Duration
	tty   bool

	bars     *mpb.Progress
	bar      map[string]*hostBar
	reported map[string]targets.Transfer // lines: what the last line of each host said
	stop     chan struct{}
	started  map[string]time.Time
	drawing  sync.WaitGroup // bars being finished
}

var _ targets.Progress = (*progress)(nil)

// hostBar is a host's bar and the file counts its decorator shows (read by mpb's goroutine,
// which must not wait for progress.mu: moving a bar waits for that goroutine).
type hostBar struct {
	b            *mpb.Bar
	files, total atomic.Int64
}

func newProgress(o *options) *progress {
	return &progress{last: map[string]targets.Transfer{}, out: o.progress, every: o.progressEvery, tty: isTerminal(o.progress),
		bar: map[string]*hostBar{}, reported: map[string]targets.Transfer{}, started: map[string]time.Time{}}
}

// Upload records t and draws it.
func (p *progress) Upload(host string, t targets.Transfer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, seen := p.last[host]
	p.last[host] = t
	if p.out == nil {
		return
	}
	if !seen {
		p.started[host] = time.Now()
	}
	if p.tty {
		p.drawBar(host, t)
		return
	}
	switch {
	case t.Done:
		p.line(host, t)
		return
	case seen:
		return
	case t.Pull:
		// The registry tells a host its layers and their sizes as the pull goes.
		fmt.Fprintf(p.out, "%s: pulling the image\n", host)
	case t.TotalFiles > 0:
		fmt.Fprintf(p.out, "%s: uploading %d %s, %s\n", host, t.TotalFiles, unit(t.Layers), bytesText(t.TotalBytes))
	default:
		return
	}
	p.reported[host] = t
	if p.stop == nil {
		p.stop = make(chan struct{})
		go p.tick(p.stop)
	}
}

// line writes the line of a host's finished upload.
func (p *progress) line(host string, t targets.Transfer) {
	took := time.Since(p.started[host]).Round(10 * time.Millisecond)
	switch {
	case t.Err != nil:
		fmt.Fprintf(p.out, "%s: %s stopped after %d of %d %s, %s of %s\n", host, verb(t, "upload", "pull"), t.Files, t.TotalFiles, unit(t.Layers), bytesText(t.Bytes), bytesText(t.TotalBytes))
	case t.TotalFiles == 0:
		fmt.Fprintf(p.out, "%s: nothing to %s\n", host, verb(t, "upload", "pull"))
	default:
		fmt.Fprintf(p.out, "%s: %s %d %s, %s in %s\n", host, verb(t, "uploaded", "pulled"), t.Files, unit(t.Layers), bytesText(t.Bytes), took)
	}
	p.reported[host] = t
}

// tick writes a line for every host whose upload moved since its last line.
func (p *progress) tick(stop chan struct{}) {
	tk := time.NewTicker(p.every)
	defer tk.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tk.C:
		}
		p.mu.Lock()
		for host, t := range p.last {
			if r := p.reported[host]; !t.Done && t != r {
				pct := 0
				if t.TotalBytes > 0 {
					pct = int(t.Bytes * 100 / t.TotalBytes)
				}
				fmt.Fprintf(p.out, "%s: %s: %d/%d %s, %s/%s (%d%%)\n", host, verb(t, "uploading", "pulling"), t.Files, t.TotalFiles, unit(t.Layers), bytesText(t.Bytes), bytesText(t.TotalBytes), pct)
				p.reported[host] = t
			}
		}
		p.mu.Unlock()
	}
}

// drawBar moves the host's bar (made on its first report with something to send).
func (p *progress) drawBar(host string, t targets.Transfer) {
	hb := p.bar[host]
	if hb == nil {
		if t.TotalBytes == 0 {
			return
		}
		if p.bars == nil {
			p.bars = mpb.New(mpb.WithOutput(p.out), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
		}
		hb = &hostBar{}
		noun := "files"
		if t.Layers {
			noun = "layers"
		}
		files := func(decor.Statistics) string {
			return fmt.Sprintf("%d/%d %s", hb.files.Load(), hb.total.Load(), noun)
		}
		name := host
		if t.Pull {
			name += " (pull)"
		}
		hb.b = p.bars.AddBar(t.TotalBytes,
			mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR), decor.CountersKiloByte("% .1f / % .1f", decor.WCSyncSpace)),
			mpb.AppendDecorators(decor.Any(files, decor.WCSyncSpace), decor.OnComplete(decor.Percentage(decor.WCSyncSpace), "done")))
		p.bar[host] = hb
	}
	hb.files.Store(int64(t.Files))
	hb.total.Store(int64(t.TotalFiles))
	if t.Pull && !t.Done {
		hb.b.SetTotal(t.TotalBytes, false) // a pull learns its layers' sizes as it goes
	}
	hb.b.SetCurrent(t.Bytes)
	if t.Done {
		if t.Err != nil {
			hb.b.Abort(false)
		} else {
			hb.b.SetTotal(-1, true)
		}
		for _, o := range p.bar {
			if !o.b.AbortedOrCompleted() {
				return
			}
		}
		// Every bar is finished: the lines that follow (switches, health) need the
		// terminal to themselves.
		bars := p.bars
		p.bars, p.bar = nil, map[string]*hostBar{}
		p.drawing.Go(bars.Wait)
	}
}

// sent is what host was sent, nil when it reported no upload.
func (p *progress) sent(host string) *Sent {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.last[host]
	if !ok || t.Pull {
		return nil
	}
	return &Sent{Files: t.Files, Bytes: t.Bytes, Layers: t.Layers}
}

// verb is what a transfer does: upload, or pull (the host fetches it itself).
func verb(t targets.Transfer, upload, pull string) string {
	if t.Pull {
		return pull
	}
	return upload
}

// unit is what a transfer counts: files, or an image's layers.
func unit(layers bool) string {
	if layers {
		return "layer(s)"
	}
	return "file(s)"
}

// close stops drawing: the ticker, and the bars (each finished or aborted first).
func (p *progress) close() {
	p.mu.Lock()
	if p.stop != nil {
		close(p.stop)
		p.stop = nil
	}
	bars, open := p.bars, p.bar
	p.bars, p.bar = nil, map[string]*hostBar{}
	p.mu.Unlock()
	for _, hb := range open {
		if !hb.b.Completed() {
			hb.b.Abort(false)
		}
	}
	if bars != nil {
		bars.Wait()
	}
	p.drawing.Wait()
}

// bytesText is n in decimal units, as the benchmarks and rsync count them.
func bytesText(n int64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d B", n)
	case n < 1000*1000:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	case n < 1000*1000*1000:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.2f GB", float64(n)/1e9)
}
