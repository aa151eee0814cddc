package docker

import (
	"errors"
	"fmt"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
)

// Three hosts share the bench's one engine: withHostScope keeps their containers apart and
// WithHostEnv gives each its own port, as three real hosts would have.
func TestRolloutFailureOnOneHostOfThree(t *testing.T) {
	b := newBenchN(t, 3)
	ports := []int{b.port, freePort(t), freePort(t)}
	scoped := func(extra map[int][]string) []Option {
		opts := []Option{withHostScope()}
		for i, h := range b.hosts {
			opts = append(opts, WithHostEnv(h.Addr, append([]string{fmt.Sprintf("HELLO_ADDR=127.0.0.1:%d", ports[i])}, extra[i]...)...))
		}
		return opts
	}
	expect := func(id, version string) {
		t.Helper()
		for i, h := range b.hosts {
			want := fmt.Sprintf("%s-test-%s-%s", b.app, "127.0.0.1_"+fmt.Sprint(h.Port), id)
			if got := b.running(LabelHost + "=" + h.Addr); len(got) != 1 || got[0] != want {
				t.Errorf("%s runs %q, want %q", h.Addr, got, want)
			}
			if got, want := healthAt(fmt.Sprintf("127.0.0.1:%d", ports[i])), "200 ok "+version; got != want {
				t.Errorf("%s: /health answers %q, want %q", h.Addr, got, want)
			}
		}
	}
	image := func(v string) (string, string) {
		return b.image(v, func(s *testbench.HelloImage) { s.CheckEnvAddr = true })
	}

	ref, dg := image("v1")
	r1 := b.release("20261127T000001Z", "v1", ref, dg)
	if err := b.rollout(b.target(scoped(nil)...), r1); err != nil {
		t.Fatal(err)
	}
	expect(r1.ID, "v1")

	// The second host's configuration makes v2 unhealthy there only. One host a batch: the
	// first host is switched and healthy, the second fails, the third is never touched.
	ref, dg = image("v2")
	r2 := b.release("20261127T000002Z", "v2", ref, dg)
	tg := b.target(scoped(map[int][]string{1: {"HELLO_FAIL_HEALTH=1"}})...)
	err := b.rollout(tg, r2, pipeline.WithBatchSize(1))
	failedAt(t, err, pipeline.StepHealth, b.hosts[1].Addr, "is unhealthy")
	var de *pipeline.DeployError
	if errors.As(err, &de) && len(de.RolledBack) != 2 {
		t.Errorf("rolled back %q, want the first two hosts", de.RolledBack)
	}
	expect(r1.ID, "v1")

	// Without the fault every host takes v2.
	r3 := b.release("20261127T000003Z", "v2", ref, dg)
	if err := b.rollout(b.target(scoped(nil)...), r3, pipeline.WithBatchSize(1)); err != nil {
		t.Fatal(err)
	}
	expect(r3.ID, "v2")
}
