package main

import (
	"context"

	"github.com/pushdeploy/pushdeploy/internal/dagger"
	"github.com/pushdeploy/pushdeploy/pipeline"
)

// Open a container with exactly the pipeline's access to an environment, for a shell.
//
// dagger call debug --env staging terminal: ssh staging-1 (staging-2, ...) logs in to each
// host with the environment's key and known_hosts (~/.ssh/config names every host), docker
// talks to the first docker host's engine over SSH (DOCKER_HOST), kubectl uses the
// kubeconfig with the environment's namespace. The key and the kubeconfig are secret files,
// never environment variables. The source is at /src.
// +cache="never"
func (m *Pushdeploy) Debug(
	ctx context.Context,
	// The environment, as pushdeploy.yaml names it.
	env string,
	// The environments file. Default: pushdeploy.yaml of the source, if it has one.
	// +optional
	config *dagger.File,
	// The image of the container: bring one with the docker or kubectl CLI for those kinds.
	// Default: the Go toolchain image (it has ssh).
	// +optional
	image string,
) (*dagger.Container, error) {
	x, err := m.environments(ctx, config, env)
	if err != nil {
		return nil, err
	}
	a, err := x.Access(ctx, env)
	if err != nil {
		return nil, err
	}
	ctr := dag.Container().From(or(image, m.GoImage)).
		WithDirectory("/src", m.Source).WithWorkdir("/src").
		WithEnvVariable("PUSHDEPLOY_ENV", env).
		WithEnvVariable("PUSHDEPLOY_KIND", a.Kind)
	secret := func(what string, v []byte) *dagger.Secret {
		return dag.SetSecret("pushdeploy-debug-"+env+"-"+what, string(v))
	}
	if a.SSHConfig != "" {
		ctr = ctr.WithNewFile("/root/.ssh/config", a.SSHConfig, dagger.ContainerWithNewFileOpts{Permissions: 0o600}).
			WithNewFile(pipeline.AccessKnownHostsPath, string(a.KnownHosts), dagger.ContainerWithNewFileOpts{Permissions: 0o600}).
			WithMountedSecret(pipeline.AccessKeyPath, secret("ssh-key", a.Key))
	}
	if a.DockerHost != "" {
		ctr = ctr.WithEnvVariable("DOCKER_HOST", a.DockerHost)
	}
	if len(a.Kubeconfig) > 0 {
		ctr = ctr.WithMountedSecret(pipeline.AccessKubeconfigPath, secret("kubeconfig", a.Kubeconfig)).
			WithEnvVariable("KUBECONFIG", pipeline.AccessKubeconfigPath)
	}
	return ctr, nil
}
