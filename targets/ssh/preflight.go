package ssh

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

var _ targets.Preflighter = (*Target)(nil)

// Preflight checks the cheap part of `pushdeploy check` on every host at once, changing
// nothing: the host is reachable, its key known and the login accepted (the connection is
// kept for the deploy), and the application's directory, or the nearest of its parents
// that exists, is a directory the login can write. The pipeline runs it before the deploy
// lock, so that a fleet with one host down is refused before any host changed.
func (t *Target) Preflight(ctx context.Context) error {
	errs := make([]error, len(t.hosts))
	var wg sync.WaitGroup
	for i, h := range t.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.preflight(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (h *Host) preflight(ctx context.Context) error {
	c, err := h.client(ctx)
	if err != nil {
		return err
	}
	q := sshconn.Quote
	s := fmt.Sprintf(`d=%s; while [ ! -e "$d" ]; do d=$(dirname "$d"); done; [ -d "$d" ] && [ -w "$d" ] && [ -x "$d" ] || { echo "$d is not a directory the login can write" >&2; exit 1; }`, q(h.path))
	if _, stderr, err := c.Run(ctx, s); err != nil {
		msg := strings.TrimSpace(string(stderr))
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("host %s: the deploy path %q: %s", h.addr, h.path, msg)
	}
	return nil
}
