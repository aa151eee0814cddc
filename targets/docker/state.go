package docker

import (
	"context"
	"path"

	"github.com/pushdeploy/pushdeploy/targets/hoststate"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// newState keeps the deploy lock and the history in <state dir>/<app>-<env>/ on the first
// host: one place every deploy of the target goes through.
func newState(t *Target) (*hoststate.Files, error) {
	first := t.hosts[0]
	dial := func(ctx context.Context) (*sshconn.Client, error) { return first.sshClient(ctx) }
	return hoststate.New(dial, path.Join(t.o.stateDir, t.app+"-"+t.env), "docker target "+t.app+"/"+t.env)
}
