// Package targets defines what pushdeploy needs from a place it deploys to. One package per
// kind implements it: targets/ssh (plain servers, atomic release directories), targets/docker
// (Docker hosts over SSH) and targets/kubernetes (Deployments through client-go).
//
// A target is a set of hosts that the pipeline treats alike. A host is wherever one copy of
// the application runs: a server, a Docker host, a Kubernetes Deployment. Hosts only offer
// primitives (stage a release, make a kept release live, report what is live); everything
// that is the same for every kind — batches, parallelism, health checks, rolling every
// switched host back, lock waiting and renewal, plan rendering, records — lives in pipeline/,
// written once against these interfaces.
//
// This package is plain Go: it never imports the Dagger bindings.
package targets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Release is one version of an application, ready to go to a target.
type Release struct {
	// ID names the release on every host of one deploy, e.g. "20261127T081502Z". It sorts by
	// time and is a safe file name.
	ID string `json:"id"`
	// App and Env say whose release it is ("myapp", "staging").
	App string `json:"app"`
	Env string `json:"env"`
	// Version is the source version: a git tag, or a commit.
	Version string `json:"version,omitempty"`
	// Digest identifies the content: the image digest ("sha256:..."), or for file deploys the
	// digest of the artifact tree's manifest. Deploying the digest that is live is a no-op.
	Digest string `json:"digest"`
	// Image is the digest-pinned reference ("registry/repo@sha256:...") for image targets.
	Image string `json:"image,omitempty"`
	// Artifacts is the local directory whose files a file target deploys.
	Artifacts string `json:"-"`
	// ImageArchive is a local image tarball (docker save, an OCI layout) that the docker
	// target sends to each host over SSH instead of pulling Image: Image is then the image
	// ID ("sha256:...", the config's digest), and so is Digest.
	ImageArchive string `json:"-"`
	// Deployer says who deploys it.
	Deployer string `json:"deployer,omitempty"`
	// PipelineID identifies the run that deploys it (a CI job URL or run id).
	PipelineID string `json:"pipelineId,omitempty"`
	// ApprovedBy names who approved the deploy of a protected environment.
	ApprovedBy string `json:"approvedBy,omitempty"`
	// Revision is the source commit.
	Revision string `json:"revision,omitempty"`
}

// Vars is the release as the PUSHDEPLOY_* variables that every command run for it gets:
// restart commands, health commands and hooks (on hosts or in a container), the same set
// everywhere. kind is the target's kind. Empty fields are set, empty, so that a command
// never reads a stale value from its own environment.
func (r Release) Vars(kind string) map[string]string {
	return map[string]string{
		"PUSHDEPLOY_APP":         r.App,
		"PUSHDEPLOY_ENV":         r.Env,
		"PUSHDEPLOY_KIND":        kind,
		"PUSHDEPLOY_RELEASE":     r.ID,
		"PUSHDEPLOY_VERSION":     r.Version,
		"PUSHDEPLOY_DIGEST":      r.Digest,
		"PUSHDEPLOY_IMAGE":       r.Image,
		"PUSHDEPLOY_DEPLOYER":    r.Deployer,
		"PUSHDEPLOY_APPROVED_BY": r.ApprovedBy,
		"PUSHDEPLOY_PIPELINE_ID": r.PipelineID,
		"PUSHDEPLOY_REVISION":    r.Revision,
	}
}

// Target is every host of one application in one environment, of one kind.
type Target interface {
	// Kind is "ssh", "docker" or "kubernetes".
	Kind() string
	// Hosts are the target's hosts in the order the configuration gives them.
	Hosts() []Host
	// Locker guards the target against two deploys at once.
	Locker() Locker
	// Journal keeps the target's deployment records.
	Journal() Journal
	// Close releases connections.
	Close() error
}

// Host is one place the application runs.
type Host interface {
	// Name identifies the host in messages and records ("127.0.0.1:2201", "deployment/web").
	Name() string
	// Status reports the live release and the kept ones.
	Status(ctx context.Context) (Status, error)
	// Plan says what deploying r would change here, and changes nothing.
	Plan(ctx context.Context, r Release) (Change, error)
	// Prepare stages r beside the live release without making it live: upload the files, pull
	// the image. After it, r.ID is a kept release that Activate can make live.
	Prepare(ctx context.Context, r Release) error
	// Activate makes the kept release id live and restarts what serves it, so that rolling
	// back is activating the previous release. An empty id takes the host back to having no
	// live release, where the kind allows it (the rollback of a first deploy).
	Activate(ctx context.Context, id string) error
	// Discard removes a kept release that is not live: a failed one, or one pruned.
	Discard(ctx context.Context, id string) error
}

// Commander is a host that can run a shell command: command health checks and hooks.
type Commander interface {
	// Run runs cmd with env added to its environment and returns what it printed, stdout and
	// stderr together.
	Run(ctx context.Context, cmd string, env map[string]string) ([]byte, error)
}

