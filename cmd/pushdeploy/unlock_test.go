package main

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/docker"
	"github.com/pushdeploy/pushdeploy/targets/hoststate"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// Issue 11, case 3: `pushdeploy unlock` refuses a live lock, naming who holds it and until
// when, and exits non-zero; `unlock --force` breaks it.
func TestUnlockRefusesLiveLockUnlessForce(t *testing.T) {
	h := testbench.SSHHosts(t, 1, testbench.SSHUser("pdtest"))[0]
	app := fmt.Sprintf("cli-unlock-%d", os.Getpid())
	u, err := user.Lookup(h.User)
	if err != nil {
		t.Fatal(err)
	}
	// The docker target's state directory is relative to the login's home by default.
	state := filepath.Join(u.HomeDir, docker.DefaultStateDir, app+"-staging")
	uid, _ := strconv.Atoi(u.Uid)
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	for _, d := range []string{filepath.Dir(state), state} {
		if err := os.Chown(d, uid, -1); err != nil {
			t.Fatal(err)
		}
	}
	// alice's deploy holds the lock for ten more minutes.
	ctx := context.Background()
	dial := func(ctx context.Context) (*sshconn.Client, error) {
		return sshconn.Dial(ctx, h.Addr, sshconn.PrivateKey(h.ClientKey), sshconn.KnownHosts(h.KnownHosts), sshconn.User(h.User))
	}
	f, err := hoststate.New(dial, state, "test")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	if err := f.Acquire(ctx, targets.Lock{Owner: "alice@ci", PipelineID: "run-7", Acquired: now, Expires: now.Add(10 * time.Minute)}); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	key, kh := filepath.Join(dir, "key"), filepath.Join(dir, "known_hosts")
	os.WriteFile(key, h.ClientKey, 0o600)
	os.WriteFile(kh, h.KnownHosts, 0o644)
	t.Chdir(dir)
	args := []string{"--env", "staging", "--app", app, "--kind", "docker", "--hosts", h.Addr, "--user", h.User,
		"--ssh-key", "file:" + key, "--known-hosts", "file:" + kh}
	_, err = run(t, append([]string{"unlock"}, args...)...)
	if err == nil {
		t.Fatal("unlock of a live lock succeeded without --force")
	}
	for _, want := range []string{`"alice@ci"`, `"run-7"`, now.Add(10 * time.Minute).Format(time.RFC3339), "--force"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %s", err, want)
		}
	}
	if l, err := f.Holder(ctx); err != nil || l == nil || l.Owner != "alice@ci" {
		t.Fatalf("lock after the refused unlock: %+v, %v; want alice's", l, err)
	}
	out, err := run(t, append([]string{"unlock", "--force"}, args...)...)
	if err != nil || !strings.Contains(out, `staging unlocked; it was held by "alice@ci"`) {
		t.Fatalf("unlock --force: %v\n%s", err, out)
	}
	if l, err := f.Holder(ctx); err != nil || l != nil {
		t.Fatalf("lock after unlock --force: %+v, %v; want none", l, err)
	}
}
