package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at release time (-ldflags "-X main.version=v1.2.3"); otherwise the module
// version that go install recorded.
var version = ""

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "pushdeploy",
		Short: "Push-based deploys to servers, Docker hosts and Kubernetes",
		Long: `pushdeploy deploys an application to plain servers over SSH, Docker hosts over SSH and
Kubernetes, with health checks, automatic rollback, a deploy lock, approval gates and
deployment records. It is the same pipeline as the Dagger module (dagger call deploy ...),
for runners without a container engine and for driving targets by hand.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(versionCmd())
	for _, add := range commands {
		root.AddCommand(add())
	}
	return root
}

// commands are the subcommands beyond version and help, each in a file of its own.
var commands []func() *cobra.Command

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print pushdeploy's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "pushdeploy", buildVersion())
			return err
		},
	}
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
