package assemble

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

func TestSplitShared(t *testing.T) {
	dirs, files := splitShared([]string{"logs", ".env", "config/database.yml", "public/uploads", "tmp.d/", "storage/"})
	if want := []string{"logs", "public/uploads", "tmp.d", "storage"}; !reflect.DeepEqual(dirs, want) {
		t.Errorf("dirs %q, want %q", dirs, want)
	}
	if want := []string{".env", "config/database.yml"}; !reflect.DeepEqual(files, want) {
		t.Errorf("files %q, want %q", files, want)
	}
}

// TestMakerRefusesWhatTargetsCannotTake: settings the file allows but a target cannot
// honour are clear errors before anything connects.
func TestMakerRefusesWhatTargetsCannotTake(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"no ssh key", "app: web\nenvironments:\n  s:\n    ssh: {hosts: [a], user: d, path: /srv/web}\n", "no SSH private key"},
		{"docker host with its own user", "app: web\nenvironments:\n  s:\n    docker:\n      hosts: [{host: a, user: other}]\n      user: d\n", `host "a" names its own user "other"`},
		{"secret env not passed", "app: web\nenvironments:\n  s:\n    docker:\n      hosts: [a]\n      user: d\n      secret_env: {DB: DB_URL}\n", `secret "DB_URL" was not passed`},
	} {
		f, err := config.Parse("pushdeploy.yaml", []byte(tc.yaml))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		secrets := pipeline.Secrets{SSHKey: []byte("key"), Named: map[string][]byte{}}
		if tc.name == "no ssh key" {
			secrets.SSHKey = nil
		}
		_, err = Maker(Extra{})(context.Background(), f, "s", &secrets)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}
