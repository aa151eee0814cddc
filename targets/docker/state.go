package docker

import (
	"context"
	"path"

	"github.com/pushdeploy/pushdeploy/targets/hoststate"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// stateFiles are the state files in <state dir>/<app>-<env>/ on host h.
func (t *Target) stateFiles(h *Host) (*hoststate.Files, error) {
	dial := func(ctx context.Context) (*sshconn.Client, error) { return h.sshClient(ctx) }
	return hoststate.New(dial, path.Join(t.o.stateDir, t.app+"-"+t.env), "docker target "+t.app+"/"+t.env)
}

// newState keeps the deploy lock on the first host (one place every deploy of the target
// goes through) and the history on every host, as the server target does.
func newState(t *Target) (lock *hoststate.Files, journal hoststate.Journals, err error) {
	for _, h := range t.hosts {
		f, err := t.stateFiles(h)
		if err != nil {
			return nil, nil, err
		}
		journal = append(journal, f)
	}
	return journal[0], journal, nil
}
