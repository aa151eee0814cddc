package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/targets"
)

// Request is one deploy of one environment, as the Dagger module or the CLI hands it over:
// plain Go values, the adapter's own work (building, running hooks in a container, making
// targets) passed in as functions.
type Request struct {
	// File is the environments file; Env names the environment to deploy.
	File *config.File
	Env  string
	// Source says what is deployed: the commit, branch, git tag and version.
	Source Source
	// ApprovedBy names who approved a deploy to a protected environment; CI's own gate
	// supplies it (the GitHub job bound to the environment, Jenkins' input step).
	ApprovedBy string
	// Deployer names who deploys; PipelineID and RunURL the CI run that does.
	Deployer   string
	PipelineID string
	RunURL     string
	// Secrets are the secret values the file names.
	Secrets Secrets
	// Irreversible says the release makes a change its rollback cannot undo (it migrates
	// as it starts): once a host runs it, an automatic rollback stops, and rollback across
	// it refuses unless forced (deploy --irreversible).
	Irreversible bool
	// Artifact is what to deploy when the caller built it already (or is handed it by an
	// earlier job): Build is then skipped.
	Artifact *Artifact
	// Build builds and tests the application, for environments that do not promote. kind
	// is the environment's target kind: "ssh" wants the artifact directory, "docker" and
	// "kubernetes" an image.
	Build func(ctx context.Context, kind string) (*Artifact, error)
	// Publish pushes an image artifact and returns its digest reference; Promote copies one
	// by digest. Both default to the publish package, configured from the file.
	Publish Publisher
	// Targets makes the target of an environment, with the secrets resolved.
	Targets TargetMaker
	// RunHook runs a hook command in a container of image ("" for the adapter's default)
	// in the module, or locally in the CLI.
	RunHook func(ctx context.Context, image, cmd string, env map[string]string) ([]byte, error)
	// Notify sends markers and notifications; what was not delivered comes back as
	// warnings for the record. Default: the environment's markers and notifications.
	Notify func(ctx context.Context, env *config.Environment, rec *Record, secrets *Secrets) []string
	// Log receives the report of each stage as it runs. Secret values are masked in it.
	Log io.Writer
}

// Source is the version being deployed.
type Source struct {
	Revision string `json:"revision,omitempty"`
	Branch   string `json:"branch,omitempty"`
	Tag      string `json:"tag,omitempty"`
	Version  string `json:"version,omitempty"`
}

// Artifact is a build's output.
type Artifact struct {
	// Dir holds the files that ssh targets deploy.
	Dir string
	// ImagePath is an OCI layout or tarball that image targets publish.
	ImagePath string
	// Image is a published, digest-pinned image reference: nothing to publish.
	Image string
}

// TargetMaker makes the target of the environment of f called name.
type TargetMaker func(ctx context.Context, f *config.File, name string, secrets *Secrets) (targets.Target, error)

// Publisher pushes and copies images.
type Publisher interface {
	// Publish pushes the image at path and returns "repo@sha256:...".
	Publish(ctx context.Context, path string, img *config.Image, src Source, secrets *Secrets) (string, error)
	// Promote copies digestRef into img's repository (a no-op when it is there already)
	// and returns the reference there.
	Promote(ctx context.Context, digestRef string, img *config.Image, src Source, secrets *Secrets) (string, error)
}

// Resolver is a Publisher that can resolve an image tag to its digest reference. The
// default publisher is one; a Publisher that is not leaves tags to the default's registry
// client.
type Resolver interface {
	Resolve(ctx context.Context, ref string, img *config.Image, secrets *Secrets) (string, error)
}

// ArtifactDigester is a target that deploys files and can say which digest a directory of
// artifacts would deploy as (the digest of its manifest), for no-op and promotion checks.
type ArtifactDigester interface {
	ArtifactDigest(dir string) (string, error)
}

// run is the state one deploy carries from stage to stage.
type run struct {
	req     *Request
	env     *config.Environment
	target  targets.Target
	e       *engine
	art     *Artifact
	release targets.Release
	promote string // the digest reference live in the source environment
	st      []targets.Status
	rec     Record
	held    *heldLock // the deploy lock, from the lock stage until the unlock stage
	noop    bool
	passed  bool // the gates let the deploy through
	failed  error
	log     io.Writer
}

