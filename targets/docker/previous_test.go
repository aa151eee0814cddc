package docker

import (
	"context"
	"testing"

	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/targets"
)

// TestRollbackGoesToReleaseLiveBefore: "previous" is the release that was live before the
// live one (the container started last before the live one's start), not the older one
// by creation: after --to v1, a rollback goes to v3, live before v1; then back to v1.
func TestRollbackGoesToReleaseLiveBefore(t *testing.T) {
	b := newBench(t)
	tg := b.target()
	r1 := b.deployV1(tg)
	var rs []targets.Release
	for _, v := range []string{"v2", "v3"} {
		ref, dg := b.image(v, nil)
		r := b.release("20261127T00000"+v[1:]+"Z", v, ref, dg)
		if err := b.rollout(tg, r); err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	ctx := context.Background()
	for _, step := range []struct {
		to, want, serves string
	}{{r1.ID, r1.ID, "200 ok v1"}, {"", rs[1].ID, "200 ok v3"}, {"", r1.ID, "200 ok v1"}} {
		res, err := pipeline.Rollback(ctx, tg, step.to)
		if err != nil {
			t.Fatalf("rollback --to %q: %v", step.to, err)
		}
		if res.Record.Release != step.want {
			t.Fatalf("rollback --to %q went to %q, want %q", step.to, res.Record.Release, step.want)
		}
		b.expect(b.name(step.want), step.serves)
	}
}
