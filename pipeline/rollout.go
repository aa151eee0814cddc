package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pushdeploy/pushdeploy/targets"
)

// NewReleaseID names a release by the time it is made, to the millisecond:
// "20261127T081502.123Z". It sorts by time, two deploys a second apart still differ, and it
// is a safe file, container and label value.
func NewReleaseID(now time.Time) string { return now.UTC().Format("20060102T150405.000Z") }

// Rollout deploys r to every host of t: it takes the target's lock, deploys batch by
// batch (hosts of a batch in parallel: prepare, activate, health), rolls every switched host
// back when one fails, prunes old releases, and appends the record to the target's journal.
// Deploying the digest that every host runs already changes nothing; that answer is given
// under the lock, so that it never describes a deploy still in progress. A deploy that
// loses its lock stops and rolls back (a *LockLostError in the error).
func Rollout(ctx context.Context, t targets.Target, r targets.Release, opts ...Option) (res *Result, err error) {
	e, err := newEngine(t, opts)
	if err != nil {
		return nil, err
	}
	if err := validRelease(r); err != nil {
		return nil, err
	}
	rec := newRecord("deploy", t, r, e.o)
	e.follow(func() targets.Release { return r }) // health and analysis templates see r
	return e.underLock(ctx, func(ctx context.Context, held *heldLock) (*Result, error) {
		return e.rollout(ctx, held, r, rec)
	})
}

// rollout is Rollout's work under the lock held.
func (e *engine) rollout(ctx context.Context, held *heldLock, r targets.Release, rec Record) (*Result, error) {
	t := e.t
	st, err := e.statuses(ctx)
	if err != nil {
		return nil, err
	}
	if _, all := live(st, r.Digest); all {
		return e.unchanged(rec, st), nil
	}
	moves := make([]move, len(st))
	for i, s := range st {
		moves[i] = move{id: r.ID, release: &r, skip: s.Live != nil && s.Live.Digest == r.Digest}
	}
	err = e.apply(ctx, moves, st, &rec)
	if err == nil {
		if lost := held.lost(); lost != nil {
			// Every host took the release, but the lock went before the deploy could say
			// so: another deploy may be running. Stop, and return every host.
			de := &DeployError{HostError: &HostError{Host: t.Kind() + " target", Step: "lock", Err: lost}}
			e.undo(ctx, lost.Error(), &rec, de)
			err = de
		}
	}
	rec.Finished = e.o.now().UTC()
	if err != nil {
		rec.Outcome, rec.Error = OutcomeFailed, err.Error()
		if rec.Rollback != nil && len(rec.Rollback.Errors) == 0 && rec.Rollback.Stopped == "" {
			rec.Outcome = OutcomeRolledBack
		}
	} else {
		rec.Outcome = OutcomeDeployed
		e.prune(ctx)
	}
	rec.LiveVersion = e.liveVersion(ctx)
	e.journal(ctx, &rec)
	return &Result{Record: rec}, err
}

func (e *engine) unchanged(rec Record, st []targets.Status) *Result {
	rec.Outcome = OutcomeUnchanged
	for _, s := range st {
		rec.Hosts = append(rec.Hosts, HostResult{Host: s.Host, Previous: s.Live.ID, Outcome: OutcomeUnchanged})
	}
	rec.Finished = e.o.now().UTC()
	e.logf("%s is live on every host already: nothing to do", rec.Digest)
	return &Result{Record: rec}
}

func validRelease(r targets.Release) error {
	switch {
	case r.ID == "":
		return fmt.Errorf("release of %q has no id", r.App)
	case strings.ContainsAny(r.ID, "/\\ \t\n") || r.ID == "." || r.ID == "..":
		return fmt.Errorf("release id %q: must be a plain name", r.ID)
	case r.Digest == "":
		return fmt.Errorf("release %q has no digest", r.ID)
	}
	return nil
}

// Rollback makes the release to (or, when to is "", each host's previous release) live on
// every host of t, batch by batch with health checks; if one fails, the hosts already
// switched go back to what they ran. Every host must keep the release: otherwise nothing
// changes.
func Rollback(ctx context.Context, t targets.Target, to string, opts ...Option) (*Result, error) {
	e, err := newEngine(t, opts)
	if err != nil {
		return nil, err
	}
	return e.rollback(ctx, to)
}

func (e *engine) rollback(ctx context.Context, to string) (*Result, error) {
	return e.underLock(ctx, func(ctx context.Context, _ *heldLock) (*Result, error) {
		return e.rollbackLocked(ctx, to)
	})
}

