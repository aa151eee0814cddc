package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
)

// TestPublishPrintsReferenceOnStdout: REF=$(pushdeploy publish ...) gets the reference and
// nothing else; -o json gives it as {"reference": ...}.
func TestPublishPrintsReferenceOnStdout(t *testing.T) {
	reg := testbench.InProcessRegistry(t)
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "image.tar")
	tag, _ := name.NewTag("pushdeploy.test/out:v1")
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		t.Fatal(err)
	}
	repo := reg.Host + "/acme/out"
	stdout, stderr, err := runSplit(t, "publish", path, repo, "--revision", strings.Repeat("a", 40))
	if err != nil {
		t.Fatalf("publish: %v\n%s", err, stderr)
	}
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(repo) + `@sha256:[0-9a-f]{64}\n$`).MatchString(stdout) {
		t.Fatalf("publish stdout %q; want the reference alone (stderr %q)", stdout, stderr)
	}
	stdout, _, err = runSplit(t, "publish", path, repo, "--revision", strings.Repeat("a", 40), "-o", "json")
	var got struct{ Reference string }
	if err != nil || json.Unmarshal([]byte(stdout), &got) != nil || !strings.HasPrefix(got.Reference, repo+"@sha256:") {
		t.Fatalf("publish -o json: %v\n%s", err, stdout)
	}
	if _, _, err := runSplit(t, "publish", path, repo, "-o", "yaml"); pipeline.ExitCode(err) != pipeline.ExitUsage {
		t.Fatalf("publish -o yaml: %v; want a usage error", err)
	}
}

// TestLockCommands: lock status, acquire (with a TTL of its own and a reason), a release by
// another deployer refused, the release by the holder, unlock's JSON, all on a real host.
func TestLockCommands(t *testing.T) {
	e := newSSHEnv(t)
	state := func() pipeline.LockState {
		t.Helper()
		stdout, stderr, err := runSplit(t, e.cmd("lock", "status", "-o", "json")...)
		var s pipeline.LockState
		if err != nil || json.Unmarshal([]byte(stdout), &s) != nil {
			t.Fatalf("lock status -o json: %v\nstdout %q\nstderr %q", err, stdout, stderr)
		}
		return s
	}
	if s := state(); s.Held || s.Holder != nil {
		t.Fatalf("before: %+v; want no lock", s)
	}
	stdout, _, err := runSplit(t, e.cmd("lock", "acquire", "--ttl", "2h", "--reason", "db migration")...)
	if err != nil || !strings.Contains(stdout, `staging locked by "alice@ci"`) || !strings.Contains(stdout, "expires after 2h0m0s") {
		t.Fatalf("lock acquire: %v\n%s", err, stdout)
	}
	s := state()
	if !s.Held || s.Holder == nil || s.Holder.Owner != "alice@ci" || s.Holder.Expires.Sub(s.Holder.Acquired) != 2*time.Hour ||
		!strings.Contains(s.Holder.PipelineID, "maintenance: db migration") {
		t.Fatalf("held: %+v %+v; want alice's for 2h with the reason", s, s.Holder)
	}
	out := wantExit(t, pipeline.ExitLocked, append(e.cmd("lock", "release"), "--deployer", "bob@ci")...)
	if !strings.Contains(out, `held by "alice@ci"`) || !strings.Contains(out, "unlock") {
		t.Errorf("bob's release refusal: %s", out)
	}
	if s := state(); !s.Held {
		t.Fatal("bob's refused release freed the lock")
	}
	wantExit(t, pipeline.ExitLocked, e.cmd("lock", "acquire")...) // held already, even by alice
	stdout, _, err = runSplit(t, e.cmd("lock", "release")...)
	if err != nil || !strings.HasPrefix(stdout, `staging unlocked; it was held by "alice@ci"`) {
		t.Fatalf("lock release: %v\n%s", err, stdout)
	}
	if s := state(); s.Held || s.Holder != nil {
		t.Fatalf("after release: %+v; want no lock", s)
	}
	stdout, stderr, err := runSplit(t, e.cmd("unlock", "-o", "json")...)
	if err != nil || json.Unmarshal([]byte(stdout), &s) != nil || s.Held || s.Message != "staging was not locked" {
		t.Fatalf("unlock -o json: %v\nstdout %q\nstderr %q", err, stdout, stderr)
	}
}

// signalWriter closes seen the first time what it is written contains want.
type signalWriter struct {
	mu   sync.Mutex
	buf  strings.Builder
	want string
	seen chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := strings.Contains(w.buf.String(), w.want)
	w.buf.Write(p)
	if !had && strings.Contains(w.buf.String(), w.want) {
		close(w.seen)
	}
	return len(p), nil
}

// TestDeployWaitsForMaintenanceLock: with lock.wait, a deploy that finds the lock held for a
// maintenance window waits, and goes on once lock release frees it.
func TestDeployWaitsForMaintenanceLock(t *testing.T) {
	e := newSSHEnv(t)
	if _, err := run(t, e.cmd("lock", "acquire", "--reason", "window")...); err != nil {
		t.Fatal(err)
	}
	errw := &signalWriter{want: "waiting:", seen: make(chan struct{})}
	done := make(chan error, 1)
	var out strings.Builder
	go func() {
		done <- runTo(&out, errw, append(e.cmd("deploy", "--artifacts", e.artifacts), "--deployer", "bob@ci", "--lock-wait", "5m")...)
	}()
	select {
	case <-errw.seen:
	case err := <-done:
		t.Fatalf("the deploy did not wait for the held lock: %v\n%s", err, errw.buf.String())
	}
	if _, err := run(t, e.cmd("lock", "release")...); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("deploy after the window: %v\n%s", err, errw.buf.String())
	}
	if !strings.Contains(out.String(), "DEPLOYED") {
		t.Errorf("deploy record: %s", out.String())
	}
}
