package targets_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/pushdeploy/pushdeploy/targets"
)

// TestLineWriter: lines are written whole with their prefix, however the writes split
// them; a last line without a newline is written at Close; two writers sharing a lock
// never interleave inside a line.
func TestLineWriter(t *testing.T) {
	var out bytes.Buffer
	var mu sync.Mutex
	w := targets.NewLineWriter(&out, &mu, "h1 | ")
	for _, p := range []string{"one\ntw", "o\n", "", "thr", "ee"} {
		w.Write([]byte(p))
	}
	if out.String() != "h1 | one\nh1 | two\n" {
		t.Errorf("before Close: %q", out.String())
	}
	w.Close()
	if out.String() != "h1 | one\nh1 | two\nh1 | three\n" {
		t.Errorf("after Close: %q", out.String())
	}

	out.Reset()
	a, b := targets.NewLineWriter(&out, &mu, "a | "), targets.NewLineWriter(&out, &mu, "b | ")
	var wg sync.WaitGroup
	for _, lw := range []*targets.LineWriter{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				lw.Write([]byte("x"))
				lw.Write([]byte("y\n"))
			}
		}()
	}
	wg.Wait()
	for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		if l != "a | xy" && l != "b | xy" {
			t.Fatalf("interleaved line %q", l)
		}
	}
}
