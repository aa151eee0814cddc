package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
)

func checkReport(t *testing.T, args ...string) (*pipeline.CheckReport, int) {
	t.Helper()
	stdout, stderr, err := runSplit(t, append([]string{"check", "-o", "json"}, args...)...)
	var rep pipeline.CheckReport
	if jerr := json.Unmarshal([]byte(stdout), &rep); jerr != nil {
		t.Fatalf("check -o json: %v (%v)\nstdout %q\nstderr %q", jerr, err, stdout, stderr)
	}
	return &rep, pipeline.ExitCode(err)
}

func item(t *testing.T, rep *pipeline.CheckReport, name string) pipeline.CheckItem {
	t.Helper()
	for _, c := range rep.Hosts[0].Checks {
		if c.Check == name {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", name, rep.Hosts[0].Checks)
	return pipeline.CheckItem{}
}

// replaced is args with the value of flag set to v.
func replaced(args []string, flag, v string) []string {
	out := append([]string{}, args...)
	for i := range out {
		if out[i] == flag && i+1 < len(out) {
			out[i+1] = v
		}
	}
	return out
}

// TestCheckSSH: check on a real host: every check passes on a ready host, and each broken
// thing fails its own check with a non-zero exit, changing nothing.
func TestCheckSSH(t *testing.T) {
	e := newSSHEnv(t, "--restart", "sh -c true")
	e.args = replaced(e.args, "--user", e.h.User)
	rep, code := checkReport(t, e.args...)
	if code != pipeline.ExitOK || !rep.OK || rep.Kind != "ssh" || len(rep.Hosts) != 1 {
		t.Fatalf("a ready host: exit %d, %+v", code, rep)
	}
	for _, name := range []string{pipeline.CheckReachable, pipeline.CheckHostKey, pipeline.CheckLogin, pipeline.CheckPath, pipeline.CheckDisk, pipeline.CheckRestart} {
		if c := item(t, rep, name); !c.OK {
			t.Errorf("%s: %+v", name, c)
		}
	}
	if d := item(t, rep, pipeline.CheckDisk).Detail; !strings.Contains(d, "MiB free") {
		t.Errorf("free disk detail %q", d)
	}
	if _, err := os.Stat(filepath.Join(e.h.Dir, "app")); !os.IsNotExist(err) {
		t.Errorf("check created the deploy path: %v", err)
	}
	text, _, err := runSplit(t, append([]string{"check"}, e.args...)...)
	if err != nil || !strings.Contains(text, "restart program") || !strings.Contains(text, "staging: ready to deploy") {
		t.Errorf("check table: %v\n%s", err, text)
	}
	golden(t, "check.golden", text, e.replacements())
	js, _, _ := runSplit(t, append([]string{"check", "-o", "json"}, e.args...)...)
	golden(t, "check.json.golden", js, e.replacements())

	// The restart command's program is not there.
	rep, code = checkReport(t, replaced(e.args, "--restart", "no-such-program-pd --now")...)
	if c := item(t, rep, pipeline.CheckRestart); code != pipeline.ExitFailed || c.OK || !strings.Contains(c.Detail, `"no-such-program-pd"`) {
		t.Errorf("missing restart program: exit %d, %+v", code, c)
	}
	// A path the login cannot write.
	rep, code = checkReport(t, replaced(e.args, "--path", "/proc/pd-check/app")...)
	if c := item(t, rep, pipeline.CheckPath); code != pipeline.ExitFailed || c.OK {
		t.Errorf("unwritable path: exit %d, %+v", code, c)
	}
	// A host whose key known_hosts does not have: another host's known_hosts.
	other := testbench.SSHHosts(t, 1)[0]
	kh := filepath.Join(t.TempDir(), "other_known_hosts")
	if err := os.WriteFile(kh, other.KnownHosts, 0o644); err != nil {
		t.Fatal(err)
	}
	rep, code = checkReport(t, replaced(e.args, "--known-hosts", "file:"+kh)...)
	if c := item(t, rep, pipeline.CheckHostKey); code != pipeline.ExitFailed || c.OK || c.Skipped || !item(t, rep, pipeline.CheckLogin).Skipped {
		t.Errorf("unknown host key: exit %d, %+v", code, rep.Hosts[0].Checks)
	}
	// Nobody listens: unreachable, exit 7.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	rep, code = checkReport(t, replaced(e.args, "--hosts", closed)...)
	if c := item(t, rep, pipeline.CheckReachable); code != pipeline.ExitUnreachable || c.OK {
		t.Errorf("unreachable host: exit %d, %+v", code, rep.Hosts[0].Checks)
	}
	text, _, _ = runSplit(t, append([]string{"check"}, replaced(e.args, "--hosts", closed)...)...)
	golden(t, "check-unreachable.golden", text, map[string]string{closed: "CLOSED", e.h.Dir: "DIR"})
}
