package pipeline

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/targets"
)

// Progressive delivery, written once for every kind: a deploy's hosts go live in phases (a
// batch of hosts, a bake, an analysis), the batches and bakes of batches/bake or the steps
// of a canary. A bake keeps probing every switched host; an analysis asks Prometheus; either
// failing rolls back the hosts that switched, and the hosts after it are never touched.

// Steps of a deploy named in errors and records, beside the host steps of engine.go.
const (
	StepBake     = "bake"
	StepAnalysis = "analysis"
	StepAborted  = "aborted"
)

// Step is one step of a canary (WithSteps): exactly one of its fields is set.
type Step struct {
	// Hosts is how many hosts run the new release once the step is done.
	Hosts int
	// Percent is the share of the hosts that runs it once the step is done (rounded up, at
	// least one host).
	Percent int
	// Bake probes every switched host for this long.
	Bake time.Duration
	// Analysis must pass.
	Analysis *Analysis
}

func (s Step) String() string {
	switch {
	case s.Hosts > 0:
		return fmt.Sprintf("hosts: %d", s.Hosts)
	case s.Percent > 0:
		return fmt.Sprintf("percent: %d", s.Percent)
	case s.Bake > 0:
		return "bake: " + s.Bake.String()
	case s.Analysis != nil:
		return "analysis: " + s.Analysis.Name
	}
	return "(empty step)"
}

func (s Step) validate() error {
	n := 0
	for _, set := range []bool{s.Hosts != 0, s.Percent != 0, s.Bake != 0, s.Analysis != nil} {
		if set {
			n++
		}
	}
	switch {
	case n != 1:
		return fmt.Errorf("canary step %s: give exactly one of hosts, percent, bake and analysis", s)
	case s.Hosts < 0:
		return fmt.Errorf("canary step hosts: %d: must be at least 1", s.Hosts)
	case s.Percent < 0 || s.Percent > 100:
		return fmt.Errorf("canary step percent: %d: must be from 1 to 100", s.Percent)
	case s.Bake < 0:
		return fmt.Errorf("canary step bake: %s: must not be negative", s.Bake)
	case s.Analysis != nil:
		return s.Analysis.validate()
	}
	return nil
}

// WithSteps deploys as a canary: the hosts go live step by step, with bakes and analyses
// between (see Step); hosts left after the last step go live at the end. Exclusive with
// WithBatchSize and WithBatchPercent. Default: none (batches).
func WithSteps(steps ...Step) Option {
	return func(o *options) error {
		for _, s := range steps {
			if err := s.validate(); err != nil {
				return err
			}
		}
		o.steps = steps
		return nil
	}
}

// WithBake keeps probing every switched host's health for d after each batch (and after
// the last) before the deploy goes on; a failure rolls back as a failed health check does.
// Default: 0, no bake.
func WithBake(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("bake %s: must not be negative", d)
		}
		o.bake = d
		return nil
	}
}

// WithControlPoll sets how often a bake reads the lock for a pause, resume or abort (and
// how often a bake without a health check ticks). Default: 1s.
func WithControlPoll(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("control poll %s: must be positive", d)
		}
		o.controlPoll = d
		return nil
	}
}

// phase is one part of a deploy's order: a batch of hosts to switch, a bake, or an analysis.
type phase struct {
	batch    []targets.Host
	bake     time.Duration
	analysis *Analysis
	step     string // the canary step it comes from, "" for batches
}

// phases is the order in which apply switches hosts and checks them. A rollback (plain)
// has no bakes and no canary: it goes back as fast as batches allow.
func (o *options) phases(hosts []targets.Host, plain bool) []phase {
	var out []phase
	bake := func(step string) {
		if o.bake > 0 && !plain {
			out = append(out, phase{bake: o.bake, step: step})
		}
	}
	if len(o.steps) == 0 || plain {
		for _, b := range o.batches(hosts) {
			out = append(out, phase{batch: b})
			bake("")
		}
		return out
	}
	done := 0
	for _, s := range o.steps {
		switch {
		case s.Hosts > 0 || s.Percent > 0:
			n := s.Hosts
			if s.Percent > 0 {
				n = max(1, (len(hosts)*s.Percent+99)/100)
			}
			n = min(n, len(hosts))
			if n > done {
				out = append(out, phase{batch: hosts[done:n], step: s.String()})
				done = n
				bake(s.String())
			}
		case s.Bake > 0:
			out = append(out, phase{bake: s.Bake, step: s.String()})
		case s.Analysis != nil:
			out = append(out, phase{analysis: s.Analysis, step: s.String()})
		}
	}
	if done < len(hosts) {
		out = append(out, phase{batch: hosts[done:], step: "the rest"})
		bake("the rest")
	}
	return out
}

