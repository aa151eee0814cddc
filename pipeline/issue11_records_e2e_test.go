package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/pushdeploy/pushdeploy/pipeline"
)

// Case 8: markers carry the outcome and the version live afterwards (a rolled-back
// deploy's marker names the previous version); a manual rollback runs post_rollback,
// notifies and posts its marker, like a deploy.
func TestMarkersAndManualRollbackTellWhatIsLive(t *testing.T) {
	f := newFleet(t, 2)
	marker, hook := newReceiver(t), newReceiver(t)
	// The seed's four-field marker.
	body := `{"service": {{json .Service}}, "version": {{json .Version}}, "environment": {{json .Environment}}, "timestamp": {{json .Timestamp}}}`
	file := f.file(t, fmt.Sprintf(`    markers:
      - url: %q
        body: '%s'
    notifications:
      webhook: {url: %q}
    hooks:
      post_deploy: [integration]
      post_rollback: [after-rollback]
`, marker.URL, body, hook.URL))
	var mu sync.Mutex
	var ran []string
	runHook := func(_ context.Context, _, cmd string, env map[string]string) ([]byte, error) {
		mu.Lock()
		ran = append(ran, cmd+" "+env["PUSHDEPLOY_VERSION"])
		mu.Unlock()
		if cmd == "integration" && env["PUSHDEPLOY_VERSION"] == "v-three" {
			return []byte("integration tests failed"), errors.New("exit status 1")
		}
		return nil, nil
	}
	hooks := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := ran
		ran = nil
		return out
	}
	markerVersion := func(want string) {
		t.Helper()
		bodies, _ := marker.take()
		if len(bodies) != 1 {
			t.Fatalf("%d markers posted, want 1: %q", len(bodies), bodies)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(bodies[0]), &m); err != nil {
			t.Fatal(err)
		}
		if m["version"] != want {
			t.Errorf("marker %s; want version %q, the one live", bodies[0], want)
		}
	}
	deploy := func(who, content string) (*pipeline.Record, error) {
		return f.deploy(t, file, who, writeFiles(t, content), func(ctx context.Context, cmd string) error {
			_, err := runHook(ctx, "", cmd, map[string]string{"PUSHDEPLOY_VERSION": "v-" + who})
			return err
		})
	}

	for _, who := range []string{"one", "two"} {
		if _, err := deploy(who, who); err != nil {
			t.Fatal(err)
		}
		markerVersion("v-" + who)
		hook.take()
	}
	hooks()

	// v-three fails its integration test after every host switched: rolled back to v-two.
	rec, err := deploy("three", "three")
	if err == nil || rec.Outcome != pipeline.OutcomeRolledBack {
		t.Fatalf("failing deploy: %v, %q; want rolled back", err, rec.Outcome)
	}
	f.assertServes(t, "two")
	if rec.LiveVersion != "v-two" {
		t.Errorf("record of the rolled-back deploy: live version %q, want v-two", rec.LiveVersion)
	}
	markerVersion("v-two")
	if bodies, _ := hook.take(); len(bodies) != 1 || !strings.Contains(bodies[0], `"outcome":"rolled_back"`) || !strings.Contains(bodies[0], `"liveVersion":"v-two"`) {
		t.Errorf("webhook of the rolled-back deploy: %q", bodies)
	}
	if got := strings.Join(hooks(), "; "); got != "integration v-three; after-rollback v-three" {
		t.Errorf("hooks ran: %s", got)
	}

	// A manual rollback: every host back to v-one; post_rollback runs, the marker and the
	// notification say so.
	x := f.envs(file)
	x.RunHook = runHook
	rb, err := x.Rollback(context.Background(), "test", "", "")
	if err != nil {
		t.Fatalf("manual rollback: %v", err)
	}
	f.assertServes(t, "one")
	if rb.Action != "rollback" || rb.Outcome != pipeline.OutcomeDeployed || rb.LiveVersion != "v-one" {
		t.Errorf("rollback record: action %q outcome %q live %q", rb.Action, rb.Outcome, rb.LiveVersion)
	}
	if got := strings.Join(hooks(), "; "); got != "after-rollback v-one" {
		t.Errorf("hooks after the manual rollback: %q; want post_rollback with the version gone back to", got)
	}
	markerVersion("v-one")
	if bodies, _ := hook.take(); len(bodies) != 1 || !strings.Contains(bodies[0], `"action":"rollback"`) || !strings.Contains(bodies[0], `"outcome":"success"`) {
		t.Errorf("webhook of the manual rollback: %q", bodies)
	}
}
