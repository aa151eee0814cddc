package assemble

import (
	"context"
	"testing"

	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/targets"
)

// TestUpdatedHookReachesTheServers: hooks.updated of the file makes every server or Docker
// host of the target run commands in its staged release (targets.Updater); without it none does.
func TestUpdatedHookReachesTheServers(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want bool
	}{
		{"app: web\nenvironments:\n  s:\n    ssh: {hosts: [a, b], user: d, path: /srv/web}\n    hooks: {updated: [npm ci --omit=dev], timeout: 1m}\n", true},
		{"app: web\nenvironments:\n  s:\n    ssh: {hosts: [a, b], user: d, path: /srv/web}\n", false},
		{"app: web\nenvironments:\n  s:\n    docker: {hosts: [a, b], user: d}\n    hooks: {updated: [bin/migrate]}\n", true},
		{"app: web\nenvironments:\n  s:\n    docker: {hosts: [a, b], user: d}\n", false},
	} {
		f, err := config.Parse("pushdeploy.yaml", []byte(tc.yaml))
		if err != nil {
			t.Fatal(err)
		}
		secrets := pipeline.Secrets{SSHKey: []byte("key"), KnownHosts: []byte("a ssh-ed25519 AAAA"), Named: map[string][]byte{}}
		tg, err := Maker(Extra{})(context.Background(), f, "s", &secrets)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range tg.Hosts() {
			u, ok := h.(targets.Updater)
			if !ok || u.Updates() != tc.want {
				t.Errorf("%s: updater %v; want updates %v", h.Name(), ok, tc.want)
			}
		}
		tg.Close()
	}
}
