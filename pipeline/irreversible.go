package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/pushdeploy/pushdeploy/targets"
)

// Migration-aware rollback: a release that crossed a change its rollback cannot undo (a
// migrate hook marked irreversible, deploy --irreversible) is recorded so. An automatic
// rollback after that point returns no host (old code on a migrated schema is worse than a
// half-done deploy): the deploy stops where it is and reports each host's release, exit
// code ExitIrreversible. A manual rollback across such a release refuses unless forced.

// ExitIrreversible: the deploy failed after an irreversible step; no host was returned past
// it, the record's rollback.fleet says what each host runs, and the fleet needs a hand
// (a fix rolled forward, or rollback --force once the change is undone by other means).
const ExitIrreversible = 8

// WithIrreversible marks the release irreversible for why (e.g. "deploy --irreversible"):
// once a host runs it, an automatic rollback stops there. Default: "" (reversible).
func WithIrreversible(why string) Option {
	return func(o *options) error { o.irreversible = why; return nil }
}

// WithAcrossIrreversible lets a rollback go back across a release that crossed an
// irreversible change (rollback --force). Default: false, such a rollback is refused with an
// *IrreversibleError naming the release and why.
func WithAcrossIrreversible(force bool) Option {
	return func(o *options) error { o.acrossIrreversible = force; return nil }
}

// IrreversibleError refuses a rollback across a release that crossed an irreversible change.
type IrreversibleError struct {
	Env     string
	Release string
	Version string
	Why     string
}

func (e *IrreversibleError) Error() string {
	v := ""
	if e.Version != "" {
		v = fmt.Sprintf(" (version %s)", e.Version)
	}
	return fmt.Sprintf("rollback refused: it goes back across release %s%s, which crossed an irreversible change (%s): "+
		"the previous release may not run on what it changed; undo the change first, then rollback --force; nothing was changed",
		e.Release, v, e.Why)
}

// stopAtIrreversible is undo once the deploy crossed an irreversible step: no host goes
// back; the record says so and what each host runs.
func (e *engine) stopAtIrreversible(ctx context.Context, rec *Record, de *DeployError) {
	why := fmt.Sprintf("no host was rolled back: the deploy had crossed an irreversible step (%s); the fleet is left as it is", e.crossed)
	rec.Rollback.Stopped, de.Stopped = why, why
	rec.Irreversible = e.crossed
	e.logf("NOT ROLLING BACK: %s", why)
	hosts := e.t.Hosts()
	fleet := make([]HostLive, len(hosts))
	_ = eachHost(hosts, func(i int, h targets.Host) error {
		fleet[i] = HostLive{Host: h.Name(), Release: "?"}
		if st, err := h.Status(context.WithoutCancel(ctx)); err == nil {
			fleet[i].Release = ""
			if st.Live != nil {
				fleet[i].Release, fleet[i].Version = st.Live.ID, st.Live.Version
			}
		}
		return nil
	})
	for _, f := range fleet {
		e.logf("  %s runs %s", f.Host, dash(firstNonEmpty(f.Version, f.Release)))
	}
	rec.Rollback.Fleet = fleet
	e.switched = nil
}

// crossCheck refuses a rollback from each host's live release to dest[i] that goes back
// across a release the history records as irreversible, unless forced. Release ids sort by
// time: a release R is crossed on a host when dest < R <= live.
func (e *engine) crossCheck(ctx context.Context, st []targets.Status, dest []string) error {
	if e.o.acrossIrreversible {
		return nil
	}
	recs, err := History(ctx, e.t, 0)
	if err != nil {
		return fmt.Errorf("reading the history for irreversible releases: %w (rollback --force skips this check)", err)
	}
	for _, r := range recs {
		if r.Action != "deploy" || r.Irreversible == "" || r.Release == "" {
			continue
		}
		for i, s := range st {
			if s.Live == nil {
				continue
			}
			if dest[i] < r.Release && r.Release <= s.Live.ID {
				return &IrreversibleError{Env: r.Env, Release: r.Release, Version: r.Version, Why: r.Irreversible}
			}
		}
	}
	return nil
}

// migrateStage runs the environment's migrate command once, before any host switches; once
// it passed, an irreversible one makes the deploy crossed.
func migrateStage(ctx context.Context, r *run) error {
	m := r.env.Hooks.Migrate
	if m == nil {
		return Skip("no migrate hook")
	}
	if r.env.Hooks.Where == "hosts" {
		// Once, on the first host: a migration changes shared state, not each host's.
		h := r.target.Hosts()[0]
		cm, ok := h.(targets.Commander)
		if !ok {
			return fmt.Errorf("migrate hook: %s cannot run commands", hostNoun(h.Name()))
		}
		timeout := r.env.Hooks.Timeout.Duration
		if timeout <= 0 {
			timeout = DefaultHookTimeout
		}
		hctx, cancel := context.WithTimeout(ctx, timeout)
		out, err := cm.Run(hctx, m.Command, r.hookEnv())
		cancel()
		if err != nil {
			return r.migrateFailed(fmt.Errorf("migrate hook %q on %s: %w: %s", m.Command, hostNoun(h.Name()), err, tail(out, 4000)))
		}
	} else if err := r.hooks(ctx, "migrate", []string{m.Command}); err != nil {
		return r.migrateFailed(err)
	}
	fmt.Fprintf(r.log, "    migrate hook ok: %s\n", m.Command)
	if m.Irreversible {
		why := fmt.Sprintf("migrate hook %q is irreversible", m.Command)
		r.e.crossed, r.rec.Irreversible = why, why
		fmt.Fprintf(r.log, "    %s: from here an automatic rollback returns no host\n", why)
	}
	return nil
}

// migrateFailed is a failed migration: nothing switched; an irreversible one may have
// changed something half way, which the record says.
func (r *run) migrateFailed(err error) error {
	if r.env.Hooks.Migrate.Irreversible {
		r.rec.Irreversible = fmt.Sprintf("migrate hook %q is irreversible and failed: it may have changed part of what it migrates", r.env.Hooks.Migrate.Command)
		return fmt.Errorf("%w; no host switched, but the irreversible migration may be half done", err)
	}
	return err
}

// isStopped says whether err is a deploy stopped at an irreversible step.
func isStopped(err error) bool {
	var de *DeployError
	return errors.As(err, &de) && de.Stopped != ""
}

// irreversibleNote is the record's irreversible field for people.
func irreversibleNote(r *Record) string {
	if r.Irreversible == "" {
		return ""
	}
	return "irreversible: " + strings.TrimSpace(r.Irreversible)
}

// stoppedErr makes a stage's failure a *DeployError that says the deploy stopped at an
// irreversible step, when the rollback it caused (r.rollback) returned no host.
func (r *run) stoppedErr(stage string, err error) error {
	if r.rec.Rollback == nil || r.rec.Rollback.Stopped == "" || isStopped(err) {
		return err
	}
	return &DeployError{HostError: &HostError{Step: stage, Err: err}, Stopped: r.rec.Rollback.Stopped}
}
