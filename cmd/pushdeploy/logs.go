package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/pushdeploy/pushdeploy/pipeline"
)

func init() { commands = append(commands, logsCmd, execCmd) }

func logsCmd() *cobra.Command {
	var c common
	var env, host string
	var since time.Duration
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs --env NAME [--host H] [--since 10m] [--follow]",
		Short: "Print the live release's logs, every line prefixed by its host",
		Long: `logs prints the logs of the live release on every host of the environment (or --host only),
each line prefixed by its host, the hosts side by side: docker logs of the live container on
Docker hosts; the logs of every running pod of each Deployment (a line also names its pod, as
kubectl logs --prefix does); on servers, the command the environment's ssh section names as
logs (e.g. logs: "journalctl -u myapp --no-pager"), run in the live release with the
PUSHDEPLOY_* variables, PUSHDEPLOY_LOGS_SINCE (--since in whole seconds, empty without it) and
PUSHDEPLOY_LOGS_FOLLOW (1 with --follow, else empty), for the command to pass on, e.g.
  logs: 'journalctl -u myapp --no-pager ${PUSHDEPLOY_LOGS_SINCE:+--since=-${PUSHDEPLOY_LOGS_SINCE}s} ${PUSHDEPLOY_LOGS_FOLLOW:+-f}'
--follow streams until interrupted. -o json prints a report with each host's output (no
--follow). Exits non-zero when any host failed (7 when one could not be reached).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			x, err := c.environments(cmd, env)
			if err != nil {
				return err
			}
			opts := []pipeline.LogsOption{pipeline.LogsHost(host), pipeline.LogsSince(since), pipeline.LogsFollow(follow)}
			if c.format == pipeline.FormatJSON {
				rep, err := x.Logs(cmd.Context(), env, nil, opts...)
				if rep != nil {
					if jerr := pipeline.JSON(cmd.OutOrStdout(), rep); jerr != nil && err == nil {
						err = jerr
					}
				}
				return err
			}
			_, err = x.Logs(cmd.Context(), env, cmd.OutOrStdout(), opts...)
			return err
		},
	}
	c.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&env, "env", "", "the environment, as the file names it (without a file: its name)")
	_ = cmd.MarkFlagRequired("env")
	f.StringVar(&host, "host", "", "only this host (as status names it; the port or deployment/ may be left out)")
	f.DurationVar(&since, "since", 0, "only what was logged this long ago or later, e.g. 10m (default: everything kept)")
	f.BoolVar(&follow, "follow", false, "keep streaming new lines until interrupted")
	return cmd
}

func execCmd() *cobra.Command {
	var c common
	var env, host string
	cmd := &cobra.Command{
		Use:   "exec --env NAME [--host H] -- CMD [ARG...]",
		Short: "Run a command in the live release on each host, prefixed output",
		Long: `exec runs CMD in the live release on every host of the environment (or --host only), the
hosts side by side, each line of output prefixed by its host: on servers in <path>/current
with the live release's PUSHDEPLOY_* variables and PUSHDEPLOY_PATH; in the live container on
Docker hosts (docker exec); in one running pod of each Deployment (kubectl exec). The words
are run as given, on every kind: a pipe or a glob needs a shell, exec -- sh -c '...'. A line
per host on stderr says how it ended; -o json prints a report with each host's output and
exit status instead. Exits 1 when the command failed (or found nothing live) on any host, 7
when a host could not be reached.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			x, err := c.environments(cmd, env)
			if err != nil {
				return err
			}
			opts := []pipeline.ExecOption{pipeline.ExecHost(host)}
			if c.format == pipeline.FormatJSON {
				rep, err := x.Exec(cmd.Context(), env, args, nil, opts...)
				if rep != nil {
					if jerr := pipeline.JSON(cmd.OutOrStdout(), rep); jerr != nil && err == nil {
						err = jerr
					}
				}
				return err
			}
			rep, err := x.Exec(cmd.Context(), env, args, cmd.OutOrStdout(), opts...)
			if rep != nil {
				pipeline.RenderOutputSummary(cmd.ErrOrStderr(), rep)
			}
			return err
		},
	}
	c.flags(cmd)
	f := cmd.Flags()
	// Everything after the command's first word is its own: exec --env x ls -la.
	f.SetInterspersed(false)
	f.StringVar(&env, "env", "", "the environment, as the file names it (without a file: its name)")
	_ = cmd.MarkFlagRequired("env")
	f.StringVar(&host, "host", "", "only this host (as status names it; the port or deployment/ may be left out)")
	return cmd
}
