package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

// TestBuiltArtifacts: an ssh deploy without --artifacts takes build.artifacts in
// build.context, relative to the file; only when that directory exists, and only for ssh.
func TestBuiltArtifacts(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pushdeploy.yaml")
	yaml := `app: hello
build:
  context: hello
  artifacts: out/
environments:
  staging:
    ssh:
      hosts: [web1]
      user: deploy
      path: /srv/hello
  k8s:
    kubernetes:
      deployments: [web]
`
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if got := builtArtifacts(f, "staging"); got != "" {
		t.Errorf("before the build: %q; want none", got)
	}
	want := filepath.Join(dir, "hello", "out")
	if err := os.MkdirAll(want, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := builtArtifacts(f, "staging"); got != want {
		t.Errorf("builtArtifacts = %q; want %q", got, want)
	}
	if got := builtArtifacts(f, "k8s"); got != "" {
		t.Errorf("a kubernetes environment got artifacts %q", got)
	}
}
