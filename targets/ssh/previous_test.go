package ssh_test

import (
	"context"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
)

// TestRollbackGoesToReleaseLiveBefore: "previous" is the release that was live before the
// live one, by the host's record of activations, not the older one by creation: after a
// rollback from r3 to r2, the next rollback goes back to r3 (as kubectl rollout undo
// toggles), and after --to r1 it goes to r3, the one live before r1.
func TestRollbackGoesToReleaseLiveBefore(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1, testUser)
	tg := newTarget(t, hosts)
	trees := map[string]tree{"r1": {"index.html": "one"}, "r2": {"index.html": "two"}, "r3": {"index.html": "three"}}
	for _, id := range []string{"r1", "r2", "r3"} {
		if _, err := rollout(t, tg, release(t, tg, id, writeTree(t, trees[id]))); err != nil {
			t.Fatal(err)
		}
	}
	for _, step := range []struct{ to, want string }{{"", "r2"}, {"", "r3"}, {"r1", "r1"}, {"", "r3"}} {
		res, err := pipeline.Rollback(context.Background(), tg, step.to, pipeline.WithOwner("tester", "rb"))
		if err != nil {
			t.Fatalf("rollback --to %q: %v", step.to, err)
		}
		if res.Record.Release != step.want {
			t.Fatalf("rollback --to %q went to %q, want %q", step.to, res.Record.Release, step.want)
		}
		assertCurrent(t, hosts[0], trees[step.want])
	}
}