// StepResult is one phase of a deploy as the record keeps it: a canary step, a batch's bake.
type StepResult struct {
	Step    string `json:"step"`
	Outcome string `json:"outcome"` // "ok", "failed", "aborted"
	Detail  string `json:"detail,omitempty"`
	Millis  int64  `json:"ms"`
}

// AbortedError is a deploy stopped by abort: it rolls back every host it switched.
type AbortedError struct {
	By string
}

func (e *AbortedError) Error() string {
	return fmt.Sprintf("aborted by %s during its bake", firstNonEmpty(e.By, "someone"))
}

// bakeHosts probes hosts (each running the release ids[i] apply made live) for d: the
// configured check every interval and, where the host can tell, that the release stays up.
// It reads the lock every tick for a pause (the clock stops, the probing goes on) or an
// abort. It returns how long it baked (paused time not counted), the host that failed (nil
// for an abort) and why.
func (e *engine) bakeHosts(ctx context.Context, hosts []targets.Host, ids []string, d time.Duration) (time.Duration, targets.Host, error) {
	tick := e.o.controlPoll
	if hc := e.o.health; hc != nil && hc.Interval < tick {
		tick = hc.Interval
	}
	e.lookups()
	kind := e.t.Kind()
	rels := make([]targets.Release, len(hosts))
	probes := make([]func(context.Context) error, len(hosts))
	for i, h := range hosts {
		rels[i] = e.releaseFor(ctx, h, ids[i])
		if hc := e.o.health; hc != nil {
			attempt, target, err := hc.attempt(h, rels[i], kind)
			if err != nil {
				return 0, h, err
			}
			probes[i] = func(ctx context.Context) error {
				actx, cancel := context.WithTimeout(ctx, hc.Timeout)
				defer cancel()
				if err := attempt(actx); err != nil {
					return fmt.Errorf("health check %s failed during the bake: %w", target, err)
				}
				return nil
			}
		}
	}
	e.logf("baking %d host(s) for %s", len(hosts), d)
	e.setPhase(ctx, fmt.Sprintf("baking %d host(s) for %s", len(hosts), d))
	left, paused := d, false
	for left > 0 {
		c := e.readControl(ctx)
		switch {
		case c.Action == ControlAbort:
			e.logf("aborted by %s", c.By)
			return d - left, nil, &AbortedError{By: c.By}
		case c.Action == ControlPause && !paused:
			paused = true
			e.logf("paused by %s with %s of the bake left: holding, still probing (resume or abort)", c.By, left.Round(time.Millisecond))
			e.setPhase(ctx, fmt.Sprintf("paused by %s with %s of the bake left", c.By, left.Round(time.Second)))
		case c.Action != ControlPause && paused:
			paused = false
			e.logf("resumed: %s of the bake left", left.Round(time.Millisecond))
			e.setPhase(ctx, fmt.Sprintf("baking %d host(s), %s left", len(hosts), left.Round(time.Second)))
		}
		step := min(tick, left)
		if paused {
			step = tick
		}
		var mu sync.Mutex
		var bad targets.Host
		var why error
		_ = eachHost(hosts, func(i int, h targets.Host) error {
			var err error
			if sd, ok := h.(targets.Steadier); ok {
				err = sd.Steady(ctx, ids[i], step)
			} else {
				select {
				case <-ctx.Done():
					err = ctx.Err()
				case <-time.After(step):
				}
			}
			if err == nil && probes[i] != nil {
				err = probes[i](ctx)
			}
			if err != nil {
				mu.Lock()
				if bad == nil {
					bad, why = h, err
				}
				mu.Unlock()
			}
			return nil
		})
		if !paused {
			left -= step
		}
		if bad != nil {
			return d - left, bad, why
		}
	}
	e.logf("baked %s: every host stayed healthy", d)
	e.setPhase(ctx, "deploying")
	return d, nil, nil
}

