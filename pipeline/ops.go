package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/pipeline/publish"
	"github.com/pushdeploy/pushdeploy/targets"
)

// Environments runs the operations beside deploy — status, plan, history, rollback,
// unlock — on the environments of one file, the same way for the module and the CLI.
type Environments struct {
	File    *config.File
	Secrets Secrets
	Targets TargetMaker
	Log     io.Writer
	// Deployer names who acts, in locks and records. Default: $USER@hostname.
	Deployer   string
	PipelineID string
	// RunHook runs the post_rollback hooks of a manual rollback that run "in a container"
	// (the module: a container; the CLI: this machine), as Request.RunHook. Default: none,
	// such hooks fail with a warning (hooks with where: hosts run on the hosts).
	RunHook func(ctx context.Context, image, cmd string, env map[string]string) ([]byte, error)
	// RunURL links notifications to the CI run that acts.
	RunURL string
}

// target makes the named environment's target and engine.
func (x *Environments) target(ctx context.Context, name string) (*config.Environment, *engine, error) {
	if x.File == nil {
		return nil, nil, errors.New("no environments file")
	}
	env, err := x.File.Env(name)
	if err != nil {
		return nil, nil, err
	}
	t, err := x.Targets(ctx, x.File, name, &x.Secrets)
	if err != nil {
		return nil, nil, fmt.Errorf("environment %q: %w", name, err)
	}
	r := &run{req: &Request{Deployer: x.Deployer, PipelineID: x.PipelineID}, log: newMasker(orDiscard(x.Log), x.Secrets.values())}
	opts, err := engineOptions(env, r)
	if err != nil {
		t.Close()
		return nil, nil, err
	}
	e, err := newEngine(t, opts)
	if err != nil {
		t.Close()
		return nil, nil, fmt.Errorf("environment %q: %w", name, err)
	}
	return env, e, nil
}

// EnvStatus is what one environment runs.
type EnvStatus struct {
	Env   string           `json:"env"`
	Kind  string           `json:"kind,omitempty"`
	Hosts []targets.Status `json:"hosts,omitempty"`
	// Health is each host's health check run once, in the order of Hosts (CheckedStatus);
	// empty when not asked.
	Health []HostHealth  `json:"health,omitempty"`
	Lock   *targets.Lock `json:"lock,omitempty"`
	Error  string        `json:"error,omitempty"`
	// Unreachable says Error is a host (or the cluster) that could not be reached.
	Unreachable bool `json:"unreachable,omitempty"`
}

// Status answers "what runs where" for every environment of the file (or the named ones),
// in parallel. An environment that cannot be read has its error in its entry.
func (x *Environments) Status(ctx context.Context, names ...string) []EnvStatus {
	if len(names) == 0 {
		names = x.File.EnvNames()
	}
	out := make([]EnvStatus, len(names))
	done := make(chan struct{})
	for i, n := range names {
		go func() {
			defer func() { done <- struct{}{} }()
			out[i] = EnvStatus{Env: n}
			_, e, err := x.target(ctx, n)
			if err != nil {
				out[i].Error, out[i].Unreachable = maskError(err, x.Secrets.values()).Error(), unreachable(err)
				return
			}
			defer e.t.Close()
			out[i].Kind = e.t.Kind()
			st, err := e.statuses(ctx)
			if err != nil {
				out[i].Error, out[i].Unreachable = maskError(err, x.Secrets.values()).Error(), unreachable(err)
			}
			out[i].Hosts = st
			if l, err := e.t.Locker().Holder(ctx); err == nil {
				out[i].Lock = l
			}
		}()
	}
	for range names {
		<-done
	}
	return out
}