// underLock runs fn on the context of the target's deploy lock and releases the lock after;
// a release that fails is a warning in the log and in the result's record.
func (e *engine) underLock(ctx context.Context, fn func(context.Context, *heldLock) (*Result, error)) (*Result, error) {
	held, err := e.lock(ctx)
	if err != nil {
		return nil, err
	}
	res, err := fn(held.ctx, held)
	if rerr := held.release(ctx); rerr != nil {
		e.logf("warning: %v", rerr)
		if res != nil {
			res.Record.Warnings = append(res.Record.Warnings, rerr.Error())
		}
	}
	return res, err
}

// rollbackLocked is rollback's work under the lock.
func (e *engine) rollbackLocked(ctx context.Context, to string) (res *Result, err error) {
	e.plain = true // no bakes, no canary: a rollback goes back as fast as batches allow
	st, err := e.statuses(ctx)
	if err != nil {
		return nil, err
	}
	// Decide every host's target release before touching any.
	dest := make([]string, len(st))
	for i, s := range st {
		d, err := rollbackTo(s, to)
		if err != nil {
			return nil, err
		}
		dest[i] = d
	}
	if err := e.crossCheck(ctx, st, dest); err != nil {
		return nil, err
	}
	// The record names the release the hosts go back to when they share one.
	back := targets.Release{ID: dest[0]}
	for i, d := range dest {
		if d != back.ID {
			back = targets.Release{ID: "previous"}
			break
		}
		for _, k := range st[i].Kept {
			if k.ID == d {
				back.Version, back.Digest, back.Image = k.Version, k.Digest, k.Image
			}
		}
	}
	rec := newRecord("rollback", e.t, back, e.o)
	moves := make([]move, len(st))
	for i, s := range st {
		moves[i] = move{id: dest[i], skip: s.Live != nil && s.Live.ID == dest[i]}
	}
	// A rollback is a deploy of kept releases, with the same batches, checks and undo.
	err = e.apply(ctx, moves, st, &rec)
	rec.Finished = e.o.now().UTC()
	if err != nil {
		rec.Outcome, rec.Error = OutcomeFailed, err.Error()
	} else {
		rec.Outcome = OutcomeDeployed
	}
	rec.LiveVersion = e.liveVersion(ctx)
	e.journal(ctx, &rec)
	return &Result{Record: rec}, err
}

// rollbackTo picks the release a host goes back to: to when given (any kept release),
// else the release that was live before the live one, by the host's record of activations
// (Kept.Activated: the latest to go live among the others), skipping releases whose deploy
// failed and releases pushdeploy did not make. A kind without a record of activations
// gives its kept order: the nearest older release that is neither.
func rollbackTo(s targets.Status, to string) (string, error) {
	what := hostNoun(s.Host)
	if to != "" {
		for _, k := range s.Kept {
			if k.ID == to {
				return to, nil
			}
		}
		var ids []string
		for _, k := range s.Kept {
			ids = append(ids, k.ID)
		}
		return "", fmt.Errorf("%s does not keep release %q (kept: %s)", what, to, strings.Join(ids, ", "))
	}
	if s.Live == nil {
		return "", fmt.Errorf("%s has no live release to roll back from", what)
	}
	liveAt := -1
	ordered := false
	for i, k := range s.Kept {
		if k.ID == s.Live.ID {
			liveAt = i
		}
		ordered = ordered || k.Activated > 0
	}
	if liveAt < 0 {
		return "", fmt.Errorf("%s: live release %q is not among the kept ones", what, s.Live.ID)
	}
	best := -1
	var skipped []string
	for i, k := range s.Kept {
		if i == liveAt || (!ordered && i > liveAt) {
			continue
		}
		switch {
		case k.Failed:
			skipped = append(skipped, fmt.Sprintf("%s (its deploy failed)", k.ID))
			continue
		case k.Foreign:
			skipped = append(skipped, fmt.Sprintf("%s (not made by pushdeploy)", k.ID))
			continue
		}
		// The latest activation wins; on a tie (no activations, or releases made before the
		// host recorded them) the later in kept order.
		if best < 0 || k.Activated > s.Kept[best].Activated || (k.Activated == s.Kept[best].Activated && i > best) {
			best = i
		}
	}
	if best < 0 {
		msg := fmt.Sprintf("%s keeps no release that was live before the live %q", what, s.Live.ID)
		if !ordered {
			msg = fmt.Sprintf("%s keeps no release older than the live %q", what, s.Live.ID)
		}
		if len(skipped) > 0 {
			msg += "; skipped " + strings.Join(skipped, ", ") + ": name one with --to"
		}
		return "", errors.New(msg)
	}
	return s.Kept[best].ID, nil
}

