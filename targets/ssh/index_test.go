package ssh_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/targets/ssh"
)

func indexFile(h *testbench.SSHHost, id string) string {
	return filepath.Join(appDir(h), ".pushdeploy", "releases", id+".chunks")
}

// Each release's manifest is written with its chunk index, and what a fresh machine is told
// from it is what cutting the manifest on the host tells (the answer for a release without
// an index, as an older pushdeploy made): for a release deployed whole and for one deployed
// trusting most of its chunks (whose index is made of lines this machine did not hash).
func TestChunkIndexIsWhatCuttingTheManifestGives(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1, testUser)
	dir, files := bigTree(t)
	first := newTarget(t, hosts)
	deploy(t, first, release(t, first, "r1", dir))
	first.Close()

	check := func(id string) []string {
		t.Helper()
		if _, err := os.Stat(indexFile(hosts[0], id)); err != nil {
			t.Fatalf("release %s has no chunk index: %v", id, err)
		}
		tg := newTarget(t, hosts)
		fromIndex, err := ssh.LiveChunks(tg)
		if err != nil || len(fromIndex) < 2 {
			t.Fatalf("chunks from the index of %s: %v, %v; want several", id, fromIndex, err)
		}
		saved, _ := os.ReadFile(indexFile(hosts[0], id))
		os.Remove(indexFile(hosts[0], id))
		cut, err := ssh.LiveChunks(tg)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fromIndex, cut) {
			t.Fatalf("release %s: the index tells\n%v\ncutting the manifest tells\n%v", id, fromIndex, cut)
		}
		os.WriteFile(indexFile(hosts[0], id), saved, 0o644)
		return fromIndex
	}
	check("r1")

	rewrite(t, dir, "d2/f002", "changed 002", time.Now().Add(-30*time.Minute))
	files["d2/f002"] = "changed 002"
	fresh := newTarget(t, hosts, ssh.AwaitTrust())
	deploy(t, fresh, release(t, fresh, "r2", dir))
	if got := sent(fresh, 0); !reflect.DeepEqual(got, []string{"d2/f002"}) {
		t.Fatalf("a fresh machine sent %v; want only the changed file", got)
	}
	check("r2")
	assertCurrent(t, hosts[0], files)
}