// stage is one step of the deploy flow.
type stage struct {
	name string
	run  func(ctx context.Context, r *run) error
	// always runs the stage after an earlier one failed (records, unlocking, notifying).
	always bool
}

// stages is the deploy flow, in its fixed order.
var stages = []stage{
	// Pick the environment from the file and make its target: bad settings stop here,
	// before anything is touched.
	{name: "resolve", run: resolveStage},
	// Approval for protected environments, the promotion source's live digest.
	{name: "gates", run: gatesStage},
	// Build and test, unless promoting or handed a built artifact.
	{name: "build", run: buildStage},
	// Push the image (or copy it by digest when promoting); file targets have nothing to
	// publish.
	{name: "publish", run: publishStage},
	// Take the target's deploy lock; it covers only the stages that change the target.
	{name: "lock", run: lockStage},
	// Commands before anything changes; a failure stops the deploy.
	{name: "pre-deploy hooks", run: preHooksStage},
	// The migration, once, before any host switches; an irreversible one is the point an
	// automatic rollback no longer goes back past (irreversible.go).
	{name: "migrate", run: migrateStage},
	// Batches of hosts: prepare, switch, health; a failing host rolls every switched one back.
	{name: "deploy", run: deployStage},
	// Every host once more, after the last batch.
	{name: "health", run: healthStage},
	// Integration checks; a failure rolls the deploy back unless the environment says not.
	{name: "post-deploy hooks", run: postHooksStage},
	// The deployment record, into the target's history.
	{name: "record", run: recordStage, always: true},
	// Let the next deploy in.
	{name: "unlock", run: unlockStage, always: true},
	// Markers and notifications; a failure is a warning in the record, never a failed deploy.
	{name: "notify", run: notifyStage, always: true},
}

// Deploy runs the deploy flow for one environment and returns its record. Every stage is
// reported to req.Log with its duration; a stage that does not apply says why; an error
// names its stage.
func Deploy(ctx context.Context, req Request) (*Record, error) {
	log := newMasker(orDiscard(req.Log), req.Secrets.values())
	r := &run{req: &req, log: log}
	r.rec.Started = time.Now().UTC()
	for _, s := range stages {
		if r.failed != nil && !s.always {
			continue
		}
		if r.noop && !s.always {
			continue
		}
		start := time.Now()
		sctx := ctx
		if r.held != nil && !s.always {
			// The stages under the lock stop when it is lost.
			sctx = r.held.ctx
		}
		err := s.run(sctx, r)
		if r.held != nil && !s.always {
			err = r.checkLock(ctx, err)
		}
		d := time.Since(start)
		st := StageTime{Stage: s.name, Millis: d.Milliseconds(), Outcome: "ok"}
		var warn *stageWarning
		switch {
		case err == nil:
			fmt.Fprintf(log, "==> %s: ok (%s)\n", s.name, round(d))
		case errors.As(err, &warn):
			st.Outcome = "warning: " + warn.msg
			r.rec.Warnings = append(r.rec.Warnings, warn.msg)
			fmt.Fprintf(log, "==> %s: WARNING (%s): %s\n", s.name, round(d), warn.msg)
		case IsSkip(err):
			st.Outcome = err.Error()
			fmt.Fprintf(log, "==> %s: %s\n", s.name, err)
		default:
			st.Outcome = "failed"
			fmt.Fprintf(log, "==> %s: FAILED (%s): %v\n", s.name, round(d), err)
			if r.failed == nil {
				r.failed = &StageError{Stage: s.name, Err: r.stoppedErr(s.name, err)}
			}
		}
		r.rec.Stages = append(r.rec.Stages, st)
	}
	if r.failed != nil {
		return &r.rec, maskError(r.failed, req.Secrets.values())
	}
	return &r.rec, nil
}

// stageWarning is a stage that did what it could but has something the record must say
// (a lock that could not be released): reported, never a failed deploy.
type stageWarning struct{ msg string }

