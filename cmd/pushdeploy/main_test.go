package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

// run runs the CLI with args, as main does, and returns what it printed (stdout and
// stderr) and its error.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := runTo(&out, &out, args...)
	return out.String(), err
}

// runSplit runs the CLI with args and returns its stdout and stderr apart.
func runSplit(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	err = runTo(&o, &e, args...)
	return o.String(), e.String(), err
}

func runTo(stdout, stderr io.Writer, args ...string) error {
	root := newRoot()
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetArgs(args)
	return execute(context.Background(), root)
}

func TestVersion(t *testing.T) {
	version = "v9.9.9"
	t.Cleanup(func() { version = "" })
	out, err := run(t, "version")
	if err != nil || out != "pushdeploy v9.9.9\n" {
		t.Fatalf("version printed %q, %v", out, err)
	}
}

func TestHelpListsCommands(t *testing.T) {
	out, err := run(t, "help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Usage:", "pushdeploy [command]", "version"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q:\n%s", want, out)
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	_, err := run(t, "deploi")
	if err == nil || !strings.Contains(err.Error(), `unknown command "deploi"`) {
		t.Fatalf("got %v", err)
	}
}
