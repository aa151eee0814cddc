package main

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pushdeploy/pushdeploy/pipeline"
)

// version is set at release time (-ldflags "-X main.version=v1.2.3"); otherwise the module
// version that go install recorded.
var version = ""

// exitCodes is the table of exit codes, in --help and the README.
const exitCodes = `Exit codes:
  0  done (a deploy of what is live already included)
  1  any other failure
  2  usage error: unknown command or flag, bad --format, missing argument; nothing ran
  3  refused at the gates (not approved, not what the promotion source runs); nothing changed
  4  the deploy lock is held by someone else (a deploy, a maintenance window); nothing changed
  5  the deploy failed and every host it switched was rolled back
  6  a rollback failed: the fleet runs mixed releases and needs a hand
  7  a host or the cluster could not be reached
  8  the deploy failed after an irreversible step: no host was rolled back past it (the record says what each runs)`

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "pushdeploy",
		Short: "Push-based deploys to servers, Docker hosts and Kubernetes",
		Long: `pushdeploy deploys an application to plain servers over SSH, Docker hosts over SSH and
Kubernetes, with health checks, automatic rollback, a deploy lock, approval gates and
deployment records. It is the same pipeline as the Dagger module (dagger call deploy ...),
for runners without a container engine and for driving targets by hand.

Results go to stdout, diagnostics (stage lines, warnings) to stderr; -o json prints the
result as JSON.

` + exitCodes,
		Version:       buildVersion(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("pushdeploy {{.Version}}\n")
	root.SetFlagErrorFunc(flagError)
	root.AddCommand(versionCmd())
	for _, add := range commands {
		root.AddCommand(add())
	}
	markRuns(root)
	return root
}

// execute runs the CLI and returns its error as the pipeline's, with everything cobra
// refuses before a command runs (unknown commands and flags, arguments, required flags) as
// a *pipeline.UsageError: pipeline.ExitCode makes the exit code of it.
func execute(ctx context.Context, root *cobra.Command) error {
	err := root.ExecuteContext(ctx)
	if err == nil {
		return nil
	}
	var ran *ranError
	if errors.As(err, &ran) {
		return ran.err
	}
	return &pipeline.UsageError{Err: err}
}

// ranError is an error of a command that ran, as opposed to one cobra refused.
type ranError struct{ err error }

func (e *ranError) Error() string { return e.err.Error() }
func (e *ranError) Unwrap() error { return e.err }

// markRuns wraps every command's RunE so that its errors are told from cobra's, and refuses
// an unknown -o/--format before the command does anything.
func markRuns(c *cobra.Command) {
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if f := cmd.Flags().Lookup("format"); f != nil {
				if err := pipeline.CheckFormat(f.Value.String()); err != nil {
					return &ranError{err: &pipeline.UsageError{Err: err}}
				}
			}
			if err := run(cmd, args); err != nil {
				return &ranError{err: err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		markRuns(sub)
	}
}

// flagError is cobra's flag error with the flags the command has that are closest to an
// unknown one, as cobra does for commands ("Did you mean this?").
func flagError(cmd *cobra.Command, err error) error {
	name := unknownFlag(err)
	if name == "" {
		return err
	}
	var names []string
	seen := map[string]bool{}
	visit := func(f *pflag.Flag) {
		if !seen[f.Name] && !f.Hidden {
			seen[f.Name] = true
			names = append(names, f.Name)
		}
	}
	cmd.Flags().VisitAll(visit)
	cmd.InheritedFlags().VisitAll(visit)
	sugg := suggestFlags(name, names, cmd.SuggestionsMinimumDistance)
	if len(sugg) == 0 {
		return fmt.Errorf("%w\nRun '%s --help' for its flags", err, cmd.CommandPath())
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n\nDid you mean this?\n")
	for _, s := range sugg {
		fmt.Fprintf(&b, "\t--%s\n", s)
	}
	return fmt.Errorf("%w%s", err, strings.TrimSuffix(b.String(), "\n"))
}

// unknownFlag is the name of the unknown long flag pflag's err is about, "" otherwise.
func unknownFlag(err error) string {
	msg := err.Error()
	const p = "unknown flag: --"
	if !strings.HasPrefix(msg, p) {
		return ""
	}
	name, _, _ := strings.Cut(strings.TrimPrefix(msg, p), "=")
	return name
}

// suggestFlags returns the names within distance of typed (Levenshtein; cobra's default of
// 2 when distance is 0), or having it as a prefix, the closest first.
func suggestFlags(typed string, names []string, distance int) []string {
	if distance <= 0 {
		distance = 2
	}
	type cand struct {
		name string
		d    int
	}
	var cs []cand
	for _, n := range names {
		d := levenshtein(strings.ToLower(typed), strings.ToLower(n))
		if d <= distance || (len(typed) > 2 && strings.HasPrefix(n, typed)) {
			cs = append(cs, cand{n, d})
		}
	}
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].d != cs[j].d {
			return cs[i].d < cs[j].d
		}
		return cs[i].name < cs[j].name
	})
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.name)
	}
	return out
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// commands are the subcommands beyond version and help, each in a file of its own.
var commands []func() *cobra.Command

func versionCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print pushdeploy's version (also: pushdeploy --version)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format == pipeline.FormatJSON {
				return pipeline.JSON(cmd.OutOrStdout(), map[string]string{"version": buildVersion()})
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "pushdeploy", buildVersion())
			return err
		},
	}
	cmd.Flags().StringVarP(&format, "format", "o", "text", "text or json")
	return cmd
}

// buildVersion is the release's version (-ldflags -X main.version), else the module
// version go install recorded, else the commit the binary was built from.
func buildVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "(devel)"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "(devel) " + rev
}