// Updater is a host that runs commands inside a staged release before it goes live
// (Capistrano's deploy:updated): installing dependencies, compiling assets, migrations. The
// pipeline calls Update after Prepare and before Activate, on every host of a batch before
// any of them switches; a failure discards the release and nothing goes live.
type Updater interface {
	// Updates says whether the host has commands to run in a staged release.
	Updates() bool
	// Update runs them, in order, in the directory of the kept, not live release r.ID, with
	// r's PUSHDEPLOY_* variables; it stops at the first that fails, saying which and what
	// it printed.
	Update(ctx context.Context, r Release) error
}

// Addresser is a host with a network address, for health-check URL templates ({{.Address}}).
type Addresser interface {
	Address() string
}

// SelfChecker is a host that knows on its own whether a release it made live is healthy (a
// container's HEALTHCHECK). The pipeline asks it before running the configured check.
type SelfChecker interface {
	// CheckHealth waits until the live release id is healthy, or says why it is not.
	CheckHealth(ctx context.Context, id string) error
}

// Steadier is a host that can watch a release it made live stay up without polling (a
// container that must keep running, not restarted). The pipeline asks it during the health
// check's stability window.
type Steadier interface {
	// Steady returns nil when release id is still up, the same process or container that
	// was up when it was called, after d; it returns at once, saying why, when it stops,
	// exits or restarts before.
	Steady(ctx context.Context, id string, d time.Duration) error
}

// Preflighter is a target that can check, before the deploy lock is taken and before
// anything changes, that each host offers what a deploy needs (a writable state directory,
// a reachable engine socket).
type Preflighter interface {
	// Preflight says, naming the host, what is missing; nil when every host is ready.
	Preflight(ctx context.Context) error
}

// Status is what a host runs.
type Status struct {
	Host string `json:"host"`
	// Live is the live release, nil when none is.
	Live *Kept `json:"live,omitempty"`
	// Kept lists the releases kept for rollback, oldest first, the live one included.
	Kept []Kept `json:"kept,omitempty"`
	// Detail is kind-specific state worth showing (replicas ready, container state).
	Detail string `json:"detail,omitempty"`
	// Rollout is the state of the host's rollout, where the kind has one (Kubernetes):
	// "complete", "progressing" or "stuck"; "" for kinds that switch at once.
	Rollout string `json:"rollout,omitempty"`
	// RolloutReason is why: kubectl's status viewer's message, or the failing pod's reason.
	RolloutReason string `json:"rolloutReason,omitempty"`
}

// Kept is a release kept on a host.
type Kept struct {
	ID      string    `json:"id"`
	Version string    `json:"version,omitempty"`
	Digest  string    `json:"digest,omitempty"`
	Image   string    `json:"image,omitempty"`
	Created time.Time `json:"created,omitzero"`
	// Note is what the kind knows besides: a Deployment's revision and change-cause.
	Note string `json:"note,omitempty"`
	// Activated orders the kept releases by when each last went live, higher later; 0 when
	// the kind keeps no record of activations (Kubernetes: the ReplicaSet's revision, which
	// the controller renumbers when a ReplicaSet comes back). Rollback without --to goes to
	// the release live before the live one: the highest Activated among the others.
	Activated int64 `json:"activated,omitempty"`
	// Failed says the deploy that made the release live failed and was undone; rollback
	// without --to skips it.
	Failed bool `json:"failed,omitempty"`
	// Foreign says pushdeploy did not make the release (a revision kubectl applied);
	// rollback without --to skips it.
	Foreign bool `json:"foreign,omitempty"`
}

// Change is what a deploy would do to one host.
type Change struct {
	Host string `json:"host"`
	// Live is the live release id, "" when none.
	Live string `json:"live,omitempty"`
	// Noop is true when the release is already live there.
	Noop bool `json:"noop,omitempty"`
	// Add, Update and Remove name files (file targets) or fields (image targets).
	Add    []string `json:"add,omitempty"`
	Update []string `json:"update,omitempty"`
	Remove []string `json:"remove,omitempty"`
	// Bytes is what would be sent to the host.
	Bytes int64 `json:"bytes"`
	// Summary is one line for humans: "image a@sha256:1… -> a@sha256:2…".
	Summary string `json:"summary,omitempty"`
}

// Lock is who holds a target's deploy lock.
type Lock struct {
	Owner      string    `json:"owner"`
	PipelineID string    `json:"pipelineId,omitempty"`
	Acquired   time.Time `json:"acquired"`
	// Expires is when the lock lapses unless renewed: a crashed deploy's lock expires.
	Expires time.Time `json:"expires"`
	// Phase is what the deploy holding the lock last said it does ("baking 2 host(s) for
	// 5m0s", "paused by alice ..."); "" for a lock taken by hand, or a deploy between bakes.
	Phase string `json:"phase,omitempty"`
	// Control is what someone asked of the deploy that holds the lock (a Controller keeps
	// it beside the lock); nil when nothing was asked.
	Control *Control `json:"control,omitempty"`
}

