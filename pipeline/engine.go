// Package pipeline is pushdeploy's deploy logic in plain Go: the ordered stages of a deploy,
// release records, health checks, the rollback policy, gates, the deploy lock, markers and
// notifications. It drives every target kind through the small interfaces of package
// targets, so batches, parallelism, health checks and "roll back every host already
// switched" are written once. It never imports the Dagger bindings: the Dagger module and the
// CLI are thin adapters over it.
package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pushdeploy/pushdeploy/targets"
)

// Steps of a host's deploy, named in errors and records.
const (
	StepStatus   = "status"
	StepPrepare  = "prepare"
	StepUpdated  = "updated" // the commands run in the staged release before the switch (targets.Updater)
	StepActivate = "activate"
	StepHealth   = "health"
)

// HostError is a failure on one host at one step.
type HostError struct {
	Host string
	Step string
	Err  error
}

func (e *HostError) Error() string {
	if e.Host == "" { // a step of the whole deploy: an analysis, an abort
		return fmt.Sprintf("%s: %v", e.Step, e.Err)
	}
	return fmt.Sprintf("%s: %s: %v", hostNoun(e.Host), e.Step, e.Err)
}
func (e *HostError) Unwrap() error { return e.Err }

// DeployError is a failed deploy: the first host that failed, and what the rollback did.
type DeployError struct {
	*HostError
	// RolledBack lists the hosts returned to their previous release.
	RolledBack []string
	// RollbackErrors are hosts that could not be returned; they need a hand.
	RollbackErrors []error
	// Stopped says why no host was returned: the deploy had crossed an irreversible step.
	Stopped string
}

func (e *DeployError) Error() string {
	s := e.HostError.Error()
	if e.Stopped != "" {
		s += "; " + e.Stopped
	}
	if len(e.RolledBack) > 0 {
		s += fmt.Sprintf("; rolled back %d host(s) to their previous release: %q", len(e.RolledBack), e.RolledBack)
	}
	for _, re := range e.RollbackErrors {
		s += "; ROLLBACK FAILED: " + re.Error()
	}
	return s
}

func (e *DeployError) Unwrap() error { return e.HostError }

// engine runs one operation on one target.
type engine struct {
	t targets.Target
	o *options

	// What apply did, for undo: the hosts it switched (indexes into t.Hosts()) and the
	// release each host ran before ("" none).
	switched []int
	prev     []string
	// made is, per host, the release apply makes live there: the move's id, the kept id of
	// a re-activation, the live id of a host that runs the digest already.
	made []string
	// progress counts what each host was sent, and draws the uploads (progress.go).
	progress *progress
	// held is the deploy lock while it is held (pause, resume and abort are read from it).
	held *heldLock
	// plain is a rollback's apply: no bakes, no canary.
	plain bool
	// crossed says why the deploy passed an irreversible step ("" while it has not): undo
	// then returns no host past it (irreversible.go).
	crossed string
}

// madeLive is the release apply made live on host i, else fallback.
func (e *engine) madeLive(i int, fallback string) string {
	if i < len(e.made) && e.made[i] != "" {
		return e.made[i]
	}
	return fallback
}

func newEngine(t targets.Target, opts []Option) (*engine, error) {
	if t == nil {
		return nil, errors.New("no target")
	}
	if len(t.Hosts()) == 0 {
		return nil, fmt.Errorf("%s target has no hosts", t.Kind())
	}
	o, err := makeOptions(opts...)
	if err != nil {
		return nil, err
	}
	return &engine{t: t, o: o, progress: newProgress(o)}, nil
}

func (e *engine) logf(format string, args ...any) {
	fmt.Fprintf(e.o.log, format+"\n", args...)
}

