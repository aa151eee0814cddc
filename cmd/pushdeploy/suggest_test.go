package main

import (
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/pipeline"
)

func TestVersionFlag(t *testing.T) {
	version = "v9.9.9"
	t.Cleanup(func() { version = "" })
	out, err := run(t, "--version")
	if err != nil || out != "pushdeploy v9.9.9\n" {
		t.Fatalf("--version printed %q, %v", out, err)
	}
	out, err = run(t, "version", "-o", "json")
	if err != nil || !strings.Contains(out, `"version": "v9.9.9"`) {
		t.Fatalf("version -o json printed %q, %v", out, err)
	}
	// Without -X, the build info: a test binary has no module version, so "(devel)".
	version = ""
	if v := buildVersion(); !strings.HasPrefix(v, "(devel)") && !strings.HasPrefix(v, "v") {
		t.Errorf("buildVersion() = %q", v)
	}
}

// TestFlagTypoSuggested: an unknown flag is a usage error that names the closest flags of
// the command, as cobra does for commands.
func TestFlagTypoSuggested(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"deploy", "--env", "staging", "--aproved-by", "alice"}, "\t--approved-by"},
		{[]string{"status", "--formt", "json"}, "\t--format"},
		{[]string{"lock", "acquire", "--env", "x", "--reasn=maintenance"}, "\t--reason"},
		{[]string{"deploy", "--artifact", "dist"}, "\t--artifacts"},
	} {
		_, err := run(t, c.args...)
		if pipeline.ExitCode(err) != pipeline.ExitUsage {
			t.Errorf("%q: %v; want a usage error", c.args, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "unknown flag") || !strings.Contains(msg, "Did you mean this?\n") || !strings.Contains(msg, c.want+"\n") && !strings.HasSuffix(msg, c.want) {
			t.Errorf("%q: %q; want a suggestion of %q", c.args, msg, c.want)
		}
	}
	_, err := run(t, "status", "--zzzzzzzz")
	if err == nil || strings.Contains(err.Error(), "Did you mean") || !strings.Contains(err.Error(), "status --help") {
		t.Errorf("a flag like none: %v", err)
	}
}

func TestLevenshtein(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"format", "format", 0}, {"formt", "format", 1}, {"aproved-by", "approved-by", 1}, {"kitten", "sitting", 3}, {"", "abc", 3}} {
		if got := levenshtein(c.a, c.b); got != c.d {
			t.Errorf("levenshtein(%q, %q) = %d, want %d", c.a, c.b, got, c.d)
		}
	}
}

// TestHelpListsExitCodes: --help documents the exit codes and the operator commands.
func TestHelpListsExitCodes(t *testing.T) {
	out, err := run(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Exit codes:", "  2  usage error", "  3  refused at the gates", "  4  the deploy lock is held",
		"  5  the deploy failed", "  6  a rollback failed", "  7  a host or the cluster could not be reached",
		"  check ", "  config ", "  lock ", "--version"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %q:\n%s", want, out)
		}
	}
}
