// Package hoststate keeps a target's deploy lock and deployment history as files in a
// directory on a host reached over SSH. It is the targets.Locker and targets.Journal of the
// kinds whose hosts are plain machines (the Docker target; the server target can use it too).
//
// Every change of the lock happens under flock(1) on a guard file (util-linux, on every
// mainstream distribution), and the lock file is replaced by rename: deciding and writing
// are one atomic step and a reader always sees a whole lock. Expiry is judged by the
// deploying machine's clock. The history is a JSON-lines file, one record a line, appended.
//
// This package is plain Go: it never imports the Dagger bindings.
package hoststate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// Dialer returns the open connection to the host that holds the state.
type Dialer func(ctx context.Context) (*sshconn.Client, error)

// Runner runs one command on the host: *sshconn.Client, or a long-lived shell on it. A
// command that exits non-zero is an *sshconn.ExitError.
type Runner interface {
	RunCmd(ctx context.Context, cmd sshconn.Cmd) error
}

// Files is the lock and history of one target in one directory of one host.
type Files struct {
	dial   func(ctx context.Context) (Runner, error)
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
	return NewWithRunner(func(ctx context.Context) (Runner, error) {
		c, err := dial(ctx)
		if err != nil {
			return nil, err
		}
		return c, nil
	}, dir, target)
}

// NewWithRunner is New with the commands run by what dial returns.
func NewWithRunner(dial func(ctx context.Context) (Runner, error), dir, target string) (*Files, error) {
	if !path.IsAbs(dir) {
		return nil, fmt.Errorf("state directory %q for %s is not an absolute path", dir, target)
	}
	return &Files{dial: dial, dir: path.Clean(dir), target: target}, nil
}

func (f *Files) lockFile() string    { return f.dir + "/lock" }
func (f *Files) historyFile() string { return f.dir + "/history.jsonl" }

// run runs a shell line on the host, input (when not nil: text, a lock or a record) in its
// variable $in, and returns its stdout (with the error too: the lock scripts print what they
// found and exit non-zero). The scripts write $in with printf, a builtin: a command a host
// would start for every write (cat) costs more than the rest of the script.
func (f *Files) run(ctx context.Context, line string, input []byte) ([]byte, error) {
	c, err := f.dial(ctx)
	if err != nil {
		return nil, err
	}
	if bytes.IndexByte(input, 0) >= 0 {
		return nil, fmt.Errorf("writing the state of %s: the input holds a NUL byte", f.target)
	}
	var out bytes.Buffer
	cmd := sshconn.Cmd{Line: line, Stdout: &out}
	switch {
	case input == nil:
	case len(input) <= maxInline:
		cmd.Line = "in=" + sshconn.Quote(string(input)) + "\n" + line
	default:
		// A session's command line is one argument of sh -c, which Linux bounds (128 KiB).
		cmd.Line = "in=$(cat; echo .); in=${in%.}\n" + line
		cmd.Stdin = bytes.NewReader(input)
	}
	err = c.RunCmd(ctx, cmd)
	return out.Bytes(), err
}

// maxInline is the size up to which input goes in the command line.
const maxInline = 32 << 10

// mkdirLine creates dir unless it is there (the test is a builtin, mkdir a program).
func mkdirLine(dir string) string {
	q := sshconn.Quote(dir)
	return "[ -d " + q + " ] || mkdir -p " + q
}

// Exit statuses of the lock scripts.
const (
	statusHeld    = 3 // someone else holds it: the lock file is on stdout
	statusNoFlock = 4 // flock(1) is missing on the host
)

// guarded runs body under flock(1) on the guard file, the lock file's path in $f: deciding
// (free, expired, ours) and writing are one atomic step, even when two deploys take an
// expired lock at once. The lock file is replaced by rename, so a reader sees a whole lock.
func (f *Files) guarded(ctx context.Context, body string, input []byte) ([]byte, error) {
	q := sshconn.Quote
	line := fmt.Sprintf(`%[1]s || exit 1
command -v flock >/dev/null 2>&1 || { echo 'flock (util-linux) is needed on the host for the deploy lock' >&2; exit %[2]d; }
exec 9>>%[3]s
flock -w 30 9 || { echo 'timed out waiting for the lock guard' >&2; exit 1; }
f=%[4]s
tok() { t=; { read -r t && read -r t; } 2>/dev/null <"$f"; }
%[5]s`, mkdirLine(f.dir), statusNoFlock, q(f.dir+"/lock.guard"), q(f.lockFile()), body)
	return f.run(ctx, line, input)
}

