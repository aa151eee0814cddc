package ssh_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/targets/ssh"
)

// bigTree has enough files for its manifest to be many chunks (a chunk ends after 1 file in
// 32), each file's modification time an hour ago (older than the racy window).
func bigTree(t *testing.T) (string, tree) {
	files := tree{}
	for i := 0; i < 300; i++ {
		files[fmt.Sprintf("d%d/f%03d", i%5, i)] = fmt.Sprintf("content %03d", i)
	}
	dir := writeTree(t, files)
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	for p := range files {
		if err := os.Chtimes(filepath.Join(dir, p), old, old); err != nil {
			t.Fatal(err)
		}
	}
	return dir, files
}

// liveBigTree makes one host whose live release r1 is bigTree, deployed by a machine that is
// gone: what the next deploy finds is the host's alone.
func liveBigTree(t *testing.T) ([]*testbench.SSHHost, string, tree) {
	t.Helper()
	hosts := testbench.SSHHosts(t, 1, testUser)
	dir, files := bigTree(t)
	first := newTarget(t, hosts)
	deploy(t, first, release(t, first, "r1", dir))
	first.Close()
	return hosts, dir, files
}

// rewrite gives the file at p new content and the modification time mt.
func rewrite(t *testing.T, dir, p, content string, mt time.Time) {
	t.Helper()
	fp := filepath.Join(dir, p)
	if err := os.WriteFile(fp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(fp, mt, mt); err != nil {
		t.Fatal(err)
	}
}

// manifestLine is path's line in the manifest of release id on h.
func manifestLine(t *testing.T, h *testbench.SSHHost, id, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(appDir(h), ".pushdeploy", "releases", id+".manifest"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, strconv.Quote(path)+" ") {
			return l
		}
	}
	t.Fatalf("release %s on %s has no manifest line for %q", id, h.Name, path)
	return ""
}

