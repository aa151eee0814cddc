package main

import (
	"github.com/spf13/cobra"

	"github.com/pushdeploy/pushdeploy/pipeline"
)

func init() { commands = append(commands, configCmd) }

func configCmd() *cobra.Command {
	var c common
	var env string
	cmd := &cobra.Command{
		Use:   "config --env NAME",
		Short: "Show an environment as pushdeploy understood it (the file plus the flags)",
		Long: `config prints the environment the other commands would act on: the file's settings with
the flags given applied, the secret references it uses and which credentials were given.
Secrets are shown only by name (NAME, env:NAME, file:PATH), never a value. It talks to no
target.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			x, err := c.environments(cmd, env)
			if err != nil {
				return err
			}
			v, err := x.Config(env)
			if err != nil {
				return err
			}
			return pipeline.RenderConfig(cmd.OutOrStdout(), c.format, v, x.Secrets)
		},
	}
	c.flags(cmd)
	cmd.Flags().StringVar(&env, "env", "", "the environment, as the file names it (without a file: its name)")
	_ = cmd.MarkFlagRequired("env")
	return cmd
}
