package assemble

import (
	"context"
	"testing"

	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/targets/ssh"
)

// TestChecksumReachesTheServerTarget: ssh.checksum of the file, or the CLI's --checksum
// (Extra), makes the server target hash every file; without either it trusts size and
// modification time.
func TestChecksumReachesTheServerTarget(t *testing.T) {
	for _, tc := range []struct {
		yaml  string
		extra Extra
		want  bool
	}{
		{"app: web\nenvironments:\n  s:\n    ssh: {hosts: [a], user: d, path: /srv/web, checksum: true}\n", Extra{}, true},
		{"app: web\nenvironments:\n  s:\n    ssh: {hosts: [a], user: d, path: /srv/web}\n", Extra{Server: []ssh.Option{ssh.Checksum()}}, true},
		{"app: web\nenvironments:\n  s:\n    ssh: {hosts: [a], user: d, path: /srv/web}\n", Extra{}, false},
	} {
		f, err := config.Parse("pushdeploy.yaml", []byte(tc.yaml))
		if err != nil {
			t.Fatal(err)
		}
		secrets := pipeline.Secrets{SSHKey: []byte("key"), KnownHosts: []byte("a ssh-ed25519 AAAA"), Named: map[string][]byte{}}
		tg, err := Maker(tc.extra)(context.Background(), f, "s", &secrets)
		if err != nil {
			t.Fatal(err)
		}
		if got := tg.(*ssh.Target).HashesEverything(); got != tc.want {
			t.Errorf("%q with %d extra options: hashes everything %v; want %v", tc.yaml, len(tc.extra.Server), got, tc.want)
		}
		tg.Close()
	}
}