func (w *stageWarning) Error() string { return "warning: " + w.msg }

// checkLock turns a stage's result into the loss of the deploy lock when the lock went
// while it ran: a stage that passed is a failure then, and every host switched so far
// returns to its previous release (stages that failed rolled back already).
func (r *run) checkLock(ctx context.Context, err error) error {
	lost := r.held.lost()
	if lost == nil {
		return err
	}
	if err != nil && !IsSkip(err) {
		if errors.Is(err, lost) {
			return err
		}
		return fmt.Errorf("%w; then: %v", lost, err)
	}
	if r.e != nil && len(r.e.switched) > 0 {
		r.rollback(ctx, lost)
		if rb := r.rec.Rollback; rb != nil {
			return fmt.Errorf("%w; rolled back %d host(s) to their previous release: %q", lost, len(rb.Hosts), rb.Hosts)
		}
	}
	return lost
}

func resolveStage(ctx context.Context, r *run) error {
	if r.req.File == nil {
		return errors.New("no environments file")
	}
	env, err := r.req.File.Env(r.req.Env)
	if err != nil {
		return err
	}
	r.env = env
	if r.req.Targets == nil {
		return errors.New("no way to make targets")
	}
	t, err := r.req.Targets(ctx, r.req.File, r.req.Env, &r.req.Secrets)
	if err != nil {
		return fmt.Errorf("environment %q: %w", r.req.Env, err)
	}
	r.target = t
	opts, err := engineOptions(env, r)
	if err != nil {
		return fmt.Errorf("environment %q: %w", r.req.Env, err)
	}
	e, err := newEngine(t, opts)
	if err != nil {
		return fmt.Errorf("environment %q: %w", r.req.Env, err)
	}
	r.e = e
	now := time.Now()
	r.release = targets.Release{
		ID: NewReleaseID(now), App: r.req.File.App, Env: r.req.Env,
		Version:  firstNonEmpty(r.req.Source.Version, r.req.Source.Tag, r.req.Source.Revision),
		Deployer: r.e.o.owner, PipelineID: r.req.PipelineID,
		ApprovedBy: r.req.ApprovedBy, Revision: r.req.Source.Revision,
	}
	e.follow(func() targets.Release { return r.release })
	r.rec = newRecord("deploy", t, r.release, e.o)
	r.rec.ApprovedBy = r.req.ApprovedBy
	// What the deploy was given is checked here, before the lock and any notification.
	if err := r.checkArtifact(ctx); err != nil {
		return err
	}
	fmt.Fprintf(r.log, "    %s: %s target, %d host(s)\n", r.req.Env, t.Kind(), len(t.Hosts()))
	return nil
}

// checkArtifact refuses what the deploy was handed when it cannot deploy (an empty or
// missing artifact directory, an image reference that does not parse) and resolves an
// image tag to its digest, once: every host then gets the same image, and the record keeps
// both. Nothing has been touched yet.
func (r *run) checkArtifact(ctx context.Context) error {
	a := r.req.Artifact
	if a == nil {
		return nil
	}
	if a.Dir != "" {
		if err := nonEmptyDir(a.Dir); err != nil {
			return fmt.Errorf("%w; nothing was changed", err)
		}
	}
	if a.ImagePath != "" {
		if _, err := os.Stat(a.ImagePath); err != nil {
			return fmt.Errorf("image to publish %q: %w; nothing was changed", a.ImagePath, err)
		}
	}
	if r.env.NoRegistry() {
		return checkOverSSH(r.req.Env, a)
	}
	if a.Image == "" {
		return nil
	}
	ref, err := name.ParseReference(a.Image, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("image reference %q: %v: want repo@sha256:<digest> or repo:tag; nothing was changed", a.Image, err)
	}
	if _, ok := ref.(name.Digest); ok {
		return nil
	}
	resolve := registryPublisher{}.Resolve
	if res, ok := r.publisher().(Resolver); ok {
		resolve = res.Resolve
	}
	pinned, err := resolve(ctx, a.Image, r.req.File.Image, &r.req.Secrets)
	if err != nil {
		return fmt.Errorf("resolving image tag %q to its digest: %w; nothing was changed", a.Image, err)
	}
	fmt.Fprintf(r.log, "    %s is %s\n", a.Image, pinned)
	resolved := *a
	resolved.Image = pinned
	r.req.Artifact = &resolved
	r.rec.ImageTag = a.Image
	return nil
}

