package docker

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/targets"
)

// TestLogsAndExecInTheLiveContainer: logs read the live container's output through the
// engine over SSH, exec runs in it with the release's variables; before anything is live,
// both say so naming the host.
func TestLogsAndExecInTheLiveContainer(t *testing.T) {
	b := newBench(t)
	tg := b.target()
	h := tg.Hosts()[0]
	var out bytes.Buffer
	if err := h.(targets.LogReader).Logs(t.Context(), &out, targets.LogOptions{}); !errors.As(err, new(*targets.NoLiveError)) || !strings.Contains(err.Error(), b.hosts[0].Addr) {
		t.Fatalf("logs with nothing live: %v", err)
	}
	if err := h.(targets.Executor).Exec(t.Context(), []string{"true"}, &out); !errors.As(err, new(*targets.NoLiveError)) {
		t.Fatalf("exec with nothing live: %v", err)
	}

	ref, dg := b.image("v1", func(s *testbench.HelloImage) { s.CheckEnvAddr = true })
	r := b.release("r1", "v1", ref, dg)
	if err := b.rollout(tg, r); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := h.(targets.LogReader).Logs(t.Context(), &out, targets.LogOptions{Since: 3600e9}); err != nil {
		t.Fatalf("logs: %v", err)
	}
	if !strings.Contains(out.String(), "hello v1 listening on "+b.addr()) {
		t.Errorf("logs of the live container: %q", out.String())
	}

	// --follow: a line the container prints later (written to its process's stdout by an
	// exec) arrives, and cancelling ends the stream without an error.
	fctx, stop := context.WithCancel(t.Context())
	follow := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- h.(targets.LogReader).Logs(fctx, follow, targets.LogOptions{Follow: true}) }()
	for !strings.Contains(follow.String(), "listening on") {
		select {
		case err := <-done:
			t.Fatalf("follow ended by itself: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := h.(targets.Executor).Exec(t.Context(), []string{"/bin/sh", "-c", "echo a later line > /proc/1/fd/1"}, &out); err != nil {
		t.Fatalf("exec: %v", err)
	}
	for !strings.Contains(follow.String(), "a later line\n") {
		select {
		case err := <-done:
			t.Fatalf("follow ended by itself: %v\n%s", err, follow.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("follow stopped by the caller: %v", err)
	}

	out.Reset()
	err := h.(targets.Executor).Exec(t.Context(), []string{"/bin/sh", "-c", `echo "$PUSHDEPLOY_RELEASE $PUSHDEPLOY_VERSION $HELLO_VERSION"; echo oops >&2; exit 3`}, &out)
	var ee *targets.ExitError
	if !errors.As(err, &ee) || ee.Code != 3 || ee.Host != b.hosts[0].Addr {
		t.Fatalf("exec exit 3: %v", err)
	}
	// stdout and stderr are two streams: their order between each other is not kept.
	if got := out.String(); len(got) != len("r1 v1 v1\noops\n") || !strings.Contains(got, "r1 v1 v1\n") || !strings.Contains(got, "oops\n") {
		t.Errorf("exec output %q", out.String())
	}
	out.Reset()
	if err := h.(targets.Executor).Exec(t.Context(), []string{"/hello", "-check", "http://" + b.addr() + "/health"}, &out); err != nil {
		t.Errorf("exec of the service's own check: %v (%s)", err, out.String())
	}
	// A cancelled command returns, saying so.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := h.(targets.Executor).Exec(ctx, []string{"/bin/sh", "-c", "sleep 60"}, &out); err == nil {
		t.Error("exec with a cancelled context succeeded")
	}
}

// syncBuffer is a buffer a follow goroutine writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
