package pipeline_test

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/pipeline"
)

// mountTiny mounts a tmpfs of 512 KiB at dir, owned by login (the hosts' user), and
// unmounts it when the test ends.
func mountTiny(t *testing.T, dir, login string) {
	t.Helper()
	u, err := user.Lookup(login)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=512k,mode=0755,uid=%s,gid=%s", u.Uid, u.Gid), "tmpfs", dir).CombinedOutput()
	if err != nil {
		if os.Getenv("PUSHDEPLOY_REQUIRE_BENCH") != "" {
			t.Fatalf("mounting a tmpfs at %s: %v: %s", dir, err, out)
		}
		t.Skipf("mounting a tmpfs at %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Logf("unmounting %s: %v: %s", dir, err, out)
		}
	})
}

// bigFiles makes an artifact directory with n MiB of random content in one file, and an
// index.html.
func bigFiles(t *testing.T, content string, n int) *pipeline.Artifact {
	t.Helper()
	a := writeFiles(t, content)
	b := make([]byte, n<<20)
	rand.Read(b)
	if err := os.WriteFile(filepath.Join(a.Dir, "data.bin"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return a
}

// Case 8: a host whose filesystem is full says so (it read `sftp: "Failure"`), and the
// deploy leaves every host on the release it ran.
func TestDiskFullSaysSo(t *testing.T) {
	f := newFleet(t, 2)
	mountTiny(t, f.appDir(1), f.hosts[1].User)
	file := f.file(t, "")
	if _, err := f.deploy(t, file, "one", writeFiles(t, "one"), nil); err != nil {
		t.Fatal(err)
	}
	rec, err := f.deploy(t, file, "two", bigFiles(t, "two", 2), nil)
	if err == nil {
		t.Fatal("a deploy to a full disk succeeded")
	}
	for _, want := range []string{f.hosts[1].Addr, "no space left", f.appDir(1)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "the filesystem") && !strings.Contains(err.Error(), "free") {
		t.Errorf("error %q", err)
	}
	t.Logf("outcome %q: %v", rec.Outcome, err)
	f.assertServes(t, "one")
}

// Case 8: a directory the login cannot write says "permission denied", naming it.
func TestUnwritableDirectorySaysSo(t *testing.T) {
	f := newFleet(t, 1)
	file := f.file(t, "")
	if _, err := f.deploy(t, file, "one", writeFiles(t, "one"), nil); err != nil {
		t.Fatal(err)
	}
	// The directory uploads are staged in, taken from the deploy user (root owns it now).
	staging := filepath.Join(f.appDir(0), ".pushdeploy", "staging")
	if err := os.MkdirAll(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(staging, 0, 0); err != nil {
		t.Fatal(err)
	}
	_, err := f.deploy(t, file, "two", bigFiles(t, "two", 1), nil)
	if err == nil {
		t.Fatal("a deploy into an unwritable directory succeeded")
	}
	for _, want := range []string{"permission denied on host " + f.hosts[0].Addr, `user "` + f.hosts[0].User + `" cannot write ` + staging} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	t.Logf("%v", err)
	f.assertServes(t, "one")
}
