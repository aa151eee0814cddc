package hoststate

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// Issue 11, case 8: the history is every host's journal merged. A record that the first
// host missed (it was down when the record was written) is still in the history; one copy
// of each record; ordered by time; a host that does not answer costs nothing while another
// does.
func TestJournalsMergeEveryHost(t *testing.T) {
	hosts := testbench.SSHHosts(t, 3)
	var js Journals
	for _, h := range hosts {
		dial := func(ctx context.Context) (*sshconn.Client, error) {
			return sshconn.Dial(ctx, h.Addr, sshconn.PrivateKey(h.ClientKey), sshconn.KnownHosts(h.KnownHosts), sshconn.User(h.User))
		}
		f, err := New(dial, filepath.Join(h.Dir, "state"), "test app/prod on "+h.Addr)
		if err != nil {
			t.Fatal(err)
		}
		js = append(js, f)
	}
	ctx := context.Background()
	t0 := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	rec := func(id, action string, minute int) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"id":%q,"action":%q,"started":%q}`, id, action, t0.Add(time.Duration(minute)*time.Minute).Format(time.RFC3339Nano)))
	}
	appendTo := func(r json.RawMessage, on ...int) {
		for _, i := range on {
			if err := js[i].Append(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendTo(rec("r1", "deploy", 1), 0, 1, 2)
	appendTo(rec("r2", "deploy", 2), 1, 2) // the first host was down
	appendTo(rec("r3", "deploy", 3), 0, 1, 2)
	appendTo(rec("r2", "rollback", 4), 0, 1, 2) // a rollback to r2: same id, another record
	// A host whose history was written out of order (a clock step) sorts with the others.
	appendTo(rec("r0", "deploy", 0), 2)

	ids := func(recs []json.RawMessage) string {
		var out []string
		for _, r := range recs {
			var k struct{ ID, Action string }
			if err := json.Unmarshal(r, &k); err != nil {
				t.Fatal(err)
			}
			out = append(out, k.Action+" "+k.ID)
		}
		return strings.Join(out, ", ")
	}
	const all = "deploy r0, deploy r1, deploy r2, deploy r3, rollback r2"
	got, err := js.Records(ctx, 0)
	if err != nil || ids(got) != all {
		t.Fatalf("merged history: %s, %v; want %s", ids(got), err, all)
	}
	if got, err := js.Records(ctx, 2); err != nil || ids(got) != "deploy r3, rollback r2" {
		t.Errorf("last 2: %s, %v", ids(got), err)
	}
	// The first host alone does not know r2: reading only it (what history did) lost it.
	if got, _ := js[0].Records(ctx, 0); strings.Contains(ids(got), "deploy r2") {
		t.Fatalf("the test's first host has r2: %s", ids(got))
	}

	hosts[2].Kill()
	if got, err := js.Records(ctx, 0); err != nil || ids(got) != "deploy r1, deploy r2, deploy r3, rollback r2" {
		t.Errorf("with the third host down: %s, %v", ids(got), err)
	}
	hosts[0].Kill()
	hosts[1].Kill()
	if _, err := js.Records(ctx, 0); err == nil {
		t.Errorf("no host answers, and the history reads without an error")
	}
}
