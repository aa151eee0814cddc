package docker

import (
	"bytes"
	"context"

	"github.com/pushdeploy/pushdeploy/targets/hoststate"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

var _ hoststate.Runner = (*sshconn.Shells)(nil)

// stateShell is the long-lived shells (sshconn.Shells) of the host's SSH connection, for
// the state's commands (the lock, the history) and the blue-green switch: a deploy runs
// four or five such commands, and every SSH session would start the login shell and its
// startup files again, which on a real host's bash can cost more than everything the deploy
// does over the engine's socket. After the connection dropped, the new one has shells of
// its own.
func (h *Host) stateShell(ctx context.Context) (*sshconn.Shells, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, err := h.sshClientLocked(ctx)
	if err != nil {
		return nil, err
	}
	return c.Shells(), nil
}

// runShell runs cmd in the host's shell and returns its stdout and stderr together: the
// blue-green switch, which runs on every deploy.
func (h *Host) runShell(ctx context.Context, cmd string) ([]byte, error) {
	sh, err := h.stateShell(ctx)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	err = sh.RunCmd(ctx, sshconn.Cmd{Line: cmd, Stdout: &out, Stderr: &out})
	return out.Bytes(), err
}
