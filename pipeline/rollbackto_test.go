package pipeline

import (
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/targets"
)

// TestRollbackToLiveBefore: without --to, a host goes back to the release that was live
// before the live one by its record of activations, skipping releases whose deploy failed
// and releases pushdeploy did not make; --to still names any kept release; errors name a
// Deployment as one.
func TestRollbackToLiveBefore(t *testing.T) {
	k := func(id string, activated int64, failed, foreign bool) targets.Kept {
		return targets.Kept{ID: id, Activated: activated, Failed: failed, Foreign: foreign}
	}
	for _, tc := range []struct {
		name string
		live string
		kept []targets.Kept
		want string
		err  string
	}{
		// v5 failed and was undone: v4 came back as revision 6; previous is v3, not v5.
		{"after a failed deploy", "v4", []targets.Kept{k("rs-1", 1, false, true), k("v2", 2, false, false), k("v3", 3, false, false), k("v4", 6, false, false), k("v5", 5, true, false)}, "v3", ""},
		// kubectl rollout undo --to-revision=2 by hand: v2 is revision 4; previous is v3,
		// live before it, not the pre-pushdeploy revision 1.
		{"after a manual undo", "v2", []targets.Kept{k("rs-1", 1, false, true), k("v2", 4, false, false), k("v3", 3, false, false)}, "v3", ""},
		// A rollback toggles, as kubectl rollout undo does: live before v2 was v3.
		{"after a rollback", "v2", []targets.Kept{k("v1", 1, false, false), k("v2", 4, false, false), k("v3", 3, false, false)}, "v3", ""},
		{"only foreign and failed", "v2", []targets.Kept{k("rs-1", 1, false, true), k("v2", 3, false, false), k("v3", 2, true, false)}, "",
			`deployment "web" keeps no release that was live before the live "v2"; skipped rs-1 (not made by pushdeploy), v3 (its deploy failed): name one with --to`},
		// Kinds without activations: the kept order, the nearest older good release.
		{"kept order", "3", []targets.Kept{k("1", 0, false, false), k("2", 0, true, false), k("3", 0, false, false), k("4", 0, false, false)}, "1", ""},
	} {
		st := targets.Status{Host: "deployment/web", Live: &targets.Kept{ID: tc.live}, Kept: tc.kept}
		got, err := rollbackTo(st, "")
		switch {
		case tc.err != "" && (err == nil || err.Error() != tc.err):
			t.Errorf("%s: error %v, want %s", tc.name, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	st := targets.Status{Host: "deployment/web", Live: &targets.Kept{ID: "v2"}, Kept: []targets.Kept{k("rs-1", 1, false, true), k("v2", 2, false, false)}}
	if got, err := rollbackTo(st, "rs-1"); err != nil || got != "rs-1" {
		t.Errorf("--to a foreign revision: %q, %v", got, err)
	}
	if _, err := rollbackTo(st, "v9"); err == nil || !strings.HasPrefix(err.Error(), `deployment "web" does not keep release "v9"`) {
		t.Errorf("--to an unknown release: %v", err)
	}
}
