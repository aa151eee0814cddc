package ssh

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
)

// The host's own check of what arrived: a staged file whose content is not what the
// manifest says (damaged on the way, or changed on the host) stops the release, and the
// error names the file. Staged files are made here directly, as no real transfer damages
// them.
func TestHostVerifiesStagedFiles(t *testing.T) {
	th := testbench.SSHHosts(t, 1, testbench.SSHUser("pdtest"))[0]
	dir := filepath.Join(th.Dir, "app")
	tg, err := New("app", "test", []HostConfig{{Addr: th.Addr, User: th.User, Path: dir}}, PrivateKey(th.ClientKey), KnownHosts(th.KnownHosts), ManifestCache(""))
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	art := t.TempDir()
	os.WriteFile(filepath.Join(art, "a.txt"), []byte("good"), 0o644)
	os.WriteFile(filepath.Join(art, "b.txt"), []byte("also good"), 0o644)
	m, err := BuildManifest(art)
	if err != nil {
		t.Fatal(err)
	}
	d := diffManifests(nil, m)
	st := filepath.Join(dir, ".pushdeploy", "staging", "r1")
	os.MkdirAll(st, 0o777)
	os.WriteFile(filepath.Join(st, "0"), []byte("good"), 0o666)
	os.WriteFile(filepath.Join(st, "1"), []byte("damaged"), 0o666)
	if out, err := exec.Command("chown", "-R", th.User, filepath.Join(th.Dir, "app")).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v: %s", err, out)
	}
	h := tg.hosts[0]
	_, err = h.script(context.Background(), h.verifyScript("r1", d, false))
	if err == nil {
		t.Fatal("verification passed a damaged file")
	}
	if msg := names(err, d.send).Error(); !strings.Contains(msg, `"b.txt": content differs`) || strings.Contains(msg, "a.txt") {
		t.Fatalf("verification error %q does not name b.txt alone", msg)
	}
	os.WriteFile(filepath.Join(st, "1"), []byte("also good"), 0o666)
	if _, err := h.script(context.Background(), h.verifyScript("r1", d, false)); err != nil {
		t.Fatalf("verification of good files: %v", err)
	}
}

// The same check of files uploaded straight into a release made from nothing (direct).
func TestHostVerifiesFilesInPlace(t *testing.T) {
	th := testbench.SSHHosts(t, 1, testbench.SSHUser("pdtest"))[0]
	dir := filepath.Join(th.Dir, "app")
	tg, err := New("app", "test", []HostConfig{{Addr: th.Addr, User: th.User, Path: dir}}, PrivateKey(th.ClientKey), KnownHosts(th.KnownHosts), ManifestCache(""))
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	art := t.TempDir()
	os.MkdirAll(filepath.Join(art, "-x"), 0o755)
	os.WriteFile(filepath.Join(art, "-x", "a b.txt"), []byte("good"), 0o600)
	os.WriteFile(filepath.Join(art, "b.txt"), []byte("also good"), 0o644)
	m, err := BuildManifest(art)
	if err != nil {
		t.Fatal(err)
	}
	d := diffManifests(nil, m)
	rel := filepath.Join(dir, "releases", "r1")
	os.MkdirAll(filepath.Join(rel, "-x"), 0o777)
	os.WriteFile(filepath.Join(rel, "-x", "a b.txt"), []byte("good"), 0o666)
	os.WriteFile(filepath.Join(rel, "b.txt"), []byte("damaged"), 0o666)
	if out, err := exec.Command("chown", "-R", th.User, dir).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v: %s", err, out)
	}
	h := tg.hosts[0]
	_, err = h.script(context.Background(), h.verifyScript("r1", d, true))
	if err == nil {
		t.Fatal("verification passed a damaged file")
	}
	if msg := names(err, d.send).Error(); !strings.Contains(msg, `"b.txt": content differs`) || strings.Contains(msg, "a b.txt") {
		t.Fatalf("verification error %q does not name b.txt alone", msg)
	}
	os.WriteFile(filepath.Join(rel, "b.txt"), []byte("also good"), 0o666)
	if _, err := h.script(context.Background(), h.verifyScript("r1", d, true)); err != nil {
		t.Fatalf("verification of good files: %v", err)
	}
	if st, err := os.Stat(filepath.Join(rel, "-x", "a b.txt")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mode of the verified file: %v, %v; want 0600", st.Mode(), err)
	}
}

// The check a large upload gets as it lands (streamVerifier): the host hashes each file
// named on its stdin; a damaged one fails it, named; a check of good files passes.
func TestStreamedCheckNamesADamagedFile(t *testing.T) {
	th := testbench.SSHHosts(t, 1, testbench.SSHUser("pdtest"))[0]
	dir := filepath.Join(th.Dir, "app")
	tg, err := New("app", "test", []HostConfig{{Addr: th.Addr, User: th.User, Path: dir}}, PrivateKey(th.ClientKey), KnownHosts(th.KnownHosts), ManifestCache(""))
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	art := t.TempDir()
	var names0 []string
	for i := 0; i < 40; i++ {
		n := fmt.Sprintf("f%02d with space", i)
		names0 = append(names0, n)
		os.WriteFile(filepath.Join(art, n), []byte(n), 0o644)
	}
	m, err := BuildManifest(art)
	if err != nil {
		t.Fatal(err)
	}
	d := diffManifests(nil, m)
	rel := filepath.Join(dir, "releases", "r1")
	os.MkdirAll(rel, 0o777)
	for _, n := range names0 {
		body := n
		if n == "f17 with space" {
			body = "damaged"
		}
		os.WriteFile(filepath.Join(rel, n), []byte(body), 0o666)
	}
	if out, err := exec.Command("chown", "-R", th.User, dir).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v: %s", err, out)
	}
	h := tg.hosts[0]
	check := func() error {
		v := h.newStreamVerifier(context.Background(), h.path+"/releases/r1", len(d.send))
		for _, e := range d.send {
			v.add(e.SHA256, e.Path)
		}
		return v.wait()
	}
	err = check()
	if err == nil {
		t.Fatal("the streamed check passed a damaged file")
	}
	if msg := names(err, d.send).Error(); !strings.Contains(msg, `"f17 with space": content differs`) || strings.Contains(msg, "f16") {
		t.Fatalf("check error %q does not name f17 alone", msg)
	}
	os.WriteFile(filepath.Join(rel, "f17 with space"), []byte("f17 with space"), 0o666)
	if err := check(); err != nil {
		t.Fatalf("streamed check of good files: %v", err)
	}
}
