package targets

import (
	"bytes"
	"io"
	"sync"
)

// LineWriter writes whole lines to an underlying writer, each with a prefix, so that the
// output of several hosts (or pods) streamed into one writer interleaves by line, never
// inside one. Lines are written under the lock given to NewLineWriter, shared by every
// LineWriter of the same destination. Close writes a last line that has no newline.
type LineWriter struct {
	bmu    sync.Mutex // guards buf: a writer's stdout and stderr may be written at once
	mu     *sync.Mutex
	w      io.Writer
	prefix []byte
	buf    []byte
}

// maxLine is the length at which a line with no newline yet is written anyway.
const maxLine = 64 << 10

// NewLineWriter returns a writer that prefixes every line written to it with prefix and
// writes it to w under mu.
func NewLineWriter(w io.Writer, mu *sync.Mutex, prefix string) *LineWriter {
	return &LineWriter{mu: mu, w: w, prefix: []byte(prefix)}
}

func (l *LineWriter) Write(p []byte) (int, error) {
	l.bmu.Lock()
	defer l.bmu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			if len(l.buf) < maxLine {
				return len(p), nil
			}
			i = len(l.buf) - 1
		}
		if err := l.line(l.buf[:i+1]); err != nil {
			return len(p), err
		}
		l.buf = l.buf[i+1:]
	}
}

func (l *LineWriter) line(b []byte) error {
	out := make([]byte, 0, len(l.prefix)+len(b)+1)
	out = append(append(out, l.prefix...), b...)
	if out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := l.w.Write(out)
	return err
}

// Close writes what is left of a last line without a newline.
func (l *LineWriter) Close() error {
	l.bmu.Lock()
	defer l.bmu.Unlock()
	if len(l.buf) == 0 {
		return nil
	}
	b := l.buf
	l.buf = nil
	return l.line(b)
}

// SyncWriter returns a writer that serialises writes to w: a command's stdout and stderr
// are copied by two goroutines.
func SyncWriter(w io.Writer) io.Writer {
	if _, ok := w.(*syncWriter); ok {
		return w
	}
	return &syncWriter{w: w}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
