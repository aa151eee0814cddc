package sshconn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Addr is the host's address as dialled ("127.0.0.1:2201").
func (c *Client) Addr() string { return c.addr }

// SSH is the underlying connection, for what this package does not cover.
func (c *Client) SSH() *ssh.Client { return c.ssh }

// Close closes the connection, and the jump host's when Jump opened one.
func (c *Client) Close() error {
	var err error
	c.once.Do(func() {
		close(c.stopKA)
		c.Shells().Close()
		err = c.ssh.Close()
		if c.jump != nil {
			c.jump.Close()
		}
	})
	return err
}

func (c *Client) keepAlive(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.stopKA:
			return
		case <-t.C:
			errc := make(chan error, 1)
			go func() {
				_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
				errc <- err
			}()
			select {
			case err := <-errc:
				if err != nil {
					c.ssh.Close()
					return
				}
			case <-time.After(3 * every):
				c.ssh.Close()
				return
			case <-c.stopKA:
				return
			}
		}
	}
}

// ExitError says a remote command failed: a non-zero exit status or a signal.
type ExitError struct {
	Host string
	// Status is the exit status, -1 when the command was killed by a signal or its status
	// was never reported.
	Status int
	// Signal names the signal that killed it ("KILL"), if one did.
	Signal string
	// Lost is true when the command ended without an exit status (the connection broke).
	Lost bool
	// Output is the tail of what the command printed on stderr (or stdout when stderr was
	// empty).
	Output string
}

func (e *ExitError) Error() string {
	how := fmt.Sprintf("exit status %d", e.Status)
	switch {
	case e.Signal != "":
		how = "killed by signal " + e.Signal
	case e.Lost:
		how = "no exit status (the connection was lost)"
	}
	if e.Output == "" {
		return fmt.Sprintf("command on %s failed: %s", e.Host, how)
	}
	return fmt.Sprintf("command on %s failed: %s: %s", e.Host, how, e.Output)
}

// maxOutput bounds the output an ExitError carries.
const maxOutput = 4096

func tail(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > maxOutput {
		s = "…" + s[len(s)-maxOutput:]
	}
	return s
}

// Cmd is one remote command.
type Cmd struct {
	// Line is the shell command line, run by the login shell. Quote every argument (Quote).
	Line string
	// Stdin feeds the command; nil means no input.
	Stdin io.Reader
	// Stdout and Stderr receive its output; nil discards it (it still lands in an
	// ExitError's Output, up to a limit).
	Stdout, Stderr io.Writer
}

// Run runs cmd on the host and returns its stdout and stderr. A command that exits non-zero
// or is killed is an *ExitError with the exit status and the tail of its output. When ctx
// ends, the command is sent SIGTERM and the session is closed.
func (c *Client) Run(ctx context.Context, line string) (stdout, stderr []byte, err error) {
	var o, e bytes.Buffer
	err = c.RunCmd(ctx, Cmd{Line: line, Stdout: &o, Stderr: &e})
	return o.Bytes(), e.Bytes(), err
}

// Output runs cmd and returns its stdout, or an error with its stderr.
func (c *Client) Output(ctx context.Context, line string) ([]byte, error) {
	o, _, err := c.Run(ctx, line)
	return o, err
}

// RunCmd runs cmd on the host; see Run.
func (c *Client) RunCmd(ctx context.Context, cmd Cmd) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("running a command on %s: %w", c.addr, err)
	}
	s, err := c.ssh.NewSession()
	if err != nil {
		return fmt.Errorf("opening a session on %s: %w", c.addr, err)
	}
	defer s.Close()
	var errTail, outTail tailBuffer
	s.Stdout = multi(cmd.Stdout, &outTail)
	// The command first prints its shell's pid (the leader of its process group) on stderr,
	// so that a cancelled command can be killed: OpenSSH refuses "signal" requests in some
	// setups (root logins), and closing a session without a pty leaves the command running.
	pid := &pidFilter{w: multi(cmd.Stderr, &errTail), got: make(chan struct{})}
	s.Stderr = pid
	if cmd.Stdin != nil {
		s.Stdin = cmd.Stdin
	}
	if err := s.Start(`printf '` + pidMarker + `%d\n' $$ >&2; ` + cmd.Line); err != nil {
		return fmt.Errorf("starting a command on %s: %w", c.addr, err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		c.kill(s, pid)
		return fmt.Errorf("running a command on %s: %w", c.addr, ctx.Err())
	}
	pid.flush()
	if err == nil {
		return nil
	}
	out := errTail.Bytes()
	if len(bytes.TrimSpace(out)) == 0 {
		out = outTail.Bytes()
	}
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return &ExitError{Host: c.addr, Status: ee.ExitStatus(), Signal: ee.Signal(), Output: tail(out)}
	}
	var missing *ssh.ExitMissingError
	if errors.As(err, &missing) {
		return &ExitError{Host: c.addr, Status: -1, Lost: true, Output: tail(out)}
	}
	return fmt.Errorf("running a command on %s: %w", c.addr, err)
}

