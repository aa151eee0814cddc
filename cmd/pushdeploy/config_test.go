package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/pipeline"
)

// TestConfigShowsSecretsByName: config prints the file with the flags applied, names every
// secret reference and never a value, in text and JSON.
func TestConfigShowsSecretsByName(t *testing.T) {
	const value = "hooks-s3cr3t-value-0042"
	t.Setenv("SLACK_WEBHOOK", value)
	t.Chdir(t.TempDir())
	yaml := `app: hello
environments:
  staging:
    ssh:
      hosts: [web1, web2]
      user: deploy
      path: /srv/hello
      key: env:SSH_KEY
    lock:
      ttl: 10m
    notifications:
      slack:
        webhook: SLACK_WEBHOOK
`
	if err := os.WriteFile("pushdeploy.yaml", []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := runSplit(t, "config", "--env", "staging", "--lock-ttl", "20m")
	if err != nil {
		t.Fatalf("config: %v\n%s", err, stderr)
	}
	for _, want := range []string{"app: hello", "kind: ssh", "ttl: 20m0s", "- host: web2",
		"path: environments.staging.notifications.slack.webhook", "ref: SLACK_WEBHOOK", "ref: env:SSH_KEY"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("config lacks %q:\n%s", want, stdout)
		}
	}
	stdoutJSON, _, err := runSplit(t, "config", "--env", "staging", "-o", "json")
	var v pipeline.ConfigView
	if err != nil || json.Unmarshal([]byte(stdoutJSON), &v) != nil {
		t.Fatalf("config -o json: %v\n%s", err, stdoutJSON)
	}
	if v.Kind != "ssh" || len(v.Secrets) != 2 || v.Credentials["sshKey"] || len(v.Named) != 1 || v.Named[0] != "SLACK_WEBHOOK" {
		t.Errorf("config -o json: %+v", v)
	}
	if strings.Contains(stdout+stdoutJSON+stderr, value) {
		t.Fatal("config printed a secret's value")
	}
	wantExit(t, pipeline.ExitFailed, "config", "--env", "prod")
}
