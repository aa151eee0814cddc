package ssh

import (
	"bytes"
	"context"
	"errors"
	"io"

	"github.com/pushdeploy/pushdeploy/targets/hoststate"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// Where the target's commands run. Its own scripts (the probe, staging, verifying, the
// switch, the status, the lock and the history) run in the long-lived shells of the host's
// connection (sshconn.Shells): a deploy then costs the host two SSH sessions (a shell and
// SFTP) instead of one per script, each of which makes sshd fork and start the login shell.
// What the user gives (the restart command, Run, the Updated commands) runs in a session of
// its own, as ssh would run it: it may leave processes running (a daemon), which must not
// share a process group with the shell that a later cancelled script is killed with, and
// its output is streamed.

// inShell runs cmd in one of the host's shells. When no shell could be started on the
// connection (it dropped since it was dialled: the command never ran), it is run once more
// on a new connection.
func (h *Host) inShell(ctx context.Context, cmd sshconn.Cmd) error {
	var in []byte
	if cmd.Stdin != nil {
		var err error
		if in, err = io.ReadAll(cmd.Stdin); err != nil {
			return err
		}
	}
	for attempt := 0; ; attempt++ {
		c, err := h.client(ctx)
		if err != nil {
			return err
		}
		if in != nil {
			cmd.Stdin = bytes.NewReader(in)
		}
		err = c.Shells().RunCmd(ctx, cmd)
		if attempt == 0 && errors.Is(err, sshconn.ErrNotRun) {
			h.dropConn(c)
			continue
		}
		return err
	}
}

// dropConn forgets c, when it is still the host's connection, and closes it.
func (h *Host) dropConn(c *sshconn.Client) {
	h.mu.Lock()
	if h.c == c {
		h.c = nil
	}
	h.mu.Unlock()
	c.Close()
}

// shellRunner runs hoststate's commands (the lock, the history) in the host's shells.
type shellRunner struct{ h *Host }

var _ hoststate.Runner = shellRunner{}

func (r shellRunner) RunCmd(ctx context.Context, cmd sshconn.Cmd) error { return r.h.inShell(ctx, cmd) }

func (h *Host) runner(context.Context) (hoststate.Runner, error) { return shellRunner{h}, nil }

// inSession runs a script in a session of its own and returns its stdout (see above).
func (h *Host) inSession(ctx context.Context, s string) ([]byte, error) {
	c, err := h.client(ctx)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	err = c.RunCmd(ctx, sshconn.Cmd{Line: s, Stdout: &out})
	return out.Bytes(), err
}
