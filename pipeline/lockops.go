package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pushdeploy/pushdeploy/targets"
)

// DefaultMaintenanceTTL is how long a lock taken by hand (AcquireLock) lives: it is not
// renewed, so it must outlast the maintenance window.
const DefaultMaintenanceTTL = time.Hour

// LockState is an environment's deploy lock as the lock commands report it.
type LockState struct {
	Env string `json:"env"`
	// Held is whether someone holds the lock (an expired lock is not held: the next deploy
	// takes it).
	Held bool `json:"held"`
	// Holder is who holds (or last held, when Expired) the lock; nil when there is none.
	Holder  *targets.Lock `json:"holder,omitempty"`
	Expired bool          `json:"expired,omitempty"`
	// Message says in a line what the command did or found.
	Message string `json:"message"`
}

// RenderLock prints the state's message.
func RenderLock(w io.Writer, s *LockState) error {
	_, err := fmt.Fprintln(w, s.Message)
	return err
}

func (x *Environments) locker(ctx context.Context, name string) (*engine, targets.Locker, error) {
	_, e, err := x.target(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	return e, e.t.Locker(), nil
}

// LockStatus says who holds the named environment's deploy lock, changing nothing.
func (x *Environments) LockStatus(ctx context.Context, name string) (*LockState, error) {
	e, _, h, err := x.holder(ctx, name)
	if err != nil {
		return nil, err
	}
	defer e.t.Close()
	s := &LockState{Env: name, Holder: h}
	switch {
	case h == nil:
		s.Message = fmt.Sprintf("%s is not locked", name)
	case h.Expired(e.o.now()):
		s.Expired = true
		s.Message = fmt.Sprintf("%s is not locked: its lock expired (it was held by %s)", name, h)
	default:
		s.Held = true
		s.Message = fmt.Sprintf("%s is locked by %s", name, h)
	}
	return s, nil
}

// AcquireLock takes the named environment's deploy lock for a maintenance window of ttl
// (DefaultMaintenanceTTL when 0), as Deployer (and PipelineID) with reason, and does not
// renew it: it lasts ttl unless released (ReleaseLock) or broken (Unlock with force).
// Deploys meanwhile wait for it or are refused, as the environment's lock.wait says. A lock
// someone holds is refused with a *targets.HeldError naming them.
func (x *Environments) AcquireLock(ctx context.Context, name string, ttl time.Duration, reason string) (*LockState, error) {
	if ttl == 0 {
		ttl = DefaultMaintenanceTTL
	}
	if ttl < time.Second {
		return nil, fmt.Errorf("lock ttl %s: must be at least 1s", ttl)
	}
	e, lk, err := x.locker(ctx, name)
	if err != nil {
		return nil, err
	}
	defer e.t.Close()
	now := e.o.now().UTC().Truncate(time.Second)
	l := targets.Lock{Owner: e.o.owner, PipelineID: e.o.pipelineID, Acquired: now, Expires: now.Add(ttl)}
	if reason != "" {
		// Locks have no field of their own for it: the pipeline id is what holders are
		// shown with.
		if l.PipelineID != "" {
			l.PipelineID += "; "
		}
		l.PipelineID += "maintenance: " + reason
	}
	if err := lk.Acquire(ctx, l); err != nil {
		var held *targets.HeldError
		if errors.As(err, &held) {
			return nil, maskError(fmt.Errorf("environment %q: %w; wait for it, or if it is dead, unlock (--force within its ttl)", name, err), x.Secrets.values())
		}
		return nil, maskError(fmt.Errorf("environment %q: taking the deploy lock: %w", name, err), x.Secrets.values())
	}
	return &LockState{Env: name, Held: true, Holder: &l,
		Message: fmt.Sprintf("%s locked by %s; it is not renewed: it expires after %s unless released (lock release) first", name, l, ttl)}, nil
}

// NotOwnerError refuses to release a lock someone else holds: that is what Unlock (with
// force within its TTL) is for.
type NotOwnerError struct {
	Env    string
	Owner  string
	Holder targets.Lock
}

func (e *NotOwnerError) Error() string {
	return fmt.Sprintf("environment %q: the deploy lock is not %q's to release: it is held by %s; "+
		"if that deploy is dead, unlock (--force within its ttl)", e.Env, e.Owner, e.Holder)
}

// ReleaseLock gives up the named environment's deploy lock when Deployer holds it (an
// expired lock of its own included), and says whose it was. A lock of someone else's is
// refused with a *NotOwnerError; no lock at all is not an error (Held false).
func (x *Environments) ReleaseLock(ctx context.Context, name string) (*LockState, error) {
	e, lk, h, err := x.holder(ctx, name)
	if err != nil {
		return nil, err
	}
	defer e.t.Close()
	if h == nil {
		return Unlocked(name, nil), nil
	}
	if h.Owner != e.o.owner {
		return nil, &NotOwnerError{Env: name, Owner: e.o.owner, Holder: *h}
	}
	if err := lk.Release(ctx, *h); err != nil {
		return nil, maskError(fmt.Errorf("environment %q: releasing the deploy lock: %w", name, err), x.Secrets.values())
	}
	return Unlocked(name, h), nil
}

// holder makes the named environment's engine (the caller closes its target) and reads
// who holds its deploy lock (nil: nobody).
func (x *Environments) holder(ctx context.Context, name string) (*engine, targets.Locker, *targets.Lock, error) {
	e, lk, err := x.locker(ctx, name)
	if err != nil {
		return nil, nil, nil, err
	}
	h, err := lk.Holder(ctx)
	if err != nil {
		e.t.Close()
		return nil, nil, nil, maskError(fmt.Errorf("environment %q: reading the deploy lock: %w", name, err), x.Secrets.values())
	}
	return e, lk, h, nil
}

// Unlocked is what unlock and lock release say once env's lock, held by held (nil: by
// nobody), is gone.
func Unlocked(env string, held *targets.Lock) *LockState {
	if held == nil {
		return &LockState{Env: env, Message: fmt.Sprintf("%s was not locked", env)}
	}
	return &LockState{Env: env, Holder: held, Message: fmt.Sprintf("%s unlocked; it was held by %s", env, held)}
}
