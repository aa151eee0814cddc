package pipeline

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/pushdeploy/pushdeploy/targets"
)

// Health states of HostHealth.State.
const (
	HealthHealthy    = "healthy"
	HealthUnhealthy  = "unhealthy"
	HealthNotChecked = "not checked" // --no-check
	HealthNoCheck    = "no check"    // the environment configures none and the host has none
	HealthNotLive    = "nothing live"
)

// HostHealth is one host's health as status saw it: its check run once.
type HostHealth struct {
	Host  string `json:"host"`
	State string `json:"state"`
	Error string `json:"error,omitempty"`
}

// CheckedStatus is Status with each host's health: unless check is false, every host's
// live release is checked once (the host's own check, a container's HEALTHCHECK, then the
// environment's check, one attempt each, no retries and no stability window); with check
// false every host is "not checked". StatusError then fails on an unhealthy host as on a
// stuck rollout.
func (x *Environments) CheckedStatus(ctx context.Context, check bool, names ...string) []EnvStatus {
	out := x.Status(ctx, names...)
	done := make(chan struct{})
	for i := range out {
		go func() {
			defer func() { done <- struct{}{} }()
			es := &out[i]
			if es.Error != "" {
				return
			}
			es.Health = make([]HostHealth, len(es.Hosts))
			for j, h := range es.Hosts {
				es.Health[j] = HostHealth{Host: h.Host, State: HealthNotChecked}
			}
			if !check {
				return
			}
			_, e, err := x.target(ctx, es.Env)
			if err != nil {
				for j := range es.Health {
					es.Health[j].State, es.Health[j].Error = HealthUnhealthy, maskError(err, x.Secrets.values()).Error()
				}
				return
			}
			defer e.t.Close()
			byName := map[string]targets.Host{}
			for _, h := range e.t.Hosts() {
				byName[h.Name()] = h
			}
			var jobs []func()
			for j, st := range es.Hosts {
				h := byName[st.Host]
				hh := &es.Health[j]
				jobs = append(jobs, func() {
					switch {
					case h == nil:
						hh.State, hh.Error = HealthUnhealthy, "the environment has no such host now"
					case st.Live == nil:
						hh.State = HealthNotLive
					default:
						state, err := e.checkOnce(ctx, h, st.Live.ID)
						hh.State = state
						if err != nil {
							hh.Error = maskError(err, x.Secrets.values()).Error()
						}
					}
				})
			}
			runAll(jobs)
		}()
	}
	for range out {
		<-done
	}
	return out
}

// runAll runs the jobs in parallel and waits for them.
func runAll(jobs []func()) {
	done := make(chan struct{}, len(jobs))
	for _, j := range jobs {
		go func() { j(); done <- struct{}{} }()
	}
	for range jobs {
		<-done
	}
}

// selfCheckTimeout bounds a host's own check in status.
const selfCheckTimeout = 30 * time.Second

// checkOnce runs the health checks of release id on h once: the host's own check, then
// the configured one with a single attempt.
func (e *engine) checkOnce(ctx context.Context, h targets.Host, id string) (string, error) {
	e.lookups()
	sc, self := h.(targets.SelfChecker)
	if !self && e.o.health == nil {
		return HealthNoCheck, nil
	}
	if self {
		// A host's own check waits for health: bound it, a status must answer.
		cctx, cancel := context.WithTimeout(ctx, selfCheckTimeout)
		defer cancel()
		if err := sc.CheckHealth(cctx, id); err != nil {
			return HealthUnhealthy, err
		}
	}
	if e.o.health != nil {
		hc := *e.o.health
		hc.Retries = 1
		rel, kind := e.releaseFor(ctx, h, id), e.t.Kind()
		if err := hc.run(ctx, h, rel, kind); err != nil {
			return HealthUnhealthy, err
		}
	}
	return HealthHealthy, nil
}

// hostNoun names a host in a message as what it is: a Kubernetes host "deployment/web" is
// `deployment "web"`, any other `host "web1:22"`.
func hostNoun(name string) string {
	if d, ok := strings.CutPrefix(name, "deployment/"); ok {
		return fmt.Sprintf("deployment %q", d)
	}
	return fmt.Sprintf("host %q", name)
}