// Plan says what deploying r would change on every host, and changes nothing.
func Plan(ctx context.Context, t targets.Target, r targets.Release) ([]targets.Change, error) {
	hosts := t.Hosts()
	out := make([]targets.Change, len(hosts))
	err := eachHost(hosts, func(i int, h targets.Host) error {
		c, err := h.Plan(ctx, r)
		if err != nil {
			return fmt.Errorf("planning on host %q: %w", h.Name(), err)
		}
		c.Host = h.Name()
		out[i] = c
		return nil
	})
	if err != nil {
		return out, err
	}
	// A deploy of a digest every server keeps re-activates the kept release (apply):
	// nothing would be sent.
	if t.Kind() == "ssh" {
		e := &engine{t: t, o: &options{log: io.Discard, now: time.Now}}
		st, serr := e.statuses(ctx)
		if serr != nil {
			return out, nil // the plan as the hosts gave it: a deploy reads them again
		}
		moves := make([]move, len(st))
		for i, s := range st {
			moves[i] = move{id: r.ID, release: &r, skip: s.Live != nil && s.Live.Digest == r.Digest}
		}
		for i, m := range reactivations(t.Kind(), moves, st) {
			if m.reactivate {
				out[i] = targets.Change{Host: out[i].Host, Live: out[i].Live,
					Summary: fmt.Sprintf("re-activate kept release %s, nothing to send", m.id)}
			}
		}
	}
	return out, nil
}

// Status reports what every host of t runs.
func Status(ctx context.Context, t targets.Target) ([]targets.Status, error) {
	e := &engine{t: t, o: &options{log: io.Discard, now: time.Now}}
	return e.statuses(ctx)
}

// History returns the target's last limit deployment records, newest last.
func History(ctx context.Context, t targets.Target, limit int) ([]Record, error) {
	raw, err := t.Journal().Records(ctx, limit)
	if err != nil {
		return nil, fmt.Errorf("reading the %s target's history: %w", t.Kind(), err)
	}
	out := make([]Record, 0, len(raw))
	for _, b := range raw {
		var r Record
		if err := json.Unmarshal(b, &r); err != nil {
			continue // a line another tool wrote: not ours to read
		}
		out = append(out, r)
	}
	return out, nil
}

// LiveLockError refuses to break a deploy lock within its TTL: its holder is most likely a
// deploy that is running. Unlock with force breaks it all the same.
type LiveLockError struct {
	Target string
	Holder targets.Lock
}

func (e *LiveLockError) Error() string {
	return fmt.Sprintf("the deploy lock of %s is live: held by %q%s until %s, within its ttl; "+
		"if that deploy is dead, unlock with --force (a running deploy that finds its lock broken stops and rolls back)",
		e.Target, e.Holder.Owner, pipelineOf(e.Holder), e.Holder.Expires.UTC().Format(time.RFC3339))
}

func pipelineOf(l targets.Lock) string {
	if l.PipelineID == "" {
		return ""
	}
	return fmt.Sprintf(" (pipeline %q)", l.PipelineID)
}

// Unlock breaks the target's deploy lock and says who held it (nil: nobody did). A lock
// that has expired is broken as a matter of course; one within its TTL only with force,
// else the error is a *LiveLockError naming the holder and the expiry.
func Unlock(ctx context.Context, t targets.Target, force bool) (*targets.Lock, error) {
	lk := t.Locker()
	h, err := lk.Holder(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the deploy lock: %w", err)
	}
	if h == nil {
		return nil, nil
	}
	if !force && !h.Expired(time.Now()) {
		return h, &LiveLockError{Target: t.Kind() + " target", Holder: *h}
	}
	if err := lk.Break(ctx); err != nil {
		return h, fmt.Errorf("breaking the deploy lock: %w", err)
	}
	return h, nil
}

// RenderPlan prints a plan as a table, one host a line, then the files of each host.
func RenderPlan(w io.Writer, changes []targets.Change) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tLIVE\tCHANGE\tADD\tUPDATE\tREMOVE\tBYTES")
	for _, c := range changes {
		what := c.Summary
		if c.Noop {
			what = "none: release is live"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\n", c.Host, dash(c.Live), dash(what), len(c.Add), len(c.Update), len(c.Remove), c.Bytes)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range changes {
		if len(c.Add)+len(c.Update)+len(c.Remove) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", c.Host)
		for _, l := range []struct {
			sign  string
			paths []string
		}{{"+", c.Add}, {"~", c.Update}, {"-", c.Remove}} {
			for _, p := range l.paths {
				fmt.Fprintf(w, "  %s %s\n", l.sign, p)
			}
		}
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
