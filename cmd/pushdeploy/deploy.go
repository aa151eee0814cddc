package main

import (
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

func init() {
	commands = append(commands, deployCmd, rollbackCmd, statusCmd, planCmd, historyCmd, unlockCmd)
}

func deployCmd() *cobra.Command {
	var c common
	var approvedBy, artifacts, imagePath, image, revision, branch, tag, version string
	var irreversible bool
	cmd := &cobra.Command{
		Use:   "deploy --env NAME (--artifacts DIR | --image-tar PATH | --image REF)",
		Short: "Deploy an artifact directory or an image to one environment",
		Long: `Deploy runs the same flow as the Dagger module's deploy: gates, publish (or promote), lock,
hooks, batches with health checks, automatic rollback, record, notifications. The CLI has no
container engine, so it does not build: give it what an earlier job built — the artifact
directory for ssh targets, an OCI layout or tarball to publish, or a published image.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, _ := cmd.Flags().GetString("env")
			x, err := c.environments(cmd, env)
			if err != nil {
				return err
			}
			req := pipeline.Request{
				File: x.File, Env: env, ApprovedBy: approvedBy, Deployer: c.deployer, PipelineID: c.pipelineID,
				Source:  pipeline.Source{Revision: revision, Branch: branch, Tag: tag, Version: version},
				Secrets: x.Secrets, Targets: x.Targets, Log: cmd.ErrOrStderr(), RunHook: runHookLocally,
				Irreversible: irreversible,
			}
			if artifacts == "" && imagePath == "" && image == "" {
				artifacts = builtArtifacts(x.File, env)
			}
			if artifacts != "" || imagePath != "" || image != "" {
				req.Artifact = &pipeline.Artifact{Dir: artifacts, ImagePath: imagePath, Image: image}
			}
			rec, err := pipeline.Deploy(cmd.Context(), req)
			if perr := printRecord(cmd, c.format, rec); perr != nil && err == nil {
				err = perr
			}
			return err
		},
	}
	c.flags(cmd)
	f := cmd.Flags()
	f.String("env", "", "the environment, as the file names it (without a file: its name)")
	_ = cmd.MarkFlagRequired("env")
	f.StringVar(&approvedBy, "approved-by", "", "who approved the deploy: required by protected environments")
	f.StringVar(&artifacts, "artifacts", "", "the directory an ssh target deploys")
	f.StringVar(&imagePath, "image-tar", "", "an OCI layout directory or image tarball to publish and deploy (docker.registry: none, or no image settings: sent to the Docker hosts over SSH, only the layers each lacks)")
	f.StringVar(&image, "image", "", "a published image: repo@sha256:..., or repo:tag (resolved to its digest before anything starts)")
	f.StringVar(&revision, "revision", "", "the commit deployed")
	f.StringVar(&branch, "branch", "", "the branch deployed (image tags)")
	f.StringVar(&tag, "tag", "", "the git tag deployed, if any (image tags)")
	f.StringVar(&version, "version", "", "the version deployed (default: tag, else revision)")
	f.BoolVar(&irreversible, "irreversible", false, "the release makes a change its rollback cannot undo: once a host runs it, an automatic rollback stops, and rollback across it needs --force")
	return cmd
}

func printRecord(cmd *cobra.Command, output string, rec *pipeline.Record) error {
	if rec == nil {
		return nil
	}
	if output == "json" {
		return pipeline.JSON(cmd.OutOrStdout(), rec)
	}
	if rec.Outcome != "" { // a deploy refused at its gates has no record to show
		pipeline.RenderRecord(cmd.OutOrStdout(), rec)
	}
	return nil
}

func rollbackCmd() *cobra.Command {
	var c common
	var env, to, approvedBy string
	var force bool
	cmd := &cobra.Command{
		Use:   "rollback --env NAME [--to RELEASE] [--force]",
		Short: "Make each host's previous release (or a named kept one) live again",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			x, err := c.environments(cmd, env)
			if err != nil {
				return err
			}
			rec, err := x.Rollback(cmd.Context(), env, to, approvedBy, pipeline.WithAcrossIrreversible(force))
			if perr := printRecord(cmd, c.format, rec); perr != nil && err == nil {
				err = perr
			}
			return err
		},
	}
	c.flags(cmd)
	cmd.Flags().StringVar(&env, "env", "", "the environment, as the file names it (without a file: its name)")
	_ = cmd.MarkFlagRequired("env")
	cmd.Flags().StringVar(&to, "to", "", "the release to go back to (default: each host's previous one)")
	cmd.Flags().StringVar(&approvedBy, "approved-by", "", "who approved the rollback: required by protected environments")
	cmd.Flags().BoolVar(&force, "force", false, "go back across a release that crossed an irreversible change (a migrate hook marked irreversible, deploy --irreversible)")
	return cmd
}

func statusCmd() *cobra.Command {
	var c common
	var env string
	var noCheck bool
	cmd := &cobra.Command{
		Use:   "status [--env NAME]",
		Short: "Show what runs where, for every environment of the file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			x, err := c.environments(cmd, env)
			if err != nil {
				return err
			}
			var names []string
			if env != "" {
				names = []string{env}
			}
			st := x.CheckedStatus(cmd.Context(), !noCheck, names...)
			if c.format == "json" {
				err = pipeline.JSON(cmd.OutOrStdout(), st)
			} else {
				err = pipeline.RenderStatus(cmd.OutOrStdout(), st)
			}
			if err != nil {
				return err
			}
			// What could not be read fails the command, so a CI step can stop on it.
			return pipeline.StatusError(st)
		},
	}
	c.flags(cmd)
	cmd.Flags().StringVar(&env, "env", "", "only this environment")
	cmd.Flags().BoolVar(&noCheck, "no-check", false, "do not run each host's health check once (HEALTH: not checked)")
	return cmd
}

func planCmd() *cobra.Command {
	var c common
	var env, artifacts, imagePath, image string
	cmd := &cobra.Command{
		Use:   "plan --env NAME (--artifacts DIR | --image-tar PATH | --image REF)",
		Short: "Show what a deploy would change on each host, changing nothing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			x, err := c.environments(cmd, env)
			if err != nil {
				return err
			}
			changes, err := x.Plan(cmd.Context(), env, pipeline.Artifact{Dir: artifacts, ImagePath: imagePath, Image: image})
			if err != nil {
				return err
			}
			if c.format == "json" {
				return pipeline.JSON(cmd.OutOrStdout(), changes)
			}
			return pipeline.RenderPlan(cmd.OutOrStdout(), changes)
		},
	}
	c.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&env, "env", "", "the environment, as the file names it (without a file: its name)")
	_ = cmd.MarkFlagRequired("env")
	f.StringVar(&artifacts, "artifacts", "", "the directory an ssh target would deploy")
	f.StringVar(&imagePath, "image-tar", "", "an OCI layout directory or image tarball")
	f.StringVar(&image, "image", "", "a published image, pinned by digest")
	return cmd
}

func historyCmd() *cobra.Command {
	var c common
	var env string
	var limit int
	cmd := &cobra.Command{
		Use:   "history --env NAME",
		Short: "List an environment's deployment records",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			x, err := c.environments(cmd, env)
			if err != nil {
				return err
			}
			h, err := x.History(cmd.Context(), env, limit)
			if err != nil {
				return err
			}
			if c.format == "json" {
				return pipeline.JSON(cmd.OutOrStdout(), h)
			}
			return pipeline.RenderEnvHistory(cmd.OutOrStdout(), h)
		},
	}
	c.flags(cmd)
	cmd.Flags().StringVar(&env, "env", "", "the environment, as the file names it (without a file: its name)")
	_ = cmd.MarkFlagRequired("env")
	cmd.Flags().IntVar(&limit, "limit", 20, "how many records, the newest")
	return cmd
}

func unlockCmd() *cobra.Command {
	var c common
	var env string
	var force bool
	cmd := &cobra.Command{
		Use:   "unlock --env NAME [--force]",
		Short: "Break an environment's deploy lock left by a dead deploy",
		Long: `Unlock breaks an environment's deploy lock. A lock that has expired is broken at once; one
within its TTL most likely belongs to a deploy that is running, and is refused (naming who
holds it and until when) unless --force. A running deploy that finds its lock broken stops
and returns every host it switched to its previous release.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			x, err := c.environments(cmd, env)
			if err != nil {
				return err
			}
			held, err := x.Unlock(cmd.Context(), env, pipeline.WithForce(force))
			if err != nil {
				return err
			}
			s := pipeline.Unlocked(env, held)
			if c.format == pipeline.FormatJSON {
				return pipeline.JSON(cmd.OutOrStdout(), s)
			}
			return pipeline.RenderLock(cmd.OutOrStdout(), s)
		},
	}
	c.flags(cmd)
	cmd.Flags().StringVar(&env, "env", "", "the environment, as the file names it (without a file: its name)")
	_ = cmd.MarkFlagRequired("env")
	cmd.Flags().BoolVar(&force, "force", false, "break a lock within its ttl too (its deploy stops and rolls back)")
	return cmd
}

// builtArtifacts is, for an ssh environment deployed without --artifacts, the directory the
// file says an earlier build left them in (build.context and build.artifacts, relative to
// the file), when it exists; "" otherwise, and the deploy says what it lacks.
func builtArtifacts(f *config.File, env string) string {
	if f == nil {
		return ""
	}
	if e, err := f.Env(env); err != nil || e.Kind() != "ssh" {
		return ""
	}
	dir := pipeline.ArtifactsDir(f.Build, filepath.Dir(f.Name()))
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return ""
	}
	return dir
}
