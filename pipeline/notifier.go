package pipeline

import (
	"context"
	"fmt"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/pipeline/notify"
)

// sendNotifications posts the environment's markers and notifications for rec and returns
// what was not delivered, as warnings for the record. Nothing here fails a deploy.
func sendNotifications(ctx context.Context, env *config.Environment, rec *Record, s *Secrets, runURL string) []string {
	var opts []notify.Option
	var warnings []string
	secret := func(ref config.SecretRef, what string) (string, bool) {
		v, err := s.Resolve(ref, nil, what)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("%s not sent: %v", what, err))
			return "", false
		}
		return string(v), true
	}
	for i, m := range env.Markers {
		tok := ""
		if m.Token != "" {
			var ok bool
			if tok, ok = secret(m.Token, fmt.Sprintf("markers[%d].token", i)); !ok {
				continue
			}
		}
		opts = append(opts, notify.WithMarker(notify.Marker{URL: m.URL, Token: tok, Body: m.Body}))
	}
	if sl := env.Notifications.Slack; sl != nil {
		if u, ok := secret(sl.Webhook, "notifications.slack.webhook"); ok {
			opts = append(opts, notify.WithSlack(notify.Slack{WebhookURL: u, On: outcomes(sl.On)}))
		}
	}
	if wh := env.Notifications.Webhook; wh != nil {
		sig := ""
		ok := true
		if wh.Secret != "" {
			sig, ok = secret(wh.Secret, "notifications.webhook.secret")
		}
		if ok {
			opts = append(opts, notify.WithWebhook(notify.Webhook{URL: wh.URL, Secret: sig, On: outcomes(wh.On)}))
		}
	}
	if len(opts) == 0 {
		return warnings
	}
	n, err := notify.New(opts...)
	if err != nil {
		return append(warnings, fmt.Sprintf("notifications not sent: %v", err))
	}
	for _, w := range n.Send(ctx, event(rec, env, runURL)) {
		warnings = append(warnings, w.String())
	}
	return warnings
}

func outcomes(on []string) []notify.Outcome {
	var out []notify.Outcome
	for _, o := range on {
		out = append(out, notify.Outcome(o))
	}
	return out
}

// event is the record as notifications and markers report it.
func event(rec *Record, env *config.Environment, runURL string) notify.Event {
	e := notify.Event{
		ID: rec.ID, App: rec.App, Env: rec.Env, Kind: rec.Kind, Version: rec.Version, Digest: rec.Digest,
		Action: rec.Action, LiveVersion: rec.LiveVersion,
		ApprovedBy: rec.ApprovedBy, Deployer: rec.Deployer, Started: rec.Started, Finished: rec.Finished,
		Error: rec.Error, URL: runURL, EnvURL: env.URL,
	}
	switch rec.Outcome {
	case OutcomeDeployed, OutcomeUnchanged:
		e.Outcome = notify.Success
	case OutcomeRolledBack:
		e.Outcome = notify.RolledBack
	default:
		e.Outcome = notify.Failure
	}
	for _, h := range rec.Hosts {
		e.Hosts = append(e.Hosts, notify.HostOutcome{Host: h.Host, Outcome: h.Outcome, Error: h.Error})
	}
	if rb := rec.Rollback; rb != nil {
		e.Rollback = &notify.Rollback{Reason: rb.Reason, Hosts: rb.Hosts, Errors: rb.Errors}
		if len(rec.Hosts) > 0 {
			e.Rollback.To = rec.Hosts[0].Previous
		}
	}
	return e
}
