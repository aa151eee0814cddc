package docker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
)

// TestUpdatedHookRunsInTheNewImage: hooks.updated runs in a one-off container of the new
// release's image, with its environment and volumes and the PUSHDEPLOY_* variables, before
// the switch and beside the live container; a failing or a timed-out command stops the
// deploy at step "updated" with the old release still live and serving, and no container
// (release or hook) of the new release is left behind.
func TestUpdatedHookRunsInTheNewImage(t *testing.T) {
	b := newBench(t)
	data := t.TempDir()
	shell := func(h *testbench.HelloImage) { h.CheckEnvAddr = true } // busybox as /bin/sh
	deploy := func(version string, opts ...Option) error {
		ref, dg := b.image(version, shell)
		tg := b.target(append([]Option{WithVolumes(data + ":/data"), WithEnv("GREETING=hi")}, opts...)...)
		return b.rollout(tg, b.release("20261127T00000"+version[1:]+"Z", version, ref, dg))
	}
	if err := deploy("v1"); err != nil {
		t.Fatal(err)
	}
	// The live v1 answers while v2's hook runs: it sees v2's image, its variables and the
	// environment, and can tell that it runs before the switch.
	hook := `echo "$HELLO_VERSION $PUSHDEPLOY_VERSION $PUSHDEPLOY_RELEASE $GREETING $(/hello -check http://$HELLO_ADDR/health 2>&1 || echo down)" > /data/marker`
	if err := deploy("v2", WithUpdated(hook, "echo second >> /data/marker")); err != nil {
		t.Fatal(err)
	}
	b.expect(b.name("20261127T000002Z"), "200 ok v2")
	got, _ := os.ReadFile(filepath.Join(data, "marker"))
	// The health probe printed nothing: v1 answered while v2's hook ran ("down" if not).
	if want := "v2 v2 20261127T000002Z hi \nsecond\n"; string(got) != want {
		t.Errorf("the hook wrote %q, want %q", got, want)
	}
	b.noHookContainers()

	for _, tc := range []struct {
		version string
		opts    []Option
		says    []string
	}{
		{"v3", []Option{WithUpdated("echo migrating; echo refused >&2; exit 4")}, []string{`"echo migrating; echo refused >&2; exit 4"`, "exit status 4", "migrating", "refused"}},
		{"v4", []Option{WithUpdated("sleep 60"), WithUpdatedTimeout(500 * time.Millisecond)}, []string{`"sleep 60"`, "timed out after 500ms"}},
	} {
		err := deploy(tc.version, tc.opts...)
		failedAt(t, err, pipeline.StepUpdated, tc.says...)
		b.expect(b.name("20261127T000002Z"), "200 ok v2")
		b.noHookContainers()
		if st := b.kept(b.target()); strings.Contains(strings.Join(st, ","), "00000"+tc.version[1:]+"Z") {
			t.Errorf("%s: release kept after its hook failed: %v", tc.version, st)
		}
	}
}

// noHookContainers asserts that no one-off hooks.updated container is left, running or not.
func (b *bench) noHookContainers() {
	b.t.Helper()
	cs, err := b.cli.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", LabelApp+"="+b.app), filters.Arg("label", LabelHook))})
	if err != nil {
		b.t.Fatal(err)
	}
	for _, c := range cs {
		b.t.Errorf("hook container left: %s (%s)", c.Names[0], c.State)
	}
}
