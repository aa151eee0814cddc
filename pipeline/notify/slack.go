package notify

import (
	"fmt"
	"strings"
	"time"
)

// SlackMessage is the body of a Slack incoming-webhook post: text for notifications and
// clients without blocks, blocks for the message itself.
type SlackMessage struct {
	Text   string       `json:"text"`
	Blocks []SlackBlock `json:"blocks,omitempty"`
}

// SlackBlock is a section or context block of Block Kit.
type SlackBlock struct {
	Type     string      `json:"type"`
	Text     *SlackText  `json:"text,omitempty"`
	Fields   []SlackText `json:"fields,omitempty"`
	Elements []SlackText `json:"elements,omitempty"`
}

// SlackText is a mrkdwn text object.
type SlackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

func mrkdwn(s string) SlackText { return SlackText{Type: "mrkdwn", Text: s} }

// slackEscape escapes the three characters Slack's mrkdwn reserves.
var slackEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// Slack renders the event as a Slack message:
//
//	:white_check_mark: hello v1.2.3 deployed to production
//	:x: hello v1.2.3 failed to deploy to production: health check failed on 10.0.0.2:22
//	:leftwards_arrow_with_hook: hello v1.2.3 failed to deploy to production and was rolled back to 20261127T081502Z: ...
func (e Event) Slack() SlackMessage {
	app, env := slackEscape.Replace(e.App), slackEscape.Replace(e.Env)
	what := app
	if e.Version != "" {
		what += " " + slackEscape.Replace(e.Version)
	}
	var headline string
	switch {
	case e.Action == "rollback" && e.Outcome == Success:
		headline = fmt.Sprintf(":leftwards_arrow_with_hook: %s rolled back in %s (manual rollback)", app, env)
		if e.LiveVersion != "" {
			headline += ": " + slackEscape.Replace(e.LiveVersion) + " is live"
		}
	case e.Action == "rollback":
		headline = fmt.Sprintf(":x: the manual rollback of %s in %s failed", app, env)
	case e.Outcome == Success:
		headline = fmt.Sprintf(":white_check_mark: %s deployed to %s", what, env)
	case e.Outcome == RolledBack:
		headline = fmt.Sprintf(":leftwards_arrow_with_hook: %s failed to deploy to %s and was rolled back", what, env)
		if e.Rollback != nil && e.Rollback.To != "" {
			headline += " to " + slackEscape.Replace(e.Rollback.To)
		}
		if e.LiveVersion != "" {
			headline += " (" + slackEscape.Replace(e.LiveVersion) + " is live)"
		}
	default:
		headline = fmt.Sprintf(":x: %s failed to deploy to %s", what, env)
	}
	text := headline
	if e.Error != "" {
		text += ": " + slackEscape.Replace(e.Error)
	}
	if e.Rollback != nil && len(e.Rollback.Errors) > 0 {
		text += "\n:warning: rollback failed: " + slackEscape.Replace(strings.Join(e.Rollback.Errors, "; "))
	}

	var fields []SlackText
	add := func(name, value string) {
		if value != "" {
			fields = append(fields, mrkdwn("*"+name+"*\n"+value))
		}
	}
	add("Environment", env)
	if e.EnvURL != "" {
		add("Environment", fmt.Sprintf("<%s|%s>", e.EnvURL, env))
		fields = fields[1:] // the linked one replaces the plain one
	}
	add("Version", slackEscape.Replace(e.Version))
	if e.Digest != "" {
		add("Digest", "`"+short(e.Digest)+"`")
	}
	add("Hosts", hostSummary(e.Hosts))
	if d := e.Duration(); d > 0 {
		add("Duration", d.Round(100*time.Millisecond).String())
	}
	add("Deployed by", slackEscape.Replace(e.Deployer))
	add("Approved by", slackEscape.Replace(e.ApprovedBy))

	blocks := []SlackBlock{{Type: "section", Text: &SlackText{Type: "mrkdwn", Text: text}}}
	if len(fields) > 0 {
		blocks = append(blocks, SlackBlock{Type: "section", Fields: fields})
	}
	ctx := "Record " + slackEscape.Replace(e.ID)
	if e.URL != "" {
		ctx += fmt.Sprintf(" · <%s|pipeline run>", e.URL)
	}
	blocks = append(blocks, SlackBlock{Type: "context", Elements: []SlackText{mrkdwn(ctx)}})
	return SlackMessage{Text: text, Blocks: blocks}
}

// short shortens a digest to "sha256:0123456789ab".
func short(digest string) string {
	algo, hex, ok := strings.Cut(digest, ":")
	if !ok || len(hex) <= 12 {
		return digest
	}
	return algo + ":" + hex[:12]
}

// hostSummary is "3 deployed" or "1 deployed, 1 rolled back, 1 not started".
func hostSummary(hosts []HostOutcome) string {
	var order []string
	count := map[string]int{}
	for _, h := range hosts {
		if count[h.Outcome] == 0 {
			order = append(order, h.Outcome)
		}
		count[h.Outcome]++
	}
	parts := make([]string, len(order))
	for i, o := range order {
		parts[i] = fmt.Sprintf("%d %s", count[o], slackEscape.Replace(o))
	}
	return strings.Join(parts, ", ")
}
