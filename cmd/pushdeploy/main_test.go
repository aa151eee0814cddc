package main

import (
	"bytes"
	"strings"
	"testing"
)

// run runs the CLI with args and returns what it printed and its error.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
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
