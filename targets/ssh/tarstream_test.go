package ssh_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/ssh"
)

// streamTree is a first release large enough to go as a stream (more than 16 files, 4 MB),
// over several batches, with names that need care (spaces, non-ASCII, a leading dash, a
// name longer than tar's 100 bytes), modes, an empty file, symlinks and an empty directory.
func streamTree(v string) tree {
	tr := tree{
		"index.html":                             v,
		"bin/run":                                "0755:#!/bin/sh\necho " + v,
		"secret/key":                             "0600:k" + v,
		"empty":                                  "",
		"a b/é ü/naïve file.txt":                 "unicode " + v,
		"-dash/x":                                "dash " + v,
		strings.Repeat("long/", 30) + "name.txt": "long " + v,
		"link":                                   "->index.html",
		"dirlink":                                "->bin",
	}
	for i := 0; i < 300; i++ {
		tr[fmt.Sprintf("d%d/f%03d.bin", i%4, i)] = strings.Repeat(v+fmt.Sprint(i), 30000/(len(v)+3))
	}
	return tr
}

// pathWith makes a directory whose programs, put first in a host's PATH (sshd's
// SetEnv), stand in for the real ones: name -> script.
func pathWith(t *testing.T, scripts map[string]string) testbench.SSHOption {
	dir, err := os.MkdirTemp("", "pdpath")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	for name, s := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+s), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return testbench.SSHSetEnv("PATH", dir+":/usr/local/bin:/usr/bin:/bin")
}

// pathWithout is a host PATH with every program of the usual directories but names (as on
// a host that lacks them).
func pathWithout(t *testing.T, names ...string) testbench.SSHOption {
	dir, err := os.MkdirTemp("", "pdpath")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	skip := map[string]bool{}
	for _, n := range names {
		skip[n] = true
	}
	for _, d := range []string{"/usr/local/bin", "/usr/bin", "/bin"} {
		es, _ := os.ReadDir(d)
		for _, e := range es {
			if !skip[e.Name()] {
				os.Symlink(filepath.Join(d, e.Name()), filepath.Join(dir, e.Name())) // the first one stays
			}
		}
	}
	return testbench.SSHSetEnv("PATH", dir)
}

// noGNUTar is a host PATH whose tar is not GNU tar (as on a busybox host).
func noGNUTar(t *testing.T) testbench.SSHOption {
	return pathWith(t, map[string]string{"tar": "echo 'tar: not GNU tar' >&2; exit 1\n"})
}

// fileState is what a deploy makes of each path: kind, mode, link target, content.
func fileState(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		s := info.Mode().String()
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			s += " -> " + l
		case info.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			s += " " + string(b)
		}
		got[rel] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// A large first release goes as one tar stream where the host has GNU tar (two sessions:
// the stream and the shell), zstd-framed and checked with b2sum, or gzip-framed and
// checked with sha256sum where it lacks them; over SFTP where it has no GNU tar (a session
// more: SFTP and the check beside it). All make the same tree, the same modes, links and
// directories, and files whose modification time is the upload's, not the deploying
// machine's (which the manifest records).
func TestFirstDeployStreamsAsSFTPWould(t *testing.T) {
	type host struct {
		name             string
		h                *testbench.SSHHost
		sessions         int
		zstd, b2sum, tar bool
	}
	start := func(opts ...testbench.SSHOption) *testbench.SSHHost {
		return testbench.SSHHosts(t, 1, append([]testbench.SSHOption{testUser, testbench.SSHLogSessions()}, opts...)...)[0]
	}
	hosts := []host{
		{"zstd", start(), 2, true, true, true},
		{"gzip", start(pathWithout(t, "zstd", "b2sum")), 2, false, false, true},
		{"sftp", start(noGNUTar(t)), 3, false, false, false},
	}
	files := streamTree("v1")
	src := writeTree(t, files)
	os.Mkdir(filepath.Join(src, "void"), 0o700) // an empty directory
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			os.Chtimes(p, old, old)
		}
		return nil
	})
	t0 := time.Now().Add(-2 * time.Second) // the file system's times may be coarse
	var first map[string]string
	for _, hh := range hosts {
		h := hh.h
		tg := newTarget(t, []*testbench.SSHHost{h}, ssh.Restart(""))
		before := h.Sessions()
		deploy(t, tg, release(t, tg, "r1", src))
		if n := h.Sessions() - before; n != hh.sessions {
			t.Errorf("%s: the deploy opened %d sessions; want %d", hh.name, n, hh.sessions)
		}
		out, err := tg.Hosts()[0].(targets.Commander).Run(context.Background(), ssh.TarProbe, nil)
		if err != nil {
			t.Fatal(err)
		}
		if zstd, b2sum, ok := ssh.ParseTarProbe(out); zstd != hh.zstd || b2sum != hh.b2sum || ok != hh.tar {
			t.Errorf("%s: the host has GNU tar %v, zstd %v, b2sum %v; want %v, %v, %v", hh.name, ok, zstd, b2sum, hh.tar, hh.zstd, hh.b2sum)
		}
		tg.Close()
		assertServes(t, h, files)
		cur, err := filepath.EvalSymlinks(filepath.Join(appDir(h), "current"))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"index.html", "d1/f001.bin", "a b/é ü/naïve file.txt"} {
			st, err := os.Stat(filepath.Join(cur, p))
			if err != nil {
				t.Fatal(err)
			}
			if st.ModTime().Before(t0) {
				t.Errorf("%s: %q has modification time %v; want the upload's", hh.name, p, st.ModTime())
			}
		}
		state := fileState(t, cur)
		if got := state["void"]; !strings.HasPrefix(got, "drwx------") {
			t.Errorf("%s: the empty directory: %q; want drwx------", hh.name, got)
		}
		if first == nil {
			first = state
			continue
		}
		for p := range first {
			if first[p] != state[p] {
				t.Errorf("%q: %s %.60q, %s %.60q", p, hosts[0].name, first[p], hh.name, state[p])
			}
		}
		for p := range state {
			if _, ok := first[p]; !ok {
				t.Errorf("%q: %s has it, %s not", p, hh.name, hosts[0].name)
			}
		}
	}
}

// What lands on the host is checked against the manifest: a host whose tar writes one
// file wrong (as a faulty disk or a meddling program would: here a filter before tar
// changes a byte of its content) fails the deploy, which names that file alone, and
// nothing is kept or live.
func TestStreamRefusesWhatLandedDamaged(t *testing.T) {
	real, err := exec.LookPath("tar")
	if err != nil {
		t.Fatal(err)
	}
	// d1/f017.bin alone holds "v117v117".
	damage := fmt.Sprintf("case $1 in -x*) sed 's/v117v117/v117v11X/' | %s \"$@\"; exit ;; esac\nexec %s \"$@\"\n", real, real)
	h := testbench.SSHHosts(t, 1, testUser, pathWith(t, map[string]string{"tar": damage}))[0]
	tg := newTarget(t, []*testbench.SSHHost{h})
	err = tg.Hosts()[0].Prepare(context.Background(), release(t, tg, "r1", writeTree(t, streamTree("v1"))))
	if err == nil {
		t.Fatal("a release with a damaged file was prepared")
	}
	if msg := err.Error(); !strings.Contains(msg, `"d1/f017.bin": content differs`) || strings.Contains(msg, "f016") || strings.Contains(msg, "f018") {
		t.Fatalf("prepare = %v; want d1/f017.bin named alone", err)
	}
	st, err := tg.Hosts()[0].Status(context.Background())
	if err != nil || st.Live != nil || len(st.Kept) != 0 {
		t.Fatalf("status after the refused prepare = %+v, %v; want nothing kept or live", st, err)
	}
	assertCurrent(t, h, nil)
}

// A host whose tar fails fails the deploy with tar's complaint, and nothing is kept.
func TestStreamReportsTheHostsTar(t *testing.T) {
	real, err := exec.LookPath("tar")
	if err != nil {
		t.Fatal(err)
	}
	broken := fmt.Sprintf("case $1 in -x*) echo 'tar: the disk is on fire' >&2; exit 2 ;; esac\nexec %s \"$@\"\n", real)
	h := testbench.SSHHosts(t, 1, testUser, pathWith(t, map[string]string{"tar": broken}))[0]
	tg := newTarget(t, []*testbench.SSHHost{h})
	err = tg.Hosts()[0].Prepare(context.Background(), release(t, tg, "r1", writeTree(t, streamTree("v1"))))
	if err == nil || !strings.Contains(err.Error(), "the disk is on fire") || !strings.Contains(err.Error(), h.Addr) {
		t.Fatalf("prepare with a failing tar = %v; want its complaint, naming the host", err)
	}
	st, err := tg.Hosts()[0].Status(context.Background())
	if err != nil || st.Live != nil || len(st.Kept) != 0 {
		t.Fatalf("status after the failed prepare = %+v, %v; want nothing kept or live", st, err)
	}
}