// nonEmptyDir says why dir cannot be a release's artifacts: it is missing, not a
// directory, or holds no file (directories alone deploy an empty release).
func nonEmptyDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("artifact directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("artifact directory %q is not a directory", dir)
	}
	errFound := errors.New("found")
	err = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return errFound
		}
		return nil
	})
	switch {
	case errors.Is(err, errFound):
		return nil
	case err != nil:
		return fmt.Errorf("reading artifact directory %q: %w", dir, err)
	}
	return fmt.Errorf("artifact directory %q holds no files: a deploy of it would make an empty release live", dir)
}

// engineOptions turns an environment's settings into the engine's options.
func engineOptions(env *config.Environment, r *run) ([]Option, error) {
	opts := []Option{WithLogger(prefixed(r.log, "    ")), WithProgress(progressOut(r.req.Log, r.log))}
	if r.req.Deployer != "" {
		opts = append(opts, WithOwner(r.req.Deployer, r.req.PipelineID))
	}
	if env.Batches.Count > 0 {
		opts = append(opts, WithBatchSize(env.Batches.Count))
	}
	if env.Batches.Percent > 0 {
		opts = append(opts, WithBatchPercent(env.Batches.Percent))
	}
	if env.Keep > 0 {
		opts = append(opts, WithKeep(env.Keep))
	}
	if env.Lock.Wait.Duration > 0 {
		opts = append(opts, WithLockWait(env.Lock.Wait.Duration))
	}
	if env.Lock.TTL.Duration > 0 {
		opts = append(opts, WithLockTTL(env.Lock.TTL.Duration))
	}
	if h := env.Health; h != nil && (h.HTTP != nil || h.Command != "") {
		hc := HealthCheck{Command: h.Command, Interval: h.Interval.Duration, Timeout: h.Timeout.Duration, Retries: h.Retries}
		if h.HTTP != nil {
			hc.URL, hc.Status, hc.Body = h.HTTP.URL, h.HTTP.Status, h.HTTP.Body
		}
		opts = append(opts, WithHealthCheck(hc))
	}
	if h := env.Health; h != nil && h.Stable.Duration > 0 {
		opts = append(opts, WithStable(h.Stable.Duration))
	}
	prog, err := progressiveOptions(env, r.req)
	if err != nil {
		return nil, err
	}
	return append(opts, prog...), nil
}

func gatesStage(ctx context.Context, r *run) error {
	var applied []string
	if r.env.Protected {
		if strings.TrimSpace(r.req.ApprovedBy) == "" {
			return &GateError{Err: fmt.Errorf("environment %q is protected and this deploy is not approved: "+
				"pass --approved-by NAME (in CI, the approver from the environment's gate: GitHub's "+
				"environment reviewers, Jenkins' input submitter); nothing was changed", r.req.Env)}
		}
		applied = append(applied, fmt.Sprintf("approved by %q", r.req.ApprovedBy))
	}
	if from := r.env.From; from != "" {
		ref, err := r.liveIn(ctx, from)
		if err != nil {
			return err
		}
		if a := r.req.Artifact; a != nil && a.Image != "" && digestOf(a.Image) != digestOf(ref) {
			return &GateError{Err: fmt.Errorf("environment %q deploys only what is live in %q: asked for %s, but %q runs %s; nothing was changed",
				r.req.Env, from, digestOf(a.Image), from, digestOf(ref))}
		}
		r.promote = ref
		applied = append(applied, fmt.Sprintf("promoting %s, live and healthy in %q", ref, from))
	}
	if p, ok := r.target.(targets.Preflighter); ok {
		// What every host needs (a state directory, the engine's socket), checked once the
		// deploy is allowed and before the lock: a missing one refuses it before it
		// started, so nobody is notified of a deploy that never touched the target.
		if err := p.Preflight(ctx); err != nil {
			return fmt.Errorf("environment %q: %w; nothing was changed", r.req.Env, err)
		}
	}
	r.passed = true
	if len(applied) == 0 {
		return Skip("environment %q is not protected and promotes from nowhere", r.req.Env)
	}
	fmt.Fprintf(r.log, "    %s\n", strings.Join(applied, "; "))
	return nil
}

