package sshconn

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// ErrNotRun says a command never started: no session could be opened on the connection
// (it is gone, or the host refused one). Running it again on a new connection is safe.
var ErrNotRun = errors.New("the command was not started")

// Shell is one long-lived POSIX shell on a host, started on first use, that runs commands
// one after another. Every SSH session makes sshd fork a process that starts the login
// shell (and, for bash, its startup files); on a host that serves many deploys, or one
// machine that plays many hosts, those forks are most of what a deploy costs the host. The
// login shell starts once, execs sh, and reads framed commands from stdin:
//
//	( eval 'LINE' ) </dev/null          or, with input:  printf %s 'TEXT' | ( eval 'LINE' )
//	                                    (binary input:   printf %s BASE64 | base64 -d | ...)
//	printf '\n<marker> %d\n' $?;  printf '\n<marker>\n' >&2
//
// LINE is quoted and evaluated in a subshell: a syntax error in it, an exit, a cd or a
// variable stays in that command. The marker is random per shell. A command gets its own
// stdout, stderr, exit status and stdin, as from a session (Client.RunCmd); what differs is
// that stdout and stderr are delivered when the command ends, not while it runs, and that
// what a command leaves running in the background shares the shell's process group (run
// commands that start daemons in a session of their own, Client.RunCmd).
//
// A command that outlives its context is killed with the shell's process group (from a
// session of its own: closing a session without a terminal leaves its commands running);
// a shell whose connection broke reports the command as lost. Either way the next command
// starts another shell.
type Shell struct {
	c *Client

	mu     sync.Mutex // one command at a time
	sess   *ssh.Session
	exited chan struct{} // closed when sess ended
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr *bufio.Reader
	marker string
	synced bool // what the login shell printed as it started has been read past
	pidMu  sync.Mutex
	pid    int // the shell's pid, leader of its process group (0 until synced)
}

// NewShell returns a shell on c; it starts with its first command.
func (c *Client) NewShell() *Shell { return &Shell{c: c} }

func (s *Shell) startLocked() error {
	sess, err := s.c.ssh.NewSession()
	if err != nil {
		return fmt.Errorf("opening a session on %s: %w: %w", s.c.addr, ErrNotRun, err)
	}
	in, err := sess.StdinPipe()
	if err == nil {
		var out, errp io.Reader
		if out, err = sess.StdoutPipe(); err == nil {
			if errp, err = sess.StderrPipe(); err == nil {
				s.stdout, s.stderr = bufio.NewReader(out), bufio.NewReader(errp)
			}
		}
	}
	if err != nil {
		sess.Close()
		return fmt.Errorf("opening a session on %s: %w: %w", s.c.addr, ErrNotRun, err)
	}
	b := make([]byte, 12)
	rand.Read(b)
	s.marker = "\x1epushdeploy-done-" + hex.EncodeToString(b)
	if err := sess.Start("exec sh"); err != nil {
		sess.Close()
		return fmt.Errorf("starting a shell on %s: %w: %w", s.c.addr, ErrNotRun, err)
	}
	s.sess, s.stdin = sess, in
	s.exited = make(chan struct{})
	go func(sess *ssh.Session, exited chan struct{}) { sess.Wait(); close(exited) }(sess, s.exited)
	s.synced = false
	s.pidMu.Lock()
	s.pid = 0
	s.pidMu.Unlock()
	return nil
}

func (s *Shell) closeLocked() {
	if s.sess != nil {
		s.stdin.Close() // sh reads EOF and exits
		s.sess.Close()
		s.sess = nil
	}
}

// killLocked ends the shell and what it runs: its process group gets SIGTERM from a
// session of its own, then the session is closed.
func (s *Shell) killLocked() {
	s.pidMu.Lock()
	pid := s.pid
	s.pidMu.Unlock()
	if pid > 0 {
		if k, err := s.c.ssh.NewSession(); err == nil {
			done := make(chan struct{})
			n := strconv.Itoa(pid)
			go func() { k.Run(killGroup(n)); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
			}
			k.Close()
		}
	}
	s.closeLocked()
}

// Close ends the shell (after the command it runs, if any).
func (s *Shell) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
}

// frame is the text the shell reads for one command.
func (s *Shell) frame(line string, in []byte, sync bool) string {
	var b strings.Builder
	if sync {
		// A frame of its own first: whatever the startup files printed ends before it. It
		// carries the shell's pid instead of a status.
		fmt.Fprintf(&b, "printf '\\n%s %%d\\n' $$; printf '\\n%s\\n' >&2\n", s.marker, s.marker)
	}
	body := "( eval " + Quote(line) + " )"
	switch {
	case in == nil:
		b.WriteString(body + " </dev/null\n")
	case bytes.IndexByte(in, 0) < 0:
		// Text (a shell word holds any byte but NUL): no decoder to start.
		fmt.Fprintf(&b, "printf '%%s' %s | %s\n", Quote(string(in)), body)
	default:
		fmt.Fprintf(&b, "printf '%%s' %s | base64 -d | %s\n", base64.StdEncoding.EncodeToString(in), body)
	}
	fmt.Fprintf(&b, "printf '\\n%s %%d\\n' $?; printf '\\n%s\\n' >&2\n", s.marker, s.marker)
	return b.String()
}

