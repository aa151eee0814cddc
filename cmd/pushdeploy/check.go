package main

import (
	"github.com/spf13/cobra"

	"github.com/pushdeploy/pushdeploy/pipeline"
)

func init() { commands = append(commands, checkCmd) }

func checkCmd() *cobra.Command {
	var c common
	var env string
	cmd := &cobra.Command{
		Use:   "check --env NAME",
		Short: "Check every host of an environment before a deploy, changing nothing",
		Long: `check checks what a deploy of the environment needs, per host, changing nothing (Capistrano's
deploy:check): for ssh and docker hosts that they are reachable, their host key is known and
the login is accepted; for ssh hosts that the deploy path is writable, the free disk (at
least the live release's size) and that the restart command's program is on the PATH; then
the target's own preflight: the Docker socket and state directory of every host, or every
Kubernetes permission the target uses (SelfSubjectAccessReview) and its Deployments. It
prints a table per host (-o json: the report) and exits non-zero when a check failed (7 when
no host could be reached).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			x, err := c.environments(cmd, env)
			if err != nil {
				return err
			}
			rep, err := x.Check(cmd.Context(), env)
			if err != nil {
				return err
			}
			if c.format == pipeline.FormatJSON {
				err = pipeline.JSON(cmd.OutOrStdout(), rep)
			} else {
				err = pipeline.RenderCheck(cmd.OutOrStdout(), rep)
			}
			if err != nil {
				return err
			}
			return pipeline.CheckError(rep)
		},
	}
	c.flags(cmd)
	cmd.Flags().StringVar(&env, "env", "", "the environment, as the file names it (without a file: its name)")
	_ = cmd.MarkFlagRequired("env")
	return cmd
}
