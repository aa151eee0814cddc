package docker

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// TestShellRunsCommandsLikeSessions: the long-lived shell gives each command its own stdout,
// stderr, exit status and stdin (bytes with no final newline included), a command reading
// stdin never eats the next one, and a command that outlives its context ends the shell,
// with what it ran, and the next command starts another.
func TestShellRunsCommandsLikeSessions(t *testing.T) {
	t.Parallel()
	h := testbench.SSHHosts(t, 1, noRehashWait)[0]
	ctx := context.Background()
	c, err := sshconn.Dial(ctx, h.Addr, sshconn.PrivateKey(h.ClientKey), sshconn.KnownHosts(h.KnownHosts))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sh := &shell{c: c}
	defer sh.close()
	run := func(line string, in []byte) (string, string, error) {
		var o, e bytes.Buffer
		cmd := sshconn.Cmd{Line: line, Stdout: &o, Stderr: &e}
		if in != nil {
			cmd.Stdin = bytes.NewReader(in)
		}
		err := sh.RunCmd(ctx, cmd)
		return o.String(), e.String(), err
	}
	if o, e, err := run(`printf 'out'; printf 'err' >&2`, nil); err != nil || o != "out" || e != "err" {
		t.Errorf("first command: %q %q %v; want out, err", o, e, err)
	}
	if o, _, err := run("printf 'a\\nb\\n\\n'", nil); err != nil || o != "a\nb\n\n" {
		t.Errorf("trailing newlines: %q %v", o, err)
	}
	in := []byte("line1\n\x00\x1ebinary, no newline")
	if o, _, err := run("cat", in); err != nil || o != string(in) {
		t.Errorf("stdin came back as %q (%v), want %q", o, err, in)
	}
	_, _, err = run("echo why >&2; exit 3", nil)
	var ee *sshconn.ExitError
	if !errors.As(err, &ee) || ee.Status != 3 || ee.Output != "why" {
		t.Errorf("exit 3 = %#v, want an ExitError with status 3 and output why", err)
	}
	// A command reading stdin without input gets none, and does not eat the next command.
	if o, _, err := run("cat; echo done", nil); err != nil || o != "done\n" {
		t.Errorf("cat with no input: %q %v", o, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := sh.RunCmd(cctx, sshconn.Cmd{Line: "sleep 31.123"}); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a command past its context = %v, want the deadline", err)
	}
	// ...and it was killed with the shell, not left running on the host.
	for deadline := time.Now().Add(5 * time.Second); ; {
		out, _ := c.Output(ctx, "pgrep -f 'sleep 31[.]123' || true")
		if len(bytes.TrimSpace(out)) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the timed-out command still runs on the host: pids %s", out)
			break
		}
	}
	if o, _, err := run("echo again", nil); err != nil || strings.TrimSpace(o) != "again" {
		t.Errorf("after the shell was killed: %q %v", o, err)
	}
}
