package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pushdeploy/pushdeploy/targets"
)

// annotationPipeline carries the lock holder's pipeline id on the Lease; annotationPhase
// what the deploy holding it does; annotationControl a pause or abort asked of it (JSON),
// which a renewal keeps and a new holder or a release clears.
const (
	annotationPipeline = "pushdeploy.dev/pipeline-id"
	annotationPhase    = "pushdeploy.dev/phase"
	annotationControl  = "pushdeploy.dev/control"
)

// Lease is the deploy lock: a coordination.k8s.io/v1 Lease named "pushdeploy-<app>-<env>"
// whose holderIdentity is the deploy's owner, acquireTime when it took the lock, and
// renewTime + leaseDurationSeconds when it lapses. Every change is an update on the
// resourceVersion read (optimistic concurrency), so two deploys cannot both take it. A
// released lock keeps the Lease with no holder: the Role needs no delete.
type Lease struct {
	t    *Target
	name string
}

// Name is the Lease's name.
func (l *Lease) Name() string { return l.name }

func (l *Lease) where() string { return fmt.Sprintf("lease %q in namespace %q", l.name, l.t.ns) }

// holder reads the lock a Lease records, nil when nobody holds it.
func holder(le *coordinationv1.Lease) *targets.Lock {
	s := le.Spec
	if s.HolderIdentity == nil || *s.HolderIdentity == "" {
		return nil
	}
	lk := &targets.Lock{Owner: *s.HolderIdentity, PipelineID: le.Annotations[annotationPipeline]}
	if s.AcquireTime != nil {
		lk.Acquired = s.AcquireTime.Time
	}
	if s.RenewTime != nil && s.LeaseDurationSeconds != nil {
		lk.Expires = s.RenewTime.Add(time.Duration(*s.LeaseDurationSeconds) * time.Second)
	}
	lk.Phase = le.Annotations[annotationPhase]
	if j := le.Annotations[annotationControl]; j != "" {
		var c targets.Control
		if json.Unmarshal([]byte(j), &c) == nil && c.Action != "" {
			lk.Control = &c
		}
	}
	return lk
}

// same says whether a recorded lock is lk (the Lease keeps microseconds).
func same(rec *targets.Lock, lk targets.Lock) bool {
	return rec != nil && rec.Owner == lk.Owner && rec.PipelineID == lk.PipelineID &&
		rec.Acquired.Truncate(time.Microsecond).Equal(lk.Acquired.Truncate(time.Microsecond))
}

// hold writes lk into the Lease as renewed now.
func hold(le *coordinationv1.Lease, lk targets.Lock, now time.Time) {
	secs := int32(max(1, math.Ceil(lk.Expires.Sub(now).Seconds())))
	owner := lk.Owner
	le.Spec.HolderIdentity = &owner
	le.Spec.AcquireTime = &metav1.MicroTime{Time: lk.Acquired}
	le.Spec.RenewTime = &metav1.MicroTime{Time: now}
	le.Spec.LeaseDurationSeconds = &secs
	if le.Annotations == nil {
		le.Annotations = map[string]string{}
	}
	if lk.PipelineID != "" {
		le.Annotations[annotationPipeline] = lk.PipelineID
	} else {
		delete(le.Annotations, annotationPipeline)
	}
	if lk.Phase != "" {
		le.Annotations[annotationPhase] = lk.Phase
	} else {
		delete(le.Annotations, annotationPhase)
	}
}

// update writes le back on the resourceVersion it was read at; a conflict (someone changed
// it meanwhile) makes the caller read again.
func (l *Lease) update(ctx context.Context, le *coordinationv1.Lease) error {
	_, err := l.t.cs.CoordinationV1().Leases(l.t.ns).Update(ctx, le, metav1.UpdateOptions{FieldManager: l.t.o.fieldManager})
	return err
}

func (l *Lease) read(ctx context.Context) (*coordinationv1.Lease, error) {
	le, err := l.t.cs.CoordinationV1().Leases(l.t.ns).Get(ctx, l.name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading the deploy lock (%s): %w", l.where(), err)
	}
	if err != nil {
		return nil, nil
	}
	return le, nil
}

// retries bounds the read-modify-write loops: each retry follows a concurrent change.
const retries = 5