// liveIn returns what is live and healthy on every host of environment from: an image
// reference for image targets, a digest for file targets.
func (r *run) liveIn(ctx context.Context, from string) (string, error) {
	src, err := r.req.File.Env(from)
	if err != nil {
		return "", fmt.Errorf("promotion source: %w", err)
	}
	t, err := r.req.Targets(ctx, r.req.File, from, &r.req.Secrets)
	if err != nil {
		return "", fmt.Errorf("promotion source %q: %w", from, err)
	}
	defer t.Close()
	opts, err := engineOptions(src, r)
	if err != nil {
		return "", err
	}
	e, err := newEngine(t, opts)
	if err != nil {
		return "", fmt.Errorf("promotion source %q: %w", from, err)
	}
	st, err := e.statuses(ctx)
	if err != nil {
		return "", fmt.Errorf("promotion source %q: %w", from, err)
	}
	ref := ""
	for i, s := range st {
		if s.Live == nil {
			return "", fmt.Errorf("promotion source %q: nothing is live on host %q", from, s.Host)
		}
		cur := firstNonEmpty(s.Live.Image, s.Live.Digest)
		if ref == "" {
			ref = cur
		} else if digestOf(cur) != digestOf(ref) {
			return "", fmt.Errorf("promotion source %q is mid-rollout: host %q runs %s, host %q runs %s", from, st[0].Host, digestOf(ref), s.Host, digestOf(cur))
		}
		if err := e.healthy(ctx, t.Hosts()[i], s.Live.ID); err != nil {
			return "", fmt.Errorf("promotion source %q is not healthy on host %q: %w", from, s.Host, err)
		}
	}
	return ref, nil
}

// digestOf is the digest of a reference ("repo@sha256:..." or "sha256:...").
func digestOf(ref string) string {
	if i := strings.LastIndex(ref, "@"); i >= 0 {
		return ref[i+1:]
	}
	return ref
}

func buildStage(ctx context.Context, r *run) error {
	switch {
	case r.promote != "":
		if r.req.Artifact != nil && r.req.Artifact.Dir != "" {
			r.art = r.req.Artifact
			return Skip("promoting the artifacts live in %q, never rebuilt", r.env.From)
		}
		r.art = &Artifact{Image: r.promote}
		return Skip("promoting %s from %q, never rebuilt", digestOf(r.promote), r.env.From)
	case r.req.Artifact != nil:
		r.art = r.req.Artifact
		return Skip("deploying the artifact given to the deploy")
	case r.req.Build == nil:
		return errors.New("nothing to deploy: no artifact was given and this runner cannot build (give --artifacts or --image)")
	}
	art, err := r.req.Build(ctx, r.env.Kind())
	if err != nil {
		return err
	}
	r.art = art
	return nil
}

func publishStage(ctx context.Context, r *run) error {
	if r.env.SSH != nil {
		return r.fileDigest()
	}
	if overSSH(r.env, r.req.File, r.art) {
		return r.sendOverSSH()
	}
	img := r.req.File.Image
	switch {
	case r.art.Image != "" && r.promote != "":
		if img == nil {
			return fmt.Errorf("promoting to %q needs the file's image settings", r.req.Env)
		}
		ref, err := r.publisher().Promote(ctx, r.art.Image, img, r.req.Source, &r.req.Secrets)
		if err != nil {
			return err
		}
		r.setImage(ref)
		fmt.Fprintf(r.log, "    promoted to %s\n", ref)
		return nil
	case r.art.Image != "":
		r.setImage(r.art.Image)
		return Skip("the image is published already: %s", r.art.Image)
	case r.art.ImagePath == "":
		return errors.New("nothing to publish: the build produced no image")
	case img == nil:
		return fmt.Errorf("environment %q runs an image, but the file has no image settings (image.repository)", r.req.Env)
	}
	ref, err := r.publisher().Publish(ctx, r.art.ImagePath, img, r.req.Source, &r.req.Secrets)
	if err != nil {
		return err
	}
	r.setImage(ref)
	fmt.Fprintf(r.log, "    published %s\n", ref)
	return nil
}

