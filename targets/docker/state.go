package docker

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/pushdeploy/pushdeploy/targets"
)

// stateFiles is the deploy lock and the history on the first host. TODO: shared with targets/ssh.
type stateFiles struct{ t *Target }

func newStateFiles(t *Target) *stateFiles { return &stateFiles{t: t} }

var errTODO = errors.New("not yet")

func (s *stateFiles) Acquire(ctx context.Context, l targets.Lock) error { return nil }
func (s *stateFiles) Renew(ctx context.Context, l targets.Lock) error   { return nil }
func (s *stateFiles) Release(ctx context.Context, l targets.Lock) error { return nil }
func (s *stateFiles) Holder(ctx context.Context) (*targets.Lock, error) { return nil, nil }
func (s *stateFiles) Break(ctx context.Context) error                   { return nil }
func (s *stateFiles) Append(ctx context.Context, record json.RawMessage) error { return nil }
func (s *stateFiles) Records(ctx context.Context, limit int) ([]json.RawMessage, error) {
	return nil, errTODO
}
