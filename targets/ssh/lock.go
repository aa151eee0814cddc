package ssh

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// locker is the deploy lock, a file in path/.pushdeploy on the primary host:
//
//	line 1: expiry, unix seconds
//	line 2: the holder's token (who, which pipeline, since when)
//	line 3: the lock as JSON
//
// Every change happens under flock(1) on a guard file, so that deciding (free, expired,
// ours) and writing are one atomic step even when two deploys steal an expired lock at
// once. The file itself is always replaced by rename, so a reader sees a whole lock.
type locker struct {
	h    *Host
	name string
}

var _ targets.Locker = (*locker)(nil)

const (
	lockHeld   = 3 // exit status: someone else holds it; the lock file is on stdout
	lockNoFlck = 4 // exit status: no flock on the host
)

func token(l targets.Lock) string {
	s := sha256.Sum256([]byte(l.Owner + "\x00" + l.PipelineID + "\x00" + l.Acquired.UTC().Format(time.RFC3339Nano)))
	return hex.EncodeToString(s[:16])
}

// guarded runs body under the lock's flock, with the lock file's path in $f.
func (k *locker) guarded(ctx context.Context, body string, input []byte) ([]byte, error) {
	q := sshconn.Quote
	m := k.h.meta()
	s := fmt.Sprintf(`mkdir -p %[1]s || exit 1
command -v flock >/dev/null 2>&1 || { echo 'flock (util-linux) is needed on the host for the deploy lock' >&2; exit %[2]d; }
exec 9>>%[3]s
flock -w 30 9 || { echo 'timed out waiting for the lock guard' >&2; exit 1; }
f=%[4]s
%[5]s`, q(m), lockNoFlck, q(m+"/lock.guard"), q(m+"/lock"), body)
	c, err := k.h.client(ctx)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	cmd := sshconn.Cmd{Line: s, Stdout: &out}
	if input != nil {
		cmd.Stdin = bytes.NewReader(input)
	}
	err = c.RunCmd(ctx, cmd)
	return out.Bytes(), err
}

func lockFile(l targets.Lock) ([]byte, error) {
	j, err := json.Marshal(l)
	if err != nil {
		return nil, err
	}
	return []byte(fmt.Sprintf("%d\n%s\n%s\n", l.Expires.Unix(), token(l), j)), nil
}

func parseLockFile(b []byte) (*targets.Lock, error) {
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

func (k *locker) held(out []byte, err error, doing string) error {
	var ee *sshconn.ExitError
	if errors.As(err, &ee) && ee.Status == lockHeld {
		l, perr := parseLockFile(out)
		if perr != nil {
			return fmt.Errorf("%s the deploy lock of %s: it holds something unreadable (%v); unlock to clear it", doing, k.name, perr)
		}
		return &targets.HeldError{Target: k.name, Holder: *l}
	}
	return fmt.Errorf("%s the deploy lock of %s: %w", doing, k.name, err)
}

// Acquire takes the lock when nobody holds it or the holder's lock has expired (by this
// machine's clock).
func (k *locker) Acquire(ctx context.Context, l targets.Lock) error {
	b, err := lockFile(l)
	if err != nil {
		return err
	}
	body := fmt.Sprintf(`if [ -s "$f" ] && [ "$(head -n 1 "$f")" -gt %d ] 2>/dev/null; then cat "$f"; exit %d; fi
cat > "$f.tmp" && mv -f "$f.tmp" "$f"
`, time.Now().Unix(), lockHeld)
	if out, err := k.guarded(ctx, body, b); err != nil {
		return k.held(out, err, "taking")
	}
	return nil
}

// Renew moves the expiry of the lock l holds.
func (k *locker) Renew(ctx context.Context, l targets.Lock) error {
	b, err := lockFile(l)
	if err != nil {
		return err
	}
	body := fmt.Sprintf(`if [ "$(sed -n 2p "$f" 2>/dev/null)" != %s ]; then cat "$f" 2>/dev/null; exit %d; fi
cat > "$f.tmp" && mv -f "$f.tmp" "$f"
`, token(l), lockHeld)
	if out, err := k.guarded(ctx, body, b); err != nil {
		var ee *sshconn.ExitError
		if !errors.As(err, &ee) || ee.Status != lockHeld {
			return fmt.Errorf("renewing the deploy lock of %s: %w", k.name, err)
		}
		who := "nobody (it was broken, or expired and taken and released)"
		if held, perr := parseLockFile(out); perr == nil {
			who = held.String()
		}
		return fmt.Errorf("renewing the deploy lock of %s: it is no longer ours: held by %s", k.name, who)
	}
	return nil
}

// Release gives up the lock when l holds it; someone else's is left alone.
func (k *locker) Release(ctx context.Context, l targets.Lock) error {
	body := fmt.Sprintf(`if [ "$(sed -n 2p "$f" 2>/dev/null)" = %s ]; then rm -f "$f"; fi
`, token(l))
	if _, err := k.guarded(ctx, body, nil); err != nil {
		return fmt.Errorf("releasing the deploy lock of %s: %w", k.name, err)
	}
	return nil
}

// Holder reads the lock, nil when nobody holds it (an expired lock is still reported, with
// its expiry).
func (k *locker) Holder(ctx context.Context) (*targets.Lock, error) {
	c, err := k.h.client(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the deploy lock of %s: %w", k.name, err)
	}
	out, err := c.Output(ctx, "cat "+sshconn.Quote(k.h.meta()+"/lock")+" 2>/dev/null; exit 0")
	if err != nil {
		return nil, fmt.Errorf("reading the deploy lock of %s: %w", k.name, err)
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil, nil
	}
	l, err := parseLockFile(out)
	if err != nil {
		return nil, fmt.Errorf("reading the deploy lock of %s: %w", k.name, err)
	}
	return l, nil
}

// Break removes the lock whoever holds it.
func (k *locker) Break(ctx context.Context) error {
	if _, err := k.guarded(ctx, `rm -f "$f"`+"\n", nil); err != nil {
		return fmt.Errorf("breaking the deploy lock of %s: %w", k.name, err)
	}
	return nil
}
