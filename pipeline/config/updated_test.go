package config_test

import (
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

// TestUpdatedHookOnlyForServers: hooks.updated runs in a staged release directory, which
// only ssh environments have: docker and kubernetes environments refuse it, naming the key.
func TestUpdatedHookOnlyForServers(t *testing.T) {
	for _, tc := range []struct{ name, target, want string }{
		{"ssh", "ssh: {hosts: [h], user: u, path: /srv/web}", ""},
		{"docker", "docker: {hosts: [h], user: u}", `pushdeploy.yaml:6: environments.s.hooks.updated: runs in a staged release directory, which only ssh environments have: a docker image is built with what it needs`},
		{"kubernetes", "kubernetes: {namespace: web, deployments: [web]}", `environments.s.hooks.updated: runs in a staged release directory, which only ssh environments have: a kubernetes image`},
		{"empty command", "ssh: {hosts: [h], user: u, path: /srv/web}\n    hooks:\n      updated: [\" \"]", "environments.s.hooks: command 1 is empty"},
	} {
		y := "app: web\nenvironments:\n  s:\n    " + tc.target + "\n"
		if !strings.Contains(tc.target, "hooks") {
			y += "    hooks:\n      updated: [npm ci --omit=dev]\n"
		}
		f, err := config.Parse("pushdeploy.yaml", []byte(y))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want == "" && len(f.Environments["s"].Hooks.Updated) != 1:
			t.Errorf("%s: hooks.updated read as %q", tc.name, f.Environments["s"].Hooks.Updated)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}