// A file that changed after the artifacts' digest was taken is refused as it is read for
// the stream, named; nothing is kept; a digest taken afresh deploys what is there now.
func TestStreamRefusesFileChangedAfterDigest(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1, testUser)
	tg := newTarget(t, hosts)
	files := streamTree("v1")
	dir := writeTree(t, files)
	r := release(t, tg, "r1", dir)
	changed := strings.Repeat("X", len(files["d2/f150.bin"]))
	os.WriteFile(filepath.Join(dir, "d2", "f150.bin"), []byte(changed), 0o644)
	err := tg.Hosts()[0].Prepare(context.Background(), r)
	if err == nil || !strings.Contains(err.Error(), `"d2/f150.bin"`) || !strings.Contains(err.Error(), "changed since") {
		t.Fatalf("prepare of changed artifacts = %v", err)
	}
	if st, err := tg.Hosts()[0].Status(context.Background()); err != nil || len(st.Kept) != 0 || st.Live != nil {
		t.Fatalf("status after the refused prepare = %+v, %v; want nothing kept", st, err)
	}
	deploy(t, tg, release(t, tg, "r1", dir))
	files["d2/f150.bin"] = changed
	assertServes(t, hosts[0], files)
}

// cancelOnBytes cancels its context at the first report of bytes sent.
type cancelOnBytes struct {
	once   sync.Once
	cancel context.CancelFunc
}

func (c *cancelOnBytes) Upload(host string, t targets.Transfer) {
	if t.Bytes > 0 {
		c.once.Do(c.cancel)
	}
}

// A deploy cancelled while its stream goes out fails with the cancellation, leaves nothing
// kept or live, and the next deploy goes through.
func TestCancelledStreamLeavesNothingLive(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1, testUser)
	tg := newTarget(t, hosts)
	files := streamTree("v1")
	r := release(t, tg, "r1", writeTree(t, files))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := tg.Hosts()[0].Prepare(targets.WithProgress(ctx, &cancelOnBytes{cancel: cancel}), r)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled prepare = %v; want context.Canceled", err)
	}
	st, err := tg.Hosts()[0].Status(context.Background())
	if err != nil || st.Live != nil || len(st.Kept) != 0 {
		t.Fatalf("status after the cancelled prepare = %+v, %v; want nothing kept or live", st, err)
	}
	assertCurrent(t, hosts[0], nil)
	deploy(t, tg, r)
	assertServes(t, hosts[0], files)
}

// assertServes is assertCurrent for large trees: it names the paths that differ.
func assertServes(t *testing.T, h *testbench.SSHHost, want tree) {
	t.Helper()
	target, err := filepath.EvalSymlinks(filepath.Join(appDir(h), "current"))
	if err != nil {
		t.Fatalf("%s: current: %v", h.Name, err)
	}
	got := readTree(t, target)
	short := func(s string) string { return s[:min(len(s), 40)] }
	for p, w := range want {
		if g, ok := got[p]; !ok || g != w {
			t.Errorf("%s: %q is %q (%d bytes, there: %v); want %q (%d bytes)", h.Name, p, short(g), len(g), ok, short(w), len(w))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: %q is there; want none", h.Name, p)
		}
	}
}

// Modes beyond the permission bits (setuid, setgid), which the stream leaves to a chmod
// after it, come out as they are here; the others as tar gives them.
func TestStreamKeepsSpecialModes(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1, testUser)
	tg := newTarget(t, hosts)
	files := streamTree("v1")
	src := writeTree(t, files)
	os.Chmod(filepath.Join(src, "bin", "run"), fs.ModeSetuid|fs.ModeSetgid|0o755)
	deploy(t, tg, release(t, tg, "r1", src))
	cur := filepath.Join(appDir(hosts[0]), "current")
	for p, want := range map[string]fs.FileMode{"bin/run": fs.ModeSetuid | fs.ModeSetgid | 0o755, "secret/key": 0o600, "index.html": 0o644} {
		st, err := os.Stat(filepath.Join(cur, p))
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky); got != want {
			t.Errorf("%q: mode %v; want %v", p, got, want)
		}
	}
}
