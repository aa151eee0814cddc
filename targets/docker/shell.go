package docker

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/pushdeploy/pushdeploy/targets/hoststate"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// shell is one long-lived POSIX shell on a host, started once per SSH connection, that runs
// the state's commands (the lock, the history) one after another. Every SSH session starts
// the login shell and its startup files, which on a real host's bash can cost more than
// everything else the deploy does over the engine's socket; a deploy runs four or five such
// commands. The login shell starts once, execs sh, and reads framed commands from stdin:
//
//	( LINE ) </dev/null          (or: printf %s BASE64 | base64 -d | ( LINE ))
//	printf '\n<marker> %d\n' $?  and  printf '\n<marker>\n' >&2
//
// A command that outlives its context kills the shell (the next command starts another).
type shell struct {
	c *sshconn.Client

	mu     sync.Mutex
	sess   *ssh.Session
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr *bufio.Reader
	marker string
	synced bool // what the login shell printed as it started has been read past
	pidMu  sync.Mutex
	pid    int // the shell's pid, leader of its process group (0 until synced)
}

var _ hoststate.Runner = (*shell)(nil)

func (s *shell) startLocked() error {
	sess, err := s.c.SSH().NewSession()
	if err != nil {
		return fmt.Errorf("opening a session on %s: %w", s.c.Addr(), err)
	}
	in, err := sess.StdinPipe()
	if err != nil {
		sess.Close()
		return err
	}
	out, err := sess.StdoutPipe()
	if err != nil {
		sess.Close()
		return err
	}
	errp, err := sess.StderrPipe()
	if err != nil {
		sess.Close()
		return err
	}
	b := make([]byte, 12)
	rand.Read(b)
	s.marker = "\x1epushdeploy-done-" + hex.EncodeToString(b)
	if err := sess.Start("exec sh"); err != nil {
		sess.Close()
		return fmt.Errorf("starting a shell on %s: %w", s.c.Addr(), err)
	}
	s.sess, s.stdin, s.stdout, s.stderr = sess, in, bufio.NewReader(out), bufio.NewReader(errp)
	s.synced = false
	s.pidMu.Lock()
	s.pid = 0
	s.pidMu.Unlock()
	return nil
}

func (s *shell) closeLocked() {
	if s.sess != nil {
		s.sess.Close()
		s.sess = nil
	}
}

// killLocked ends the shell and what it runs: closing a session without a terminal leaves
// its commands running, so the shell's process group gets SIGTERM from a session of its own.
func (s *shell) killLocked() {
	s.pidMu.Lock()
	pid := s.pid
	s.pidMu.Unlock()
	if pid > 0 {
		if k, err := s.c.SSH().NewSession(); err == nil {
			done := make(chan struct{})
			n := strconv.Itoa(pid)
			go func() { k.Run("kill -TERM -- -" + n + " " + n + " 2>/dev/null"); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
			}
			k.Close()
		}
	}
	s.closeLocked()
}

func (s *shell) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
}

// RunCmd runs cmd in the shell; a non-zero exit is an *sshconn.ExitError, as from
// sshconn.Client.RunCmd.
func (s *shell) RunCmd(ctx context.Context, cmd sshconn.Cmd) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("running a command on %s: %w", s.c.Addr(), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess == nil {
		if err := s.startLocked(); err != nil {
			return err
		}
	}
	var script strings.Builder
	frame := fmt.Sprintf("printf '\\n%s %%d\\n' $?; printf '\\n%s\\n' >&2\n", s.marker, s.marker)
	sync := !s.synced
	if sync {
		// A frame of its own first: whatever the startup files printed ends before it. It
		// carries the shell's pid instead of a status.
		fmt.Fprintf(&script, "printf '\\n%s %%d\\n' $$; printf '\\n%s\\n' >&2\n", s.marker, s.marker)
	}
	if cmd.Stdin != nil {
		in, err := io.ReadAll(cmd.Stdin)
		if err != nil {
			return fmt.Errorf("running a command on %s: reading its input: %w", s.c.Addr(), err)
		}
		fmt.Fprintf(&script, "printf '%%s' %s | base64 -d | (\n%s\n)\n", base64.StdEncoding.EncodeToString(in), cmd.Line)
	} else {
		fmt.Fprintf(&script, "(\n%s\n) </dev/null\n", cmd.Line)
	}
	script.WriteString(frame)
	type result struct {
		stdout, stderr []byte
		status         int
		err            error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		if _, err := io.WriteString(s.stdin, script.String()); err != nil {
			r.err = err
			done <- r
			return
		}
		if sync {
			var line []byte
			if _, line, r.err = readUntil(s.stdout, s.marker); r.err == nil {
				pid, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(string(line), s.marker)))
				s.pidMu.Lock()
				s.pid = pid
				s.pidMu.Unlock()
				_, _, r.err = readUntil(s.stderr, s.marker)
			}
			if r.err != nil {
				done <- r
				return
			}
		}
		var line []byte
		if r.stdout, line, r.err = readUntil(s.stdout, s.marker); r.err == nil {
			r.status, r.err = strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(string(line), s.marker)))
		}
		if r.err == nil {
			r.stderr, _, r.err = readUntil(s.stderr, s.marker)
		}
		done <- r
	}()
	var r result
	select {
	case r = <-done:
		s.synced = true
	case <-ctx.Done():
		s.killLocked()
		<-done
		return fmt.Errorf("running a command on %s: %w", s.c.Addr(), ctx.Err())
	}
	if r.err != nil {
		// The shell is gone (the connection broke): the next command starts another.
		s.closeLocked()
		return &sshconn.ExitError{Host: s.c.Addr(), Status: -1, Lost: true, Output: fmt.Sprintf("the shell ended: %v", r.err)}
	}
	if cmd.Stdout != nil {
		cmd.Stdout.Write(r.stdout)
	}
	if cmd.Stderr != nil {
		cmd.Stderr.Write(r.stderr)
	}
	if r.status != 0 {
		out := r.stderr
		if len(bytes.TrimSpace(out)) == 0 {
			out = r.stdout
		}
		o := strings.TrimSpace(string(out))
		if len(o) > 2000 {
			o = "…" + o[len(o)-2000:]
		}
		return &sshconn.ExitError{Host: s.c.Addr(), Status: r.status, Output: o}
	}
	return nil
}

// readUntil reads r up to the line starting with marker; it returns what came before (less
// the newline the framing put in front of the marker) and the marker's line.
func readUntil(r *bufio.Reader, marker string) (before, line []byte, err error) {
	var buf bytes.Buffer
	for {
		l, err := r.ReadBytes('\n')
		if err != nil {
			return nil, nil, err
		}
		if bytes.HasPrefix(l, []byte(marker)) {
			b := buf.Bytes()
			b = b[:len(b)-1] // the framing's newline
			return b, l, nil
		}
		buf.Write(l)
	}
}

// stateShell is the host's shell for the state's commands and the blue-green switch, on
// the host's SSH connection (started when first used, again after the connection dropped).
func (h *Host) stateShell(ctx context.Context) (*shell, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, err := h.sshClientLocked(ctx)
	if err != nil {
		return nil, err
	}
	if h.sh == nil || h.sh.c != c {
		if old := h.sh; old != nil {
			go old.close() // its connection is gone; a command of it may still hold it
		}
		h.sh = &shell{c: c}
	}
	return h.sh, nil
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