// Plan says what deploying art to the named environment would change, and changes
// nothing. The release's digest comes from the artifact: the manifest of a directory, an
// image tarball's digest, or a published reference.
func (x *Environments) Plan(ctx context.Context, name string, art Artifact) ([]targets.Change, error) {
	env, e, err := x.target(ctx, name)
	if err != nil {
		return nil, err
	}
	defer e.t.Close()
	r := targets.Release{ID: NewReleaseID(time.Now()), App: x.File.App, Env: name, Artifacts: art.Dir, Image: art.Image}
	switch {
	case overSSH(env, x.File, &art):
		if err := checkOverSSH(name, &art); err != nil {
			return nil, err
		}
		if art.ImagePath != "" {
			if r.Image, err = ImageID(art.ImagePath); err != nil {
				return nil, err
			}
		}
		if r.Image == "" {
			return nil, errors.New("nothing to plan: give the image tarball (--image-tar)")
		}
		r.Digest = r.Image
	case art.Dir != "":
		d, ok := e.t.(ArtifactDigester)
		if !ok {
			return nil, fmt.Errorf("environment %q: the %s target does not deploy files", name, e.t.Kind())
		}
		if r.Digest, err = d.ArtifactDigest(art.Dir); err != nil {
			return nil, err
		}
	case art.Image != "":
		if !strings.Contains(art.Image, "@") {
			// A tag: what a deploy would resolve it to, up front.
			pinned, err := registryPublisher{}.Resolve(ctx, art.Image, x.File.Image, &x.Secrets)
			if err != nil {
				return nil, fmt.Errorf("resolving image tag %q to its digest: %w", art.Image, err)
			}
			r.Image = pinned
		}
		r.Digest = digestOf(r.Image)
	case art.ImagePath != "":
		img, _, closeFn, err := publish.Open(art.ImagePath)
		if err != nil {
			return nil, err
		}
		h, err := img.Digest()
		closeFn()
		if err != nil {
			return nil, fmt.Errorf("digesting image %q: %w", art.ImagePath, err)
		}
		r.Digest = h.String()
		if x.File.Image != nil {
			r.Image = repoOf(x.File.Image) + "@" + r.Digest
		}
	default:
		return nil, errors.New("nothing to plan: give the artifacts or the image")
	}
	return Plan(ctx, e.t, r)
}

// EnvHistory is an environment's deployment records and what its hosts keep for rollback.
type EnvHistory struct {
	Records []Record         `json:"records"`
	Kept    []targets.Status `json:"kept,omitempty"`
	// KeptError says why the hosts could not be read: the records are shown all the same.
	KeptError string `json:"keptError,omitempty"`
}

// History returns the named environment's last limit records, newest last, and the
// releases its hosts keep (Kubernetes: the revisions, with their change-cause).
func (x *Environments) History(ctx context.Context, name string, limit int) (*EnvHistory, error) {
	_, e, err := x.target(ctx, name)
	if err != nil {
		return nil, err
	}
	defer e.t.Close()
	recs, err := History(ctx, e.t, limit)
	if err != nil {
		return nil, err
	}
	h := &EnvHistory{Records: recs}
	if h.Kept, err = e.statuses(ctx); err != nil {
		h.KeptError = maskError(err, x.Secrets.values()).Error()
	}
	return h, nil
}

// RenderEnvHistory prints the records, then what the hosts keep.
func RenderEnvHistory(w io.Writer, h *EnvHistory) error {
	if err := RenderHistory(w, h.Records); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nkept for rollback (rollback --to RELEASE):")
	if h.KeptError != "" {
		_, err := fmt.Fprintf(w, "  (the hosts could not be read: %s)\n", h.KeptError)
		return err
	}
	return RenderKept(w, h.Kept)
}

// Rollback returns the named environment to the release to (each host's previous one
// when to is ""). A protected environment needs an approval here too. A rollback across a
// release that crossed an irreversible change is refused (*IrreversibleError) unless opts
// has WithAcrossIrreversible(true).
func (x *Environments) Rollback(ctx context.Context, name, to, approvedBy string, opts ...Option) (*Record, error) {
	env, e, err := x.target(ctx, name)
	if err != nil {
		return nil, err
	}
	defer e.t.Close()
	for _, o := range opts {
		if err := o(e.o); err != nil {
			return nil, err
		}
	}
	if env.Protected && strings.TrimSpace(approvedBy) == "" {
		return nil, fmt.Errorf("environment %q is protected: a rollback needs --approved-by too; nothing was changed", name)
	}
	e.o.record = func(r *Record) { r.ApprovedBy = approvedBy; r.App, r.Env = x.File.App, name }
	res, err := e.rollback(ctx, to)
	if res == nil {
		// Refused before anything changed (the lock, a host without the release).
		return nil, maskError(err, x.Secrets.values())
	}
	rec := &res.Record
	log := newMasker(orDiscard(x.Log), x.Secrets.values())
	if rec.Outcome == OutcomeDeployed {
		// As after an automatic rollback: post_rollback hooks, a failure a warning.
		r := &run{
			req: &Request{File: x.File, Env: name, Secrets: x.Secrets, RunHook: x.RunHook, Deployer: x.Deployer, PipelineID: x.PipelineID},
			env: env, target: e.t, e: e, rec: *rec, log: log,
			release: targets.Release{ID: rec.Release, App: rec.App, Env: rec.Env, Version: rec.Version, Digest: rec.Digest,
				Image: rec.Image, Deployer: rec.Deployer, PipelineID: rec.PipelineID, ApprovedBy: rec.ApprovedBy},
		}
		if herr := r.hooks(ctx, "post-rollback", env.Hooks.PostRollback); herr != nil && !IsSkip(herr) {
			w := "post-rollback hook failed: " + maskError(herr, x.Secrets.values()).Error()
			rec.Warnings = append(rec.Warnings, w)
			fmt.Fprintf(log, "warning: %s\n", w)
		}
	}
	// A manual rollback is reported as a deploy is: markers and notifications, with its
	// outcome and the version live afterwards.
	if len(env.Markers) > 0 || env.Notifications.Slack != nil || env.Notifications.Webhook != nil {
		for _, w := range sendNotifications(ctx, env, rec, &x.Secrets, x.RunURL) {
			rec.Warnings = append(rec.Warnings, w)
			fmt.Fprintf(log, "warning: %s\n", w)
		}
	}
	return rec, maskError(err, x.Secrets.values())
}

