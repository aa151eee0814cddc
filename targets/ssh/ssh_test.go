package ssh_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/ssh"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// The bench's hosts share this machine's file system: what a host holds is read directly
// from its directory, independently of the code under test.

func appDir(h *testbench.SSHHost) string { return filepath.Join(h.Dir, "myapp") }

func newTarget(t *testing.T, hosts []*testbench.SSHHost, opts ...ssh.Option) *ssh.Target {
	t.Helper()
	var hc []ssh.HostConfig
	for _, h := range hosts {
		hc = append(hc, ssh.HostConfig{Addr: h.Addr, User: h.User, Path: appDir(h)})
	}
	base := []ssh.Option{
		ssh.PrivateKey(hosts[0].ClientKey), ssh.KnownHosts(testbench.KnownHostsOf(hosts)), ssh.ManifestCache(""),
		// The restart command leaves a trace: which release each restart saw, in order.
		ssh.Restart(`echo "$PUSHDEPLOY_RELEASE $(basename "$(pwd -P)")" >> "$PUSHDEPLOY_PATH/restarts"`),
	}
	tg, err := ssh.New("myapp", "test", hc, append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	return tg
}

// tree is a file tree: path -> content; "->target" makes a symlink, a trailing "/" a
// directory; a mode prefix "0755:" sets a file's mode.
type tree map[string]string

func writeTree(t *testing.T, files tree) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		fp := filepath.Join(dir, p)
		if strings.HasSuffix(p, "/") {
			os.MkdirAll(fp, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(fp), 0o755)
		if target, ok := strings.CutPrefix(c, "->"); ok {
			if err := os.Symlink(target, fp); err != nil {
				t.Fatal(err)
			}
			continue
		}
		mode := os.FileMode(0o644)
		if len(c) > 5 && c[0] == '0' && c[4] == ':' {
			var m uint32
			fmt.Sscanf(c[:4], "%o", &m)
			mode, c = os.FileMode(m), c[5:]
		}
		if err := os.WriteFile(fp, []byte(c), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(fp, mode)
	}
	return dir
}

// readTree reads dir back in writeTree's notation (directories left out).
func readTree(t *testing.T, dir string) tree {
	t.Helper()
	got := tree{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, _ := d.Info()
		switch {
		case rel == ".":
		case d.Type()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			got[rel] = "->" + l
		case d.IsDir():
		default:
			b, _ := os.ReadFile(p)
			c := string(b)
			if info.Mode().Perm() != 0o644 {
				c = fmt.Sprintf("%04o:%s", info.Mode().Perm(), c)
			}
			got[rel] = c
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// assertCurrent checks what path/current serves on h.
func assertCurrent(t *testing.T, h *testbench.SSHHost, want tree) {
	t.Helper()
	cur := filepath.Join(appDir(h), "current")
	if want == nil {
		if _, err := os.Lstat(cur); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s: current exists (%v); want none", h.Name, err)
		}
		return
	}
	target, err := filepath.EvalSymlinks(cur)
	if err != nil {
		t.Fatalf("%s: current: %v", h.Name, err)
	}
	if got := readTree(t, target); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: current serves\n%v\nwant\n%v", h.Name, got, want)
	}
}

func restarts(t *testing.T, h *testbench.SSHHost) []string {
	b, _ := os.ReadFile(filepath.Join(appDir(h), "restarts"))
	if len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func release(t *testing.T, tg *ssh.Target, id, dir string) targets.Release {
	t.Helper()
	d, err := tg.ArtifactDigest(dir)
	if err != nil {
		t.Fatal(err)
	}
	return targets.Release{ID: id, App: "myapp", Env: "test", Version: "v-" + id, Digest: d, Artifacts: dir, Deployer: "tester"}
}

func deploy(t *testing.T, tg *ssh.Target, r targets.Release) {
	t.Helper()
	ctx := context.Background()
	for _, h := range tg.Hosts() {
		if err := h.Prepare(ctx, r); err != nil {
			t.Fatalf("prepare %s on %s: %v", r.ID, h.Name(), err)
		}
		if err := h.Activate(ctx, r.ID); err != nil {
			t.Fatalf("activate %s on %s: %v", r.ID, h.Name(), err)
		}
	}
}

var v1 = tree{
	"index.html":         "<h1>v1</h1>",
	"app.js":             "console.log(1)",
	"bin/server":         "0755:#!/bin/sh\necho serving",
	"assets/logo.svg":    "<svg/>",
	"assets/style.css":   "body{}",
	"latest.js":          "->app.js",
	"assets/up":          "->../index.html",
	"with space/a b.txt": "spaces and 'quotes'",
}

func TestFirstDeployOnSeveralHosts(t *testing.T) {
	hosts := testbench.SSHHosts(t, 3, testUser)
	tg := newTarget(t, hosts)
	r := release(t, tg, "r1", writeTree(t, v1))
	deploy(t, tg, r)
	for i, h := range hosts {
		assertCurrent(t, h, v1)
		st, err := tg.Hosts()[i].Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Live == nil || st.Live.ID != "r1" || st.Live.Digest != r.Digest || st.Live.Version != "v-r1" || len(st.Kept) != 1 {
			t.Fatalf("%s: status %+v; want r1 live and kept", h.Name, st)
		}
		if got := restarts(t, h); !reflect.DeepEqual(got, []string{"r1 r1"}) {
			t.Fatalf("%s: restarts %q; want one restart seeing r1 in current", h.Name, got)
		}
		if up := tg.SSHHosts()[i].LastUpload(); len(up.Files) != 6 {
			t.Fatalf("%s: first deploy sent %v; want the 6 regular files", h.Name, up.Files)
		}
	}
}

func TestSecondDeploySendsOnlyWhatChanged(t *testing.T) {
	hosts := testbench.SSHHosts(t, 2, testUser)
	tg := newTarget(t, hosts)
	deploy(t, tg, release(t, tg, "r1", writeTree(t, v1)))

	v2 := tree{}
	for k, v := range v1 {
		v2[k] = v
	}
	v2["index.html"] = "<h1>v2</h1>"     // changed
	delete(v2, "assets/style.css")       // removed
	v2["assets/new.css"] = "p{}"         // added
	v2["app.js"] = "0600:console.log(1)" // mode only
	v2["latest.js"] = "->index.html"     // symlink retargeted
	deploy(t, tg, release(t, tg, "r2", writeTree(t, v2)))

	for i, h := range hosts {
		assertCurrent(t, h, v2)
		up := tg.SSHHosts()[i].LastUpload()
		sort.Strings(up.Files)
		if !reflect.DeepEqual(up.Files, []string{"assets/new.css", "index.html"}) || up.Bytes != int64(len("p{}")+len("<h1>v2</h1>")) {
			t.Fatalf("%s: second deploy sent %v (%d bytes); want only the new and the changed file", h.Name, up.Files, up.Bytes)
		}
		// The previous release is intact: no file it shares was written to.
		if got := readTree(t, filepath.Join(appDir(h), "releases", "r1")); !reflect.DeepEqual(got, v1) {
			t.Fatalf("%s: release r1 changed under the deploy of r2:\n%v", h.Name, got)
		}
		// Unchanged files are hard links of the previous release's.
		a, _ := os.Stat(filepath.Join(appDir(h), "releases", "r1", "assets", "logo.svg"))
		b, _ := os.Stat(filepath.Join(appDir(h), "releases", "r2", "assets", "logo.svg"))
		if a.Sys().(*syscall.Stat_t).Ino != b.Sys().(*syscall.Stat_t).Ino {
			t.Errorf("%s: an unchanged file is a copy, not a hard link", h.Name)
		}
	}

	// Rolling back is activating the previous release.
	if err := tg.Hosts()[0].Activate(context.Background(), "r1"); err != nil {
		t.Fatal(err)
	}
	assertCurrent(t, hosts[0], v1)
	assertCurrent(t, hosts[1], v2)
}

func TestRedeployIsIdempotent(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1, testUser)
	tg := newTarget(t, hosts)
	r := release(t, tg, "r1", writeTree(t, v1))
	deploy(t, tg, r)
	h := tg.SSHHosts()[0]
	// Preparing again sends nothing and keeps the live release.
	if err := h.Prepare(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if up := h.LastUpload(); len(up.Files) != 0 {
		t.Fatalf("second prepare of the same release sent %v", up.Files)
	}
	ch, err := h.Plan(context.Background(), r)
	if err != nil || !ch.Noop || ch.Live != "r1" {
		t.Fatalf("plan of the live release = %+v, %v; want a no-op", ch, err)
	}
	// The same content under a new id sends nothing either.
	r2 := release(t, tg, "r2", writeTree(t, v1))
	if err := h.Prepare(context.Background(), r2); err != nil {
		t.Fatal(err)
	}
	if up := h.LastUpload(); len(up.Files) != 0 {
		t.Fatalf("prepare of identical content sent %v", up.Files)
	}
	assertCurrent(t, hosts[0], v1)
}

func TestPlanChangesNothing(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1, testUser)
	tg := newTarget(t, hosts)
	h := tg.SSHHosts()[0]
	r1 := release(t, tg, "r1", writeTree(t, v1))
	ch, err := h.Plan(context.Background(), r1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Add) != 11 || ch.Live != "" || ch.Bytes == 0 {
		t.Fatalf("plan of a first deploy = %+v", ch)
	}
	if _, err := os.Stat(appDir(hosts[0])); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("plan created %s", appDir(hosts[0]))
	}
	deploy(t, tg, r1)
	before := readTree(t, appDir(hosts[0]))
	v2 := tree{"index.html": "<h1>v2</h1>", "app.js": "console.log(1)"}
	ch, err = h.Plan(context.Background(), release(t, tg, "r2", writeTree(t, v2)))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(ch.Remove)
	if ch.Live != "r1" || len(ch.Add) != 0 || !reflect.DeepEqual(ch.Update, []string{"index.html"}) || !reflect.DeepEqual(ch.Remove, []string{"assets", "bin", "latest.js", "with space"}) || ch.Bytes != int64(len(v2["index.html"])) {
		t.Fatalf("plan = %+v", ch)
	}
	if after := readTree(t, appDir(hosts[0])); !reflect.DeepEqual(before, after) {
		t.Fatal("plan changed the host")
	}
}

func TestHostKeyUnknownOrChanged(t *testing.T) {
	hosts := testbench.SSHHosts(t, 2, testUser)
	r := targets.Release{ID: "r1", App: "myapp", Env: "test", Digest: "any", Artifacts: writeTree(t, v1)}
	for _, c := range []struct {
		name, want string
		known      []byte
	}{
		{"unknown", "unknown", hosts[1].KnownHosts},
		{"changed", "CHANGED", []byte(strings.Replace(string(hosts[1].KnownHosts), fmt.Sprint(hosts[1].Port), fmt.Sprint(hosts[0].Port), 1))},
	} {
		t.Run(c.name, func(t *testing.T) {
			tg, err := ssh.New("myapp", "test", []ssh.HostConfig{{Addr: hosts[0].Addr, Path: appDir(hosts[0])}},
				ssh.PrivateKey(hosts[0].ClientKey), ssh.KnownHosts(c.known), ssh.ManifestCache(""))
			if err != nil {
				t.Fatal(err)
			}
			defer tg.Close()
			err = tg.Hosts()[0].Prepare(context.Background(), r)
			var he *sshconn.HostKeyError
			if !errors.As(err, &he) {
				t.Fatalf("prepare = %v; want a host key error", err)
			}
			for _, w := range []string{hosts[0].Addr, "ssh-ed25519", c.want} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if _, err := os.Stat(appDir(hosts[0])); !errors.Is(err, fs.ErrNotExist) {
				t.Fatal("the host was touched")
			}
		})
	}
}

func TestPathTraversalIsRefused(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1, testUser)
	tg := newTarget(t, hosts)
	deploy(t, tg, release(t, tg, "r1", writeTree(t, v1)))
	before := readTree(t, appDir(hosts[0]))
	for name, bad := range map[string]tree{
		"parent":        {"ok.txt": "x", "evil": "->../../../etc"},
		"absolute":      {"passwd": "->/etc/passwd"},
		"deep parent":   {"a/b/c": "->../../../x"},
		"through links": {"e": "->.", "l": "->e/.."},
		"link to link":  {"up": "->..", "x/y": "->../up/z"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := writeTree(t, bad)
			_, derr := tg.ArtifactDigest(dir)
			r := targets.Release{ID: "bad", App: "myapp", Env: "test", Digest: "sha256:bad", Artifacts: dir}
			err := tg.Hosts()[0].Prepare(context.Background(), r)
			if err == nil || derr == nil || !strings.Contains(err.Error(), "outside the release") {
				t.Fatalf("prepare = %v, digest error %v; want a refusal", err, derr)
			}
			if after := readTree(t, appDir(hosts[0])); !reflect.DeepEqual(before, after) {
				t.Fatal("the host was touched")
			}
		})
	}
	// Symlinks that stay inside are fine.
	dir := writeTree(t, tree{"a/b": "->../c", "c": "x", "d": "->a/b", "e": "->./a/../c"})
	if _, err := tg.ArtifactDigest(dir); err != nil {
		t.Fatalf("symlinks inside the tree refused: %v", err)
	}
}

