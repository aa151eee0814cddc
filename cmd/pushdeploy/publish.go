package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/pipeline/publish"
)

func init() { commands = append(commands, publishCmd, promoteCmd, inspectCmd) }

// registry are the flags of the commands that talk to a registry.
type registry struct {
	username, password, ca string
}

func (r *registry) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&r.username, "username", "", "registry user")
	cmd.Flags().StringVar(&r.password, "password", "", "registry password or token: env:NAME or file:PATH")
	cmd.Flags().StringVar(&r.ca, "ca", "", "a PEM file of extra CA certificates for the registry's TLS")
}

func (r *registry) options() ([]publish.Option, error) {
	s := pipeline.Secrets{Local: true}
	var opts []publish.Option
	if r.username != "" {
		pw, err := s.Resolve(localRef(r.password), nil, "--password")
		if err != nil {
			return nil, err
		}
		opts = append(opts, publish.WithBasicAuth(r.username, string(pw)))
	}
	if r.ca != "" {
		pem, err := s.Resolve(config.SecretRef("file:"+r.ca), nil, "--ca")
		if err != nil {
			return nil, err
		}
		opts = append(opts, publish.WithCAPEM(pem))
	}
	return opts, nil
}

func publishCmd() *cobra.Command {
	var r registry
	var meta publish.SourceMeta
	var latest, force bool
	var extra []string
	var format string
	cmd := &cobra.Command{
		Use:   "publish IMAGE REPOSITORY",
		Short: "Push an OCI layout or image tarball and print its digest reference",
		Long: `Publish pushes the image at IMAGE (an OCI layout directory, an OCI tarball or a docker
save tarball, made by any builder) to REPOSITORY once, sends only the blobs the registry
lacks, tags it from the source (commit, short commit, branch, git tag; latest when asked)
and prints repo@sha256:..., the reference deploys use.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := r.options()
			if err != nil {
				return err
			}
			tags := append(publish.Tags(meta, latest), extra...)
			ref, err := publish.PublishPath(cmd.Context(), args[0], args[1], tags, append(opts, publish.WithForce(force))...)
			if err != nil {
				return err
			}
			return printRef(cmd, format, ref)
		},
	}
	r.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&meta.Commit, "revision", "", "the commit: tags the full and short SHA")
	f.StringVar(&meta.Branch, "branch", "", "the branch: tags its sanitized name")
	f.StringVar(&meta.Tag, "tag", "", "the git tag, when on one")
	f.BoolVar(&latest, "latest", false, "also tag latest")
	f.StringArrayVar(&extra, "extra-tag", nil, "a further tag (repeatable)")
	f.BoolVar(&force, "force", false, "move commit and version tags that point at another digest")
	formatFlag(cmd, &format)
	return cmd
}

func promoteCmd() *cobra.Command {
	var r registry
	var tags []string
	var format string
	cmd := &cobra.Command{
		Use:   "promote SOURCE@sha256:... REPOSITORY",
		Short: "Copy an image by digest to another repository or registry, without rebuilding",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := r.options()
			if err != nil {
				return err
			}
			ref, err := publish.Promote(cmd.Context(), args[0], args[1], tags, append(opts, publish.WithSourceOptions(opts...))...)
			if err != nil {
				return err
			}
			return printRef(cmd, format, ref)
		},
	}
	r.flags(cmd)
	cmd.Flags().StringArrayVar(&tags, "tag", nil, "a tag to set in the destination (repeatable)")
	formatFlag(cmd, &format)
	return cmd
}

func inspectCmd() *cobra.Command {
	var r registry
	var format string
	cmd := &cobra.Command{
		Use:   "inspect REF",
		Short: "Resolve an image reference to its digest and read its revision label",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := r.options()
			if err != nil {
				return err
			}
			info, err := publish.Inspect(cmd.Context(), args[0], opts...)
			if err != nil {
				return err
			}
			if format == pipeline.FormatJSON {
				return pipeline.JSON(cmd.OutOrStdout(), info)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\nrevision: %s\nversion: %s\n", info.Ref, dashed(info.Revision), dashed(info.Version))
			return err
		},
	}
	r.flags(cmd)
	formatFlag(cmd, &format)
	return cmd
}

// formatFlag is -o/--format of the commands without the common flags.
func formatFlag(cmd *cobra.Command, format *string) {
	cmd.Flags().StringVarP(format, "format", "o", pipeline.FormatText, "text or json")
}

// printRef prints a published reference on stdout, alone on its line (REF=$(pushdeploy
// publish ...)) or as JSON.
func printRef(cmd *cobra.Command, format, ref string) error {
	if format == pipeline.FormatJSON {
		return pipeline.JSON(cmd.OutOrStdout(), map[string]string{"reference": ref})
	}
	_, err := fmt.Fprintln(cmd.OutOrStdout(), ref)
	return err
}

func dashed(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
