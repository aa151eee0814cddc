package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The design keeps Dagger in the adapter: pipeline/ and targets/ are plain Go that the CLI
// and any other runner use without an engine. This test fails when either imports the
// Dagger bindings or the SDK, directly or through another package.
var forbiddenImports = []string{
	"github.com/pushdeploy/pushdeploy/internal/dagger",
	"dagger.io/dagger",
}

// forbidden lists the packages of deps that are, or live under, a forbidden import path.
func forbidden(deps []string) []string {
	var bad []string
	for _, d := range deps {
		for _, f := range forbiddenImports {
			if d == f || strings.HasPrefix(d, f+"/") {
				bad = append(bad, d)
			}
		}
	}
	return bad
}

func TestPlainPackagesDoNotImportDagger(t *testing.T) {
	for _, pattern := range []string{"./pipeline/...", "./targets/...", "./cmd/..."} {
		out, err := exec.Command("go", "list", "-e", "-deps", "-f", "{{.ImportPath}}", pattern).CombinedOutput()
		if err != nil {
			if strings.Contains(string(out), "matched no packages") {
				continue
			}
			t.Fatalf("go list -deps %s: %v\n%s", pattern, err, out)
		}
		deps := strings.Fields(string(out))
		if len(deps) == 0 {
			t.Fatalf("go list -deps %s listed nothing", pattern)
		}
		if bad := forbidden(deps); len(bad) > 0 {
			t.Errorf("%s depends on %q: keep Dagger in the module's adapter (main.go)", pattern, bad)
		}
	}
}

func TestForbiddenCatchesDagger(t *testing.T) {
	got := forbidden([]string{"fmt", "github.com/pushdeploy/pushdeploy/internal/dagger", "dagger.io/dagger/engineconn", "dagger.io/daggerish"})
	want := []string{"github.com/pushdeploy/pushdeploy/internal/dagger", "dagger.io/dagger/engineconn"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("forbidden = %q, want %q", got, want)
	}
}