func TestUnreachableHost(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1, testUser)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	tg, err := ssh.New("myapp", "test", []ssh.HostConfig{{Addr: hosts[0].Addr, Path: appDir(hosts[0])}, {Addr: dead, Path: "/tmp/nowhere"}},
		ssh.PrivateKey(hosts[0].ClientKey), ssh.KnownHosts(hosts[0].KnownHosts), ssh.ConnectTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	err = tg.Connect(context.Background())
	if err == nil || !strings.Contains(err.Error(), dead) || !strings.Contains(err.Error(), "unreachable") || strings.Contains(err.Error(), hosts[0].Addr) {
		t.Fatalf("connect = %v; want an error naming only %s", err, dead)
	}
	if _, err := tg.Hosts()[1].Status(context.Background()); err == nil || !strings.Contains(err.Error(), dead) {
		t.Fatalf("status of the dead host = %v", err)
	}
}

func TestKilledMidUploadKeepsTheLiveRelease(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1, testUser)
	h := hosts[0]
	tg := newTarget(t, hosts, ssh.Parallel(1))
	deploy(t, tg, release(t, tg, "r1", writeTree(t, v1)))

	big := tree{}
	for i := 0; i < 300; i++ {
		big[fmt.Sprintf("f/%03d.bin", i)] = strings.Repeat(fmt.Sprint(i), 20000)
	}
	r2 := release(t, tg, "r2", writeTree(t, big))
	errc := make(chan error, 1)
	go func() { errc <- tg.Hosts()[0].Prepare(context.Background(), r2) }()
	// Kill the server once the upload is under way: staged files appear.
	staging := filepath.Join(appDir(h), ".pushdeploy", "staging", "r2")
	for {
		if ents, _ := os.ReadDir(staging); len(ents) >= 3 {
			break
		}
		select {
		case err := <-errc:
			t.Fatalf("prepare ended before the kill: %v", err)
		case <-time.After(2 * time.Millisecond): // polling the host's directory
		}
	}
	h.Kill()
	if err := <-errc; err == nil {
		t.Fatal("prepare succeeded although sshd was killed")
	}
	assertCurrent(t, h, v1)
	if err := h.Restart(); err != nil {
		t.Fatal(err)
	}
	st, err := tg.Hosts()[0].Status(context.Background())
	if err != nil || st.Live == nil || st.Live.ID != "r1" || len(st.Kept) != 1 {
		t.Fatalf("status after the kill = %+v, %v; want r1 live and the only kept release", st, err)
	}
	// The rerun, under another id, leaves no trace of the interrupted one.
	deploy(t, tg, release(t, tg, "r3", r2.Artifacts))
	assertCurrent(t, h, big)
	for _, p := range []string{"releases/r2", ".pushdeploy/staging/r2"} {
		if _, err := os.Stat(filepath.Join(appDir(h), p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left behind", p)
		}
	}
}

