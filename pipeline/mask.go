package pipeline

import (
	"bytes"
	"io"
	"sort"
	"sync"
)

// masker writes to w with every secret value replaced by "***": secrets never reach a log.
// A multi-line secret (a key, a kubeconfig) is masked line by line too, since output comes
// in lines.
type masker struct {
	mu      sync.Mutex
	w       io.Writer
	secrets [][]byte
}

func newMasker(w io.Writer, values [][]byte) *masker {
	return &masker{w: w, secrets: maskable(values)}
}

// maskable lists what to mask, longest first so that a secret containing another is
// masked whole.
func maskable(values [][]byte) [][]byte {
	var out [][]byte
	for _, v := range values {
		v = bytes.TrimSpace(v)
		if len(v) < 4 {
			continue // too short to tell from ordinary text; such a secret is no secret
		}
		out = append(out, v)
		for _, l := range bytes.Split(v, []byte("\n")) {
			if l = bytes.TrimSpace(l); len(l) >= 8 && !bytes.Equal(l, v) && !bytes.HasPrefix(l, []byte("-----")) {
				out = append(out, l)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

func mask(p []byte, secrets [][]byte) []byte {
	for _, s := range secrets {
		if bytes.Contains(p, s) {
			p = bytes.ReplaceAll(p, s, []byte("***"))
		}
	}
	return p
}

func (m *masker) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.w.Write(mask(append([]byte(nil), p...), m.secrets)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// maskedError is an error whose text has the secrets masked; errors.Is and As still see
// the original.
type maskedError struct {
	msg string
	err error
}

func (e *maskedError) Error() string { return e.msg }
func (e *maskedError) Unwrap() error { return e.err }

func maskError(err error, values [][]byte) error {
	if err == nil {
		return nil
	}
	msg := string(mask([]byte(err.Error()), maskable(values)))
	if msg == err.Error() {
		return err
	}
	return &maskedError{msg: msg, err: err}
}
