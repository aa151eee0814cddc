package ssh_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/targets"
)

// Uploads large enough to be verified in runs while they go out: a first release (files
// straight to their paths) and one made from the live release (staged, then renamed), each
// live with exactly its files, and each host told how much was sent.
func TestRolloutLargeUploadsVerifiedWhileSent(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1, testUser)
	h := hosts[0]
	tg := newTarget(t, hosts)
	big := func(v string) tree {
		tr := tree{"index.html": v}
		for i := 0; i < 200; i++ {
			tr[fmt.Sprintf("d%d/%03d.bin", i%3, i)] = strings.Repeat(v+fmt.Sprint(i), 60000/len(v))
		}
		return tr
	}
	v1, v2 := big("a"), big("bb")
	if _, err := rollout(t, tg, release(t, tg, "r1", writeTree(t, v1))); err != nil {
		t.Fatal(err)
	}
	assertCurrent(t, h, v1)
	if up := tg.SSHHosts()[0].LastUpload(); len(up.Files) != len(v1) {
		t.Errorf("first deploy sent %d files; want %d", len(up.Files), len(v1))
	}
	if _, err := rollout(t, tg, release(t, tg, "r2", writeTree(t, v2))); err != nil {
		t.Fatal(err)
	}
	assertCurrent(t, h, v2)
}

// recorder keeps every report of a host's upload, in order.
type recorder struct {
	mu  sync.Mutex
	got []targets.Transfer
}

func (r *recorder) Upload(host string, t targets.Transfer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, t)
}

// Prepare reports its upload through the targets.Progress of its context: totals first,
// counts that only grow, and a last report, Done, with everything sent; then, for a
// release sharing all but one file with the live one, that one file alone.
func TestPrepareReportsUploadProgress(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1, testUser)
	tg := newTarget(t, hosts)
	h := tg.Hosts()[0]
	v1 := tree{"index.html": "v1", "app.js": strings.Repeat("x", 100000), "css/site.css": "body{}"}
	check := func(id string, v tree, files int, bytes int64) {
		t.Helper()
		rec := &recorder{}
		ctx := targets.WithProgress(context.Background(), rec)
		if err := h.Prepare(ctx, release(t, tg, id, writeTree(t, v))); err != nil {
			t.Fatal(err)
		}
		if len(rec.got) < 2 {
			t.Fatalf("%d progress reports; want at least a first and a last", len(rec.got))
		}
		first, last := rec.got[0], rec.got[len(rec.got)-1]
		if first.Files != 0 || first.Bytes != 0 || first.TotalFiles != files || first.TotalBytes != bytes || first.Done {
			t.Errorf("first report %+v; want nothing sent yet of %d files, %d bytes", first, files, bytes)
		}
		if last != (targets.Transfer{Files: files, TotalFiles: files, Bytes: bytes, TotalBytes: bytes, Done: true}) {
			t.Errorf("last report %+v; want all %d files, %d bytes sent, done", last, files, bytes)
		}
		for i := 1; i < len(rec.got); i++ {
			if a, b := rec.got[i-1], rec.got[i]; b.Files < a.Files || b.Bytes < a.Bytes {
				t.Errorf("report %d went back: %+v after %+v", i, b, a)
			}
		}
	}
	check("r1", v1, 3, int64(len("v1")+100000+len("body{}")))
	if err := h.Activate(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
	v2 := tree{"index.html": "v2!", "app.js": v1["app.js"], "css/site.css": "body{}"}
	check("r2", v2, 1, int64(len("v2!")))
}
