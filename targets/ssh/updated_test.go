package ssh_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/targets/ssh"
)

// The updated hook (ssh.Updated) and re-activating a kept release, through the shared
// engine against real sshd.

func releaseDirs(t *testing.T, h *testbench.SSHHost) []string {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(appDir(h), "releases"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func currentLink(t *testing.T, h *testbench.SSHHost) string {
	t.Helper()
	l, err := os.Readlink(filepath.Join(appDir(h), "current"))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func assertUnlocked(t *testing.T, tg *ssh.Target) {
	t.Helper()
	l, err := tg.Locker().Holder(context.Background())
	if err != nil || l != nil {
		t.Errorf("deploy lock afterwards: %v, %v; want free", l, err)
	}
}

func TestRolloutUpdatedHookRunsInTheStagedReleaseBeforeTheSwitch(t *testing.T) {
	hosts := testbench.SSHHosts(t, 2, testUser)
	good := newTarget(t, hosts)
	if _, err := rollout(t, good, release(t, good, "r1", writeTree(t, v1))); err != nil {
		t.Fatal(err)
	}
	// Each run says where it ran, what was live then, and what it was given; it writes a
	// file into the release, as an asset build would.
	tg := newTarget(t, hosts, ssh.Updated(
		`echo "$PUSHDEPLOY_RELEASE $PUSHDEPLOY_VERSION $(basename "$(pwd -P)") $(readlink "$PUSHDEPLOY_PATH/current")" >> "$PUSHDEPLOY_PATH/updated"`,
		`rm -f built.txt && echo "built $PUSHDEPLOY_RELEASE" > built.txt`,
	))
	res, err := rollout(t, tg, release(t, tg, "r2", writeTree(t, tree{"index.html": "two"})))
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range hosts {
		b, _ := os.ReadFile(filepath.Join(appDir(h), "updated"))
		if got := strings.TrimSpace(string(b)); got != "r2 v-r2 r2 releases/r1" {
			t.Errorf("%s: updated hook saw %q; want it run in releases/r2 while r1 was live", h.Name, got)
		}
		assertCurrent(t, h, tree{"index.html": "two", "built.txt": "built r2\n"})
		if got := restarts(t, h); strings.Join(got, ",") != "r1 r1,r2 r2" {
			t.Errorf("%s: restarts %q", h.Name, got)
		}
		if o := res.Record.Hosts[i].Outcome; o != pipeline.OutcomeDeployed {
			t.Errorf("%s: outcome %q", h.Name, o)
		}
	}
}

func TestRolloutUpdatedHookFailingOnOneHostLeavesEveryHostOnTheOldRelease(t *testing.T) {
	hosts := testbench.SSHHosts(t, 2, testUser)
	good := newTarget(t, hosts)
	if _, err := rollout(t, good, release(t, good, "r1", writeTree(t, v1))); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(appDir(hosts[1]), "fail-updated"), nil, 0o644)
	tg := newTarget(t, hosts, ssh.Updated(
		`touch "$PUSHDEPLOY_PATH/updated-ran"`,
		`if [ -e "$PUSHDEPLOY_PATH/fail-updated" ]; then echo "migration failed" >&2; exit 7; fi`,
	))
	res, err := rollout(t, tg, release(t, tg, "r2", writeTree(t, tree{"index.html": "two"})))
	if err == nil {
		t.Fatal("deploy succeeded although the updated hook failed")
	}
	var he *pipeline.HostError
	if !errors.As(err, &he) || he.Host != hosts[1].Addr || he.Step != pipeline.StepUpdated {
		t.Fatalf("error %v (%T); want a HostError on %s at step %q", err, err, hosts[1].Addr, pipeline.StepUpdated)
	}
	for _, want := range []string{"migration failed", "exit status 7", `"r2"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if got := res.Record.Hosts[1]; got.Outcome != pipeline.OutcomeFailed || got.Step != pipeline.StepUpdated {
		t.Errorf("record of %s: %+v; want failed at %q", hosts[1].Addr, got, pipeline.StepUpdated)
	}
	for _, h := range hosts {
		if _, err := os.Stat(filepath.Join(appDir(h), "updated-ran")); err != nil {
			t.Errorf("%s: the hook did not run: %v", h.Name, err)
		}
		assertCurrent(t, h, v1)
		// Neither host ever switched: the only restart is r1's first deploy.
		if got := restarts(t, h); strings.Join(got, ",") != "r1 r1" {
			t.Errorf("%s: restarts %q; want r1 only (nothing went live)", h.Name, got)
		}
		if got := releaseDirs(t, h); !slices.Equal(got, []string{"r1"}) {
			t.Errorf("%s: releases %q; want the staged r2 discarded", h.Name, got)
		}
	}
	assertUnlocked(t, tg)
}

func TestRolloutUpdatedHookThatHangsIsKilledAtItsTimeout(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1, testUser)
	good := newTarget(t, hosts)
	if _, err := rollout(t, good, release(t, good, "r1", writeTree(t, v1))); err != nil {
		t.Fatal(err)
	}
	tg := newTarget(t, hosts, ssh.Updated(`sleep 3600`), ssh.UpdatedTimeout(300*time.Millisecond))
	// The rollout's own context allows 2 minutes: only the hook's timeout can end it sooner.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := pipeline.Rollout(ctx, tg, release(t, tg, "r2", writeTree(t, tree{"index.html": "two"})), pipeline.WithOwner("tester", "hang"))
	if err == nil {
		t.Fatal("deploy succeeded although the updated hook hung")
	}
	if ctx.Err() != nil {
		t.Fatalf("the rollout ran until its own deadline: %v", err)
	}
	if !strings.Contains(err.Error(), "timed out after 300ms and was killed") {
		t.Errorf("error %q does not say the hook timed out", err)
	}
	assertCurrent(t, hosts[0], v1)
	if got := releaseDirs(t, hosts[0]); !slices.Equal(got, []string{"r1"}) {
		t.Errorf("releases %q; want the staged r2 discarded", got)
	}
	assertUnlocked(t, tg)
}

func TestRolloutRedeployOfAKeptReleaseReactivatesIt(t *testing.T) {
	hosts := testbench.SSHHosts(t, 2, testUser)
	// The updated hook must not run for a release that is not staged again.
	tg := newTarget(t, hosts, ssh.Updated(`echo "$PUSHDEPLOY_RELEASE" >> "$PUSHDEPLOY_PATH/updated"`))
	v1dir := writeTree(t, v1)
	if _, err := rollout(t, tg, release(t, tg, "r1", v1dir)); err != nil {
		t.Fatal(err)
	}
	if _, err := rollout(t, tg, release(t, tg, "r2", writeTree(t, tree{"index.html": "two"}))); err != nil {
		t.Fatal(err)
	}
	// v1's artifacts again, under a new id: the plan says so, then the deploy does it.
	changes, err := pipeline.Plan(context.Background(), tg, release(t, tg, "r3", v1dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		if c.Summary != "re-activate kept release r1, nothing to send" || c.Bytes != 0 || len(c.Add)+len(c.Update)+len(c.Remove) != 0 {
			t.Errorf("%s: plan %+v; want a re-activation of r1", c.Host, c)
		}
	}
	res, err := rollout(t, tg, release(t, tg, "r3", v1dir))
	if err != nil {
		t.Fatal(err)
	}
	rec := res.Record
	if rec.Outcome != pipeline.OutcomeDeployed || rec.Release != "r1" {
		t.Errorf("record: outcome %q, release %q; want deployed, r1", rec.Outcome, rec.Release)
	}
	for i, h := range hosts {
		if o := rec.Hosts[i].Outcome; o != pipeline.OutcomeReactivated {
			t.Errorf("%s: outcome %q; want %q", h.Name, o, pipeline.OutcomeReactivated)
		}
		if l := currentLink(t, h); l != "releases/r1" {
			t.Errorf("%s: current -> %q; want releases/r1", h.Name, l)
		}
		assertCurrent(t, h, v1)
		if got := releaseDirs(t, h); !slices.Equal(got, []string{"r1", "r2"}) {
			t.Errorf("%s: releases %q; want no new release", h.Name, got)
		}
		if got := restarts(t, h); strings.Join(got, ",") != "r1 r1,r2 r2,r1 r1" {
			t.Errorf("%s: restarts %q; want r1 restarted again", h.Name, got)
		}
		b, _ := os.ReadFile(filepath.Join(appDir(h), "updated"))
		if got := strings.Fields(string(b)); !slices.Equal(got, []string{"r1", "r2"}) {
			t.Errorf("%s: updated hook ran for %q; want r1 and r2 only", h.Name, got)
		}
		if _, err := os.Stat(filepath.Join(appDir(h), ".pushdeploy", "staging", "r3")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: something was staged for r3 (%v)", h.Name, err)
		}
	}
	// Status agrees: r1 is live, kept releases unchanged.
	st, err := pipeline.Status(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Live == nil || s.Live.ID != "r1" || len(s.Kept) != 2 {
			t.Errorf("%s: status %+v", s.Host, s)
		}
	}
}

func TestRolloutDigestKeptOnOnlySomeHostsIsStagedAnew(t *testing.T) {
	hosts := testbench.SSHHosts(t, 2, testUser)
	tg := newTarget(t, hosts)
	v1dir := writeTree(t, v1)
	r1 := release(t, tg, "r1", v1dir)
	if _, err := rollout(t, tg, r1); err != nil {
		t.Fatal(err)
	}
	if _, err := rollout(t, tg, release(t, tg, "r2", writeTree(t, tree{"index.html": "two"}))); err != nil {
		t.Fatal(err)
	}
	// One host lost r1: the redeploy of its digest is a deploy of a new release everywhere.
	if err := tg.Hosts()[1].Discard(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
	res, err := rollout(t, tg, release(t, tg, "r3", v1dir))
	if err != nil {
		t.Fatal(err)
	}
	if res.Record.Release != "r3" {
		t.Errorf("record release %q; want r3", res.Record.Release)
	}
	for i, h := range hosts {
		if o := res.Record.Hosts[i].Outcome; o != pipeline.OutcomeDeployed {
			t.Errorf("%s: outcome %q", h.Name, o)
		}
		if l := currentLink(t, h); l != "releases/r3" {
			t.Errorf("%s: current -> %q; want releases/r3", h.Name, l)
		}
		assertCurrent(t, h, v1)
	}
}

func TestRolloutUpdatedHookFailingInTheLastBatchSwitchesNoBatch(t *testing.T) {
	hosts := testbench.SSHHosts(t, 2, testUser)
	good := newTarget(t, hosts)
	if _, err := rollout(t, good, release(t, good, "r1", writeTree(t, v1))); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(appDir(hosts[1]), "fail-updated"), nil, 0o644)
	tg := newTarget(t, hosts, ssh.Updated(`if [ -e "$PUSHDEPLOY_PATH/fail-updated" ]; then echo "migration failed" >&2; exit 7; fi`))
	// One host a batch: the failing host is in the second.
	res, err := rollout(t, tg, release(t, tg, "r2", writeTree(t, tree{"index.html": "two"})), pipeline.WithBatchSize(1))
	var he *pipeline.HostError
	if !errors.As(err, &he) || he.Host != hosts[1].Addr || he.Step != pipeline.StepUpdated {
		t.Fatalf("error %v; want a HostError on %s at step %q", err, hosts[1].Addr, pipeline.StepUpdated)
	}
	if o := res.Record.Hosts[0].Outcome; o != pipeline.OutcomeSkipped {
		t.Errorf("%s (first batch): outcome %q; want %q", hosts[0].Addr, o, pipeline.OutcomeSkipped)
	}
	for _, h := range hosts {
		assertCurrent(t, h, v1)
		if got := restarts(t, h); strings.Join(got, ",") != "r1 r1" {
			t.Errorf("%s: restarts %q; want r1 only (no batch switched)", h.Name, got)
		}
		if got := releaseDirs(t, h); !slices.Equal(got, []string{"r1"}) {
			t.Errorf("%s: releases %q; want the staged r2 discarded", h.Name, got)
		}
	}
	assertUnlocked(t, tg)
}
