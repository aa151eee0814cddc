package pipeline

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

// Kinds of project that build and test detect.
const (
	KindDocker = "docker" // a Dockerfile: built with its own instructions
	KindGo     = "go"     // a Go module
	KindNode   = "node"   // a Node project (package.json)
)

// Toolchain images, pinned by tag; every one can be overridden by an argument.
const (
	DefaultGoImage      = "golang:1.26.8-bookworm"
	DefaultNodeImage    = "node:22.21.1-bookworm-slim"
	DefaultGoRuntime    = "gcr.io/distroless/static-debian12:nonroot"
	DefaultNodeRuntime  = "node:22.21.1-bookworm-slim"
	DefaultGotestsum    = "gotest.tools/gotestsum@v1.13.0"
	DefaultArtifactsDir = "dist"
)

// Cache volumes shared by build and test, so a test run warms the next build.
const (
	CacheGoMod   = "pushdeploy-go-mod"
	CacheGoBuild = "pushdeploy-go-build"
	CacheNpm     = "pushdeploy-npm"
)

// markers are the files that make a project of each kind, in detection order.
var markers = []struct{ kind, file string }{
	{KindDocker, "Dockerfile"},
	{KindGo, "go.mod"},
	{KindNode, "package.json"},
}

// DetectBuild picks how to build a source tree from its top-level entries: a Dockerfile
// first, then a Go module, then a Node project. A non-empty kind overrides the detection
// and must be one of them.
func DetectBuild(entries []string, kind string) (string, error) {
	return detect(entries, kind, KindDocker, KindGo, KindNode)
}

// DetectTest picks how to test a source tree: a Go module, then a Node project (a
// Dockerfile alone says nothing of tests).
func DetectTest(entries []string, kind string) (string, error) {
	return detect(entries, kind, KindGo, KindNode)
}

func detect(entries []string, kind string, allowed ...string) (string, error) {
	if kind != "" {
		if !slices.Contains(allowed, kind) {
			return "", fmt.Errorf("project kind %q: must be one of %s", kind, strings.Join(allowed, ", "))
		}
		return kind, nil
	}
	have := map[string]bool{}
	for _, e := range entries {
		have[strings.TrimSuffix(path.Clean(e), "/")] = true
	}
	var looked []string
	for _, m := range markers {
		if !slices.Contains(allowed, m.kind) {
			continue
		}
		if have[m.file] {
			return m.kind, nil
		}
		looked = append(looked, m.file)
	}
	return "", fmt.Errorf("nothing to build here: no %s at the top of the source (give --kind to say what it is)", strings.Join(looked, ", no "))
}

// GoBuildArgs is the command that builds a Go module's main package pkg into out, static.
func GoBuildArgs(pkg, out, version string) []string {
	args := []string{"go", "build", "-trimpath", "-o", out}
	if version != "" {
		args = append(args, "-ldflags", "-s -w -X main.version="+version)
	}
	return append(args, pkg)
}

// GoTestArgs runs every test of a Go module and writes JUnit XML to junit.
func GoTestArgs(gotestsum, junit string) []string {
	return []string{"go", "run", gotestsum, "--format", "testname", "--junitfile", junit, "--", "./..."}
}

// Labels are the OCI annotations a built image carries.
func Labels(revision, source, version, created string) map[string]string {
	l := map[string]string{}
	for k, v := range map[string]string{
		"org.opencontainers.image.revision": revision,
		"org.opencontainers.image.source":   source,
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.created":  created,
	} {
		if v != "" {
			l[k] = v
		}
	}
	return l
}

// TestFailure is the error of a test run that exited with code: what it printed, the end
// of it when long.
func TestFailure(kind string, code int, output string) error {
	return fmt.Errorf("%s tests failed (exit code %d):\n%s", kind, code, tail([]byte(output), 16<<10))
}

// NodeTestReporters is the NODE_OPTIONS that make Node's test runner (node --test) print its
// usual report and also write JUnit XML to path; other processes ignore them.
func NodeTestReporters(path string) string {
	return "--test-reporter=spec --test-reporter-destination=stdout --test-reporter=junit --test-reporter-destination=" + path
}

// ArtifactsDir is where a file deploy's artifacts are, as the environments file says:
// build.artifacts (default dist) in build.context (default "."), both relative to the
// directory the file is in (fileDir).
func ArtifactsDir(b config.Build, fileDir string) string {
	ctx := b.Context
	if ctx == "" {
		ctx = "."
	}
	art := strings.TrimSuffix(b.Artifacts, "/")
	if art == "" {
		art = DefaultArtifactsDir
	}
	return filepath.Join(fileDir, ctx, art)
}