// eachHost runs fn on hosts in parallel and returns the first error, in host order.
func eachHost(hosts []targets.Host, fn func(i int, h targets.Host) error) error {
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(i, h)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// statuses reads every host's status in parallel.
func (e *engine) statuses(ctx context.Context) ([]targets.Status, error) {
	hosts := e.t.Hosts()
	out := make([]targets.Status, len(hosts))
	err := eachHost(hosts, func(i int, h targets.Host) error {
		st, err := h.Status(ctx)
		if err != nil {
			return &HostError{Host: h.Name(), Step: StepStatus, Err: err}
		}
		st.Host = h.Name()
		out[i] = st
		return nil
	})
	return out, err
}

// LockLostError says the deploy lost its lock while it ran: someone broke it (unlock
// --force) or it expired and another deploy took it. The deploy stops and returns every
// host it switched to its previous release.
type LockLostError struct{ Err error }

func (e *LockLostError) Error() string {
	return fmt.Sprintf("the deploy lock was lost while deploying (%v): stopped so that two deploys never run at once", e.Err)
}
func (e *LockLostError) Unwrap() error { return e.Err }

// heldLock is a deploy lock the engine holds and renews every third of its TTL until
// release. Its ctx is cancelled, with a *LockLostError as the cause, the moment a renewal
// finds the lock broken or taken (or could not renew it before it expired): everything
// run under ctx stops.
type heldLock struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	relErr error
	e      *engine
	lk     targets.Locker
	mu     sync.Mutex // guards l: renewals and setPhase write it
	l      targets.Lock
}

// lost is the loss of the lock, nil while it is held.
func (h *heldLock) lost() error {
	if h == nil {
		return nil
	}
	var ll *LockLostError
	if errors.As(context.Cause(h.ctx), &ll) {
		return ll
	}
	return nil
}

// release stops renewing and gives the lock up (someone else's lock is left alone). It
// runs even when the deploy's context is done: a cancelled deploy must not leave its lock
// behind. The error says the lock was left on the target (it expires by itself).
func (h *heldLock) release(ctx context.Context) error {
	h.once.Do(func() {
		close(h.stop)
		<-h.done
		defer h.cancel(nil)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := h.lk.Release(rctx, h.current()); err != nil {
			h.relErr = fmt.Errorf("releasing the deploy lock: %w; the lock is left on the target until %s (or unlock --force)",
				err, h.current().Expires.UTC().Format(time.RFC3339))
		}
	})
	return h.relErr
}

// renew keeps the lock until release; a renewal that finds the lock is no longer ours, or
// that cannot reach it until it has expired, cancels the lock's context.
func (h *heldLock) renew() {
	defer close(h.done)
	ttl := h.e.o.lockTTL
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-h.ctx.Done():
			return
		case <-tick.C:
		}
		h.mu.Lock()
		next := h.l
		next.Expires = h.e.o.now().Add(ttl)
		err := h.lk.Renew(h.ctx, next)
		if err == nil {
			h.l = next
		}
		h.mu.Unlock()
		if err == nil {
			continue
		}
		var held *targets.HeldError
		switch {
		case errors.Is(err, targets.ErrLockLost) || errors.As(err, &held):
		case h.e.o.now().After(h.current().Expires):
			err = fmt.Errorf("%w; it expired at %s before it could be renewed", err, h.current().Expires.UTC().Format(time.RFC3339))
		default:
			h.e.logf("warning: renewing the deploy lock: %v (retrying; it is ours until %s)", err, h.current().Expires.UTC().Format(time.RFC3339))
			continue
		}
		lost := &LockLostError{Err: err}
		h.e.logf("LOCK LOST: %v", err)
		h.cancel(lost)
		return
	}
}

