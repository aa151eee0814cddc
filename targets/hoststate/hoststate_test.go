package hoststate

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// files returns state files in the test host's directory, over a real SSH connection.
func files(t *testing.T) (*Files, string) {
	t.Helper()
	// pyenv in root's .bashrc waits up to 60s on a lock a killed session left behind.
	h := testbench.SSHHosts(t, 1, testbench.SSHSetEnv("PYENV_REHASH_TIMEOUT", "0"))[0]
	ctx := context.Background()
	c, err := sshconn.Dial(ctx, h.Addr, sshconn.PrivateKey(h.ClientKey), sshconn.KnownHosts(h.KnownHosts))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	dir := filepath.Join(h.Dir, "state", "app-prod")
	f, err := New(func(context.Context) (*sshconn.Client, error) { return c, nil }, dir, "test app/prod")
	if err != nil {
		t.Fatal(err)
	}
	return f, dir
}

func lock(owner string, acquired time.Time, ttl time.Duration) targets.Lock {
	return targets.Lock{Owner: owner, PipelineID: "p-" + owner, Acquired: acquired.UTC(), Expires: acquired.Add(ttl).UTC()}
}

func TestLockLifecycle(t *testing.T) {
	f, dir := files(t)
	ctx := context.Background()
	now := time.Now()

	if l, err := f.Holder(ctx); err != nil || l != nil {
		t.Fatalf("holder of a fresh lock = %v, %v; want nobody", l, err)
	}
	alice := lock("alice", now, time.Hour)
	if err := f.Acquire(ctx, alice); err != nil {
		t.Fatal(err)
	}
	bob := lock("bob", now.Add(time.Second), time.Hour)
	err := f.Acquire(ctx, bob)
	var held *targets.HeldError
	if !errors.As(err, &held) || held.Holder.Owner != "alice" || held.Target != "test app/prod" {
		t.Fatalf("bob's acquire = %v, want held by alice", err)
	}
	// Bob cannot release or renew alice's lock.
	if err := f.Release(ctx, bob); err != nil {
		t.Fatal(err)
	}
	if err := f.Renew(ctx, bob); err == nil || !strings.Contains(err.Error(), "no longer ours") {
		t.Errorf("bob renewing alice's lock: %v, want refused", err)
	}
	alice.Expires = alice.Expires.Add(time.Hour)
	if err := f.Renew(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if l, err := f.Holder(ctx); err != nil || l == nil || !l.Expires.Equal(alice.Expires) {
		t.Errorf("holder after renewal = %v, %v; want alice until %s", l, err, alice.Expires)
	}
	if err := f.Release(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if l, err := f.Holder(ctx); err != nil || l != nil {
		t.Errorf("holder after release = %v, %v; want nobody", l, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "lock")); !os.IsNotExist(err) {
		t.Errorf("lock file still there: %v", err)
	}
}

func TestExpiredLockIsTaken(t *testing.T) {
	f, _ := files(t)
	ctx := context.Background()
	now := time.Now()
	if err := f.Acquire(ctx, lock("crashed", now.Add(-time.Hour), time.Minute)); err != nil {
		t.Fatal(err)
	}
	bob := lock("bob", now, time.Hour)
	if err := f.Acquire(ctx, bob); err != nil {
		t.Fatalf("taking an expired lock: %v", err)
	}
	if l, _ := f.Holder(ctx); l == nil || l.Owner != "bob" {
		t.Errorf("holder = %v, want bob", l)
	}
	if err := f.Break(ctx); err != nil {
		t.Fatal(err)
	}
	if l, _ := f.Holder(ctx); l != nil {
		t.Errorf("holder after break = %v, want nobody", l)
	}
}

func TestConcurrentAcquireOneWins(t *testing.T) {
	f, _ := files(t)
	ctx := context.Background()
	now := time.Now()
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- f.Acquire(ctx, lock(string(rune('a'+i)), now, time.Hour)) }()
	}
	won := 0
	for range n {
		err := <-errs
		var held *targets.HeldError
		switch {
		case err == nil:
			won++
		case errors.As(err, &held):
		default:
			t.Errorf("acquire: %v", err)
		}
	}
	if won != 1 {
		t.Errorf("%d acquires succeeded, want exactly 1", won)
	}
}

