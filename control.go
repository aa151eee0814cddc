package main

import (
	"context"
	"io"

	"github.com/pushdeploy/pushdeploy/internal/dagger"
	"github.com/pushdeploy/pushdeploy/pipeline"
)

// Pause the deploy running in an environment in its bake: the bake's clock stops, probing goes on, its lock stays held.
// +cache="never"
func (m *Pushdeploy) Pause(
	ctx context.Context,
	// The environment, as pushdeploy.yaml names it.
	env string,
	// The environments file. Default: pushdeploy.yaml of the source, if it has one.
	// +optional
	config *dagger.File,
	// Who asks, as status then shows it. Default: the user and host the function runs as.
	// +optional
	deployer string,
	// text or json.
	// +default="text"
	format string,
) (string, error) {
	return m.control(ctx, config, env, deployer, format, (*pipeline.Environments).Pause)
}

// Resume a paused deploy: its bake takes up where it stopped.
// +cache="never"
func (m *Pushdeploy) Resume(
	ctx context.Context,
	// The environment, as pushdeploy.yaml names it.
	env string,
	// The environments file. Default: pushdeploy.yaml of the source, if it has one.
	// +optional
	config *dagger.File,
	// Who asks, as status then shows it. Default: the user and host the function runs as.
	// +optional
	deployer string,
	// text or json.
	// +default="text"
	format string,
) (string, error) {
	return m.control(ctx, config, env, deployer, format, (*pipeline.Environments).Resume)
}

// Abort the deploy running in an environment at its bake: every host it switched goes back.
// +cache="never"
func (m *Pushdeploy) Abort(
	ctx context.Context,
	// The environment, as pushdeploy.yaml names it.
	env string,
	// The environments file. Default: pushdeploy.yaml of the source, if it has one.
	// +optional
	config *dagger.File,
	// Who asks, as status then shows it. Default: the user and host the function runs as.
	// +optional
	deployer string,
	// text or json.
	// +default="text"
	format string,
) (string, error) {
	return m.control(ctx, config, env, deployer, format, (*pipeline.Environments).Abort)
}

// control is the one path of pause, resume and abort.
func (m *Pushdeploy) control(ctx context.Context, config *dagger.File, env, deployer, format string,
	op func(*pipeline.Environments, context.Context, string) (*pipeline.ControlState, error)) (string, error) {
	return m.envCall(ctx, config, env, format, deployer, func(ctx context.Context, x *pipeline.Environments, _ io.Writer) (result, error) {
		s, err := op(x, ctx, env)
		return result{v: s, text: func(w io.Writer) error {
			if s == nil {
				return nil
			}
			_, err := io.WriteString(w, s.Message+"\n")
			return err
		}}, err
	})
}
