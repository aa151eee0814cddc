// Package hoststate keeps a target's deploy lock and deployment history as files in a
// directory on a host reached over SSH. It is the targets.Locker and targets.Journal of the
// kinds whose hosts are plain machines (the Docker target; the server target can use it too).
//
// The lock is a file created atomically (the shell's noclobber, O_EXCL underneath) holding
// the lock's JSON; renewing replaces it atomically (write beside, rename). The history is a
// JSON-lines file, one record a line, appended.
//
// This package is plain Go: it never imports the Dagger bindings.
package hoststate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// Dialer returns the open connection to the host that holds the state.
type Dialer func(ctx context.Context) (*sshconn.Client, error)

// Files is the lock and history of one target in one directory of one host.
type Files struct {
	dial   Dialer
	dir    string
	target string
}

var (
	_ targets.Locker  = (*Files)(nil)
	_ targets.Journal = (*Files)(nil)
)

// New keeps the state of target (its name in messages, e.g. "docker myapp/prod") in dir on
// the host dial reaches. dir is created on first use.
func New(dial Dialer, dir, target string) (*Files, error) {
	if !path.IsAbs(dir) {
		return nil, fmt.Errorf("state directory %q for %s is not an absolute path", dir, target)
	}
	return &Files{dial: dial, dir: path.Clean(dir), target: target}, nil
}

func (f *Files) lockFile() string    { return f.dir + "/lock.json" }
func (f *Files) historyFile() string { return f.dir + "/history.jsonl" }

// run runs a shell line on the host, input (when not nil) its stdin, and returns its stdout
// (with the error too: the lock scripts print what they found and exit non-zero).
func (f *Files) run(ctx context.Context, line string, input []byte) ([]byte, error) {
	c, err := f.dial(ctx)
	if err != nil {
		return nil, err
	}
	var out, errb bytes.Buffer
	cmd := sshconn.Cmd{Line: line, Stdout: &out, Stderr: &errb}
	if input != nil {
		cmd.Stdin = bytes.NewReader(input)
	}
	err = c.RunCmd(ctx, cmd)
	return out.Bytes(), err
}

// Exit statuses of the lock scripts.
const (
	statusHeld = 3 // the lock file exists: its content is on stdout
)

// Acquire creates the lock file for l when there is none; a lock that has expired is
// replaced. A lock held by someone else is a *targets.HeldError.
func (f *Files) Acquire(ctx context.Context, l targets.Lock) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	// noclobber makes > fail when the file exists: the creation is the atomic test.
	line := fmt.Sprintf("mkdir -p %s && if (set -C; cat > %s) 2>/dev/null; then exit 0; else cat %s; exit %d; fi",
		sshconn.Quote(f.dir), sshconn.Quote(f.lockFile()), sshconn.Quote(f.lockFile()), statusHeld)
	for attempt := 0; attempt < 3; attempt++ {
		out, err := f.run(ctx, line, b)
		if err == nil {
			return nil
		}
		var ee *sshconn.ExitError
		if !errors.As(err, &ee) || ee.Status != statusHeld {
			return fmt.Errorf("taking the deploy lock of %s in %s: %w", f.target, f.dir, err)
		}
		if len(bytes.TrimSpace(out)) == 0 {
			// Created an instant ago and not written yet: someone is taking it right now.
			return &targets.HeldError{Target: f.target, Holder: targets.Lock{Owner: "another deploy (taking it at this moment)", Acquired: l.Acquired, Expires: l.Expires}}
		}
		held, perr := parseLock(out)
		if perr != nil {
			return fmt.Errorf("taking the deploy lock of %s: %s holds something unreadable (%v); unlock to clear it", f.target, f.lockFile(), perr)
		}
		if !held.Expired(l.Acquired) {
			return &targets.HeldError{Target: f.target, Holder: *held}
		}
		// Expired: remove exactly what we read (not a lock someone took meanwhile), then
		// try again.
		if err := f.removeIf(ctx, out); err != nil {
			return fmt.Errorf("taking the expired deploy lock of %s: %w", f.target, err)
		}
	}
	return fmt.Errorf("taking the deploy lock of %s: it changed hands while being taken; try again", f.target)
}

// removeIf removes the lock file when its content is still want.
func (f *Files) removeIf(ctx context.Context, want []byte) error {
	line := fmt.Sprintf(`[ "$(cat %s 2>/dev/null)" = "$(cat)" ] && rm -f %s; exit 0`, sshconn.Quote(f.lockFile()), sshconn.Quote(f.lockFile()))
	_, err := f.run(ctx, line, bytes.TrimRight(want, "\n"))
	return err
}

