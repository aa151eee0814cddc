package pipeline

import (
	"time"

	"github.com/pushdeploy/pushdeploy/targets"
)

// Outcomes of a deploy, a host, or a rollback.
const (
	OutcomeDeployed   = "deployed"    // the release is live and healthy
	OutcomeUnchanged  = "unchanged"   // the release was live already: nothing done
	OutcomeFailed     = "failed"      // the step named in the record failed
	OutcomeRolledBack = "rolled back" // switched, then returned to the previous release
	OutcomeSkipped    = "not started" // a batch before it failed
)

// Record is one deploy or rollback, as kept in the target's journal and printed by history.
type Record struct {
	ID          string        `json:"id"`
	Action      string        `json:"action"` // "deploy" or "rollback"
	App         string        `json:"app"`
	Env         string        `json:"env"`
	Kind        string        `json:"kind"`
	Release     string        `json:"release"`
	Version     string        `json:"version,omitempty"`
	Digest      string        `json:"digest,omitempty"`
	Image       string        `json:"image,omitempty"`
	ImageTag    string        `json:"imageTag,omitempty"` // the tag given (--image repo:tag), resolved to Image up front
	Deployer    string        `json:"deployer,omitempty"`
	ApprovedBy  string        `json:"approvedBy,omitempty"`
	PipelineID  string        `json:"pipelineId,omitempty"`
	Outcome     string        `json:"outcome"`
	LiveVersion string        `json:"liveVersion,omitempty"` // what every host runs afterwards, read from them ("a, b" when they differ)
	Error       string        `json:"error,omitempty"`
	Hosts       []HostResult  `json:"hosts"`
	Rollback    *RollbackInfo `json:"rollback,omitempty"`
	Stages      []StageTime   `json:"stages,omitempty"`
	// Steps are the deploy's bakes and canary steps, in order; BakedMs how long it baked
	// in all (paused time not counted).
	Steps   []StepResult `json:"steps,omitempty"`
	BakedMs int64        `json:"bakedMs,omitempty"`
	// Irreversible says why the release crossed a change that a rollback cannot undo (a
	// migrate hook marked irreversible, deploy --irreversible); "" when it did not.
	Irreversible string    `json:"irreversible,omitempty"`
	Warnings     []string  `json:"warnings,omitempty"`
	Started      time.Time `json:"started"`
	Finished     time.Time `json:"finished"`
}

// HostResult is what happened on one host.
type HostResult struct {
	Host     string `json:"host"`
	Previous string `json:"previous,omitempty"` // live release before
	Outcome  string `json:"outcome"`
	Step     string `json:"step,omitempty"` // where it failed: prepare, activate, health
	Error    string `json:"error,omitempty"`
	Millis   int64  `json:"ms"`
	// Sent is what the deploy uploaded to the host (targets that upload files).
	Sent *Sent `json:"sent,omitempty"`
}

// RollbackInfo says what an automatic rollback did.
type RollbackInfo struct {
	Reason string   `json:"reason"`
	Hosts  []string `json:"hosts"`
	Errors []string `json:"errors,omitempty"`
	// Stopped says why no host was returned (the deploy had crossed an irreversible step),
	// and Fleet what each host runs then.
	Stopped string     `json:"stopped,omitempty"`
	Fleet   []HostLive `json:"fleet,omitempty"`
}

// HostLive is the release a host runs, read from it.
type HostLive struct {
	Host    string `json:"host"`
	Release string `json:"release"`
	Version string `json:"version,omitempty"`
}

// StageTime is one stage of the flow and how long it took.
type StageTime struct {
	Stage   string `json:"stage"`
	Outcome string `json:"outcome"` // "ok", "skipped: reason", "failed"
	Millis  int64  `json:"ms"`
}

// Result is the outcome of Rollout or Rollback.
type Result struct {
	Record Record
}

func newRecord(action string, t targets.Target, r targets.Release, o *options) Record {
	return Record{
		ID:         r.ID,
		Action:     action,
		App:        r.App,
		Env:        r.Env,
		Kind:       t.Kind(),
		Release:    r.ID,
		Version:    r.Version,
		Digest:     r.Digest,
		Image:      r.Image,
		Deployer:   firstNonEmpty(r.Deployer, o.owner),
		PipelineID: firstNonEmpty(r.PipelineID, o.pipelineID),
		Started:    o.now().UTC(),
	}
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
