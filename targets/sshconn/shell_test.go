package sshconn_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

func shellRun(sh interface {
	RunCmd(context.Context, sshconn.Cmd) error
}, line string, in []byte) (string, string, error) {
	var o, e bytes.Buffer
	cmd := sshconn.Cmd{Line: line, Stdout: &o, Stderr: &e}
	if in != nil {
		cmd.Stdin = bytes.NewReader(in)
	}
	err := sh.RunCmd(context.Background(), cmd)
	return o.String(), e.String(), err
}

// gone waits until no process on the host matches pattern (pgrep -f), failing after 5s.
func gone(t *testing.T, c *sshconn.Client, pattern string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		out, _ := c.Output(context.Background(), "pgrep -f "+sshconn.Quote(pattern)+" || true")
		if len(bytes.TrimSpace(out)) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q still runs on the host: pids %s", pattern, out)
		}
	}
}

// TestShellRunsCommandsLikeSessions: the long-lived shell gives each command its own stdout,
// stderr, exit status and stdin (text, binary, no final newline), keeps nothing of one
// command (cd, variables, a syntax error) for the next, a command reading stdin never eats
// the next one, and output larger than the channel's window on both streams at once comes
// back whole.
func TestShellRunsCommandsLikeSessions(t *testing.T) {
	h := testbench.SSHHosts(t, 1, testUser)[0]
	c := dial(t, h)
	sh := c.NewShell()
	defer sh.Close()
	if o, e, err := shellRun(sh, `printf 'out'; printf 'err' >&2`, nil); err != nil || o != "out" || e != "err" {
		t.Errorf("first command: %q %q %v; want out, err", o, e, err)
	}
	if o, _, err := shellRun(sh, "printf 'a\\nb\\n\\n'", nil); err != nil || o != "a\nb\n\n" {
		t.Errorf("trailing newlines: %q %v", o, err)
	}
	for _, in := range [][]byte{[]byte("text 'quoted' \"and\" $HOME `x` \\\n\x1e no newline"), []byte("line1\n\x00\x1ebinary, no newline"), {}} {
		if o, _, err := shellRun(sh, "cat", in); err != nil || o != string(in) {
			t.Errorf("stdin came back as %q (%v), want %q", o, err, in)
		}
	}
	_, _, err := shellRun(sh, "echo why >&2; exit 3", nil)
	var ee *sshconn.ExitError
	if !errors.As(err, &ee) || ee.Status != 3 || ee.Output != "why" || ee.Host != h.Addr {
		t.Errorf("exit 3 = %#v, want an ExitError with status 3 and output why", err)
	}
	var home string
	if _, _, err := shellRun(sh, "if then fi (", nil); !errors.As(err, &ee) || ee.Status == 0 {
		t.Errorf("a syntax error = %v, want a failed command", err)
	}
	home, _, err = shellRun(sh, "pwd", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := shellRun(sh, "cd /; x=set; set -e", nil); err != nil {
		t.Fatal(err)
	}
	if o, _, err := shellRun(sh, `pwd; echo "x=$x"; false; echo still`, nil); err != nil || o != home+"x=\nstill\n" {
		t.Errorf("the next command saw the last one's state: %q %v", o, err)
	}
	if o, _, err := shellRun(sh, "cat; echo done", nil); err != nil || o != "done\n" {
		t.Errorf("cat with no input: %q %v", o, err)
	}
	o, e, err := shellRun(sh, "head -c 3000000 /dev/zero | tr '\\0' e >&2; head -c 3000000 /dev/zero | tr '\\0' o", nil)
	if err != nil || len(o) != 3000000 || len(e) != 3000000 || strings.Trim(o, "o") != "" || strings.Trim(e, "e") != "" {
		t.Errorf("3 MB on stderr then stdout: got %d and %d bytes, %v", len(o), len(e), err)
	}
}

// TestShellAfterCancelAndDrop: a command that outlives its context is killed on the host
// with the shell, and the next command starts another shell; a shell whose process dies
// under a command reports it lost, and the next command works; after the connection drops,
// commands on it are ErrNotRun (never started: safe to run again on a new connection).
func TestShellAfterCancelAndDrop(t *testing.T) {
	h := testbench.SSHHosts(t, 1, testUser)[0]
	c := dial(t, h)
	sh := c.NewShell()
	defer sh.Close()
	if _, _, err := shellRun(sh, "true", nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := sh.RunCmd(ctx, sshconn.Cmd{Line: "sleep 31.123"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a command past its context = %v, want the deadline", err)
	}
	gone(t, c, "sleep 31[.]123")
	if o, _, err := shellRun(sh, "echo again", nil); err != nil || o != "again\n" {
		t.Errorf("after the shell was killed: %q %v", o, err)
	}
	// The shell itself dies under a command ($$ is the shell's pid, in its subshells too).
	_, _, err := shellRun(sh, `kill -KILL $$`, nil)
	var ee *sshconn.ExitError
	if !errors.As(err, &ee) || !ee.Lost {
		t.Errorf("a command whose shell died = %v, want a lost command", err)
	}
	if o, _, err := shellRun(sh, "echo after", nil); err != nil || o != "after\n" {
		t.Errorf("after the shell died: %q %v", o, err)
	}
	if err := h.Restart(); err != nil {
		t.Fatal(err)
	}
	c.SSH().Wait()
	if _, _, err := shellRun(sh, "echo dropped", nil); !errors.Is(err, sshconn.ErrNotRun) {
		t.Errorf("a command on a dropped connection = %v, want ErrNotRun", err)
	}
	c2 := dial(t, h)
	if o, _, err := shellRun(c2.Shells(), "echo new", nil); err != nil || o != "new\n" {
		t.Errorf("on a new connection: %q %v", o, err)
	}
}

// TestShellsRunSideBySide: commands sent to a connection's Shells at once run at once, in
// two shells (each waits for the other, which one shell would deadlock on), and the
// commands after them reuse those shells ($$ is the shell's pid).
func TestShellsRunSideBySide(t *testing.T) {
	h := testbench.SSHHosts(t, 1, testUser)[0]
	c := dial(t, h)
	dir := h.Dir + "/meet"
	var wg sync.WaitGroup
	errs := make([]error, 2)
	pids := make([]bytes.Buffer, 2)
	for i, me := range []string{"a", "b"} {
		other := map[string]string{"a": "b", "b": "a"}[me]
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			errs[i] = c.Shells().RunCmd(ctx, sshconn.Cmd{Stdout: &pids[i],
				Line: "mkdir -p " + dir + " && touch " + dir + "/" + me + " && while [ ! -e " + dir + "/" + other + " ]; do sleep 0.01; done; echo $$"})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("two commands at once: %v", err)
		}
	}
	shells := map[string]bool{pids[0].String(): true, pids[1].String(): true}
	if len(shells) != 2 {
		t.Fatalf("two commands at once ran in shells %v, want two", shells)
	}
	for i := 0; i < 5; i++ {
		o, _, err := shellRun(c.Shells(), "echo $$", nil)
		if err != nil || !shells[o] {
			t.Errorf("command %d after them ran in shell %q (%v), want one of %v", i, o, err, shells)
		}
	}
}