func parseLock(b []byte) (*targets.Lock, error) {
	var l targets.Lock
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

func same(a, b targets.Lock) bool {
	return a.Owner == b.Owner && a.PipelineID == b.PipelineID && a.Acquired.Equal(b.Acquired)
}

// Renew writes l's new expiry when l still holds the lock.
func (f *Files) Renew(ctx context.Context, l targets.Lock) error {
	held, err := f.Holder(ctx)
	if err != nil {
		return err
	}
	if held == nil || !same(*held, l) {
		who := "nobody"
		if held != nil {
			who = held.String()
		}
		return fmt.Errorf("renewing the deploy lock of %s: it is no longer ours (held by %s)", f.target, who)
	}
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	tmp := f.lockFile() + ".renew"
	line := fmt.Sprintf("cat > %s && mv -f %s %s", sshconn.Quote(tmp), sshconn.Quote(tmp), sshconn.Quote(f.lockFile()))
	if _, err := f.run(ctx, line, b); err != nil {
		return fmt.Errorf("renewing the deploy lock of %s: %w", f.target, err)
	}
	return nil
}

// Release removes the lock when l holds it; someone else's lock is left alone.
func (f *Files) Release(ctx context.Context, l targets.Lock) error {
	line := fmt.Sprintf("cat %s 2>/dev/null; exit 0", sshconn.Quote(f.lockFile()))
	out, err := f.run(ctx, line, nil)
	if err != nil {
		return fmt.Errorf("releasing the deploy lock of %s: %w", f.target, err)
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil
	}
	held, err := parseLock(out)
	if err != nil || !same(*held, l) {
		return nil
	}
	if err := f.removeIf(ctx, out); err != nil {
		return fmt.Errorf("releasing the deploy lock of %s: %w", f.target, err)
	}
	return nil
}

// Holder reads the lock, nil when nobody holds it.
func (f *Files) Holder(ctx context.Context) (*targets.Lock, error) {
	line := fmt.Sprintf("cat %s 2>/dev/null; exit 0", sshconn.Quote(f.lockFile()))
	out, err := f.run(ctx, line, nil)
	if err != nil {
		return nil, fmt.Errorf("reading the deploy lock of %s: %w", f.target, err)
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil, nil
	}
	l, err := parseLock(out)
	if err != nil {
		return nil, fmt.Errorf("reading the deploy lock of %s: %s: %w", f.target, f.lockFile(), err)
	}
	return l, nil
}

// Break removes the lock whoever holds it.
func (f *Files) Break(ctx context.Context) error {
	if _, err := f.run(ctx, "rm -f "+sshconn.Quote(f.lockFile()), nil); err != nil {
		return fmt.Errorf("breaking the deploy lock of %s: %w", f.target, err)
	}
	return nil
}

// Append adds record to the history, on one line.
func (f *Files) Append(ctx context.Context, record json.RawMessage) error {
	var b bytes.Buffer
	if err := json.Compact(&b, record); err != nil {
		return fmt.Errorf("appending to the history of %s: the record is not JSON: %w", f.target, err)
	}
	b.WriteByte('\n')
	line := fmt.Sprintf("mkdir -p %s && cat >> %s", sshconn.Quote(f.dir), sshconn.Quote(f.historyFile()))
	if _, err := f.run(ctx, line, b.Bytes()); err != nil {
		return fmt.Errorf("appending to the history of %s: %w", f.target, err)
	}
	return nil
}

// Records returns the last limit records (all when limit <= 0), the newest last.
func (f *Files) Records(ctx context.Context, limit int) ([]json.RawMessage, error) {
	line := fmt.Sprintf("cat %s 2>/dev/null; exit 0", sshconn.Quote(f.historyFile()))
	if limit > 0 {
		line = fmt.Sprintf("tail -n %s %s 2>/dev/null; exit 0", strconv.Itoa(limit), sshconn.Quote(f.historyFile()))
	}
	out, err := f.run(ctx, line, nil)
	if err != nil {
		return nil, fmt.Errorf("reading the history of %s: %w", f.target, err)
	}
	var recs []json.RawMessage
	for i, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if !json.Valid([]byte(l)) {
			return nil, fmt.Errorf("reading the history of %s: line %d of %s is not JSON", f.target, i+1, f.historyFile())
		}
		recs = append(recs, json.RawMessage(l))
	}
	return recs, nil
}