func TestDiscardAndFirstDeployRollback(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1, testUser)
	tg := newTarget(t, hosts)
	h := tg.Hosts()[0]
	ctx := context.Background()
	r1 := release(t, tg, "r1", writeTree(t, v1))
	deploy(t, tg, r1)
	if err := h.Discard(ctx, "r1"); err == nil || !strings.Contains(err.Error(), "live") {
		t.Fatalf("discard of the live release = %v", err)
	}
	if err := h.Activate(ctx, ""); err != nil {
		t.Fatal(err)
	}
	assertCurrent(t, hosts[0], nil)
	if err := h.Discard(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(appDir(hosts[0]), "releases", "r1")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("discarded release still there")
	}
	if err := h.Activate(ctx, "r1"); err == nil || !strings.Contains(err.Error(), "not kept") {
		t.Fatalf("activate of a discarded release = %v", err)
	}
	st, err := h.Status(ctx)
	if err != nil || st.Live != nil || len(st.Kept) != 0 {
		t.Fatalf("status = %+v, %v", st, err)
	}
}

func TestSharedPaths(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1, testUser)
	tg := newTarget(t, hosts, ssh.Shared("storage", "var/log"), ssh.SharedFiles(".env"))
	a := appDir(hosts[0])
	deploy(t, tg, release(t, tg, "r1", writeTree(t, tree{"index.html": "1", "storage/seed": "from artifacts"})))
	if err := os.WriteFile(filepath.Join(a, "current", "storage", "upload"), []byte("user data"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(a, "shared", ".env"), []byte("X=1"), 0o600)
	deploy(t, tg, release(t, tg, "r2", writeTree(t, tree{"index.html": "2"})))
	for p, want := range map[string]string{"storage/upload": "user data", ".env": "X=1", "index.html": "2"} {
		if b, err := os.ReadFile(filepath.Join(a, "current", p)); err != nil || string(b) != want {
			t.Fatalf("current/%s = %q, %v; want %q", p, b, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(a, "current", "storage", "seed")); err == nil {
		t.Fatal("the artifacts' copy of a shared path was deployed")
	}
	if fi, err := os.Stat(filepath.Join(a, "shared", "var", "log")); err != nil || !fi.IsDir() {
		t.Fatalf("shared var/log not created: %v", err)
	}
}

func TestLock(t *testing.T) {
	hosts := testbench.SSHHosts(t, 2, testUser)
	tg := newTarget(t, hosts)
	lk := tg.Locker()
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)
	a := targets.Lock{Owner: "alice", PipelineID: "p1", Acquired: now, Expires: now.Add(time.Hour)}
	b := targets.Lock{Owner: "bob", PipelineID: "p2", Acquired: now, Expires: now.Add(time.Hour)}
	if err := lk.Acquire(ctx, a); err != nil {
		t.Fatal(err)
	}
	// The lock lives on the first host.
	if _, err := os.Stat(filepath.Join(appDir(hosts[0]), ".pushdeploy", "lock")); err != nil {
		t.Fatalf("lock not on the primary host: %v", err)
	}
	var held *targets.HeldError
	if err := lk.Acquire(ctx, b); !errors.As(err, &held) || held.Holder.Owner != "alice" || !strings.Contains(err.Error(), `"alice"`) {
		t.Fatalf("second acquire = %v; want held by alice", err)
	}
	if err := lk.Release(ctx, b); err != nil {
		t.Fatal(err)
	}
	if l, err := lk.Holder(ctx); err != nil || l == nil || l.Owner != "alice" {
		t.Fatalf("after someone else's release, holder = %+v, %v", l, err)
	}
	if err := lk.Release(ctx, a); err != nil {
		t.Fatal(err)
	}
	if l, err := lk.Holder(ctx); err != nil || l != nil {
		t.Fatalf("after release, holder = %+v, %v", l, err)
	}
	// An expired lock is taken over.
	old := targets.Lock{Owner: "crashed", Acquired: now.Add(-2 * time.Hour), Expires: now.Add(-time.Hour)}
	if err := lk.Acquire(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := lk.Acquire(ctx, b); err != nil {
		t.Fatalf("acquire over an expired lock: %v", err)
	}
	if err := lk.Break(ctx); err != nil {
		t.Fatal(err)
	}
	if l, _ := lk.Holder(ctx); l != nil {
		t.Fatalf("after break, holder = %+v", l)
	}

	// Several deploys racing for an expired lock: exactly one gets it.
	if err := lk.Acquire(ctx, old); err != nil {
		t.Fatal(err)
	}
	const n = 6
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			errs <- lk.Acquire(ctx, targets.Lock{Owner: fmt.Sprint("racer", i), Acquired: now, Expires: now.Add(time.Hour)})
		}()
	}
	won := 0
	for i := 0; i < n; i++ {
		err := <-errs
		switch {
		case err == nil:
			won++
		case !errors.As(err, &held):
			t.Fatalf("racing acquire: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d racers took the expired lock; want exactly 1", won)
	}
}

func TestJournalOnEveryHost(t *testing.T) {
	hosts := testbench.SSHHosts(t, 2, testUser)
	tg := newTarget(t, hosts)
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		if err := tg.Journal().Append(ctx, json.RawMessage(fmt.Sprintf(`{"n": %d, "outcome": "deployed"}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range hosts {
		b, err := os.ReadFile(filepath.Join(appDir(h), ".pushdeploy", "history.jsonl"))
		if err != nil || strings.Count(string(b), "\n") != 3 {
			t.Fatalf("%s: history %q, %v", h.Name, b, err)
		}
	}
	// A record the first host lacks (it was unreachable when the record was written) is
	// still in the history: every host's journal is read and merged.
	first := filepath.Join(appDir(hosts[0]), ".pushdeploy", "history.jsonl")
	if err := os.WriteFile(first, []byte(`{"n":1,"outcome":"deployed"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	recs, err := tg.Journal().Records(ctx, 10)
	if err != nil || len(recs) != 3 || string(recs[2]) != `{"n":3,"outcome":"deployed"}` {
		t.Fatalf("records with the first host missing two = %s, %v", recs, err)
	}
	hosts[0].Kill()
	recs, err = tg.Journal().Records(ctx, 2)
	if err != nil || len(recs) != 2 || string(recs[1]) != `{"n":3,"outcome":"deployed"}` {
		t.Fatalf("records with the first host down = %s, %v", recs, err)
	}
}

func TestRunWithEnv(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1, testUser)
	tg := newTarget(t, hosts)
	deploy(t, tg, release(t, tg, "r1", writeTree(t, v1)))
	out, err := tg.SSHHosts()[0].Run(context.Background(), `cat index.html; echo " $GREETING"`, map[string]string{"GREETING": "it's $me"})
	if err != nil || string(out) != "<h1>v1</h1> it's $me\n" {
		t.Fatalf("run = %q, %v", out, err)
	}
	_, err = tg.SSHHosts()[0].Run(context.Background(), "echo failing; exit 7", nil)
	if err == nil || !strings.Contains(err.Error(), "exit status 7") || !strings.Contains(err.Error(), "failing") {
		t.Fatalf("failing run = %v", err)
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	key := []byte("k")
	for name, c := range map[string]struct {
		hosts []ssh.HostConfig
		opts  []ssh.Option
		want  string
	}{
		"no hosts":       {nil, []ssh.Option{ssh.PrivateKey(key), ssh.KnownHosts(key)}, "no hosts"},
		"no key":         {[]ssh.HostConfig{{Addr: "a"}}, []ssh.Option{ssh.KnownHosts(key)}, "private key"},
		"no known_hosts": {[]ssh.HostConfig{{Addr: "a"}}, []ssh.Option{ssh.PrivateKey(key)}, "known_hosts"},
		"relative path":  {[]ssh.HostConfig{{Addr: "a"}}, []ssh.Option{ssh.PrivateKey(key), ssh.KnownHosts(key), ssh.Path("www")}, `"www"`},
		"shared escapes": {[]ssh.HostConfig{{Addr: "a"}}, []ssh.Option{ssh.PrivateKey(key), ssh.KnownHosts(key), ssh.Shared("../x")}, `"../x"`},
		"twice":          {[]ssh.HostConfig{{Addr: "a"}, {Addr: "a:22"}}, []ssh.Option{ssh.PrivateKey(key), ssh.KnownHosts(key)}, "twice"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ssh.New("myapp", "prod", c.hosts, c.opts...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New = %v; want an error saying %q", err, c.want)
			}
		})
	}
}

// testUser logs in a user whose shell is /bin/sh and who has no startup files: root's
// ~/.bashrc on a development machine can be slow or hang (pyenv init), and is no part of
// what is tested.
var testUser = testbench.SSHUser("pdtest")

// A deploy from a machine that never saw the live release (a fresh CI runner) rebuilds the
// live manifest from the host's chunks and still sends only what changed.
func TestDeltaFromAFreshMachine(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1, testUser)
	files := tree{}
	for i := 0; i < 400; i++ {
		files[fmt.Sprintf("d%d/f%03d", i%7, i)] = fmt.Sprint("content ", i)
	}
	first := newTarget(t, hosts)
	deploy(t, first, release(t, first, "r1", writeTree(t, files)))
	first.Close()

	files["d3/f100"] = "changed"
	delete(files, "d0/f000")
	files["new/file"] = "added"
	fresh := newTarget(t, hosts)
	deploy(t, fresh, release(t, fresh, "r2", writeTree(t, files)))
	up := fresh.SSHHosts()[0].LastUpload()
	sort.Strings(up.Files)
	if !reflect.DeepEqual(up.Files, []string{"d3/f100", "new/file"}) {
		t.Fatalf("a fresh machine sent %d files (%v...); want only the changed and the added one", len(up.Files), up.Files[:min(3, len(up.Files))])
	}
	assertCurrent(t, hosts[0], files)
}

func TestThroughJumpHost(t *testing.T) {
	hosts := testbench.SSHHosts(t, 2, testUser)
	bastion, h := hosts[0], hosts[1]
	tg, err := ssh.New("myapp", "test", []ssh.HostConfig{{Addr: h.Addr, Path: appDir(h)}},
		ssh.User(h.User), ssh.PrivateKey(h.ClientKey), ssh.KnownHosts(testbench.KnownHostsOf(hosts)), ssh.Jump(bastion.Addr), ssh.ManifestCache(""))
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	deploy(t, tg, release(t, tg, "r1", writeTree(t, v1)))
	assertCurrent(t, h, v1)
}

func TestArtifactsChangedAfterTheirDigest(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1, testUser)
	tg := newTarget(t, hosts)
	dir := writeTree(t, v1)
	r := release(t, tg, "r1", dir)
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("tampered"), 0o644)
	err := tg.Hosts()[0].Prepare(context.Background(), r)
	if err == nil || !strings.Contains(err.Error(), `"index.html"`) || !strings.Contains(err.Error(), "changed since") {
		t.Fatalf("prepare of changed artifacts = %v", err)
	}
	if st, err := tg.Hosts()[0].Status(context.Background()); err != nil || len(st.Kept) != 0 || st.Live != nil {
		t.Fatalf("status after the refused prepare = %+v, %v; want nothing kept", st, err)
	}
	// A digest taken afresh deploys what is there now.
	deploy(t, tg, release(t, tg, "r1", dir))
	want := tree{}
	for k, v := range v1 {
		want[k] = v
	}
	want["index.html"] = "tampered"
	assertCurrent(t, hosts[0], want)
}

func TestWrongKeyIsALoginError(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1, testUser)
	other := testbench.SSHHosts(t, 1, testUser)[0] // another client key
	tg, err := ssh.New("myapp", "test", []ssh.HostConfig{{Addr: hosts[0].Addr, User: hosts[0].User, Path: appDir(hosts[0])}},
		ssh.PrivateKey(other.ClientKey), ssh.KnownHosts(hosts[0].KnownHosts), ssh.ManifestCache(""))
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	_, err = tg.Hosts()[0].Status(context.Background())
	if err == nil || !strings.Contains(err.Error(), hosts[0].Addr) || !strings.Contains(err.Error(), "did not accept the key") || strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("status with a key the host does not accept = %v", err)
	}
}