// UnlockOption configures Environments.Unlock.
type UnlockOption func(*unlockOptions)

type unlockOptions struct{ force bool }

// WithForce breaks a lock that is within its TTL too (its deploy, if it runs, stops and
// rolls back at its next renewal). Default: false, such a lock is refused.
func WithForce(force bool) UnlockOption {
	return func(o *unlockOptions) { o.force = force }
}

// Unlock breaks the named environment's deploy lock and says who held it (nil: nobody).
// An expired lock is broken; one within its TTL is refused (a *LiveLockError naming the
// holder and until when) unless WithForce(true).
func (x *Environments) Unlock(ctx context.Context, name string, opts ...UnlockOption) (*targets.Lock, error) {
	var o unlockOptions
	for _, opt := range opts {
		opt(&o)
	}
	_, e, err := x.target(ctx, name)
	if err != nil {
		return nil, err
	}
	defer e.t.Close()
	h, err := Unlock(ctx, e.t, o.force)
	var live *LiveLockError
	if errors.As(err, &live) {
		live.Target = fmt.Sprintf("environment %q", name)
	}
	return h, err
}

// StatusError is nil when every environment could be read, every rollout is complete or
// progressing and every host checked is healthy; otherwise it names each environment that
// could not be read, each stuck rollout and each unhealthy host, so that a CI step stops.
// When a host or cluster could not be reached it is an *UnreachableError (ExitCode 7).
func StatusError(envs []EnvStatus) error {
	var bad []string
	down := false
	for _, e := range envs {
		down = down || e.Unreachable
		if e.Error != "" {
			bad = append(bad, fmt.Sprintf("%s: %s", e.Env, e.Error))
			continue
		}
		for _, h := range e.Hosts {
			if h.Rollout == "stuck" {
				bad = append(bad, fmt.Sprintf("%s: %s: rollout stuck: %s", e.Env, hostNoun(h.Host), h.RolloutReason))
			}
		}
		for _, h := range e.Health {
			if h.State == HealthUnhealthy {
				bad = append(bad, fmt.Sprintf("%s: %s: unhealthy: %s", e.Env, hostNoun(h.Host), h.Error))
			}
		}
	}
	if len(bad) == 0 {
		return nil
	}
	err := fmt.Errorf("%d problem(s) in the status:\n  %s", len(bad), strings.Join(bad, "\n  "))
	if down {
		return &UnreachableError{Err: err}
	}
	return err
}

