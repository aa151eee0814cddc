package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPauseAbortAndIrreversible drives a deploy in its bake from other dagger calls, as an
// operator would: pause (status shows it), resume, abort (the deploy rolls back and says
// so); then a release marked irreversible, which rollback refuses to cross without --force.
func TestPauseAbortAndIrreversible(t *testing.T) {
	e := needEngine(t)
	a := newSSHApp(t, e)
	file := filepath.Join(a.dir, "pushdeploy.yaml")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(strings.Replace(string(b), "  staging:\n", "  staging:\n    bake: 30m\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	pd := func(rev string, args ...string) []string {
		return append([]string{"call", "--source", ".", "--revision", rev, "--ssh-key", "env:SSH_KEY"}, args...)
	}
	done := make(chan *run, 1)
	go func() {
		done <- e.dagger(t, a.dir, a.env, pd("r1", "deploy", "--env", "staging", "--skip-tests", "--format", "json")...)
	}()

	// The deploy says in its lock what it does: wait until it bakes (each status is a
	// dagger call of its own; the deploy's end, if it comes first, fails the test).
	phase := func() string {
		out := e.ok(t, a.dir, a.env, pd("r1", "status", "--env", "staging", "--no-check", "--format", "json")...)
		var st []struct {
			Lock *struct {
				Phase string `json:"phase"`
			} `json:"lock"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil || len(st) != 1 {
			t.Fatalf("reading status: %v\n%s", err, out)
		}
		if st[0].Lock == nil {
			return ""
		}
		return st[0].Lock.Phase
	}
	deadline := time.Now().Add(15 * time.Minute)
	for !strings.Contains(phase(), "baking") {
		select {
		case r := <-done:
			t.Fatalf("the deploy ended before its bake: %v\n%s", r.err, tailOf(r.stderr, 4000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the deploy never started its bake")
		}
	}
	mustContain(t, "pause", e.ok(t, a.dir, a.env, pd("r1", "pause", "--env", "staging", "--deployer", "alice")...), "pause")
	mustContain(t, "status of a paused deploy", e.ok(t, a.dir, a.env, pd("r1", "status", "--env", "staging", "--no-check")...), "paused by alice")
	e.ok(t, a.dir, a.env, pd("r1", "resume", "--env", "staging", "--deployer", "alice")...)
	e.ok(t, a.dir, a.env, pd("r1", "abort", "--env", "staging", "--deployer", "alice", "--format", "json")...)
	r := <-done
	r.report(t, true)
	if r.err == nil {
		t.Fatalf("the aborted deploy succeeded:\n%s", r.stdout)
	}
	mustContain(t, "the aborted deploy", r.all(), "abort", "rolled back")
	if l := live(t, a.staging); l != "" {
		t.Errorf("after the abort of the first deploy the host runs %q, want nothing", l)
	}
	e.fails(t, a.dir, a.env, pd("r1", "abort", "--env", "staging")...)

	// An irreversible release: rollback refuses to cross it, naming it, unless --force.
	prod := func(rev string, args ...string) []string {
		return pd(rev, append(args, "--env", "production", "--approved-by", "bob", "--skip-tests")...)
	}
	e.ok(t, a.dir, a.env, prod("r1", "deploy")...)
	r2 := parseRecord(t, e.ok(t, a.dir, a.env, prod("r2", "deploy", "--irreversible", "--format", "json")...))
	msg := e.fails(t, a.dir, a.env, pd("r2", "rollback", "--env", "production", "--approved-by", "bob")...)
	mustContain(t, "rollback across an irreversible release", msg, r2.Release, "irreversible")
	if live(t, a.prod) != r2.Release {
		t.Fatalf("the refused rollback changed the host: it runs %q", live(t, a.prod))
	}
	e.ok(t, a.dir, a.env, pd("r2", "rollback", "--env", "production", "--approved-by", "bob", "--force")...)
	if l := live(t, a.prod); l == r2.Release || l == "" {
		t.Errorf("rollback --force left the host on %q", l)
	}
}
