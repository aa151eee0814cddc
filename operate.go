package main

import (
	"context"
	"io"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/dagger"
	"github.com/pushdeploy/pushdeploy/pipeline"
)

// Check every host of an environment before a deploy, changing nothing.
//
// Reachable, host key known, login, deploy path writable, free disk, the restart command's
// program, the Docker socket, the Kubernetes permissions: a table per host, and a failure
// when any check fails.
// +cache="never"
func (m *Pushdeploy) Check(
	ctx context.Context,
	// The environment, as pushdeploy.yaml names it.
	env string,
	// The environments file. Default: pushdeploy.yaml of the source, if it has one.
	// +optional
	config *dagger.File,
	// text or json.
	// +default="text"
	format string,
) (string, error) {
	return m.envCall(ctx, config, env, format, "", func(ctx context.Context, x *pipeline.Environments, _ io.Writer) (result, error) {
		rep, err := x.Check(ctx, env)
		if err != nil {
			return result{}, err
		}
		return result{v: rep, text: func(w io.Writer) error { return pipeline.RenderCheck(w, rep) }}, pipeline.CheckError(rep)
	})
}

// Show an environment as pushdeploy understood it (file and arguments), secrets only by name.
// +cache="never"
func (m *Pushdeploy) Config(
	ctx context.Context,
	// The environment, as pushdeploy.yaml names it.
	env string,
	// The environments file. Default: pushdeploy.yaml of the source, if it has one.
	// +optional
	config *dagger.File,
	// text (YAML) or json.
	// +default="text"
	format string,
) (string, error) {
	return m.envCall(ctx, config, env, format, "", func(_ context.Context, x *pipeline.Environments, _ io.Writer) (result, error) {
		v, err := x.Config(env)
		return result{v: v, text: func(w io.Writer) error { return pipeline.RenderConfig(w, pipeline.FormatText, v, x.Secrets) }}, err
	})
}

// Hold, show or release an environment's deploy lock, e.g. for a maintenance window.
func (m *Pushdeploy) Lock(
	// The environment, as pushdeploy.yaml names it.
	env string,
	// The environments file. Default: pushdeploy.yaml of the source, if it has one.
	// +optional
	config *dagger.File,
	// Who holds the lock, for its holder line. Default: the user and host the function runs
	// as, so CI should pass its actor.
	// +optional
	deployer string,
) *Lock {
	return &Lock{Module: m, Env: env, Config: config, Deployer: deployer}
}

// Lock is one environment's deploy lock (dagger call lock --env NAME status|acquire|release).
type Lock struct {
	// The module, with its source and credentials.
	Module *Pushdeploy
	// The environment.
	Env string
	// The environments file, nil for the source's pushdeploy.yaml.
	Config *dagger.File
	// Who acts.
	Deployer string
}

// Show who holds the lock, and until when.
// +cache="never"
func (l *Lock) Status(
	ctx context.Context,
	// text or json.
	// +default="text"
	format string,
) (string, error) {
	return l.call(ctx, format, func(ctx context.Context, x *pipeline.Environments) (*pipeline.LockState, error) {
		return x.LockStatus(ctx, l.Env)
	})
}

// Take the lock for a maintenance window: deploys then wait or refuse, as lock.wait says.
// +cache="never"
func (l *Lock) Acquire(
	ctx context.Context,
	// How long the lock is held unless released first, e.g. 2h.
	// +default="1h"
	ttl string,
	// Why, for whoever finds the lock held.
	// +optional
	reason string,
	// text or json.
	// +default="text"
	format string,
) (string, error) {
	return l.call(ctx, format, func(ctx context.Context, x *pipeline.Environments) (*pipeline.LockState, error) {
		d, err := time.ParseDuration(or(ttl, "1h"))
		if err != nil {
			return nil, &pipeline.UsageError{Err: err}
		}
		return x.AcquireLock(ctx, l.Env, d, reason)
	})
}

// Release a lock that acquire took (another's: unlock --force).
// +cache="never"
func (l *Lock) Release(
	ctx context.Context,
	// text or json.
	// +default="text"
	format string,
) (string, error) {
	return l.call(ctx, format, func(ctx context.Context, x *pipeline.Environments) (*pipeline.LockState, error) {
		return x.ReleaseLock(ctx, l.Env)
	})
}

func (l *Lock) call(ctx context.Context, format string, op func(context.Context, *pipeline.Environments) (*pipeline.LockState, error)) (string, error) {
	return l.Module.envCall(ctx, l.Config, l.Env, format, l.Deployer, func(ctx context.Context, x *pipeline.Environments, _ io.Writer) (result, error) {
		st, err := op(ctx, x)
		if st == nil {
			return result{}, err
		}
		return result{v: st, text: func(w io.Writer) error { return pipeline.RenderLock(w, st) }}, err
	})
}