// fileDigest names a file deploy's release by the digest of its artifacts.
func (r *run) fileDigest() error {
	if r.art == nil || r.art.Dir == "" {
		return errors.New("the ssh target deploys files, but the build produced no artifact directory")
	}
	if err := nonEmptyDir(r.art.Dir); err != nil {
		// A build's output, checked as the artifacts given to the deploy were at resolve.
		return err
	}
	d, ok := r.target.(ArtifactDigester)
	if !ok {
		return fmt.Errorf("the %s target cannot digest artifacts", r.target.Kind())
	}
	digest, err := d.ArtifactDigest(r.art.Dir)
	if err != nil {
		return err
	}
	if r.promote != "" && digest != digestOf(r.promote) {
		return fmt.Errorf("environment %q deploys only what is live in %q: the artifacts are %s, but %q runs %s",
			r.req.Env, r.env.From, digest, r.env.From, digestOf(r.promote))
	}
	r.release.Artifacts, r.release.Digest = r.art.Dir, digest
	r.syncRecord()
	return Skip("file target: nothing to publish (artifacts %s)", digest)
}

func (r *run) setImage(ref string) {
	r.release.Image, r.release.Digest = ref, digestOf(ref)
	r.syncRecord()
}

func (r *run) syncRecord() {
	r.rec.Digest, r.rec.Image = r.release.Digest, r.release.Image
}

func (r *run) publisher() Publisher {
	if r.req.Publish != nil {
		return r.req.Publish
	}
	return registryPublisher{}
}

func lockStage(ctx context.Context, r *run) error {
	held, err := r.e.lock(ctx)
	if err != nil {
		return err
	}
	r.held = held
	// What is live is read under the lock: a deploy still running (and not yet proven
	// healthy) holds it, so "live already" describes only finished deploys.
	r.st, err = r.e.statuses(held.ctx)
	if err != nil {
		return err
	}
	if _, all := live(r.st, r.release.Digest); all {
		r.noop = true
		r.rec.Outcome = OutcomeUnchanged
		for _, s := range r.st {
			r.rec.Hosts = append(r.rec.Hosts, HostResult{Host: s.Host, Previous: s.Live.ID, Outcome: OutcomeUnchanged})
		}
		return Skip("%s is live on every host already (read under the lock): nothing to deploy", r.release.Digest)
	}
	return nil
}

func preHooksStage(ctx context.Context, r *run) error {
	return r.hooks(ctx, "pre-deploy", r.env.Hooks.PreDeploy)
}

func deployStage(ctx context.Context, r *run) error {
	moves := make([]move, len(r.st))
	for i, s := range r.st {
		moves[i] = move{id: r.release.ID, release: &r.release, skip: s.Live != nil && s.Live.Digest == r.release.Digest}
	}
	err := r.e.apply(ctx, moves, r.st, &r.rec)
	if err != nil && r.rec.Rollback != nil {
		r.postRollback(ctx)
	}
	return err
}

func healthStage(ctx context.Context, r *run) error {
	if r.e.o.health == nil {
		return Skip("no health check configured beyond the target's own, which ran per host")
	}
	err := eachHost(r.target.Hosts(), func(i int, h targets.Host) error {
		if err := r.e.o.health.check(ctx, h, r.e.madeLive(i, r.release.ID)); err != nil {
			return &HostError{Host: h.Name(), Step: StepHealth, Err: err}
		}
		return nil
	})
	if err != nil {
		r.rollback(ctx, err)
	}
	return err
}

