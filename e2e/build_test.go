package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFunctionsHelp loads the module and lists its functions: every summary is the whole
// first sentence of its doc comment, never one cut mid-sentence.
func TestFunctionsHelp(t *testing.T) {
	e := needEngine(t)
	out := e.ok(t, e.module, nil, "functions")
	for _, fn := range []string{"build", "build-artifacts", "test", "toolchain", "publish", "promote", "inspect",
		"deploy", "rollback", "status", "plan", "history", "unlock", "rbac", "check", "config", "lock", "with-environment"} {
		found := false
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || f[0] != fn {
				continue
			}
			found = true
			summary := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), fn))
			if !strings.HasSuffix(summary, ".") {
				t.Errorf("function %s: summary %q is not a whole sentence", fn, summary)
			}
		}
		if !found {
			t.Errorf("dagger functions does not list %s:\n%s", fn, out)
		}
	}
}

// TestBuildDetections builds each kind of project the way the README says and looks at
// what came out: the Dockerfile's image (built without --revision or --version), the Go
// binary, Node's dist/.
func TestBuildDetections(t *testing.T) {
	e := needEngine(t)
	hello := filepath.Join(e.module, "examples", "hello")
	t.Run("dockerfile", func(t *testing.T) {
		app := copyTree(t, "testdata/dockerapp")
		out := e.ok(t, app, nil, "call", "--source", ".", "build", "with-exec", "--args", "cat,/srv/version", "stdout")
		if strings.TrimSpace(out) != "unset" {
			t.Errorf("the image built without a version says %q; want the Dockerfile's default", out)
		}
		out = e.ok(t, app, nil, "call", "--source", ".", "--version", "v7.1.0", "build", "with-exec", "--args", "cat,/srv/version", "stdout")
		if strings.TrimSpace(out) != "v7.1.0" {
			t.Errorf("the image built as v7.1.0 says %q", out)
		}
		out = e.ok(t, app, nil, "call", "--source", ".", "build-artifacts", "--path", "/srv/site", "entries")
		mustContain(t, "build-artifacts of the Dockerfile project", out, "index.html")
	})
	t.Run("go", func(t *testing.T) {
		out := e.ok(t, hello, nil, "call", "--source", ".", "--revision", "abc", "build-artifacts", "--kind", "go", "entries")
		mustContain(t, "build-artifacts of examples/hello", out, "app")
		out = e.ok(t, hello, nil, "call", "--source", ".", "--version", "v9.9.9", "build", "--kind", "go", "label", "--name", "org.opencontainers.image.version")
		mustContain(t, "the Go image's version label", out, "v9.9.9")
	})
	t.Run("node", func(t *testing.T) {
		app := copyTree(t, "testdata/nodeapp")
		out := e.ok(t, app, nil, "call", "--source", ".", "build-artifacts", "entries")
		mustContain(t, "build-artifacts of the Node project", out, "server.js", "VERSION")
	})
}

// TestTestFunction runs a project's tests passing and failing, and exports the JUnit
// reports of a failing run with --allow-failure, for Go and Node.
func TestTestFunction(t *testing.T) {
	e := needEngine(t)
	hello := filepath.Join(e.module, "examples", "hello")
	t.Run("go passing", func(t *testing.T) {
		out := e.ok(t, hello, nil, "call", "--source", ".", "test", "entries")
		mustContain(t, "test of examples/hello", out, "junit.xml")
	})
	t.Run("go failing", func(t *testing.T) {
		app := copyTree(t, "testdata/gofail")
		out := e.fails(t, app, nil, "call", "--source", ".", "test", "entries")
		mustContain(t, "the failing test's error", out, "go tests failed", "answer() = 41, want 42")
		reports := filepath.Join(t.TempDir(), "reports")
		e.ok(t, app, nil, "call", "--source", ".", "test", "--allow-failure", "export", "--path", reports)
		junit, err := os.ReadFile(filepath.Join(reports, "junit.xml"))
		if err != nil {
			t.Fatalf("test --allow-failure export: %v", err)
		}
		mustContain(t, "junit.xml", string(junit), "TestAnswer", "failure")
	})
	t.Run("node failing", func(t *testing.T) {
		app := copyTree(t, "testdata/nodeapp")
		// A change of the source breaks the test, as a user's broken commit would.
		pkg := filepath.Join(app, "version.test.js")
		b, err := os.ReadFile(pkg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(pkg, []byte(strings.Replace(string(b), `"1.0.0");`, `"2.0.0");`, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		e.fails(t, app, nil, "call", "--source", ".", "test", "entries")
		reports := filepath.Join(t.TempDir(), "reports")
		e.ok(t, app, nil, "call", "--source", ".", "test", "--allow-failure", "export", "--path", reports)
		junit, err := os.ReadFile(filepath.Join(reports, "junit.xml"))
		if err != nil {
			t.Fatalf("node test --allow-failure export: no JUnit report: %v", err)
		}
		mustContain(t, "node junit.xml", string(junit), "version", "failure")
	})
}

// TestToolchain opens the build's toolchain with the source in it, as `dagger call
// toolchain terminal` does, and runs a command there instead of a shell.
func TestToolchain(t *testing.T) {
	e := needEngine(t)
	hello := filepath.Join(e.module, "examples", "hello")
	out := e.ok(t, hello, nil, "call", "--source", ".", "toolchain", "with-exec", "--args", "sh,-c,go version && ls /src", "stdout")
	mustContain(t, "the toolchain", out, "go1.26", "main.go")
}
