package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/dagger"
	"github.com/pushdeploy/pushdeploy/pipeline"
)

// Print the live release's logs on each host of an environment, every line prefixed by its host.
//
// docker logs of the live container, the pods of each Deployment, and on servers the logs
// command the environment names (ssh.logs, e.g. "journalctl -u myapp --no-pager"). The lines
// stream to the progress output as they come (with --follow until the call is stopped).
// +cache="never"
func (m *Pushdeploy) Logs(
	ctx context.Context,
	// The environment, as pushdeploy.yaml names it.
	env string,
	// The environments file. Default: pushdeploy.yaml of the source, if it has one.
	// +optional
	config *dagger.File,
	// Only this host, as status names it (the port or deployment/ may be left out).
	// +optional
	host string,
	// Only what was logged this long ago or later, e.g. 10m. Default: everything kept.
	// +optional
	since string,
	// Keep streaming new lines until the call is stopped (text only).
	// +optional
	follow bool,
	// text or json (each host's output in a report).
	// +default="text"
	format string,
) (string, error) {
	return m.envCall(ctx, config, env, format, "", func(ctx context.Context, x *pipeline.Environments, log io.Writer) (result, error) {
		var d time.Duration
		if since != "" {
			var err error
			if d, err = time.ParseDuration(since); err != nil {
				return result{}, fmt.Errorf("logs --since %q: a duration such as 10m or 1h30m: %w", since, err)
			}
		}
		opts := []pipeline.LogsOption{pipeline.LogsHost(host), pipeline.LogsSince(d), pipeline.LogsFollow(follow)}
		if format == pipeline.FormatJSON {
			log = nil
		}
		rep, err := x.Logs(ctx, env, log, opts...)
		return result{v: rep}, err
	})
}

// Run a command in the live release on each host of an environment, output prefixed by host.
//
// On servers in the live release's directory with its PUSHDEPLOY_* variables, in the live
// container on Docker hosts, in one pod of each Deployment. Fails when it fails on any host.
// +cache="never"
func (m *Pushdeploy) Exec(
	ctx context.Context,
	// The environment, as pushdeploy.yaml names it.
	env string,
	// The command, run by sh -c.
	// +optional
	cmd string,
	// The command's words, run as given (for images without sh), instead of --cmd.
	// +optional
	args []string,
	// The environments file. Default: pushdeploy.yaml of the source, if it has one.
	// +optional
	config *dagger.File,
	// Only this host, as status names it (the port or deployment/ may be left out).
	// +optional
	host string,
	// text or json (each host's output and exit code in a report).
	// +default="text"
	format string,
) (string, error) {
	return m.envCall(ctx, config, env, format, "", func(ctx context.Context, x *pipeline.Environments, log io.Writer) (result, error) {
		var argv []string
		switch {
		case cmd != "" && len(args) > 0:
			return result{}, errors.New("exec: give --cmd or --args, not both")
		case cmd != "":
			argv = pipeline.ShellCommand(cmd)
		case len(args) > 0:
			argv = args
		default:
			return result{}, errors.New("exec: no command: give --cmd \"...\" (run by sh -c) or --args word,word")
		}
		if format == pipeline.FormatJSON {
			log = nil
		}
		rep, err := x.Exec(ctx, env, argv, log, pipeline.ExecHost(host))
		return result{v: rep, text: func(w io.Writer) error {
			if rep == nil {
				return nil
			}
			return pipeline.RenderOutputSummary(w, rep)
		}}, err
	})
}