func postHooksStage(ctx context.Context, r *run) error {
	err := r.hooks(ctx, "post-deploy", r.env.Hooks.PostDeploy)
	if err == nil || IsSkip(err) {
		return err
	}
	if r.env.Hooks.ContinueOnFailure {
		r.rec.Warnings = append(r.rec.Warnings, "post-deploy hook failed (continue_on_failure): "+err.Error())
		fmt.Fprintf(r.log, "    warning: %v (continue_on_failure is set: the deploy stands)\n", err)
		return nil
	}
	r.rollback(ctx, err)
	return err
}

// rollback undoes a deploy that every host had taken, after a later stage failed.
func (r *run) rollback(ctx context.Context, cause error) {
	de := &DeployError{HostError: &HostError{Step: "after deploy", Err: cause}}
	r.e.undo(ctx, cause.Error(), &r.rec, de)
	for _, rerr := range de.RollbackErrors {
		fmt.Fprintf(r.log, "    ROLLBACK FAILED: %v\n", rerr)
	}
	// The failed release goes away where it is no longer live, as after a failed batch: a
	// later rollback must not pick it.
	back := map[string]bool{}
	for _, h := range de.RolledBack {
		back[h] = true
	}
	for _, h := range r.target.Hosts() {
		if !back[h.Name()] {
			continue
		}
		if err := h.Discard(context.WithoutCancel(ctx), r.release.ID); err != nil {
			fmt.Fprintf(r.log, "    warning: %s: removing failed release %s: %v\n", h.Name(), r.release.ID, err)
		}
	}
	r.postRollback(ctx)
}

func (r *run) postRollback(ctx context.Context) {
	if err := r.hooks(ctx, "post-rollback", r.env.Hooks.PostRollback); err != nil && !IsSkip(err) {
		r.rec.Warnings = append(r.rec.Warnings, "post-rollback hook failed: "+err.Error())
	}
}

func recordStage(ctx context.Context, r *run) error {
	if r.e == nil {
		return Skip("no target was resolved")
	}
	if r.failed == nil && r.held != nil {
		// The lock may have gone since the last stage: never record DEPLOYED then.
		if err := r.checkLock(ctx, nil); err != nil {
			r.failed = &StageError{Stage: "record", Err: err}
			fmt.Fprintf(r.log, "    %v\n", err)
		}
	}
	r.rec.Finished = time.Now().UTC()
	switch {
	case r.noop:
		r.rec.Outcome = OutcomeUnchanged
	case r.failed == nil:
		r.rec.Outcome = OutcomeDeployed
	case r.rec.Rollback != nil && len(r.rec.Rollback.Errors) == 0 && r.rec.Rollback.Stopped == "":
		r.rec.Outcome, r.rec.Error = OutcomeRolledBack, r.failed.Error()
	default:
		r.rec.Outcome, r.rec.Error = OutcomeFailed, r.failed.Error()
	}
	if r.held == nil || r.noop {
		// Nothing changed on the target (refused at a gate, or no change to make): the
		// record goes to the log and notifications only.
		return Skip("nothing changed on the target: the record is not kept there")
	}
	if r.failed == nil {
		r.e.prune(ctx)
	}
	r.rec.LiveVersion = r.e.liveVersion(ctx)
	r.e.journal(ctx, &r.rec)
	fmt.Fprintf(r.log, "    record %s: %s\n", r.rec.ID, r.rec.Outcome)
	return nil
}

func unlockStage(ctx context.Context, r *run) error {
	if r.held == nil {
		return Skip("the lock was not taken")
	}
	err := r.held.release(ctx)
	lost := r.held.lost()
	r.held = nil
	switch {
	case err != nil:
		return &stageWarning{msg: err.Error()}
	case lost != nil:
		return &stageWarning{msg: "the lock had been lost during the deploy; whoever holds it now keeps it"}
	}
	return nil
}

