package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestRealCodegenBuilds runs the real codegen (`dagger develop`) on a copy of the module
// and builds the result with the Go toolchain, as the engine does when it loads the module:
// a dependency set that the generated go.mod cannot compile (the otel import cycle that
// made every call fail) fails here. It also shows which committed files develop changes:
// dagger.json and .gitignore must stay as they are.
func TestRealCodegenBuilds(t *testing.T) {
	e := needEngine(t)
	dir := t.TempDir()
	files, err := exec.Command("git", "-C", e.module, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("listing the module's files: %v", err)
	}
	var list bytes.Buffer
	for _, f := range strings.Split(strings.TrimRight(string(files), "\x00"), "\x00") {
		if _, err := os.Stat(e.module + "/" + f); err == nil {
			list.WriteString(f + "\x00")
		}
	}
	cp := exec.Command("sh", "-c", `tar --null -T - -cf - | tar -xf - -C "$0"`, dir)
	cp.Dir, cp.Stdin = e.module, &list
	if out, err := cp.CombinedOutput(); err != nil {
		t.Fatalf("copying the module: %v: %s", err, out)
	}
	before := map[string][]byte{}
	for _, f := range []string{"dagger.json", ".gitignore"} {
		before[f], _ = os.ReadFile(dir + "/" + f)
	}
	e.at(dir).ok(t, dir, nil, "develop")
	for f, b := range before {
		if after, _ := os.ReadFile(dir + "/" + f); !bytes.Equal(after, b) {
			t.Errorf("dagger develop changes %s:\n%s", f, after)
		}
	}
	// go build, not go vet: the module's contract tests use the stand-in bindings' client,
	// which the generated one does not replace (they run against the committed layer).
	for _, args := range [][]string{{"build", "./..."}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("go %s of the generated module: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
