package config_test

import (
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

// TestDockerRegistryNone: docker.registry: none needs no image settings; any other value,
// and a promotion between an environment without a registry and one with, is refused
// naming the key.
func TestDockerRegistryNone(t *testing.T) {
	for _, tc := range []struct{ name, y, want string }{
		{"none, no image settings", "  s:\n    docker: {hosts: [h], user: u, registry: none}\n", ""},
		{"both none", "  s:\n    docker: {hosts: [h], user: u, registry: none}\n  p:\n    from: s\n    docker: {hosts: [h2], user: u, registry: none}\n", ""},
		{"other value", "  s:\n    docker: {hosts: [h], user: u, registry: ghcr.io}\n", "environments.s.docker.registry"},
		{"promote pulled into none", "  s:\n    docker: {hosts: [h], user: u}\n  p:\n    from: s\n    docker: {hosts: [h2], user: u, registry: none}\n",
			`environments.p.from: "p" has docker.registry: none and "s" pulls from a registry`},
		{"promote none into kubernetes", "  s:\n    docker: {hosts: [h], user: u, registry: none}\n  p:\n    from: s\n    kubernetes: {namespace: web, deployments: [web]}\n",
			`environments.p.from: "s" has docker.registry: none and "p" pulls from a registry`},
	} {
		f, err := config.Parse("pushdeploy.yaml", []byte("app: web\nimage: {repository: acme/web}\nenvironments:\n"+tc.y))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want == "" && !f.Environments["s"].NoRegistry():
			t.Errorf("%s: registry read as %q", tc.name, f.Environments["s"].Docker.Registry)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}
