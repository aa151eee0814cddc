package notify

import (
	"encoding/json"
	"time"
)

// Outcome is how a deploy ended.
type Outcome string

// The outcomes of a deploy.
const (
	// Success: the release is live and healthy everywhere (or already was).
	Success Outcome = "success"
	// Failure: the deploy failed and nothing was rolled back (it failed before any host
	// switched, or the rollback itself failed).
	Failure Outcome = "failure"
	// RolledBack: the deploy failed after switching hosts, which were put back on the
	// previous release.
	RolledBack Outcome = "rolled_back"
)

// Failed says whether the outcome counts as a failure for notifications: Failure and
// RolledBack do.
func (o Outcome) Failed() bool { return o != Success }

func (o Outcome) valid() bool { return o == Success || o == Failure || o == RolledBack }

// Event is one finished deploy, as notifications and markers report it. It mirrors the
// deployment record; the pipeline fills it from the record.
type Event struct {
	// ID is the deployment record's id.
	ID string `json:"id"`
	// App and Env name the application and the environment.
	App string `json:"app"`
	Env string `json:"env"`
	// Kind is the target kind: "ssh", "docker" or "kubernetes".
	Kind string `json:"kind,omitempty"`
	// Action is "deploy", or "rollback" for a manual rollback ("" reads as "deploy").
	Action string `json:"action,omitempty"`
	// Version is the source version the deploy made live or tried to (a git tag or commit);
	// a manual rollback's is the version it went back to.
	Version string `json:"version,omitempty"`
	// LiveVersion is the version every host runs afterwards, read from the hosts: after a
	// rolled-back deploy the previous one, not Version. Versions that differ between hosts
	// are joined with ", "; "" when it is not known (or nothing is live).
	LiveVersion string `json:"liveVersion,omitempty"`
	// Digest is the image digest or the artifact tree's digest.
	Digest string `json:"digest,omitempty"`
	// Outcome is how the deploy ended.
	Outcome Outcome `json:"outcome"`
	// ApprovedBy is who approved a deploy to a protected environment.
	ApprovedBy string `json:"approvedBy,omitempty"`
	// Deployer is who or what ran the deploy.
	Deployer string `json:"deployer,omitempty"`
	// Started and Finished bound the deploy.
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Hosts is what happened on each host or workload.
	Hosts []HostOutcome `json:"hosts,omitempty"`
	// Error says why the deploy failed; "" on success. It must hold no secret (the
	// pipeline's errors never do).
	Error string `json:"error,omitempty"`
	// Rollback says what an automatic rollback did; nil when there was none.
	Rollback *Rollback `json:"rollback,omitempty"`
	// URL links to the pipeline run (a CI job).
	URL string `json:"url,omitempty"`
	// EnvURL is where the environment is served, when the file says.
	EnvURL string `json:"envUrl,omitempty"`
}

// HostOutcome is what happened on one host.
type HostOutcome struct {
	// Host names the host ("10.0.0.1:22", "deployment/web").
	Host string `json:"host"`
	// Outcome is the pipeline's word for it: "deployed", "unchanged", "failed", "rolled
	// back", "not started".
	Outcome string `json:"outcome"`
	// Error says what failed there.
	Error string `json:"error,omitempty"`
}

// Rollback is what an automatic rollback did.
type Rollback struct {
	// Reason is what triggered it, e.g. "health check failed on 10.0.0.2:22".
	Reason string `json:"reason"`
	// To is the release the hosts went back to; "" when they had none before.
	To string `json:"to,omitempty"`
	// Hosts are the hosts rolled back.
	Hosts []string `json:"hosts,omitempty"`
	// Errors are rollback failures, one per host that could not be rolled back.
	Errors []string `json:"errors,omitempty"`
}

// Duration is how long the deploy took.
func (e Event) Duration() time.Duration {
	if e.Started.IsZero() || e.Finished.IsZero() {
		return 0
	}
	return e.Finished.Sub(e.Started)
}

// MarshalJSON adds the duration ("duration": "1m2.5s", "durationSeconds": 62.5) to the
// fields.
func (e Event) MarshalJSON() ([]byte, error) {
	type plain Event
	return json.Marshal(struct {
		plain
		Duration        string  `json:"duration"`
		DurationSeconds float64 `json:"durationSeconds"`
	}{plain(e), e.Duration().String(), e.Duration().Seconds()})
}

// MarkerRecord is the body of a deployment marker, and the data of a marker body template.
type MarkerRecord struct {
	Service string `json:"service"`
	// Version is the version live afterwards: a rolled-back deploy's marker names the
	// previous version, which is what runs.
	Version string `json:"version"`
	// AttemptedVersion is the version the deploy tried, when it is not the one live.
	AttemptedVersion string `json:"attemptedVersion,omitempty"`
	// Action is "deploy" or "rollback" (a manual rollback).
	Action      string    `json:"action,omitempty"`
	Environment string    `json:"environment"`
	Timestamp   time.Time `json:"timestamp"`
	Outcome     Outcome   `json:"outcome"`
	RecordID    string    `json:"recordId"`
	Digest      string    `json:"digest,omitempty"`
	Deployer    string    `json:"deployer,omitempty"`
	URL         string    `json:"url,omitempty"`
}

// Marker makes the marker record of an event: the timestamp is when the deploy finished.
func (e Event) Marker() MarkerRecord {
	ts := e.Finished
	if ts.IsZero() {
		ts = time.Now()
	}
	m := MarkerRecord{
		Service: e.App, Version: e.Version, Environment: e.Env, Timestamp: ts.UTC(),
		Outcome: e.Outcome, RecordID: e.ID, Digest: e.Digest, Deployer: e.Deployer, URL: e.URL,
		Action: firstNonEmpty(e.Action, "deploy"),
	}
	if e.LiveVersion != "" || e.Outcome != Success {
		// What runs, not what was tried: unknown ("") rather than the failed version.
		m.Version = e.LiveVersion
	}
	if m.Version != e.Version {
		m.AttemptedVersion = e.Version
	}
	return m
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
