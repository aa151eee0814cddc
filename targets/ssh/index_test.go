package ssh_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
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
	hosts, dir, files := liveBigTree(t)

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

// rewriteIndex replaces the lines of release id's chunk index on h with fn's, keeping its
// header's manifest sum and giving it the sum of the new lines, as a writer that got them
// wrong would.
func rewriteIndex(t *testing.T, h *testbench.SSHHost, id string, fn func(lines []string) []string) {
	t.Helper()
	b, err := os.ReadFile(indexFile(h, id))
	if err != nil {
		t.Fatal(err)
	}
	hdr, body, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(hdr)
	lines := fn(strings.Split(strings.TrimSuffix(body, "\n"), "\n"))
	body = strings.Join(lines, "\n") + "\n"
	sum := sha256.Sum256([]byte(body))
	f[len(f)-1] = hex.EncodeToString(sum[:])
	if err := os.WriteFile(indexFile(h, id), []byte(strings.Join(f, " ")+"\n"+body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The index is used only when it is whole and made from the live manifest's text; else a
// fresh machine is told what cutting the manifest tells (an index missing, or another
// manifest's), or trusts nothing and hashes every file (an index damaged). Each way it
// sends only the changed file.
func TestChunkIndexMissingStaleOrDamaged(t *testing.T) {
	for _, c := range []struct {
		name   string
		spoil  func(t *testing.T, h *testbench.SSHHost)
		trusts bool
	}{
		{"missing", func(t *testing.T, h *testbench.SSHHost) { os.Remove(indexFile(h, "r1")) }, true},
		{"of another manifest", func(t *testing.T, h *testbench.SSHHost) {
			b, _ := os.ReadFile(indexFile(h, "r0"))
			os.WriteFile(indexFile(h, "r1"), b, 0o644)
		}, true},
		{"damaged", func(t *testing.T, h *testbench.SSHHost) {
			b, _ := os.ReadFile(indexFile(h, "r1"))
			i := bytes.IndexByte(b, '\n') + 1
			b[i] ^= 1 // a chunk sum's first digit
			os.WriteFile(indexFile(h, "r1"), b, 0o644)
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			hosts := testbench.SSHHosts(t, 1, testUser)
			dir, files := bigTree(t)
			first := newTarget(t, hosts)
			deploy(t, first, release(t, first, "r0", writeTree(t, tree{"a": "an older release"})))
			deploy(t, first, release(t, first, "r1", dir))
			first.Close()
			c.spoil(t, hosts[0])

			fresh := newTarget(t, hosts, ssh.AwaitTrust())
			told, err := ssh.LiveChunks(fresh)
			if c.trusts && (err != nil || len(told) < 2) {
				t.Fatalf("the host told %v, %v; want the live manifest's chunks", told, err)
			}
			if !c.trusts && (err == nil || len(told) != 0) {
				t.Fatalf("the host told %v, %v; want nothing trusted, and why", told, err)
			}
			rewrite(t, dir, "d2/f002", "changed 002", time.Now().Add(-30*time.Minute))
			files["d2/f002"] = "changed 002"
			deploy(t, fresh, release(t, fresh, "r2", dir))
			if got := sent(fresh, 0); !reflect.DeepEqual(got, []string{"d2/f002"}) {
				t.Fatalf("a fresh machine sent %v; want only the changed file", got)
			}
			assertCurrent(t, hosts[0], files)
		})
	}
}

// An index whose lines are wrong though whole (a writer's bug: it says the chunk of a file
// that changed has the stat lines the file has now) never makes the changed file be taken as
// unchanged: the host finds the manifest it would write is not this tree's, and the deploy
// fails before anything is live. With checksum, the same deploy goes through.
func TestWrongChunkIndexNeverSkipsAChangedFile(t *testing.T) {
	hosts, dir, files := liveBigTree(t)

	// The file changes in content and time; the index is made to say its chunk has the new
	// time, with the old content's sum.
	mt := time.Now().Add(-30 * time.Minute).Truncate(time.Second)
	rewrite(t, dir, "d2/f002", "changed 002", mt)
	mf, err := os.ReadFile(filepath.Join(appDir(hosts[0]), ".pushdeploy", "releases", "r1.manifest"))
	if err != nil {
		t.Fatal(err)
	}
	var chunk []string // the stat lines of the changed file's chunk, as they are now
	var found bool
	for _, l := range strings.Split(strings.TrimSuffix(string(mf), "\n"), "\n") {
		f := strings.Split(l, " ")
		if f[0] == strconv.Quote("d2/f002") {
			f[5], found = strconv.FormatInt(mt.UnixNano(), 10), true
		}
		chunk = append(chunk, strings.Join([]string{f[0], f[1], f[2], f[5], f[4]}, " "))
		if strings.HasPrefix(f[3], "0") && f[3][1] >= '0' && f[3][1] <= '7' { // a chunk ends
			if found {
				break
			}
			chunk = nil
		}
	}
	st := sha256.Sum256([]byte(strings.Join(chunk, "\n") + "\n"))
	rewriteIndex(t, hosts[0], "r1", func(lines []string) []string {
		for i, l := range lines {
			f := strings.Split(l, " ")
			if f[2] == strings.Split(chunk[len(chunk)-1], " ")[0] {
				f[1] = hex.EncodeToString(st[:])[:16]
				lines[i] = strings.Join(f, " ")
			}
		}
		return lines
	})

	fresh := newTarget(t, hosts, ssh.AwaitTrust())
	r2 := release(t, fresh, "r2", dir)
	err = fresh.Hosts()[0].Prepare(context.Background(), r2)
	if err == nil || !strings.Contains(err.Error(), "differs from the local one") {
		t.Fatalf("prepare with a wrong index = %v (sent %v); want the host to refuse the manifest", err, sent(fresh, 0))
	}
	assertCurrent(t, hosts[0], files) // r1, untouched

	full := newTarget(t, hosts, ssh.Checksum())
	deploy(t, full, release(t, full, "r3", dir))
	if got := sent(full, 0); !reflect.DeepEqual(got, []string{"d2/f002"}) {
		t.Fatalf("with checksum sent %v; want the changed file", got)
	}
	files["d2/f002"] = "changed 002"
	assertCurrent(t, hosts[0], files)
}