// lock takes the target's lock, waiting as configured, and renews it until release.
func (e *engine) lock(ctx context.Context) (*heldLock, error) {
	var l targets.Lock
	lk := e.t.Locker()
	deadline := e.o.now().Add(e.o.lockWait)
	backoff := 200 * time.Millisecond
	for {
		// A fresh lock each attempt: its times are the attempt's, so a holder's lock that
		// expired while we waited is judged expired.
		l = e.newLock()
		err := lk.Acquire(ctx, l)
		var held *targets.HeldError
		if err == nil {
			break
		}
		if !errors.As(err, &held) {
			return nil, fmt.Errorf("taking the deploy lock: %w", err)
		}
		if e.o.lockWait == 0 {
			return nil, fmt.Errorf("%w; wait for it (--lock-wait) or, if that deploy is dead, unlock (--force while the lock is within its ttl)", err)
		}
		if !e.o.now().Before(deadline) {
			return nil, fmt.Errorf("%w; gave up after waiting %s", err, e.o.lockWait)
		}
		e.logf("waiting: %v", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the deploy lock: %w", ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
	h := &heldLock{stop: make(chan struct{}), done: make(chan struct{}), e: e, lk: lk, l: l}
	h.ctx, h.cancel = context.WithCancelCause(ctx)
	e.held = h
	go h.renew()
	return h, nil
}

// newLock is the lock a deploy or rollback takes; its phase says a deploy holds it (pause,
// resume and abort refuse a lock taken by hand).
func (e *engine) newLock() targets.Lock {
	now := e.o.now().UTC()
	return targets.Lock{Owner: e.o.owner, PipelineID: e.o.pipelineID, Acquired: now, Expires: now.Add(e.o.lockTTL), Phase: "deploying"}
}

// live returns each host's live release id ("" none) and whether every host runs digest.
func live(st []targets.Status, digest string) (ids []string, all bool) {
	all = digest != ""
	for _, s := range st {
		id, d := "", ""
		if s.Live != nil {
			id, d = s.Live.ID, s.Live.Digest
		}
		ids = append(ids, id)
		if d != digest {
			all = false
		}
	}
	return ids, all
}

// move is what one host is to do: make id live, first staging release when it is not kept.
type move struct {
	id         string
	release    *targets.Release // nil: id is kept on the host already (a rollback)
	skip       bool             // id is live already
	reactivate bool             // a deploy of a digest the host keeps: its kept release id goes live again
}

// OutcomeReactivated is a host's outcome when a deploy found the release's digest kept
// there and made that release live again: nothing staged, nothing uploaded.
const OutcomeReactivated = "re-activated"

// reactivations turns a deploy's moves into re-activations when every host that is to move
// keeps a release of the deploy's digest (a redeploy of an earlier release): each host makes
// its latest such release live again, nothing is staged or uploaded. Only servers: a kept
// release directory is the artifacts and nothing else (the restart command and shared paths
// are the target's, as they are now), whereas a kept container carries the environment and
// settings it was created with, which may have changed since; and a Deployment patched back
// to an earlier pod template brings back its ReplicaSet by itself. It returns moves
// unchanged when any host lacks the digest.
func reactivations(kind string, moves []move, st []targets.Status) []move {
	if kind != "ssh" || len(moves) != len(st) {
		return moves
	}
	out := make([]move, len(moves))
	found := false
	for i, m := range moves {
		out[i] = m
		if m.skip {
			continue
		}
		if m.release == nil || m.release.Digest == "" || (i > 0 && moves[0].release != nil && m.release.Digest != moves[0].release.Digest) {
			return moves
		}
		id := ""
		for _, k := range st[i].Kept { // oldest first: the latest of the digest wins
			if k.Digest == m.release.Digest && !k.Failed && !k.Foreign && k.ID != "" {
				id = k.ID
			}
		}
		if id == "" {
			return moves
		}
		out[i] = move{id: id, reactivate: true}
		found = true
	}
	if !found {
		return moves
	}
	return out
}

// updates says whether a host runs commands in its staged release before the switch:
// then every host stages first, and none switches unless all staged.
func updates(batch []targets.Host, index map[targets.Host]int, moves []move) bool {
	for _, h := range batch {
		if u, ok := h.(targets.Updater); ok && u.Updates() && moves[index[h]].release != nil && !moves[index[h]].skip {
			return true
		}
	}
	return false
}

// apply makes each host's move batch by batch and, when a host fails, returns every host
// switched so far to its previous release. A deploy of a digest every host keeps
// re-activates the kept releases (reactivations). Each host stages the release (Prepare),
// runs the commands in it (targets.Updater), switches (Activate) and is checked; when a
// host has such commands, every host stages and runs them before any host of any batch
// switches, so that a failing one leaves every host on its old release.
func (e *engine) apply(ctx context.Context, moves []move, st []targets.Status, rec *Record) error {
	hosts := e.t.Hosts()
	ctx = targets.WithProgress(ctx, e.progress)
	defer e.progress.close()
	moves = reactivations(e.t.Kind(), moves, st)
	e.made = make([]string, len(moves))
	for i, m := range moves {
		e.made[i] = m.id
		if m.skip && i < len(st) && st[i].Live != nil {
			e.made[i] = st[i].Live.ID
		}
	}
	prev, _ := live(st, "")
	index := map[targets.Host]int{}
	for i, h := range hosts {
		index[h] = i
		rec.Hosts = append(rec.Hosts, HostResult{Host: h.Name(), Previous: prev[i], Outcome: OutcomeSkipped})
	}
	var reactivated []string
	for _, m := range moves {
		if m.reactivate && !slices.Contains(reactivated, m.id) {
			reactivated = append(reactivated, m.id)
		}
	}
	switch len(reactivated) {
	case 0:
	case 1:
		// The record names the release that goes live again when the hosts share one.
		rec.Release = reactivated[0]
		e.logf("the digest is kept on every host: re-activating release %s, nothing to upload", rec.Release)
	default:
		e.logf("the digest is kept on every host: re-activating releases %s, nothing to upload", strings.Join(reactivated, ", "))
	}
	var switched, prepared []int
	var mu sync.Mutex
	var failure *HostError
	started := make([]time.Time, len(hosts))
	fail := func(h targets.Host, step string, err error) error {
		var lost *LockLostError
		if errors.As(context.Cause(ctx), &lost) && !errors.As(err, &lost) {
			err = fmt.Errorf("%w (%v)", lost, err)
		}
		he := &HostError{Host: h.Name(), Step: step, Err: err}
		res := &rec.Hosts[index[h]]
		res.Outcome, res.Step, res.Error = OutcomeFailed, step, err.Error()
		e.logf("%s: %s failed: %v", h.Name(), step, err)
		mu.Lock()
		if failure == nil {
			failure = he
		}
		mu.Unlock()
		return he
	}
	done := func(h targets.Host) {
		i := index[h]
		rec.Hosts[i].Millis = time.Since(started[i]).Milliseconds()
		rec.Hosts[i].Sent = e.progress.sent(h.Name())
	}
	// stage prepares the host's release and runs the commands in it; false: nothing more
	// to do on the host (skipped, or failed).
	stage := func(h targets.Host) bool {
		i := index[h]
		m, res := moves[i], &rec.Hosts[i]
		started[i] = time.Now()
		if m.skip {
			res.Outcome = OutcomeUnchanged
			e.logf("%s: %s is live already", h.Name(), m.id)
			return false
		}
		if m.release == nil {
			return true
		}
		mu.Lock()
		prepared = append(prepared, i)
		mu.Unlock()
		if err := h.Prepare(ctx, *m.release); err != nil {
			fail(h, StepPrepare, err)
			return false
		}
		e.logf("%s: prepared %s", h.Name(), m.id)
		if u, ok := h.(targets.Updater); ok && u.Updates() {
			if err := u.Update(ctx, *m.release); err != nil {
				fail(h, StepUpdated, err)
				return false
			}
			e.logf("%s: updated %s", h.Name(), m.id)
		}
		return true
	}
	activate := func(h targets.Host) error {
		i := index[h]
		m, res := moves[i], &rec.Hosts[i]
		mu.Lock()
		switched = append(switched, i)
		if e.o.irreversible != "" && e.crossed == "" && m.release != nil {
			// The release itself is irreversible: once one host runs it, the change is made.
			e.crossed = e.o.irreversible
			rec.Irreversible = e.crossed
		}
		mu.Unlock()
		if err := h.Activate(ctx, m.id); err != nil {
			return fail(h, StepActivate, err)
		}
		if m.reactivate {
			e.logf("%s: %s is live again", h.Name(), m.id)
		} else {
			e.logf("%s: %s is live", h.Name(), m.id)
		}
		if err := e.healthy(ctx, h, m.id); err != nil {
			return fail(h, StepHealth, err)
		}
		res.Outcome = OutcomeDeployed
		if m.reactivate {
			res.Outcome = OutcomeReactivated
		}
		e.logf("%s: healthy", h.Name())
		return nil
	}
	// With commands to run in the staged release, every host stages and runs them before
	// any host of any batch switches (Capistrano's deploy:updated before deploy:publishing):
	// a failing command leaves the whole fleet on its old release.
	stagedFirst := updates(hosts, index, moves)
	ready := make([]bool, len(hosts))
	if stagedFirst {
		e.logf("staging on %d host(s) before any switches", len(hosts))
		_ = eachHost(hosts, func(_ int, h targets.Host) error {
			defer done(h)
			ready[index[h]] = stage(h)
			return nil
		})
	}
	bi := 0
	for _, ph := range e.o.phases(hosts, e.plain) {
		if failure != nil {
			break
		}
		if ph.batch == nil {
			// A bake or an analysis of the hosts switched so far (progressive.go).
			mu.Lock()
			live := append([]int(nil), switched...)
			mu.Unlock()
			if h, step, err := e.gate(ctx, ph, live, rec); err != nil {
				if h != nil {
					fail(h, step, err)
				} else {
					e.logf("%s failed: %v", step, err)
					failure = &HostError{Step: step, Err: err}
				}
			}
			continue
		}
		bi++
		batch := ph.batch
		if ph.step != "" {
			e.logf("step %s: %d host(s)", ph.step, len(batch))
		} else {
			e.logf("batch %d: %d host(s)", bi, len(batch))
		}
		_ = eachHost(batch, func(_ int, h targets.Host) error {
			defer done(h)
			if stagedFirst {
				if !ready[index[h]] {
					return nil
				}
			} else if !stage(h) {
				return nil
			}
			return activate(h)
		})
	}
	e.switched, e.prev = switched, prev
	if failure == nil {
		return nil
	}
	de := &DeployError{HostError: failure}
	e.undo(ctx, failure.Error(), rec, de)
	// The failed release goes away wherever it was staged and is not live.
	for _, i := range prepared {
		if de.Stopped != "" && slices.Contains(switched, i) {
			continue // left live: the deploy crossed an irreversible step
		}
		if err := hosts[i].Discard(context.WithoutCancel(ctx), moves[i].id); err != nil {
			e.logf("warning: %s: removing failed release %s: %v", hosts[i].Name(), moves[i].id, err)
		}
	}
	return de
}

// undo returns every host that apply switched to the release it ran before, in parallel,
// and notes what it did in rec and de.
func (e *engine) undo(ctx context.Context, reason string, rec *Record, de *DeployError) {
	hosts := e.t.Hosts()
	rec.Rollback = &RollbackInfo{Reason: reason}
	if e.crossed != "" {
		e.stopAtIrreversible(ctx, rec, de)
		return
	}
	// Roll back on a context of its own: a cancelled or timed-out deploy still restores.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	defer cancel()
	switched := append([]int(nil), e.switched...)
	sort.Ints(switched)
	e.logf("rolling back %d host(s)", len(switched))
	errs := make([]error, len(switched))
	var wg sync.WaitGroup
	for k, i := range switched {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, prev := hosts[i], e.prev[i]
			if err := h.Activate(rctx, prev); err != nil {
				errs[k] = fmt.Errorf("%s: re-activating %q: %w", hostNoun(h.Name()), prev, err)
				return
			}
			if prev != "" {
				if err := e.healthy(rctx, h, prev); err != nil {
					errs[k] = fmt.Errorf("%s: previous release %q unhealthy after rollback: %w", hostNoun(h.Name()), prev, err)
				}
			}
		}()
	}
	wg.Wait()
	for k, i := range switched {
		if errs[k] != nil {
			de.RollbackErrors = append(de.RollbackErrors, errs[k])
			rec.Rollback.Errors = append(rec.Rollback.Errors, errs[k].Error())
			continue
		}
		de.RolledBack = append(de.RolledBack, hosts[i].Name())
		rec.Rollback.Hosts = append(rec.Rollback.Hosts, hosts[i].Name())
		if o := rec.Hosts[i].Outcome; o == OutcomeDeployed || o == OutcomeReactivated {
			rec.Hosts[i].Outcome = OutcomeRolledBack
		}
	}
	e.switched = nil
}

// prune removes releases beyond the configured number, never the live or previous one.
func (e *engine) prune(ctx context.Context) {
	_ = eachHost(e.t.Hosts(), func(_ int, h targets.Host) error {
		st, err := h.Status(ctx)
		if err != nil {
			e.logf("warning: %s: reading releases to prune: %v", h.Name(), err)
			return nil
		}
		for _, id := range prunable(st, e.o.keep) {
			if err := h.Discard(ctx, id); err != nil {
				e.logf("warning: %s: pruning release %s: %v", h.Name(), id, err)
			}
		}
		return nil
	})
}

// prunable lists the kept releases to remove so that keep remain, oldest first, sparing
// the live release and the one before it.
func prunable(st targets.Status, keep int) []string {
	protect := map[string]bool{}
	if st.Live != nil {
		protect[st.Live.ID] = true
		for i, k := range st.Kept {
			if k.ID == st.Live.ID && i > 0 {
				protect[st.Kept[i-1].ID] = true
			}
		}
	}
	excess := len(st.Kept) - keep
	var out []string
	for _, k := range st.Kept {
		if excess <= 0 {
			break
		}
		if protect[k.ID] {
			continue
		}
		out = append(out, k.ID)
		excess--
	}
	return out
}

// liveVersion reads what every host runs now: the version, the distinct ones joined with
// ", " when hosts differ ("?" for a host that cannot be read); "" when nothing is live.
func (e *engine) liveVersion(ctx context.Context) string {
	hosts := e.t.Hosts()
	vs := make([]string, len(hosts))
	_ = eachHost(hosts, func(i int, h targets.Host) error {
		st, err := h.Status(context.WithoutCancel(ctx))
		switch {
		case err != nil:
			vs[i] = "?"
		case st.Live != nil:
			vs[i] = firstNonEmpty(st.Live.Version, st.Live.ID)
		}
		return nil
	})
	var out []string
	for _, v := range vs {
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return strings.Join(out, ", ")
}

// journal appends the record to the target's journal; a failure is a warning in the log.
func (e *engine) journal(ctx context.Context, rec *Record) {
	if e.o.record != nil {
		e.o.record(rec)
	}
	b, err := json.Marshal(rec)
	if err == nil {
		err = e.t.Journal().Append(context.WithoutCancel(ctx), b)
	}
	if err != nil {
		rec.Warnings = append(rec.Warnings, fmt.Sprintf("writing the deployment record: %v", err))
		e.logf("warning: writing the deployment record: %v", err)
	}
}

func defaultOwner() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && name == "" {
		name = u.Username
	}
	host, _ := os.Hostname()
	if name == "" {
		name = "unknown"
	}
	return name + "@" + host
}
