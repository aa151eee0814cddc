package ssh_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
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