func treeDigest(t *testing.T, h *testbench.SSHHost, id string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(appDir(h), ".pushdeploy", "releases", id+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct{ Tree string }
	json.Unmarshal(b, &m)
	return m.Tree
}

func sent(tg *ssh.Target, i int) []string {
	up := tg.SSHHosts()[i].LastUpload()
	sort.Strings(up.Files)
	return up.Files
}

// A machine with no hash cache (ManifestCache("")) trusts, as rsync does, the files whose
// size and modification time are the live release's: a file touched with unchanged content
// is hashed and not sent, and the host records its new time; a file changed (content and
// time) is sent and verified. Its release manifest is the one a machine hashing every file
// (Checksum) makes of the same tree.
func TestFreshMachineTrustsSizeAndMtime(t *testing.T) {
	hosts, dir, files := liveBigTree(t)

	touched := time.Now().Add(-30 * time.Minute).Truncate(time.Second)
	rewrite(t, dir, "d1/f001", files["d1/f001"], touched) // same content, new time
	files["d2/f002"] = "changed 002"                      // same size, new content and time
	rewrite(t, dir, "d2/f002", files["d2/f002"], touched)
	fresh := newTarget(t, hosts, ssh.AwaitTrust())
	r2 := release(t, fresh, "r2", dir)
	deploy(t, fresh, r2)
	if got := sent(fresh, 0); !reflect.DeepEqual(got, []string{"d2/f002"}) {
		t.Fatalf("a fresh machine sent %v; want only the changed file", got)
	}
	assertCurrent(t, hosts[0], files)
	if l := manifestLine(t, hosts[0], "r2", "d1/f001"); !strings.HasSuffix(l, " "+strconv.FormatInt(touched.UnixNano(), 10)) {
		t.Errorf("the touched file's line is %q; want its new modification time", l)
	}

	// A machine hashing everything makes the same manifest and digest of this tree.
	full := newTarget(t, hosts, ssh.Checksum())
	r3 := release(t, full, "r3", dir)
	if r3.Digest != r2.Digest {
		t.Fatalf("digest with checksum %s, trusting %s; want the same", r3.Digest, r2.Digest)
	}
	deploy(t, full, r3)
	if got := sent(full, 0); len(got) != 0 {
		t.Fatalf("the same tree hashed whole sent %v; want nothing", got)
	}
	a, _ := os.ReadFile(filepath.Join(appDir(hosts[0]), ".pushdeploy", "releases", "r2.manifest"))
	b, _ := os.ReadFile(filepath.Join(appDir(hosts[0]), ".pushdeploy", "releases", "r3.manifest"))
	if string(a) != string(b) || len(a) == 0 {
		t.Fatalf("release manifests differ: trusting\n%s\nhashing every file\n%s", a, b)
	}
	if treeDigest(t, hosts[0], "r2") != treeDigest(t, hosts[0], "r3") {
		t.Fatal("the releases' tree digests differ")
	}
}

// The trade-off rsync's default check makes too: a file changed in place with its size kept
// and its modification time set back is not seen by a trusting machine (not sent; the host
// keeps the old content). With Checksum every file is hashed and it is sent.
func TestSameSizeAndMtimeIsTrustedUnlessChecksum(t *testing.T) {
	hosts, dir, files := liveBigTree(t)

	fp := filepath.Join(dir, "d3/f003")
	st, _ := os.Stat(fp)
	rewrite(t, dir, "d3/f003", "CONTENT 003", st.ModTime()) // same size, same time
	fresh := newTarget(t, hosts, ssh.AwaitTrust())
	deploy(t, fresh, release(t, fresh, "r2", dir))
	if got := sent(fresh, 0); len(got) != 0 {
		t.Fatalf("trusting size and mtime sent %v; want nothing (the rsync-like trade-off)", got)
	}
	assertCurrent(t, hosts[0], files) // the old content
	fresh.Close()

	full := newTarget(t, hosts, ssh.Checksum())
	deploy(t, full, release(t, full, "r3", dir))
	if got := sent(full, 0); !reflect.DeepEqual(got, []string{"d3/f003"}) {
		t.Fatalf("with checksum sent %v; want the changed file", got)
	}
	files["d3/f003"] = "CONTENT 003"
	assertCurrent(t, hosts[0], files)
}

// Trust comes from the first host; a host whose live release differs gets the trusted
// chunks' lines hashed here when it lacks them, and every host ends with the same release.
// A trusted file whose content differs from the first host's (same size and time) is found
// then, and the deploy to that host fails, saying what to do, before anything is sent.
func TestTrustFromTheFirstHostWithAnotherLiveOnTheSecond(t *testing.T) {
	hosts := testbench.SSHHosts(t, 2, testUser)
	dir, files := bigTree(t)
	old := writeTree(t, tree{"only": "the second host's live release"})
	a := newTarget(t, hosts[:1])
	deploy(t, a, release(t, a, "r1", dir))
	b := newTarget(t, hosts[1:])
	deploy(t, b, release(t, b, "r0", old))

	rewrite(t, dir, "d4/f004", "changed 004", time.Now().Add(-10*time.Minute))
	files["d4/f004"] = "changed 004"
	both := newTarget(t, hosts, ssh.AwaitTrust())
	deploy(t, both, release(t, both, "r2", dir))
	assertCurrent(t, hosts[0], files)
	assertCurrent(t, hosts[1], files)
	if got := sent(both, 0); !reflect.DeepEqual(got, []string{"d4/f004"}) {
		t.Fatalf("the first host was sent %v; want the changed file", got)
	}
	if got := sent(both, 1); len(got) != len(files) {
		t.Fatalf("the second host was sent %d files; want all %d", len(got), len(files))
	}
	if treeDigest(t, hosts[0], "r2") != treeDigest(t, hosts[1], "r2") {
		t.Fatal("the hosts' r2 differ")
	}

	// Now the first host's r2 is live on both; the second goes back to r0, and a file
	// changes with its size and time kept.
	if err := both.Hosts()[1].Activate(context.Background(), "r0"); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Join(dir, "d0/f000"))
	rewrite(t, dir, "d0/f000", "CONTENT 000", st.ModTime())
	again := newTarget(t, hosts, ssh.AwaitTrust())
	r3 := release(t, again, "r3", dir)
	if err := again.Hosts()[1].Prepare(context.Background(), r3); err == nil || !strings.Contains(err.Error(), "checksum") || !strings.Contains(err.Error(), "other content") {
		t.Fatalf("prepare on a host that shows the trusted file differs = %v; want an error naming checksum", err)
	}
}