// gate runs a phase that is no batch: a bake of the hosts switched so far (live, indexes
// into the target's hosts) or an analysis of them against the rest of the fleet. It notes
// the step in rec and returns, on failure, the host at fault (nil: the whole deploy's
// step), the step and why.
func (e *engine) gate(ctx context.Context, ph phase, live []int, rec *Record) (targets.Host, string, error) {
	start := time.Now()
	res := StepResult{Step: ph.step, Outcome: "ok"}
	var bad targets.Host
	var step string
	var err error
	switch {
	case ph.bake > 0 && len(live) == 0:
		return nil, "", nil // no host switched (each ran the release already): nothing to bake
	case ph.bake > 0:
		if res.Step == "" {
			res.Step = "bake: " + ph.bake.String()
		}
		slices.Sort(live)
		hosts, ids := make([]targets.Host, len(live)), make([]string, len(live))
		for k, i := range live {
			hosts[k], ids[k] = e.t.Hosts()[i], e.madeLive(i, "")
		}
		var baked time.Duration
		step = StepBake
		baked, bad, err = e.bakeHosts(ctx, hosts, ids, ph.bake)
		rec.BakedMs += baked.Milliseconds()
		res.Detail = fmt.Sprintf("baked %s on %d host(s)", baked.Round(time.Millisecond), len(hosts))
	case ph.analysis != nil:
		step = StepAnalysis
		set := map[int]bool{}
		for _, i := range live {
			set[i] = true
		}
		e.setPhase(ctx, "analysis "+ph.analysis.Name)
		res.Detail, err = ph.analysis.run(ctx, e.analysisData(ctx, set), e.logf)
		e.setPhase(ctx, "deploying")
	}
	var ab *AbortedError
	switch {
	case errors.As(err, &ab):
		res.Outcome, step = "aborted", StepAborted
	case err != nil:
		res.Outcome = "failed"
		if res.Detail == "" || step == StepBake {
			res.Detail = err.Error()
		}
	}
	res.Millis = time.Since(start).Milliseconds()
	rec.Steps = append(rec.Steps, res)
	if err != nil && step == StepAnalysis {
		err = fmt.Errorf("%q %w", ph.analysis.Name, err)
	}
	return bad, step, err
}

// hostsPattern is a regular expression matching exactly the given names, for Prometheus
// label matchers (which anchor it), written for a double-quoted PromQL string (its
// backslashes doubled: host=~"{{.Hosts}}"); "" when there are none.
func hostsPattern(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strings.ReplaceAll(regexp.QuoteMeta(n), `\`, `\\`)
	}
	return strings.Join(q, "|")
}

// analysisData is what an analysis query sees: the canary's hosts (those switched) and the
// rest of the fleet, and the release's fields.
func (e *engine) analysisData(ctx context.Context, switched map[int]bool) map[string]string {
	var in, out, inAddr, outAddr []string
	for i, h := range e.t.Hosts() {
		addr := h.Name()
		if a, ok := h.(targets.Addresser); ok {
			addr = a.Address()
		}
		if switched[i] {
			in, inAddr = append(in, h.Name()), append(inAddr, addr)
		} else {
			out, outAddr = append(out, h.Name()), append(outAddr, addr)
		}
	}
	var rel targets.Release
	if e.o.current != nil {
		rel = e.o.current()
	}
	return map[string]string{
		"Hosts": hostsPattern(in), "Others": hostsPattern(out),
		"Addresses": hostsPattern(inAddr), "OtherAddresses": hostsPattern(outAddr),
		"Release": rel.ID, "Version": rel.Version, "Digest": rel.Digest, "Image": rel.Image, "App": rel.App, "Env": rel.Env,
	}
}

// progressiveOptions turns an environment's bake, steps and analysis templates (and the
// deploy's irreversible flag) into the engine's options.
func progressiveOptions(env *config.Environment, req *Request) ([]Option, error) {
	var opts []Option
	if env.Bake.Duration > 0 {
		opts = append(opts, WithBake(env.Bake.Duration))
	}
	if len(env.Steps) > 0 {
		steps := make([]Step, len(env.Steps))
		for i, s := range env.Steps {
			steps[i] = Step{Hosts: s.Hosts, Percent: s.Percent, Bake: s.Bake.Duration}
			if s.Analysis != "" {
				a, ok := env.Analysis[s.Analysis]
				if !ok || a == nil {
					return nil, fmt.Errorf("steps[%d]: analysis %q is not in the environment's analysis", i, s.Analysis)
				}
				an, err := AnalysisFromConfig(s.Analysis, a)
				if err != nil {
					return nil, err
				}
				steps[i].Analysis = an
			}
		}
		opts = append(opts, WithSteps(steps...))
	}
	if req != nil && req.Irreversible {
		opts = append(opts, WithIrreversible("the release was deployed with --irreversible"))
	}
	return opts, nil
}