// The lock file:
//
//	line 1: expiry, unix seconds (compared by the shell under the guard)
//	line 2: the holder's token (owner, pipeline, acquired)
//	line 3: the lock as JSON
func token(l targets.Lock) string {
	s := sha256.Sum256([]byte(l.Owner + "\x00" + l.PipelineID + "\x00" + l.Acquired.UTC().Format(time.RFC3339Nano)))
	return hex.EncodeToString(s[:16])
}

func lockFile(l targets.Lock) ([]byte, error) {
	l.Control = nil // kept in the control file, which a renewal leaves alone
	j, err := json.Marshal(l)
	if err != nil {
		return nil, err
	}
	return []byte(fmt.Sprintf("%d\n%s\n%s\n", l.Expires.Unix(), token(l), j)), nil
}

func parseLock(b []byte) (*targets.Lock, error) {
	parts := strings.SplitN(string(b), "\n", 3)
	if len(parts) < 3 {
		return nil, errors.New("malformed lock file")
	}
	var l targets.Lock
	if err := json.Unmarshal([]byte(strings.TrimSpace(parts[2])), &l); err != nil {
		return nil, fmt.Errorf("malformed lock file: %w", err)
	}
	return &l, nil
}

// Acquire takes the lock for l when nobody holds it or the holder's lock has expired by
// this machine's clock (the deploying machine's: hosts' clocks are not trusted). A lock
// held by someone else is a *targets.HeldError.
func (f *Files) Acquire(ctx context.Context, l targets.Lock) error {
	b, err := lockFile(l)
	if err != nil {
		return err
	}
	body := fmt.Sprintf(`e=; { read -r e; } 2>/dev/null <"$f"
if [ -n "$e" ] && [ "$e" -gt %d ] 2>/dev/null; then cat "$f"; exit %d; fi
printf '%%s' "$in" > "$f.tmp" && mv -f "$f.tmp" "$f" && { [ ! -e "$f.control" ] || rm -f "$f.control"; }
`, time.Now().Unix(), statusHeld)
	out, err := f.guarded(ctx, body, b)
	if err == nil {
		return nil
	}
	var ee *sshconn.ExitError
	if errors.As(err, &ee) && ee.Status == statusHeld {
		held, perr := parseLock(out)
		if perr != nil {
			return fmt.Errorf("taking the deploy lock of %s: %s holds something unreadable (%v); unlock to clear it", f.target, f.lockFile(), perr)
		}
		return &targets.HeldError{Target: f.target, Holder: *held}
	}
	return fmt.Errorf("taking the deploy lock of %s in %s: %w", f.target, f.dir, err)
}

// Renew writes l's new expiry when l still holds the lock.
func (f *Files) Renew(ctx context.Context, l targets.Lock) error {
	b, err := lockFile(l)
	if err != nil {
		return err
	}
	body := fmt.Sprintf(`tok; if [ "$t" != %s ]; then cat "$f" 2>/dev/null; exit %d; fi
printf '%%s' "$in" > "$f.tmp" && mv -f "$f.tmp" "$f"
`, token(l), statusHeld)
	out, err := f.guarded(ctx, body, b)
	if err == nil {
		return nil
	}
	var ee *sshconn.ExitError
	if !errors.As(err, &ee) || ee.Status != statusHeld {
		return fmt.Errorf("renewing the deploy lock of %s: %w", f.target, err)
	}
	who := "nobody (it was broken, or expired and taken and released)"
	if held, perr := parseLock(out); perr == nil {
		who = held.String()
	}
	return fmt.Errorf("renewing the deploy lock of %s: %w: held by %s", f.target, targets.ErrLockLost, who)
}

// Release removes the lock when l holds it; someone else's lock is left alone.
func (f *Files) Release(ctx context.Context, l targets.Lock) error {
	body := fmt.Sprintf(`tok; if [ "$t" = %s ]; then rm -f "$f" "$f.control"; fi
`, token(l))
	if _, err := f.guarded(ctx, body, nil); err != nil {
		return fmt.Errorf("releasing the deploy lock of %s: %w", f.target, err)
	}
	return nil
}

// Holder reads the lock, nil when nobody holds it (an expired lock is reported, with its
// expiry).
func (f *Files) Holder(ctx context.Context) (*targets.Lock, error) {
	q := sshconn.Quote(f.lockFile())
	out, err := f.run(ctx, "cat "+q+" 2>/dev/null; printf '\\036'; cat "+q+".control 2>/dev/null; exit 0", nil)
	if err != nil {
		return nil, fmt.Errorf("reading the deploy lock of %s: %w", f.target, err)
	}
	lock, control, _ := bytes.Cut(out, []byte{036})
	if len(bytes.TrimSpace(lock)) == 0 {
		return nil, nil
	}
	l, err := parseLock(lock)
	if err != nil {
		return nil, fmt.Errorf("reading the deploy lock of %s: %s: %w", f.target, f.lockFile(), err)
	}
	// The control applies to the lock it was written for: its first line is that lock's
	// token.
	if tok, j, ok := strings.Cut(string(control), "\n"); ok && tok == token(*l) {
		var c targets.Control
		if json.Unmarshal([]byte(strings.TrimSpace(j)), &c) == nil && c.Action != "" {
			l.Control = &c
		}
	}
	return l, nil
}

