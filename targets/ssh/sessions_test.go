package ssh_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/ssh"
)

// TestDeployOpensFewSessions: a one-file change through pipeline.Rollout (the lock, the
// status reads, staging, upload, verify, the switch, pruning, the history, the unlock)
// opens two sessions on each host, counted in sshd's log: a long-lived shell for every
// script, and SFTP; a restart command is a session more.
func TestDeployOpensFewSessions(t *testing.T) {
	t.Run("no restart", func(t *testing.T) { testSessions(t, 2, ssh.Restart("")) })
	t.Run("restart", func(t *testing.T) { testSessions(t, 3) })
}

func testSessions(t *testing.T, maxSessionsPerDeploy int, opts ...ssh.Option) {
	hosts := testbench.SSHHosts(t, 2, testUser, testbench.SSHLogSessions())
	newTarget := func(t *testing.T, hosts []*testbench.SSHHost) *ssh.Target { return newTarget(t, hosts, opts...) }
	tg := newTarget(t, hosts)
	files := tree{"index.html": "<h1>v1</h1>", "a/b.txt": "b", "a/c.txt": "c"}
	if _, err := rollout(t, tg, release(t, tg, "r1", writeTree(t, files))); err != nil {
		t.Fatal(err)
	}
	tg.Close()
	for i, id := range []string{"r2", "r3", "r4"} { // r4: pruning discards r1 (keep 3)
		tg := newTarget(t, hosts)
		files["index.html"] = "<h1>" + id + "</h1>"
		r := release(t, tg, id, writeTree(t, files))
		before := []int{hosts[0].Sessions(), hosts[1].Sessions()}
		if _, err := rollout(t, tg, r); err != nil {
			t.Fatal(err)
		}
		tg.Close()
		for j, h := range hosts {
			if n := h.Sessions() - before[j]; n > maxSessionsPerDeploy || n == 0 {
				t.Errorf("deploy %d: %s: %d sessions, want 1 to %d", i+2, h.Name, n, maxSessionsPerDeploy)
			}
		}
		assertCurrent(t, hosts[1], files)
	}
	// The sessions are counted: a session of its own is one more.
	before := hosts[0].Sessions()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tg = newTarget(t, hosts)
	if _, err := tg.Hosts()[0].(targets.Commander).Run(ctx, "true", nil); err != nil {
		t.Fatal(err)
	}
	if n := hosts[0].Sessions() - before; n != 1 {
		t.Errorf("Run opened %d sessions, want 1", n)
	}
}

// TestScriptsAfterCancelAndDrop: a script that outlives its context (the lock waiting on a
// guard someone holds) is killed on the host, and the host's next scripts run; after the
// host's sshd restarts (the connection drops) they run too, on a new connection.
func TestScriptsAfterCancelAndDrop(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1, testUser)
	tg := newTarget(t, hosts, ssh.Restart(""))
	ctx := context.Background()
	meta := filepath.Join(appDir(hosts[0]), ".pushdeploy")
	os.MkdirAll(meta, 0o777)
	guard, err := os.OpenFile(filepath.Join(meta, "lock.guard"), os.O_CREATE|os.O_WRONLY, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{appDir(hosts[0]), meta, guard.Name()} { // the login writes them
		os.Chmod(p, 0o777)
	}
	defer guard.Close()
	if err := syscall.Flock(int(guard.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	l := targets.Lock{Owner: "tester", Acquired: time.Now(), Expires: time.Now().Add(time.Hour)}
	cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if err := tg.Locker().Acquire(cctx, l); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("taking the lock while its guard is held = %v, want the deadline", err)
	}
	syscall.Flock(int(guard.Fd()), syscall.LOCK_UN)
	// The waiting flock was killed with its shell, not left to take the guard later.
	for deadline := time.Now().Add(5 * time.Second); ; {
		out, _ := exec.Command("pgrep", "-f", "^flock -w 30 9$").Output()
		if len(out) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cancelled lock script still waits on the host: %s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := tg.Locker().Acquire(ctx, l); err != nil {
		t.Fatalf("taking the lock after a cancelled attempt: %v", err)
	}
	h := tg.Hosts()[0]
	if _, err := h.Status(ctx); err != nil {
		t.Fatal(err)
	}
	if err := hosts[0].Restart(); err != nil {
		t.Fatal(err)
	}
	if st, err := h.Status(ctx); err != nil || st.Live != nil {
		t.Fatalf("status after the connection dropped = %+v, %v", st, err)
	}
	if held, err := tg.Locker().Holder(ctx); err != nil || held == nil || held.Owner != "tester" {
		t.Fatalf("the lock after the connection dropped = %+v, %v", held, err)
	}
	if err := tg.Locker().Release(ctx, l); err != nil {
		t.Fatal(err)
	}
}

// TestStatusKnownOnlyUnderTheLock: while the target holds the deploy lock, the status its
// switch printed is the host's status (nobody else writes under the lock), so Status does
// not read again: a change made behind the lock's back is not seen until the lock is
// released; without the lock every Status reads the host.
func TestStatusKnownOnlyUnderTheLock(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1, testUser)
	tg := newTarget(t, hosts, ssh.Restart(""))
	ctx := context.Background()
	h := tg.Hosts()[0]
	for _, id := range []string{"r1", "r2"} {
		r := release(t, tg, id, writeTree(t, tree{"index.html": id}))
		if err := h.Prepare(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// Behind the target's back, r1 loses its metadata: it is no longer a kept release.
	behind := func() {
		os.Rename(filepath.Join(appDir(hosts[0]), ".pushdeploy", "releases", "r1.json"), filepath.Join(appDir(hosts[0]), "r1.json"))
	}
	kept := func() []string {
		t.Helper()
		st, err := h.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, k := range st.Kept {
			ids = append(ids, k.ID)
		}
		return ids
	}
	if err := h.Activate(ctx, "r2"); err != nil {
		t.Fatal(err)
	}
	behind()
	if got := kept(); len(got) != 1 || got[0] != "r2" {
		t.Fatalf("without the lock: kept %v, want [r2] (read from the host)", got)
	}
	os.Rename(filepath.Join(appDir(hosts[0]), "r1.json"), filepath.Join(appDir(hosts[0]), ".pushdeploy", "releases", "r1.json"))
	l := targets.Lock{Owner: "tester", Acquired: time.Now(), Expires: time.Now().Add(time.Hour)}
	if err := tg.Locker().Acquire(ctx, l); err != nil {
		t.Fatal(err)
	}
	if err := h.Activate(ctx, "r2"); err != nil {
		t.Fatal(err)
	}
	behind()
	if got := kept(); len(got) != 2 {
		t.Errorf("under the lock, after the switch: kept %v, want [r1 r2] (what the switch printed)", got)
	}
	if err := tg.Locker().Release(ctx, l); err != nil {
		t.Fatal(err)
	}
	if got := kept(); len(got) != 1 || got[0] != "r2" {
		t.Errorf("after the lock was released: kept %v, want [r2] (read from the host)", got)
	}
}