// Acquire takes the lock for lk when nobody holds it or the holder's lease has lapsed, and
// returns a *targets.HeldError naming the holder otherwise. It runs Preflight first: the
// lock is the first thing a deploy changes.
func (l *Lease) Acquire(ctx context.Context, lk targets.Lock) error {
	if err := l.t.Preflight(ctx); err != nil {
		return err
	}
	for range retries {
		now := time.Now()
		le, err := l.read(ctx)
		if err != nil {
			return err
		}
		if le == nil {
			le = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: l.name, Namespace: l.t.ns, Labels: map[string]string{
				"app.kubernetes.io/managed-by": "pushdeploy", "pushdeploy.dev/app": l.t.app, "pushdeploy.dev/env": l.t.env,
			}}}
			hold(le, lk, now)
			le.Spec.LeaseTransitions = new(int32(0))
			_, err := l.t.cs.CoordinationV1().Leases(l.t.ns).Create(ctx, le, metav1.CreateOptions{FieldManager: l.t.o.fieldManager})
			if apierrors.IsAlreadyExists(err) {
				continue // another deploy created it first: read whose it is
			}
			if err != nil {
				return fmt.Errorf("creating the deploy lock (%s): %w", l.where(), err)
			}
			return nil
		}
		cur := holder(le)
		if cur != nil && !same(cur, lk) && !cur.Expired(now) {
			return &targets.HeldError{Target: l.t.String(), Holder: *cur}
		}
		if cur == nil || !same(cur, lk) {
			le.Spec.LeaseTransitions = new(ptrValue(le.Spec.LeaseTransitions) + 1)
			delete(le.Annotations, annotationControl) // asked of an earlier holder
		}
		hold(le, lk, now)
		err = l.update(ctx, le)
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("taking the deploy lock (%s): %w", l.where(), err)
		}
		return nil
	}
	return fmt.Errorf("taking the deploy lock (%s): it kept changing under us", l.where())
}

// Renew moves the expiry of the lock lk holds to lk.Expires.
func (l *Lease) Renew(ctx context.Context, lk targets.Lock) error {
	for range retries {
		le, err := l.read(ctx)
		if err != nil {
			return err
		}
		cur := (*targets.Lock)(nil)
		if le != nil {
			cur = holder(le)
		}
		if !same(cur, lk) {
			if cur == nil {
				return fmt.Errorf("renewing the deploy lock (%s): it was released or broken", l.where())
			}
			return fmt.Errorf("renewing the deploy lock: %w", &targets.HeldError{Target: l.t.String(), Holder: *cur})
		}
		hold(le, lk, time.Now())
		err = l.update(ctx, le)
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("renewing the deploy lock (%s): %w", l.where(), err)
		}
		return nil
	}
	return fmt.Errorf("renewing the deploy lock (%s): it kept changing under us", l.where())
}

// Release gives the lock up if lk holds it; a lock someone else holds is left alone.
func (l *Lease) Release(ctx context.Context, lk targets.Lock) error {
	return l.clear(ctx, func(cur *targets.Lock) bool { return same(cur, lk) })
}

// Break removes the holder, whoever it is.
func (l *Lease) Break(ctx context.Context) error {
	if err := l.t.Preflight(ctx); err != nil {
		return err
	}
	return l.clear(ctx, func(*targets.Lock) bool { return true })
}

// clear empties the holder fields when mine says the recorded lock may go.
func (l *Lease) clear(ctx context.Context, mine func(*targets.Lock) bool) error {
	for range retries {
		le, err := l.read(ctx)
		if err != nil || le == nil {
			return err
		}
		cur := holder(le)
		if cur == nil || !mine(cur) {
			return nil
		}
		le.Spec.HolderIdentity, le.Spec.AcquireTime, le.Spec.RenewTime, le.Spec.LeaseDurationSeconds = nil, nil, nil, nil
		delete(le.Annotations, annotationPipeline)
		delete(le.Annotations, annotationPhase)
		delete(le.Annotations, annotationControl)
		err = l.update(ctx, le)
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("releasing the deploy lock (%s): %w", l.where(), err)
		}
		return nil
	}
	return fmt.Errorf("releasing the deploy lock (%s): it kept changing under us", l.where())
}

// Holder reports who holds the lock (possibly lapsed), nil when nobody does.
func (l *Lease) Holder(ctx context.Context) (*targets.Lock, error) {
	le, err := l.read(ctx)
	if err != nil || le == nil {
		return nil, err
	}
	return holder(le), nil
}

func ptrValue(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}

var _ targets.Controller = (*Lease)(nil)

// SetControl writes c into the Lease's control annotation (nil removes it) when mine
// still holds the lease; the write is on the resourceVersion read, as every lock change is.
func (l *Lease) SetControl(ctx context.Context, mine targets.Lock, c *targets.Control) error {
	for range retries {
		le, err := l.read(ctx)
		if err != nil {
			return err
		}
		var cur *targets.Lock
		if le != nil {
			cur = holder(le)
		}
		if !same(cur, mine) {
			if cur == nil {
				return fmt.Errorf("writing the deploy control (%s): %w: nobody holds it, the deploy finished", l.where(), targets.ErrLockLost)
			}
			return fmt.Errorf("writing the deploy control (%s): %w: it is held by %s", l.where(), targets.ErrLockLost, cur)
		}
		if le.Annotations == nil {
			le.Annotations = map[string]string{}
		}
		if c == nil {
			delete(le.Annotations, annotationControl)
		} else {
			j, err := json.Marshal(c)
			if err != nil {
				return err
			}
			le.Annotations[annotationControl] = string(j)
		}
		err = l.update(ctx, le)
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("writing the deploy control (%s): %w", l.where(), err)
		}
		return nil
	}
	return fmt.Errorf("writing the deploy control (%s): it kept changing under us", l.where())
}
