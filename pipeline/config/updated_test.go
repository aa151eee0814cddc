package config_test

import (
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

// TestUpdatedHookNotForKubernetes: hooks.updated runs in the staged release of each host
// (a directory on servers, a one-off container on Docker hosts); kubernetes environments,
// which have no hosts to run it on, refuse it, naming the key and what to use instead.
func TestUpdatedHookNotForKubernetes(t *testing.T) {
	for _, tc := range []struct{ name, target, want string }{
		{"ssh", "ssh: {hosts: [h], user: u, path: /srv/web}", ""},
		{"docker", "docker: {hosts: [h], user: u}", ""},
		{"kubernetes", "kubernetes: {namespace: web, deployments: [web]}", `pushdeploy.yaml:6: environments.s.hooks.updated: runs in the staged release on each host (a release directory on servers, a one-off container of the new image on Docker hosts), which a kubernetes environment has not: run a migration before the switch with hooks.migrate`},
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
