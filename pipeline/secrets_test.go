package pipeline

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

func TestSecretsResolve(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte("file-secret-value"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PD_TEST_TOKEN", "env-secret-value")
	module := Secrets{SSHKey: []byte("slot-value"), Named: map[string][]byte{"SLACK": []byte("named-value"), "PD_TEST_TOKEN": []byte("passed-value")}}
	local := Secrets{Local: true, Named: map[string][]byte{"SLACK": []byte("named-value")}}
	for _, tc := range []struct {
		name string
		s    Secrets
		ref  config.SecretRef
		slot []byte
		want string
		err  string
	}{
		{"empty ref takes the slot", module, "", []byte("slot-value"), "slot-value", ""},
		{"name", module, "SLACK", nil, "named-value", ""},
		{"missing name lists the known", module, "NOPE", nil, "", `secret "NOPE" was not passed to the deploy (known: PD_TEST_TOKEN, SLACK)`},
		{"module env is the passed secret", module, "env:PD_TEST_TOKEN", nil, "passed-value", ""},
		{"module env not passed", module, "env:OTHER", nil, "", `"env:OTHER" is read from the caller's environment: pass it to the module (--secrets env:OTHER)`},
		{"module file refused", module, config.SecretRef("file:" + keyFile), nil, "", "which the Dagger module does not share"},
		{"local env", local, "env:PD_TEST_TOKEN", nil, "env-secret-value", ""},
		{"local env unset", local, "env:PD_TEST_UNSET_XYZ", nil, "", `environment variable "PD_TEST_UNSET_XYZ" is not set`},
		{"local file", local, config.SecretRef("file:" + keyFile), nil, "file-secret-value", ""},
		{"local file missing", local, config.SecretRef("file:" + filepath.Join(dir, "nope")), nil, "", "reading secret file"},
	} {
		got, err := tc.s.Resolve(tc.ref, tc.slot, "what")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: got %q, %v; want error %q", tc.name, got, err, tc.err)
			}
			for _, v := range []string{"named-value", "passed-value", "env-secret-value", "file-secret-value", "slot-value"} {
				if err != nil && strings.Contains(err.Error(), v) {
					t.Errorf("%s: the error shows a secret value", tc.name)
				}
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

func TestMaskerHidesSecretsAndTheirLines(t *testing.T) {
	key := "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nQyNTUxOQAAACBs3cr3tL1n3\n-----END OPENSSH PRIVATE KEY-----\n"
	var b strings.Builder
	m := newMasker(&b, [][]byte{[]byte(key), []byte("tok3n-value"), []byte("ab")})
	m.Write([]byte("using tok3n-value and line QyNTUxOQAAACBs3cr3tL1n3 of the key; ab stays\n"))
	got := b.String()
	if strings.Contains(got, "tok3n-value") || strings.Contains(got, "QyNTUxOQAAACBs3cr3tL1n3") {
		t.Errorf("masked output still shows a secret: %q", got)
	}
	if !strings.Contains(got, "ab stays") {
		t.Errorf("a two-byte secret masked ordinary text: %q", got)
	}
	err := maskError(os.ErrNotExist, [][]byte{[]byte("exist")})
	if err == nil || strings.Contains(err.Error(), "exist") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("maskError: %v", err)
	}
}

func TestPreloadReadsOnlyWhatTheFileNames(t *testing.T) {
	f, err := config.Parse("pushdeploy.yaml", []byte(`app: web
environments:
  staging:
    docker:
      hosts: [a]
      user: deploy
      secret_env: {DB_URL: DATABASE_URL, API: "env:PD_API"}
    notifications:
      slack: {webhook: SLACK_HOOK}
`))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("DATABASE_URL", "postgres://secret")
	t.Setenv("PD_API", "api-secret")
	t.Setenv("APPROVED_BY", "alice") // not named by the file: never read, never masked
	s := Secrets{Local: true, Named: map[string][]byte{"SLACK_HOOK": []byte("given-on-the-command-line")}}
	s.Preload(f)
	want := map[string]string{"DATABASE_URL": "postgres://secret", "env:PD_API": "api-secret", "SLACK_HOOK": "given-on-the-command-line"}
	if len(s.Named) != len(want) {
		t.Errorf("preloaded %d secrets, want %d", len(s.Named), len(want))
	}
	for k, v := range want {
		if string(s.Named[k]) != v {
			t.Errorf("Named[%q] = %q, want %q", k, s.Named[k], v)
		}
	}
	var b strings.Builder
	newMasker(&b, s.values()).Write([]byte("approved by alice with api-secret\n"))
	if b.String() != "approved by alice with ***\n" {
		t.Errorf("masked %q", b.String())
	}
}
