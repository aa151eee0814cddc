package ssh

import (
	"bytes"
	"context"
	"fmt"

	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/hoststate"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// While this target holds the deploy lock nobody else changes its hosts (that is the lock's
// contract), so the status that its own last write on a host printed, in the same script
// (the switch, a discard), is that host's status: Status answers from it instead of reading
// again. A deploy reads every host's status after the switch for pruning and again for the
// live version; this saves those reads. Any other script on the host, and taking, releasing,
// breaking or failing to renew the lock, forgets it.

// deployLock is the deploy lock of package hoststate, which tells the target whether it
// holds it.
type deployLock struct {
	*hoststate.Files
	t *Target
}

var (
	_ targets.Locker     = (*deployLock)(nil)
	_ targets.Controller = (*deployLock)(nil)
)

func (l *deployLock) Acquire(ctx context.Context, lk targets.Lock) error {
	l.t.setHeld(false)
	err := l.Files.Acquire(ctx, lk)
	l.t.setHeld(err == nil)
	return err
}

func (l *deployLock) Renew(ctx context.Context, lk targets.Lock) error {
	err := l.Files.Renew(ctx, lk)
	if err != nil {
		l.t.setHeld(false)
	}
	return err
}

func (l *deployLock) Release(ctx context.Context, lk targets.Lock) error {
	l.t.setHeld(false)
	return l.Files.Release(ctx, lk)
}

func (l *deployLock) Break(ctx context.Context) error {
	l.t.setHeld(false)
	return l.Files.Break(ctx)
}

// setHeld records whether the target holds the lock; either way the known statuses go.
func (t *Target) setHeld(held bool) {
	t.knownMu.Lock()
	defer t.knownMu.Unlock()
	t.held = held
	t.known = nil
}

// knownStatus is h's status as its last write printed it, while the lock is held.
func (t *Target) knownStatus(h *Host) (targets.Status, bool) {
	t.knownMu.Lock()
	defer t.knownMu.Unlock()
	st, ok := t.known[h]
	if !ok || !t.held {
		return targets.Status{}, false
	}
	// A copy: the caller may change it.
	st.Kept = append([]targets.Kept(nil), st.Kept...)
	if st.Live != nil {
		k := *st.Live
		st.Live = &k
	}
	return st, true
}

// forget drops what is known of h's status: a script is about to change it.
func (t *Target) forget(h *Host) {
	t.knownMu.Lock()
	defer t.knownMu.Unlock()
	delete(t.known, h)
}

// Markers around the status a write prints after it.
const (
	statusBegin = "\x1epushdeploy-status"
	statusEnd   = "\x1epushdeploy-status-end"
)

// statusAfter is the shell text that prints h's status between the markers, whatever the
// script before it set (set -e, the directory).
func (h *Host) statusAfter() string {
	return fmt.Sprintf("printf '%%s\\n' %s\n( set +e; cd -P %s 2>/dev/null || exit 0\n%s) || true\nprintf '%%s\\n' %s\n",
		sshconn.Quote(statusBegin), sshconn.Quote(h.path), statusLines, sshconn.Quote(statusEnd))
}

// learnStatus keeps the status that statusAfter printed in out, while the lock is held.
func (h *Host) learnStatus(out []byte) {
	_, rest, ok := bytes.Cut(out, []byte(statusBegin+"\n"))
	if !ok {
		return
	}
	body, _, ok := bytes.Cut(rest, []byte(statusEnd+"\n"))
	if !ok {
		return
	}
	st, err := h.parseStatus(body)
	if err != nil {
		return
	}
	t := h.t
	t.knownMu.Lock()
	defer t.knownMu.Unlock()
	if !t.held {
		return
	}
	if t.known == nil {
		t.known = map[*Host]targets.Status{}
	}
	t.known[h] = st
}