func notifyStage(ctx context.Context, r *run) error {
	if !r.passed {
		return Skip("the deploy was refused before it started: nobody is notified")
	}
	notifyFn := r.req.Notify
	if notifyFn == nil {
		if len(r.env.Markers) == 0 && r.env.Notifications.Slack == nil && r.env.Notifications.Webhook == nil {
			return Skip("the environment has no markers or notifications")
		}
		notifyFn = func(ctx context.Context, env *config.Environment, rec *Record, s *Secrets) []string {
			return sendNotifications(ctx, env, rec, s, r.req.RunURL)
		}
	}
	if r.rec.Outcome == "" {
		// A deploy refused before it reached the target.
		r.rec.Outcome, r.rec.Error = OutcomeFailed, r.failed.Error()
		r.rec.Finished = time.Now().UTC()
	}
	if r.rec.LiveVersion == "" && r.e != nil {
		// What runs now, for markers: never the version of a deploy that did not land.
		r.rec.LiveVersion = r.e.liveVersion(ctx)
	}
	warnings := notifyFn(ctx, r.env, &r.rec, &r.req.Secrets)
	for _, w := range warnings {
		fmt.Fprintf(r.log, "    warning: %s\n", w)
	}
	r.rec.Warnings = append(r.rec.Warnings, warnings...)
	return nil
}

// hooks runs the commands of one hook point, where the environment says.
func (r *run) hooks(ctx context.Context, point string, cmds []string) error {
	if len(cmds) == 0 {
		return Skip("no %s hooks", point)
	}
	env := r.hookEnv()
	timeout := r.env.Hooks.Timeout.Duration
	if timeout <= 0 {
		timeout = DefaultHookTimeout
	}
	for _, c := range cmds {
		hctx, cancel := context.WithTimeout(ctx, timeout)
		var err error
		var out []byte
		if r.env.Hooks.Where == "hosts" {
			err = eachHost(r.target.Hosts(), func(_ int, h targets.Host) error {
				cm, ok := h.(targets.Commander)
				if !ok {
					return fmt.Errorf("host %q cannot run hook commands", h.Name())
				}
				o, err := cm.Run(hctx, c, env)
				if err != nil && hctx.Err() != nil {
					return fmt.Errorf("host %q: %s: %s", h.Name(), stoppedWhy(ctx, timeout), tail(o, 4000))
				}
				if err != nil {
					return fmt.Errorf("host %q: %w: %s", h.Name(), err, tail(o, 4000))
				}
				return nil
			})
		} else {
			if r.req.RunHook == nil {
				cancel()
				return fmt.Errorf("%s hook %q: this runner cannot run hooks in a container", point, c)
			}
			out, err = r.req.RunHook(hctx, r.env.Hooks.Image, c, env)
			switch {
			case err != nil && hctx.Err() != nil:
				err = fmt.Errorf("%s: %s", stoppedWhy(ctx, timeout), tail(out, 4000))
			case err != nil:
				err = fmt.Errorf("%w: %s", err, tail(out, 4000))
			}
		}
		cancel()
		if err != nil {
			return fmt.Errorf("%s hook %q: %w", point, c, err)
		}
		fmt.Fprintf(r.log, "    %s hook ok: %s\n", point, c)
	}
	return nil
}

// hookEnv is the release's fields as the PUSHDEPLOY_* variables, the same set that health
// and restart commands get (targets.Release.Vars).
func (r *run) hookEnv() map[string]string {
	return r.release.Vars(r.rec.Kind)
}

func round(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Millisecond)
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// prefixed indents every line written to w.
func prefixed(w io.Writer, prefix string) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		lines := bytes.SplitAfter(p, []byte("\n"))
		for _, l := range lines {
			if len(l) == 0 {
				continue
			}
			if _, err := w.Write(append([]byte(prefix), l...)); err != nil {
				return 0, err
			}
		}
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// stoppedWhy says why a hook bounded by timeout under ctx was killed: its own timeout, or
// the deploy's context (a lost lock, a cancelled deploy), with that cause.
func stoppedWhy(ctx context.Context, timeout time.Duration) string {
	if ctx.Err() != nil {
		return fmt.Sprintf("killed: the deploy stopped (%v)", context.Cause(ctx))
	}
	return fmt.Sprintf("timed out after %s, killed", timeout)
}