const pidMarker = "\x1epushdeploy-pid:"

// killGroup is the command line that sends SIGTERM to process group pid and to pid itself,
// in the login's shell: dash's kill builtin takes a negative pid after the signal but not
// after "--".
func killGroup(pid string) string {
	return "kill -TERM -" + pid + " 2>/dev/null; kill -TERM " + pid + " 2>/dev/null; exit 0"
}

// kill stops a command whose context ended: a signal to the session, then a kill of its
// process group from a second session, then the session is closed.
func (c *Client) kill(s *ssh.Session, pid *pidFilter) {
	s.Signal(ssh.SIGTERM)
	select {
	case <-pid.got:
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if k, err := c.ssh.NewSession(); err == nil {
			n := strconv.Itoa(pid.pid)
			done := make(chan struct{})
			go func() { k.Run(killGroup(n)); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
			}
			k.Close()
		}
	case <-time.After(time.Second): // the command never started
	}
	s.Close()
}

// pidFilter takes the pid line off a command's stderr. Lines before it (a login shell's
// startup noise) pass through; after 4 KiB without it, it stops looking.
type pidFilter struct {
	w       io.Writer
	buf     []byte
	scanned int
	pid     int
	done    bool
	got     chan struct{}
}

func (p *pidFilter) Write(b []byte) (int, error) {
	if p.done {
		return p.w.Write(b)
	}
	p.buf = append(p.buf, b...)
	for !p.done {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			if p.scanned+len(p.buf) > 4096 {
				p.done = true
			}
			break
		}
		line := p.buf[:i+1]
		p.buf = p.buf[i+1:]
		p.scanned += len(line)
		if bytes.HasPrefix(line, []byte(pidMarker)) {
			p.pid, _ = strconv.Atoi(string(bytes.TrimSpace(line[len(pidMarker):])))
			if p.pid > 0 {
				close(p.got)
			}
			p.done = true
			break
		}
		if _, err := p.w.Write(line); err != nil {
			return 0, err
		}
		if p.scanned > 4096 {
			p.done = true
		}
	}
	if p.done && len(p.buf) > 0 {
		rest := p.buf
		p.buf = nil
		if _, err := p.w.Write(rest); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// flush passes on what is still held back.
func (p *pidFilter) flush() {
	if len(p.buf) > 0 {
		p.w.Write(p.buf)
		p.buf = nil
	}
}

func multi(w io.Writer, t io.Writer) io.Writer {
	if w == nil {
		return t
	}
	return io.MultiWriter(w, t)
}

// tailBuffer keeps the last maxOutput bytes written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 2*maxOutput {
		t.b = append(t.b[:0], t.b[len(t.b)-maxOutput:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) Bytes() []byte { return t.b }

// SFTP opens an SFTP session on the connection; close it when done. With no options it
// pipelines reads and writes (64 requests in flight per file).
func (c *Client) SFTP(opts ...sftp.ClientOption) (*sftp.Client, error) {
	if len(opts) == 0 {
		opts = []sftp.ClientOption{sftp.UseConcurrentWrites(true), sftp.UseConcurrentReads(true), sftp.MaxConcurrentRequestsPerFile(64)}
	}
	sc, err := sftp.NewClient(c.ssh, opts...)
	if err != nil {
		return nil, fmt.Errorf("opening sftp on %s: %w", c.addr, err)
	}
	return sc, nil
}

// DialUnix connects to a Unix socket on the host (e.g. /var/run/docker.sock), through the
// SSH connection (OpenSSH's streamlocal forwarding; sshd must allow it, the default).
func (c *Client) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	conn, err := c.ssh.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("connecting to unix socket %q on %s: %w", path, c.addr, err)
	}
	return conn, nil
}

// DialTCP connects to addr as seen from the host.
func (c *Client) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	conn, err := c.ssh.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s from %s: %w", addr, c.addr, err)
	}
	return conn, nil
}