// RenderStatus prints every environment's hosts, one a line: the live release, the
// rollout's state where the kind has one (complete, progressing, or stuck with kubectl's
// reason), and the health check's verdict.
func RenderStatus(w io.Writer, envs []EnvStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENV\tKIND\tHOST\tLIVE\tVERSION\tDIGEST\tKEPT\tROLLOUT\tHEALTH\tDETAIL")
	for _, e := range envs {
		if e.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\t-\terror: %s\n", e.Env, dash(e.Kind), e.Error)
			continue
		}
		for i, h := range e.Hosts {
			live, version, digest := "-", "-", "-"
			if h.Live != nil {
				live, version, digest = h.Live.ID, dash(h.Live.Version), short(h.Live.Digest)
			}
			rollout := dash(h.Rollout)
			if h.Rollout == "stuck" && h.RolloutReason != "" {
				rollout += ": " + h.RolloutReason
			}
			health := "-"
			if i < len(e.Health) {
				health = e.Health[i].State
				if e.Health[i].Error != "" {
					health += ": " + e.Health[i].Error
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", e.Env, e.Kind, h.Host, live, version, digest, len(h.Kept), rollout, health, dash(h.Detail))
		}
		if e.Lock != nil {
			fmt.Fprintf(tw, "%s\t%s\t(lock)\t%s\t\t\t\t\t\t\n", e.Env, e.Kind, e.Lock)
		}
	}
	return tw.Flush()
}

// RenderRecord prints one deployment record for people.
func RenderRecord(w io.Writer, r *Record) {
	fmt.Fprintf(w, "%s %s of %s to %s: %s\n", r.Action, r.Release, r.App, r.Env, strings.ToUpper(r.Outcome))
	if r.Version != "" || r.Digest != "" {
		fmt.Fprintf(w, "  version %s, digest %s\n", dash(r.Version), dash(r.Digest))
	}
	if r.ApprovedBy != "" {
		fmt.Fprintf(w, "  approved by %s\n", r.ApprovedBy)
	}
	for _, h := range r.Hosts {
		line := fmt.Sprintf("  %s: %s", h.Host, h.Outcome)
		if h.Sent != nil {
			line += fmt.Sprintf(" (sent %d %s, %s)", h.Sent.Files, unit(h.Sent.Layers), bytesText(h.Sent.Bytes))
		}
		if h.Step != "" {
			line += " at " + h.Step
		}
		if h.Error != "" {
			line += ": " + h.Error
		}
		fmt.Fprintln(w, line)
	}
	for _, st := range r.Steps {
		fmt.Fprintf(w, "  step %s: %s (%s) %s\n", st.Step, st.Outcome, round(time.Duration(st.Millis)*time.Millisecond), st.Detail)
	}
	if r.BakedMs > 0 {
		fmt.Fprintf(w, "  baked %s\n", round(time.Duration(r.BakedMs)*time.Millisecond))
	}
	if n := irreversibleNote(r); n != "" {
		fmt.Fprintf(w, "  %s\n", n)
	}
	if r.Rollback != nil && r.Rollback.Stopped != "" {
		fmt.Fprintf(w, "  NOT ROLLED BACK: %s\n", r.Rollback.Stopped)
		for _, f := range r.Rollback.Fleet {
			fmt.Fprintf(w, "    %s runs %s\n", f.Host, dash(firstNonEmpty(f.Version, f.Release)))
		}
	} else if r.Rollback != nil {
		fmt.Fprintf(w, "  rolled back %s: %s\n", strings.Join(r.Rollback.Hosts, ", "), r.Rollback.Reason)
		for _, e := range r.Rollback.Errors {
			fmt.Fprintf(w, "  ROLLBACK FAILED: %s\n", e)
		}
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", warn)
	}
	if !r.Finished.IsZero() {
		fmt.Fprintf(w, "  took %s\n", round(r.Finished.Sub(r.Started)))
	}
}

// RenderKept prints what each host keeps for rollback (the ids rollback --to takes), the
// live release marked.
func RenderKept(w io.Writer, st []targets.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tRELEASE\tVERSION\tDIGEST\tLIVE\tNOTE")
	for _, h := range st {
		for _, k := range h.Kept {
			live := ""
			if h.Live != nil && h.Live.ID == k.ID {
				live = "*"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", h.Host, k.ID, dash(k.Version), short(k.Digest), live, k.Note)
		}
	}
	return tw.Flush()
}

// RenderHistory prints records one a line, oldest first.
func RenderHistory(w io.Writer, recs []Record) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WHEN\tACTION\tRELEASE\tVERSION\tDIGEST\tOUTCOME\tBY\tAPPROVED")
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Started.Before(recs[j].Started) })
	for _, r := range recs {
		outcome := r.Outcome
		if r.Irreversible != "" {
			outcome += " (irreversible)" // rollback across it needs --force
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Started.Format(time.RFC3339), r.Action, r.Release,
			dash(r.Version), short(r.Digest), outcome, dash(r.Deployer), dash(r.ApprovedBy))
	}
	return tw.Flush()
}

// JSON writes v as indented JSON.
func JSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func short(d string) string {
	if strings.HasPrefix(d, "sha256:") && len(d) > 19 {
		return d[:19]
	}
	return dash(d)
}