// Control is a request to the deploy holding a lock, which reads it during its bakes.
type Control struct {
	// Action is "pause" (hold where it is, keep probing, keep the lock) or "abort" (roll
	// back every host it switched and stop).
	Action string `json:"action"`
	// By names who asked.
	By string    `json:"by,omitempty"`
	At time.Time `json:"at"`
}

// Controller is a Locker that keeps a Control with the lock, for the deploy holding it to
// read (Holder reports it in Lock.Control) and a renewal to keep.
type Controller interface {
	// SetControl stores c with the lock, nil to clear it, when holder still holds the lock
	// (the same owner and acquisition); otherwise it fails, saying who holds it now.
	SetControl(ctx context.Context, holder Lock, c *Control) error
}

// Expired says whether the lock has lapsed at now.
func (l Lock) Expired(now time.Time) bool { return !l.Expires.IsZero() && now.After(l.Expires) }

func (l Lock) String() string {
	s := fmt.Sprintf("%q since %s", l.Owner, l.Acquired.UTC().Format(time.RFC3339))
	if l.PipelineID != "" {
		s += fmt.Sprintf(" (pipeline %q)", l.PipelineID)
	}
	s += ", expires " + l.Expires.UTC().Format(time.RFC3339)
	if l.Phase != "" {
		s += "; " + l.Phase
	}
	if c := l.Control; c != nil {
		s += fmt.Sprintf("; %s asked by %q", c.Action, c.By)
	}
	return s
}

// Locker is a target's deploy lock, one per application and environment. Implementations
// create it atomically on the target; waiting, renewal and giving up belong to the pipeline.
type Locker interface {
	// Acquire takes the lock for l when it is free or expired. When someone else holds a lock
	// that has not expired it returns a *HeldError naming them.
	Acquire(ctx context.Context, l Lock) error
	// Renew moves the expiry of a lock that l holds.
	Renew(ctx context.Context, l Lock) error
	// Release gives up a lock that l holds; a lock held by someone else is left alone.
	Release(ctx context.Context, l Lock) error
	// Holder reports who holds the lock, nil when nobody does.
	Holder(ctx context.Context) (*Lock, error)
	// Break removes the lock whoever holds it (an explicit unlock).
	Break(ctx context.Context) error
}

// HeldError says the lock is held by someone else.
type HeldError struct {
	Target string
	Holder Lock
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("deploy lock on %s is held by %s", e.Target, e.Holder)
}

// ErrLockLost says a deploy lock is no longer its holder's: it was broken, or expired and
// was taken by someone else. Lockers wrap it in the error of a Renew that finds so, which
// tells the pipeline to stop the deploy (a failure to reach the lock is not a loss).
var ErrLockLost = errors.New("the deploy lock is no longer ours")

// Journal keeps a target's deployment records, newest last. Records are JSON documents
// that the pipeline defines; the target stores them as they are.
type Journal interface {
	Append(ctx context.Context, record json.RawMessage) error
	// Records returns at most limit records, the newest last; limit <= 0 means all.
	Records(ctx context.Context, limit int) ([]json.RawMessage, error)
}

// LogOptions says which of a live release's logs a LogReader reads.
type LogOptions struct {
	// Since keeps only what was logged this long ago or later; 0 means everything the host
	// keeps (or, for a logs command, what the command prints by default).
	Since time.Duration
	// Follow keeps streaming new lines until ctx ends.
	Follow bool
}

// LogReader is a host that can read its live release's logs: the live container's, the
// Deployment's pods', or what the environment's logs command prints on a server.
type LogReader interface {
	// Logs writes the live release's logs to w (stdout and stderr together, whole lines)
	// until they end, or with Follow until ctx ends. A host with no live release is a
	// *NoLiveError.
	Logs(ctx context.Context, w io.Writer, o LogOptions) error
}

// Executor is a host that can run a command inside its live release: in the release's
// directory with its PUSHDEPLOY_* variables on a server, in the live container on a Docker
// host, in one pod of a Deployment.
type Executor interface {
	// Exec runs argv (a server's login shell runs it quoted, word for word) and writes its
	// stdout and stderr to w. A command that ran and failed is an *ExitError; a host with
	// no live release is a *NoLiveError.
	Exec(ctx context.Context, argv []string, w io.Writer) error
}

// NoLiveError says a host runs no release, so there is nothing to read or run in.
type NoLiveError struct {
	Host string
	// Detail says what the host has instead, when there is more to say.
	Detail string
}

func (e *NoLiveError) Error() string {
	s := fmt.Sprintf("%s has no live release", e.Host)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// ExitError is a command that ran on a host and exited non-zero.
type ExitError struct {
	Host string
	// Code is the exit status; -1 when it is not known (killed, connection lost).
	Code int
}

func (e *ExitError) Error() string {
	if e.Code < 0 {
		return fmt.Sprintf("the command on %s did not exit normally", e.Host)
	}
	return fmt.Sprintf("the command on %s exited with status %d", e.Host, e.Code)
}
