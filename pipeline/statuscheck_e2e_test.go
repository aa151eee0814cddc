package pipeline_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/ssh"
)

// TestCheckedStatus: status runs each host's health check once and shows it in a HEALTH
// column and the JSON; an unhealthy host fails StatusError, naming it; without the check
// every host is "not checked" and nothing fails.
func TestCheckedStatus(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1)
	h := hosts[0]
	appDir := filepath.Join(h.Dir, "statusapp")
	file, err := config.Parse("pushdeploy.yaml", []byte(fmt.Sprintf(`app: statusapp
environments:
  test:
    ssh:
      hosts: [%q]
      user: %s
      path: /srv/statusapp
    health:
      command: test -e ../../healthy
      retries: 1
      stable: 0s
`, h.Addr, h.User)))
	if err != nil {
		t.Fatal(err)
	}
	secrets := pipeline.Secrets{SSHKey: h.ClientKey, KnownHosts: testbench.KnownHostsOf(hosts)}
	maker := func(_ context.Context, _ *config.File, name string, s *pipeline.Secrets) (targets.Target, error) {
		return ssh.New("statusapp", name, []ssh.HostConfig{{Addr: h.Addr, User: h.User, Path: appDir}},
			ssh.PrivateKey(s.SSHKey), ssh.KnownHosts(s.KnownHosts), ssh.ManifestCache(""))
	}
	tg, err := maker(t.Context(), file, "test", &secrets)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	art := t.TempDir()
	if err := os.WriteFile(filepath.Join(art, "index.html"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	dg, err := tg.(pipeline.ArtifactDigester).ArtifactDigest(art)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pipeline.Rollout(t.Context(), tg, targets.Release{ID: "r1", App: "statusapp", Env: "test", Digest: dg, Artifacts: art}, pipeline.WithOwner("tester", "")); err != nil {
		t.Fatal(err)
	}
	x := &pipeline.Environments{File: file, Secrets: secrets, Targets: maker}

	if err := os.WriteFile(filepath.Join(appDir, "healthy"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	st := x.CheckedStatus(t.Context(), true)
	if len(st) != 1 || len(st[0].Health) != 1 || st[0].Health[0].State != pipeline.HealthHealthy {
		t.Fatalf("healthy host: %+v", st)
	}
	if err := pipeline.StatusError(st); err != nil {
		t.Errorf("status error of a healthy host: %v", err)
	}
	var out strings.Builder
	if err := pipeline.RenderStatus(&out, st); err != nil || !strings.Contains(out.String(), "HEALTH") || !strings.Contains(out.String(), " healthy ") {
		t.Errorf("status table: %v\n%s", err, out.String())
	}

	if err := os.Remove(filepath.Join(appDir, "healthy")); err != nil {
		t.Fatal(err)
	}
	st = x.CheckedStatus(t.Context(), true)
	if st[0].Health[0].State != pipeline.HealthUnhealthy || st[0].Health[0].Error == "" {
		t.Fatalf("unhealthy host: %+v", st[0].Health)
	}
	if err := pipeline.StatusError(st); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("test: host %q: unhealthy", h.Addr)) {
		t.Errorf("status error of an unhealthy host: %v", err)
	}

	st = x.CheckedStatus(t.Context(), false)
	if st[0].Health[0].State != pipeline.HealthNotChecked {
		t.Errorf("--no-check: %+v", st[0].Health)
	}
	if err := pipeline.StatusError(st); err != nil {
		t.Errorf("status error without the check: %v", err)
	}
}
