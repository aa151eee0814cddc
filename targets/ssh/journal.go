package ssh

import (
	"context"
	"encoding/json"
	"errors"
	"sync"

	"github.com/pushdeploy/pushdeploy/targets/hoststate"
)

// journal appends every record to the history file of every host (so that any host tells
// what was deployed to it), and reads from the first host that answers.
type journal struct {
	t     *Target
	files []*hoststate.Files
}

func (j *journal) Append(ctx context.Context, record json.RawMessage) error {
	errs := make([]error, len(j.files))
	var wg sync.WaitGroup
	for i, f := range j.files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f.Append(ctx, record)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (j *journal) Records(ctx context.Context, limit int) ([]json.RawMessage, error) {
	var errs []error
	for _, f := range j.files {
		recs, err := f.Records(ctx, limit)
		if err == nil {
			return recs, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}