var _ targets.Controller = (*Files)(nil)

// SetControl writes c beside the lock (nil removes it) when holder still holds it. The
// control file's first line is the lock's token, so that a control never outlives the lock
// it was meant for.
func (f *Files) SetControl(ctx context.Context, holder targets.Lock, c *targets.Control) error {
	body := fmt.Sprintf(`tok; if [ "$t" != %s ]; then cat "$f" 2>/dev/null; exit %d; fi
rm -f "$f.control"
`, token(holder), statusHeld)
	var input []byte
	if c != nil {
		j, err := json.Marshal(c)
		if err != nil {
			return err
		}
		input = []byte(token(holder) + "\n" + string(j) + "\n")
		body += `printf '%s' "$in" > "$f.control.tmp" && mv -f "$f.control.tmp" "$f.control"` + "\n"
	}
	out, err := f.guarded(ctx, body, input)
	if err == nil {
		return nil
	}
	var ee *sshconn.ExitError
	if !errors.As(err, &ee) || ee.Status != statusHeld {
		return fmt.Errorf("writing the deploy control of %s: %w", f.target, err)
	}
	who := "nobody: the deploy finished"
	if held, perr := parseLock(out); perr == nil {
		who = "it is held by " + held.String()
	}
	return fmt.Errorf("writing the deploy control of %s: %w: %s", f.target, targets.ErrLockLost, who)
}

// Break removes the lock whoever holds it.
func (f *Files) Break(ctx context.Context) error {
	if _, err := f.guarded(ctx, `rm -f "$f" "$f.control"`+"\n", nil); err != nil {
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
	line := fmt.Sprintf(`%s && printf '%%s' "$in" >> %s`, mkdirLine(f.dir), sshconn.Quote(f.historyFile()))
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

// Journals is the history of a target kept on each of its hosts: a record is appended on
// every host (so that any host tells what was deployed to it) and read from every host,
// merged: a record that one host missed (it was unreachable when the record was written)
// is still in the history.
type Journals []*Files

var _ targets.Journal = Journals(nil)

// Append appends record on every host, in parallel; it fails when any host fails.
func (js Journals) Append(ctx context.Context, record json.RawMessage) error {
	errs := make([]error, len(js))
	var wg sync.WaitGroup
	for i, f := range js {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f.Append(ctx, record)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Records reads the history of every host in parallel and merges them (see Merge). It
// fails only when no host answers.
func (js Journals) Records(ctx context.Context, limit int) ([]json.RawMessage, error) {
	lists := make([][]json.RawMessage, len(js))
	errs := make([]error, len(js))
	var wg sync.WaitGroup
	for i, f := range js {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lists[i], errs[i] = f.Records(ctx, limit)
		}()
	}
	wg.Wait()
	var answered [][]json.RawMessage
	for i := range js {
		if errs[i] == nil {
			answered = append(answered, lists[i])
		}
	}
	if len(answered) == 0 && len(js) > 0 {
		return nil, errors.Join(errs...)
	}
	return Merge(answered, limit), nil
}

// Merge joins the histories of several hosts: one copy of each record (the same id, action
// and start time: a record is written alike to every host), ordered by start time (records
// that do not say keep their place after the one before them), the last limit of them
// (all when limit <= 0).
func Merge(lists [][]json.RawMessage, limit int) []json.RawMessage {
	type entry struct {
		rec     json.RawMessage
		started time.Time
	}
	var out []entry
	seen := map[string]bool{}
	for _, l := range lists {
		var last time.Time
		for _, rec := range l {
			var k struct {
				ID      string    `json:"id"`
				Action  string    `json:"action"`
				Started time.Time `json:"started"`
			}
			key := string(rec)
			if json.Unmarshal(rec, &k) == nil && k.ID != "" {
				key = k.ID + "\x00" + k.Action + "\x00" + k.Started.UTC().Format(time.RFC3339Nano)
			}
			if k.Started.IsZero() {
				k.Started = last
			}
			last = k.Started
			if seen[key] {
				continue
			}
			seen[key] = true
			out = append(out, entry{rec: rec, started: k.Started})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].started.Before(out[j].started) })
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	recs := make([]json.RawMessage, len(out))
	for i, e := range out {
		recs[i] = e.rec
	}
	return recs
}
