package main

import (
	"github.com/spf13/cobra"

	"github.com/pushdeploy/pushdeploy/pipeline"
)

func init() {
	for _, a := range []string{"pause", "resume", "abort"} {
		commands = append(commands, func() *cobra.Command { return controlCmd(a) })
	}
}

// controlCmd is pause, resume or abort of the deploy running in an environment: the request
// goes into the target's deploy lock, where the running deploy reads it in its bake.
func controlCmd(action string) *cobra.Command {
	var c common
	var env string
	short := map[string]string{
		"pause":  "Hold the deploy running in an environment in its bake (it keeps probing and keeps its lock)",
		"resume": "Let a paused deploy go on: its bake takes up where it stopped",
		"abort":  "Stop the deploy running in an environment in its bake and roll back every host it switched",
	}[action]
	cmd := &cobra.Command{
		Use:   action + " --env NAME",
		Short: short,
		Long: short + `.

The request is kept with the environment's deploy lock (beside the lock file on the first
host; an annotation of the Lease in Kubernetes), so it works from any machine that reaches
the target; the running deploy reads it every second of its bakes. status shows it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			x, err := c.environments(cmd, env)
			if err != nil {
				return err
			}
			do := map[string]func(*pipeline.Environments) (*pipeline.ControlState, error){
				"pause":  func(x *pipeline.Environments) (*pipeline.ControlState, error) { return x.Pause(cmd.Context(), env) },
				"resume": func(x *pipeline.Environments) (*pipeline.ControlState, error) { return x.Resume(cmd.Context(), env) },
				"abort":  func(x *pipeline.Environments) (*pipeline.ControlState, error) { return x.Abort(cmd.Context(), env) },
			}[action]
			s, err := do(x)
			if err != nil {
				return err
			}
			if c.format == pipeline.FormatJSON {
				return pipeline.JSON(cmd.OutOrStdout(), s)
			}
			_, err = cmd.OutOrStdout().Write([]byte(s.Message + "\n"))
			return err
		},
	}
	c.flags(cmd)
	cmd.Flags().StringVar(&env, "env", "", "the environment, as the file names it (without a file: its name)")
	_ = cmd.MarkFlagRequired("env")
	return cmd
}