func TestJournal(t *testing.T) {
	f, _ := files(t)
	ctx := context.Background()
	if recs, err := f.Records(ctx, 0); err != nil || len(recs) != 0 {
		t.Fatalf("records of a fresh journal = %q, %v; want none", recs, err)
	}
	for _, r := range []string{`{"n": 1,` + "\n" + `"s": "a b"}`, `{"n":2}`, `{"n":3}`} {
		if err := f.Append(ctx, json.RawMessage(r)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Append(ctx, json.RawMessage(`not json`)); err == nil {
		t.Error("appending a record that is not JSON succeeded")
	}
	recs, err := f.Records(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || string(recs[0]) != `{"n":1,"s":"a b"}` || string(recs[2]) != `{"n":3}` {
		t.Errorf("records = %q", recs)
	}
	recs, err = f.Records(ctx, 2)
	if err != nil || len(recs) != 2 || string(recs[0]) != `{"n":2}` {
		t.Errorf("last 2 records = %q, %v", recs, err)
	}
}

// TestRecordsWrittenWhole: records with quotes and shell syntax, and one larger than a
// command line takes (it goes on stdin), come back as written, in a session and in the
// connection's long-lived shells.
func TestRecordsWrittenWhole(t *testing.T) {
	f, dir := files(t)
	inShells, err := NewWithRunner(func(ctx context.Context) (Runner, error) {
		c, err := f.dial(ctx)
		if err != nil {
			return nil, err
		}
		return c.(*sshconn.Client).Shells(), nil
	}, dir, "test app/prod")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	want := []string{
		`{"s":"it's $HOME and ` + "`id`" + ` \\ \"q\""}`,
		`{"big":"` + strings.Repeat("x", 100<<10) + `"}`,
	}
	for _, w := range []*Files{f, inShells} {
		for _, r := range want {
			if err := w.Append(ctx, json.RawMessage(r)); err != nil {
				t.Fatal(err)
			}
		}
	}
	recs, err := inShells.Records(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 {
		t.Fatalf("%d records, want 4", len(recs))
	}
	for i, r := range recs {
		if string(r) != want[i%2] {
			t.Errorf("record %d = %.80q…, want %.80q…", i, r, want[i%2])
		}
	}
}

func TestRelativeDirRefused(t *testing.T) {
	if _, err := New(nil, "state", "x"); err == nil || !strings.Contains(err.Error(), `"state"`) {
		t.Errorf("relative dir: %v", err)
	}
}

func TestJournalsOnEveryHost(t *testing.T) {
	a, _ := files(t)
	b, _ := files(t)
	ctx := context.Background()
	js := Journals{a, b}
	if err := js.Append(ctx, json.RawMessage(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	for i, f := range js {
		if recs, err := f.Records(ctx, 0); err != nil || len(recs) != 1 {
			t.Errorf("host %d: records = %q, %v; want the one", i, recs, err)
		}
	}
	// A host that cannot be reached: the next one answers; appending fails naming it.
	down, err := New(func(context.Context) (*sshconn.Client, error) { return nil, errors.New("host down") }, "/x", "t")
	if err != nil {
		t.Fatal(err)
	}
	js = Journals{down, b}
	if recs, err := js.Records(ctx, 0); err != nil || len(recs) != 1 {
		t.Errorf("records with the first host down = %q, %v", recs, err)
	}
	if err := js.Append(ctx, json.RawMessage(`{"n":2}`)); err == nil || !strings.Contains(err.Error(), "host down") {
		t.Errorf("append with a host down: %v", err)
	}
}
