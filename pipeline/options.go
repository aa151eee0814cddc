package pipeline

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pushdeploy/pushdeploy/targets"
)

// Option configures Rollout, Rollback and the deploy flow.
type Option func(*options) error

type options struct {
	batchSize    int
	batchPercent int
	health       *HealthCheck
	stable       time.Duration
	current      func() targets.Release
	keep         int
	lockWait     time.Duration
	lockTTL      time.Duration
	owner        string
	pipelineID   string
	log          io.Writer
	now          func() time.Time
	record       func(*Record)
	// progress: WithProgress (progress.go).
	progress      io.Writer
	progressEvery time.Duration
	// Progressive delivery and irreversible releases (progressive.go, irreversible.go).
	bake               time.Duration
	steps              []Step
	controlPoll        time.Duration
	irreversible       string // why the release is irreversible once a host runs it ("" it is not)
	acrossIrreversible bool   // a rollback may go back across an irreversible release
}

// makeOptions sets every default, applies opts, then rejects bad combinations.
func makeOptions(opts ...Option) (*options, error) {
	o := &options{
		keep:     5,
		lockTTL:  10 * time.Minute,
		owner:    defaultOwner(),
		log:      io.Discard,
		now:      time.Now,
		lockWait: 0,
		stable:   DefaultStable,

		progressEvery: DefaultProgressEvery,
		// A pause or abort is seen within a second of being asked.
		controlPoll: time.Second,
	}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	if o.batchSize > 0 && o.batchPercent > 0 {
		return nil, errors.New("batch size and batch percent are exclusive: give one")
	}
	if len(o.steps) > 0 && (o.batchSize > 0 || o.batchPercent > 0) {
		return nil, errors.New("canary steps and batches both say how many hosts go live at a time: give one")
	}
	if o.keep < 2 {
		return nil, fmt.Errorf("keeping %d releases: at least 2 are needed (the live one and the previous)", o.keep)
	}
	if o.health != nil {
		if err := o.health.validate(); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// WithBatchSize deploys to n hosts at a time, the hosts of a batch in parallel.
// Default: every host in one batch.
func WithBatchSize(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("batch size %d: must be at least 1", n)
		}
		o.batchSize = n
		return nil
	}
}

// WithBatchPercent deploys to p percent of the hosts at a time (rounded up, at least one).
// Default: every host in one batch.
func WithBatchPercent(p int) Option {
	return func(o *options) error {
		if p < 1 || p > 100 {
			return fmt.Errorf("batch percent %d%%: must be between 1%% and 100%%", p)
		}
		o.batchPercent = p
		return nil
	}
}

// WithHealthCheck checks every host after its switch. Default: no check beyond the
// target's own (a container's HEALTHCHECK, a rollout's status).
func WithHealthCheck(h HealthCheck) Option {
	return func(o *options) error {
		h := h
		o.health = &h
		return nil
	}
}

// WithStable sets the stability window: after its first passing check, a host must keep
// passing the configured check (tried every interval) and, where the host can tell (a
// container), stay up, the same process not restarted, for d before it counts as healthy.
// 0 turns the window off. With no configured check and a host that cannot tell, there is
// nothing to watch and no window. Default: DefaultStable (5s).
func WithStable(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("stability window %s: must not be negative", d)
		}
		o.stable = d
		return nil
	}
}

// WithKeep keeps n releases on each host (the live one and the previous are never
// pruned). Default: 5.
func WithKeep(n int) Option {
	return func(o *options) error { o.keep = n; return nil }
}

// WithLockWait waits up to d for a deploy lock that someone else holds. Default: 0, fail at
// once naming the holder.
func WithLockWait(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("lock wait %s: must not be negative", d)
		}
		o.lockWait = d
		return nil
	}
}

// WithLockTTL sets how long the lock lives unless renewed; a running deploy renews it every
// third of that, so only a dead deploy's lock expires. Default: 10 minutes.
func WithLockTTL(d time.Duration) Option {
	return func(o *options) error {
		if d < time.Second {
			return fmt.Errorf("lock ttl %s: must be at least 1s", d)
		}
		o.lockTTL = d
		return nil
	}
}

// WithOwner names who deploys, in the lock and the record. Default: $USER@hostname.
func WithOwner(owner, pipelineID string) Option {
	return func(o *options) error {
		if owner == "" {
			return errors.New("lock owner must not be empty")
		}
		o.owner, o.pipelineID = owner, pipelineID
		return nil
	}
}

// WithLogger reports progress, one line per step and host. Default: nowhere.
func WithLogger(w io.Writer) Option {
	return func(o *options) error {
		if w == nil {
			w = io.Discard
		}
		o.log = w
		return nil
	}
}

// batches splits hosts into the configured batches, in order.
func (o *options) batches(hosts []targets.Host) [][]targets.Host {
	size := len(hosts)
	switch {
	case o.batchSize > 0:
		size = o.batchSize
	case o.batchPercent > 0:
		size = (len(hosts)*o.batchPercent + 99) / 100
	}
	if size < 1 {
		size = 1
	}
	var out [][]targets.Host
	for i := 0; i < len(hosts); i += size {
		out = append(out, hosts[i:min(i+size, len(hosts))])
	}
	return out
}

// DefaultHookTimeout bounds each hook command unless hooks.timeout says otherwise: a hung
// command is killed (on hosts, its whole process group) and fails the deploy, which rolls
// back and lets go of the lock.
const DefaultHookTimeout = 5 * time.Minute
