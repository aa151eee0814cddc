package assemble

import (
	"fmt"

	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/targets"
)

// serverOption stands for the server target's options until it lands.
type serverOption any

func server(app, name string, env *config.Environment, s *pipeline.Secrets, extra Extra) (targets.Target, error) {
	return nil, fmt.Errorf("environment %q: the ssh target is not wired yet", name)
}