// RunCmd runs cmd in the shell, starting one first when there is none. A non-zero exit is
// an *ExitError, as from Client.RunCmd; a shell that could not be started is ErrNotRun.
func (s *Shell) RunCmd(ctx context.Context, cmd Cmd) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("running a command on %s: %w", s.c.addr, err)
	}
	var in []byte
	if cmd.Stdin != nil {
		var err error
		if in, err = io.ReadAll(cmd.Stdin); err != nil {
			return fmt.Errorf("running a command on %s: reading its input: %w", s.c.addr, err)
		}
		if in == nil {
			in = []byte{}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess != nil {
		select {
		case <-s.exited: // it ended between commands (killed; the connection broke)
			s.closeLocked()
		default:
		}
	}
	if s.sess == nil {
		if err := s.startLocked(); err != nil {
			return err
		}
	}
	sync := !s.synced
	script := s.frame(cmd.Line, in, sync)
	type result struct {
		stdout, stderr []byte
		status         int
		err            error
	}
	done := make(chan result, 1)
	stdin, stdout, stderr := s.stdin, s.stdout, s.stderr
	go func() {
		var r result
		if _, err := io.WriteString(stdin, script); err != nil {
			r.err = err
			done <- r
			return
		}
		if sync {
			var line []byte
			if _, line, r.err = readUntil(stdout, s.marker); r.err == nil {
				pid, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(string(line), s.marker)))
				s.pidMu.Lock()
				s.pid = pid
				s.pidMu.Unlock()
				_, _, r.err = readUntil(stderr, s.marker)
			}
			if r.err != nil {
				done <- r
				return
			}
		}
		// Both at once: a command that fills one while its reader waits on the other would
		// stall on the channel's window.
		errc := make(chan error, 1)
		go func() {
			var err error
			r.stderr, _, err = readUntil(stderr, s.marker)
			errc <- err
		}()
		var line []byte
		var err error
		if r.stdout, line, err = readUntil(stdout, s.marker); err == nil {
			r.status, err = strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(string(line), s.marker)))
		}
		if eerr := <-errc; err == nil {
			err = eerr
		}
		r.err = err
		done <- r
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		s.killLocked()
		<-done
		return fmt.Errorf("running a command on %s: %w", s.c.addr, ctx.Err())
	}
	if r.err != nil {
		// The shell is gone (the connection broke, or it was killed): the next command
		// starts another.
		s.closeLocked()
		return &ExitError{Host: s.c.addr, Status: -1, Lost: true, Output: fmt.Sprintf("the shell ended: %v", r.err)}
	}
	s.synced = true
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
		return &ExitError{Host: s.c.addr, Status: r.status, Output: tail(out)}
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
			if len(b) > 0 {
				b = b[:len(b)-1] // the framing's newline
			}
			return b, l, nil
		}
		buf.Write(l)
	}
}

// maxIdleShells is how many idle shells a connection keeps for the next commands.
const maxIdleShells = 4

// Shells runs commands in long-lived shells on one connection (see Shell): in an idle one
// when there is one, else in a new one, so that commands run side by side as sessions
// would, and one after another reuse the same shell. Client.Shells returns the
// connection's.
type Shells struct {
	c      *Client
	mu     sync.Mutex
	idle   []*Shell
	closed bool
}

// Shells returns the connection's pool of shells; they end with the connection.
func (c *Client) Shells() *Shells {
	c.shellsOnce.Do(func() { c.shells = &Shells{c: c} })
	return c.shells
}

// RunCmd runs cmd in an idle shell, or a new one; see Shell.RunCmd.
func (p *Shells) RunCmd(ctx context.Context, cmd Cmd) error {
	p.mu.Lock()
	var s *Shell
	if n := len(p.idle); n > 0 {
		s, p.idle = p.idle[n-1], p.idle[:n-1]
	} else {
		s = p.c.NewShell()
	}
	p.mu.Unlock()
	err := s.RunCmd(ctx, cmd)
	p.mu.Lock()
	if !p.closed && len(p.idle) < maxIdleShells {
		p.idle = append(p.idle, s)
		s = nil
	}
	p.mu.Unlock()
	if s != nil {
		s.Close()
	}
	return err
}

// Close ends the idle shells; shells still running a command end after it.
func (p *Shells) Close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, s := range idle {
		s.Close()
	}
}
