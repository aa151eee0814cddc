package pipeline_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/assemble"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/targets/ssh"
)

// hooks.updated and re-activation through the whole flow: the file, assemble's target,
// one real sshd host.

func updatedFile(t *testing.T, f *fleet, hooks string) *config.File {
	t.Helper()
	src := fmt.Sprintf(`app: myapp
environments:
  test:
    ssh:
      hosts: [%q]
      user: %s
      path: %s
%s`, f.hosts[0].Addr, f.hosts[0].User, f.appDir(0), hooks)
	file, err := config.Parse("pushdeploy.yaml", []byte(src))
	if err != nil {
		t.Fatalf("the test's environments file: %v", err)
	}
	return file
}

func deployThroughAssemble(t *testing.T, f *fleet, file *config.File, who string, art *pipeline.Artifact) (*pipeline.Record, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log bytes.Buffer
	rec, err := pipeline.Deploy(ctx, pipeline.Request{
		File: file, Env: "test", Deployer: who, PipelineID: "run-" + who,
		Source:  pipeline.Source{Version: "v-" + who},
		Secrets: f.secrets, Targets: assemble.Maker(assemble.Extra{Server: []ssh.Option{ssh.ManifestCache("")}}),
		Artifact: art, Log: &log,
	})
	t.Logf("deploy by %s:\n%s", who, log.String())
	return rec, err
}

func TestFlowUpdatedHookFailureLeavesTheOldReleaseLive(t *testing.T) {
	f := newFleet(t, 1)
	hooks := `    hooks:
      timeout: 1m
      updated:
        - 'echo "$PUSHDEPLOY_RELEASE $PUSHDEPLOY_VERSION" > updated.txt'
        - 'if grep -q broken index.html; then echo "assets failed to compile" >&2; exit 9; fi'
`
	file := updatedFile(t, f, hooks)
	first, err := deployThroughAssemble(t, f, file, "first", writeFiles(t, "v1"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(f.appDir(0), "current", "updated.txt"))
	if want := first.Release + " v-first\n"; err != nil || string(b) != want {
		t.Errorf("updated.txt in the live release: %q, %v; want %q", b, err, want)
	}
	rec, err := deployThroughAssemble(t, f, file, "second", writeFiles(t, "broken"))
	if err == nil {
		t.Fatal("deploy succeeded although the updated hook failed")
	}
	for _, want := range []string{"updated", "assets failed to compile", f.hosts[0].Addr} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if s := stageOf(rec, "deploy"); s != "failed" {
		t.Errorf("deploy stage %q; want failed", s)
	}
	if h := rec.Hosts[0]; h.Outcome != pipeline.OutcomeFailed || h.Step != pipeline.StepUpdated {
		t.Errorf("host record %+v; want failed at %q", h, pipeline.StepUpdated)
	}
	f.assertServes(t, "v1")
	es, _ := os.ReadDir(filepath.Join(f.appDir(0), "releases"))
	if len(es) != 1 || es[0].Name() != first.Release {
		t.Errorf("releases kept: %v; want only %s", es, first.Release)
	}
	x := &pipeline.Environments{File: file, Secrets: f.secrets, Targets: assemble.Maker(assemble.Extra{}), Log: &f.log, Deployer: "tester"}
	if l := f.lockHolder(t, x); l != nil {
		t.Errorf("lock after the failed deploy: %+v", l)
	}
}

func TestFlowRedeployOfAKeptReleaseReactivatesIt(t *testing.T) {
	f := newFleet(t, 1)
	file := updatedFile(t, f, "")
	v1 := writeFiles(t, "v1")
	first, err := deployThroughAssemble(t, f, file, "first", v1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := deployThroughAssemble(t, f, file, "second", writeFiles(t, "v2")); err != nil {
		t.Fatal(err)
	}
	rec, err := deployThroughAssemble(t, f, file, "third", v1)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Outcome != pipeline.OutcomeDeployed || rec.Release != first.Release || rec.Hosts[0].Outcome != pipeline.OutcomeReactivated {
		t.Errorf("record: outcome %q, release %q, host %q; want deployed, %s, re-activated", rec.Outcome, rec.Release, rec.Hosts[0].Outcome, first.Release)
	}
	f.assertServes(t, "v1")
	if l, _ := os.Readlink(filepath.Join(f.appDir(0), "current")); l != "releases/"+first.Release {
		t.Errorf("current -> %q; want releases/%s", l, first.Release)
	}
	if es, _ := os.ReadDir(filepath.Join(f.appDir(0), "releases")); len(es) != 2 {
		t.Errorf("releases kept: %v; want the two deployed, no new one", es)
	}
}

// TestFlowReactivationHealthChecksTheLiveRelease: after a re-activation the last health
// check sees the re-activated release (its id, the release in the host's current), not the
// new deploy's id that never went live; a check that proves which release answers passes.
func TestFlowReactivationHealthChecksTheLiveRelease(t *testing.T) {
	f := newFleet(t, 1)
	file := updatedFile(t, f, `    health:
      command: 'test "$(basename "$(pwd -P)")" = "$PUSHDEPLOY_RELEASE"'
      interval: 100ms
      retries: 2
      stable: 0s
`)
	v1 := writeFiles(t, "v1")
	first, err := deployThroughAssemble(t, f, file, "first", v1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := deployThroughAssemble(t, f, file, "second", writeFiles(t, "v2")); err != nil {
		t.Fatal(err)
	}
	rec, err := deployThroughAssemble(t, f, file, "third", v1)
	if err != nil {
		t.Fatalf("re-activating v1: %v", err)
	}
	if rec.Release != first.Release || rec.Hosts[0].Outcome != pipeline.OutcomeReactivated {
		t.Errorf("record: release %q, host %q; want %s re-activated", rec.Release, rec.Hosts[0].Outcome, first.Release)
	}
	f.assertServes(t, "v1")
}
