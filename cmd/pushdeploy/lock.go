package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/pushdeploy/pushdeploy/pipeline"
)

func init() { commands = append(commands, lockCmd) }

func lockCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lock (status|acquire|release) --env NAME",
		Short: "Show, hold or release an environment's deploy lock (maintenance windows)",
		Long: `lock status shows who holds an environment's deploy lock. lock acquire holds it for a
maintenance window: deploys meanwhile wait for it or are refused, as the environment's
lock.wait says. The lock is not renewed: it lasts --ttl (default 1h) unless released first.
lock release frees a lock that the same --deployer (default $USER@hostname) took, and
refuses anyone else's: unlock (--force within its ttl) is for breaking a dead deploy's lock.`,
	}
	var reason string
	var ttl time.Duration
	acquire := lockSub("acquire", "Hold the deploy lock for a maintenance window", func(cmd *cobra.Command, x *pipeline.Environments, env string) (*pipeline.LockState, error) {
		return x.AcquireLock(cmd.Context(), env, ttl, reason)
	})
	acquire.Flags().StringVar(&reason, "reason", "", "why the lock is held, shown to whoever finds it held")
	acquire.Flags().DurationVar(&ttl, "ttl", pipeline.DefaultMaintenanceTTL, "how long the lock lasts unless released (it is not renewed)")
	cmd.AddCommand(
		lockSub("status", "Show who holds the deploy lock", func(cmd *cobra.Command, x *pipeline.Environments, env string) (*pipeline.LockState, error) {
			return x.LockStatus(cmd.Context(), env)
		}),
		acquire,
		lockSub("release", "Release a deploy lock taken with lock acquire by the same deployer", func(cmd *cobra.Command, x *pipeline.Environments, env string) (*pipeline.LockState, error) {
			return x.ReleaseLock(cmd.Context(), env)
		}),
	)
	return cmd
}

func lockSub(name, short string, do func(*cobra.Command, *pipeline.Environments, string) (*pipeline.LockState, error)) *cobra.Command {
	var c common
	var env string
	cmd := &cobra.Command{
		Use:   name + " --env NAME",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			x, err := c.environments(cmd, env)
			if err != nil {
				return err
			}
			s, err := do(cmd, x, env)
			if err != nil {
				return err
			}
			if c.format == pipeline.FormatJSON {
				return pipeline.JSON(cmd.OutOrStdout(), s)
			}
			return pipeline.RenderLock(cmd.OutOrStdout(), s)
		},
	}
	c.flags(cmd)
	cmd.Flags().StringVar(&env, "env", "", "the environment, as the file names it (without a file: its name)")
	_ = cmd.MarkFlagRequired("env")
	return cmd
}
