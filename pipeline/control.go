package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pushdeploy/pushdeploy/targets"
)

// Actions of pause, resume and abort, kept with the deploy lock (targets.Control): the
// running deploy reads them from the target during its bakes, so they work from any machine
// that reaches it.
const (
	ControlPause = "pause"
	ControlAbort = "abort"
)

// readControl is what was asked of this deploy, read from its lock; the zero Control when
// nothing was, or the lock cannot be read now (the next tick reads it again).
func (e *engine) readControl(ctx context.Context) targets.Control {
	h := e.held
	if h == nil {
		return targets.Control{}
	}
	cur, err := e.t.Locker().Holder(ctx)
	if err != nil || cur == nil || cur.Control == nil || !sameLock(*cur, h.current()) {
		return targets.Control{}
	}
	return *cur.Control
}

func sameLock(a, b targets.Lock) bool {
	return a.Owner == b.Owner && a.PipelineID == b.PipelineID && a.Acquired.Truncate(time.Second).Equal(b.Acquired.Truncate(time.Second))
}

// setPhase says in the lock what the deploy does now, for status; a failure to write it is
// a warning (the renewal that follows says it again).
func (e *engine) setPhase(ctx context.Context, phase string) {
	if e.held == nil {
		return
	}
	if err := e.held.setPhase(ctx, phase); err != nil {
		e.logf("warning: saying %q in the deploy lock: %v", phase, err)
	}
}

// current is the lock as last written.
func (h *heldLock) current() targets.Lock {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.l
}

// setPhase renews the lock at once with phase.
func (h *heldLock) setPhase(ctx context.Context, phase string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	next := h.l
	next.Phase = phase
	next.Expires = h.e.o.now().Add(h.e.o.lockTTL)
	if err := h.lk.Renew(ctx, next); err != nil {
		return err
	}
	h.l = next
	return nil
}

// ControlState is what pause, resume and abort did.
type ControlState struct {
	Env string `json:"env"`
	// Action is "pause", "resume" or "abort".
	Action string `json:"action"`
	// Holder is the deploy asked, as its lock said before.
	Holder *targets.Lock `json:"holder,omitempty"`
	// Message says in a line what was asked and when it takes effect.
	Message string `json:"message"`
}

// NoDeployError says there is no running deploy to pause, resume or abort.
type NoDeployError struct {
	Env    string
	Holder *targets.Lock // a lock taken by hand (lock acquire), nil for none
}

func (e *NoDeployError) Error() string {
	if e.Holder != nil {
		return fmt.Sprintf("environment %q: no deploy is running: the lock is held by %s, not a deploy", e.Env, e.Holder)
	}
	return fmt.Sprintf("environment %q: no deploy is running (the deploy lock is free)", e.Env)
}

// Pause asks the deploy running in the named environment to hold: in its bake (now, or
// the next one) its clock stops, its hosts are still probed (a failure still rolls back)
// and its lock is still renewed, until Resume or Abort.
func (x *Environments) Pause(ctx context.Context, name string) (*ControlState, error) {
	return x.control(ctx, name, ControlPause)
}

// Resume lets a paused deploy in the named environment go on: its bake takes up where it
// stopped.
func (x *Environments) Resume(ctx context.Context, name string) (*ControlState, error) {
	return x.control(ctx, name, "resume")
}

// Abort asks the deploy running in the named environment to stop in its bake (now, or the
// next one) and return every host it switched to its previous release; the deploy fails
// with an *AbortedError (exit code 5).
func (x *Environments) Abort(ctx context.Context, name string) (*ControlState, error) {
	return x.control(ctx, name, ControlAbort)
}

func (x *Environments) control(ctx context.Context, name, action string) (*ControlState, error) {
	e, lk, h, err := x.holder(ctx, name)
	if err != nil {
		return nil, err
	}
	defer e.t.Close()
	if h == nil || h.Expired(e.o.now()) {
		return nil, &NoDeployError{Env: name}
	}
	if h.Phase == "" {
		return nil, &NoDeployError{Env: name, Holder: h}
	}
	c, ok := lk.(targets.Controller)
	if !ok {
		return nil, fmt.Errorf("environment %q: the %s target's lock cannot carry a %s", name, e.t.Kind(), action)
	}
	var ctl *targets.Control
	var msg string
	switch action {
	case "resume":
		if h.Control == nil || h.Control.Action != ControlPause {
			return nil, fmt.Errorf("environment %q: the deploy of %s is not paused; nothing to resume", name, h)
		}
		msg = fmt.Sprintf("%s: resume asked of the deploy of %q; its bake takes up where it stopped", name, h.Owner)
	case ControlPause:
		if h.Control != nil && h.Control.Action == ControlAbort {
			return nil, fmt.Errorf("environment %q: the deploy of %q is being aborted (asked by %q); it cannot be paused", name, h.Owner, h.Control.By)
		}
		ctl = &targets.Control{Action: action, By: e.o.owner, At: e.o.now().UTC()}
		msg = fmt.Sprintf("%s: pause asked of the deploy of %q; it holds in its bake (now, or its next one), keeps probing and keeps its lock: resume or abort", name, h.Owner)
	case ControlAbort:
		ctl = &targets.Control{Action: action, By: e.o.owner, At: e.o.now().UTC()}
		msg = fmt.Sprintf("%s: abort asked of the deploy of %q; in its bake (now, or its next one) it returns every host it switched to the previous release", name, h.Owner)
	}
	if err := c.SetControl(ctx, *h, ctl); err != nil {
		if errors.Is(err, targets.ErrLockLost) {
			return nil, &NoDeployError{Env: name}
		}
		return nil, maskError(fmt.Errorf("environment %q: %w", name, err), x.Secrets.values())
	}
	return &ControlState{Env: name, Action: action, Holder: h, Message: msg}, nil
}
