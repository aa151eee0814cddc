package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"

	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/hoststate"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// state is the deploy lock (on the first host) and the history (on every host), files in
// <state dir>/<app>-<env>/ (package hoststate). A state directory relative to the SSH
// user's home is resolved on each host when the state is first used, so that New still
// connects to nothing.
type state struct {
	t       *Target
	mu      sync.Mutex
	lock    *hoststate.Files
	journal hoststate.Journals
}

var (
	_ targets.Locker  = (*stateLock)(nil)
	_ targets.Journal = (*stateJournal)(nil)
)

// dir is the target's state directory on host h, resolved against the login's home when it
// is relative.
func (t *Target) stateDir(ctx context.Context, h *Host) (string, error) {
	dir := t.o.stateDir
	if !path.IsAbs(dir) {
		sh, err := h.stateShell(ctx)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = sh.RunCmd(ctx, sshconn.Cmd{Line: `printf '%s' "$HOME"`, Stdout: &buf})
		out := buf.Bytes()
		home := strings.TrimSpace(string(out))
		if err != nil {
			return "", fmt.Errorf("finding the home directory of the SSH user on %s, for the state directory %q: %w", h.addr, dir, err)
		}
		if !path.IsAbs(home) {
			return "", fmt.Errorf("the SSH user on %s has no home directory (HOME=%q) for the state directory %q: set docker.state_dir to an absolute path", h.addr, home, dir)
		}
		dir = path.Join(home, dir)
	}
	return path.Join(dir, t.app+"-"+t.env), nil
}

// files returns the lock and the history, resolving the state directories on first use.
func (s *state) files(ctx context.Context) (*hoststate.Files, hoststate.Journals, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lock != nil {
		return s.lock, s.journal, nil
	}
	t := s.t
	js := make(hoststate.Journals, len(t.hosts))
	errs := make([]error, len(t.hosts))
	var wg sync.WaitGroup
	for i, h := range t.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dir, err := t.stateDir(ctx, h)
			if err != nil {
				errs[i] = err
				return
			}
			// One shell per host for every state command: see shell.
			dial := func(ctx context.Context) (hoststate.Runner, error) { return h.stateShell(ctx) }
			js[i], errs[i] = hoststate.NewWithRunner(dial, dir, "docker target "+t.app+"/"+t.env)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	s.lock, s.journal = js[0], js
	return s.lock, s.journal, nil
}

// stateLock is the deploy lock in the first host's state directory.
type stateLock struct{ s *state }

func (l stateLock) files(ctx context.Context) (*hoststate.Files, error) {
	f, _, err := l.s.files(ctx)
	return f, err
}

func (l *stateLock) Acquire(ctx context.Context, lk targets.Lock) error {
	f, err := l.files(ctx)
	if err != nil {
		return err
	}
	return f.Acquire(ctx, lk)
}

func (l *stateLock) Renew(ctx context.Context, lk targets.Lock) error {
	f, err := l.files(ctx)
	if err != nil {
		return err
	}
	return f.Renew(ctx, lk)
}

func (l *stateLock) Release(ctx context.Context, lk targets.Lock) error {
	f, err := l.files(ctx)
	if err != nil {
		return err
	}
	return f.Release(ctx, lk)
}

func (l *stateLock) Holder(ctx context.Context) (*targets.Lock, error) {
	f, err := l.files(ctx)
	if err != nil {
		return nil, err
	}
	return f.Holder(ctx)
}

func (l *stateLock) SetControl(ctx context.Context, holder targets.Lock, c *targets.Control) error {
	f, err := l.files(ctx)
	if err != nil {
		return err
	}
	return f.SetControl(ctx, holder, c)
}

var _ targets.Controller = (*stateLock)(nil)

func (l *stateLock) Break(ctx context.Context) error {
	f, err := l.files(ctx)
	if err != nil {
		return err
	}
	return f.Break(ctx)
}

// stateJournal is the history in every host's state directory.
type stateJournal struct{ s *state }

func (j *stateJournal) Append(ctx context.Context, record json.RawMessage) error {
	_, js, err := j.s.files(ctx)
	if err != nil {
		return err
	}
	return js.Append(ctx, record)
}

func (j *stateJournal) Records(ctx context.Context, limit int) ([]json.RawMessage, error) {
	_, js, err := j.s.files(ctx)
	if err != nil {
		return nil, err
	}
	return js.Records(ctx, limit)
}

// Preflight checks, on every host side by side, what a deploy needs before it takes the
// lock: that the SSH user can write the state directory and reach the Docker Engine's
// socket. Each failure names the host and the setting to change.
func (t *Target) Preflight(ctx context.Context) error {
	errs := make([]error, len(t.hosts))
	var wg sync.WaitGroup
	for i, h := range t.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = t.preflight(ctx, h)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (t *Target) preflight(ctx context.Context, h *Host) error {
	if _, err := h.engine(ctx); err != nil {
		return fmt.Errorf("%w (is the SSH user in the docker group? is the socket elsewhere? set docker.socket)", err)
	}
	dir, err := t.stateDir(ctx, h)
	if err != nil {
		return err
	}
	// Changing nothing: the directory, or the nearest of its parents that exists, must be a
	// directory the user can write (the lock creates the rest).
	check := fmt.Sprintf(`d=%s; while [ ! -e "$d" ]; do d=$(dirname "$d"); done; [ -d "$d" ] && [ -w "$d" ] && [ -x "$d" ] || { echo "$d is not writable" >&2; exit 1; }`, sshconn.Quote(dir))
	// In the host's shell, which the lock and history use next.
	if _, err := h.runShell(ctx, check); err != nil {
		return fmt.Errorf("the SSH user on %s cannot write the state directory %q (the deploy lock and history): %w; set docker.state_dir to a directory it can write", h.addr, dir, err)
	}
	return nil
}
