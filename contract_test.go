package main

import (
	"context"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/contract"
	"github.com/pushdeploy/pushdeploy/internal/dagger"
)

// The contract tests point the real SDK at a recording GraphQL endpoint and assert the
// queries each function sends. Golden transcripts under testdata/contract make them fail
// when a function's pipeline changes shape; the assertions beside them name what matters.

// connect points the module's client at a recording engine.
func connect(t *testing.T, opts ...contract.Option) *contract.Engine {
	t.Helper()
	eng := contract.Start(t, opts...)
	c, err := dagger.Connect(context.Background())
	if err != nil {
		t.Fatalf("connecting the SDK to the recording engine: %v", err)
	}
	t.Cleanup(func() { c.Close(); dag = nil })
	dag = c
	return eng
}

const testRevision = "0123456789abcdef0123456789abcdef01234567"

func module() *Pushdeploy {
	return New(dag.Directory(), testRevision, "https://example.com/app.git", "v1.2.3", "main", "", "", "", "", "", "2026-11-27T08:00:00Z", nil, nil, nil, nil, nil, false)
}

func mustContain(t *testing.T, transcript string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(transcript, w) {
			t.Errorf("no query contains %s\ntranscript:\n%s", w, transcript)
		}
	}
}

func mustNotContain(t *testing.T, transcript string, nots ...string) {
	t.Helper()
	for _, w := range nots {
		if strings.Contains(transcript, w) {
			t.Errorf("a query contains %s\ntranscript:\n%s", w, transcript)
		}
	}
}

func TestBuildDetectsInOrder(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []string
		kind    string
		want    []string
		not     []string
	}{
		{
			name:    "docker",
			entries: []string{"package.json", "go.mod", "Dockerfile"},
			want:    []string{`dockerBuild(buildArgs:[{name:"VERSION",value:"v1.2.3"}], dockerfile:"Dockerfile")`},
			not:     []string{"golang:", "npm"},
		},
		{
			name:    "go",
			entries: []string{"package.json", "go.mod", "main.go"},
			want: []string{
				`container.from(address:"golang:1.26.8-bookworm")`,
				`withMountedCache(cache:{.cacheVolume(key:"pushdeploy-go-mod")}, path:"/go/pkg/mod")`,
				`withMountedCache(cache:{.cacheVolume(key:"pushdeploy-go-build")}, path:"/root/.cache/go-build")`,
				`withExec(args:["go","build","-trimpath","-o","/out/app","-ldflags","-s -w -X main.version=v1.2.3","."])`,
				`from(address:"gcr.io/distroless/static-debian12:nonroot").withFile(path:"/app", source:{.container.from(address:"golang:1.26.8-bookworm")`,
				`withEntrypoint(args:["/app"])`,
			},
			not: []string{"dockerBuild", "npm"},
		},
		{
			name:    "node",
			entries: []string{"package.json", "src"},
			want: []string{
				`container.from(address:"node:22.21.1-bookworm-slim")`,
				`withMountedCache(cache:{.cacheVolume(key:"pushdeploy-npm")}, path:"/root/.npm")`,
				`withExec(args:["npm","ci"]).withExec(args:["npm","run","build"])`,
				`withEntrypoint(args:["npm","start"])`,
			},
			not: []string{"dockerBuild", "golang:"},
		},
		{
			name:    "override",
			entries: []string{"Dockerfile", "go.mod"},
			kind:    "node",
			want:    []string{`withExec(args:["npm","ci"])`},
			not:     []string{"dockerBuild", ".directory.entries"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng := connect(t, contract.Entries(tc.entries...))
			ctr, err := module().Build(context.Background(), tc.kind, ".", "Dockerfile")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ctr.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			got := eng.Transcript()
			mustContain(t, got, tc.want...)
			mustNotContain(t, got, tc.not...)
			// Every image carries the OCI labels.
			mustContain(t, got,
				`withLabel(name:"org.opencontainers.image.revision", value:"`+testRevision+`")`,
				`withLabel(name:"org.opencontainers.image.source", value:"https://example.com/app.git")`,
				`withLabel(name:"org.opencontainers.image.created", value:"2026-11-27T08:00:00Z")`)
			contract.Golden(t, "build-"+tc.name, got)
		})
	}
}

func TestBuildWithNothingToBuild(t *testing.T) {
	connect(t, contract.Entries("README.md"))
	_, err := module().Build(context.Background(), "", ".", "Dockerfile")
	if err == nil || !strings.Contains(err.Error(), "nothing to build here: no Dockerfile, no go.mod, no package.json") {
		t.Fatalf("got %v", err)
	}
	_, err = module().Build(context.Background(), "rust", ".", "Dockerfile")
	if err == nil || !strings.Contains(err.Error(), `project kind "rust": must be one of docker, go, node`) {
		t.Fatalf("got %v", err)
	}
}

func TestBuildArtifacts(t *testing.T) {
	eng := connect(t, contract.Entries("package.json"))
	dir, err := module().BuildArtifacts(context.Background(), "", ".", "dist")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dir.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := eng.Transcript()
	mustContain(t, got, `withExec(args:["npm","run","build"]).directory(path:"/src/dist")`)
	contract.Golden(t, "build-artifacts-node", got)
}

func TestTestRunsTestsAndReturnsJUnit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []string
		want    []string
	}{
		{"go", []string{"Dockerfile", "go.mod"}, []string{
			`withMountedCache(cache:{.cacheVolume(key:"pushdeploy-go-mod")}, path:"/go/pkg/mod")`,
			`withExec(args:["go","run","gotest.tools/gotestsum@v1.13.0","--format","testname","--junitfile","/reports/junit.xml","--","./..."], expect:ANY)`,
			`directory(path:"/reports")`,
		}},
		{"node", []string{"package.json"}, []string{
			`withEnvVariable(name:"JEST_JUNIT_OUTPUT_DIR", value:"/reports")`,
			`withExec(args:["npm","test"], expect:ANY)`,
			`directory(path:"/reports")`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng := connect(t, contract.Entries(tc.entries...))
			dir, err := module().Test(context.Background(), "", false)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := dir.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			got := eng.Transcript()
			mustContain(t, got, tc.want...)
			mustNotContain(t, got, "dockerBuild")
			contract.Golden(t, "test-"+tc.name, got)
		})
	}
}

func TestTestFailureShowsOutput(t *testing.T) {
	connect(t, contract.Entries("go.mod"), contract.ExitCode(1), contract.Output("--- FAIL: TestHealth (0.00s)\n    main_test.go:12: got 503\nFAIL"))
	_, err := module().Test(context.Background(), "", false)
	if err == nil {
		t.Fatal("a failing test run returned no error")
	}
	for _, want := range []string{"go tests failed (exit code 1)", "--- FAIL: TestHealth", "got 503"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestTestOnlyDockerfileIsAnError(t *testing.T) {
	connect(t, contract.Entries("Dockerfile"))
	_, err := module().Test(context.Background(), "", false)
	if err == nil || !strings.Contains(err.Error(), "no go.mod, no package.json") {
		t.Fatalf("got %v", err)
	}
}

func TestTestAllowFailureReturnsTheReports(t *testing.T) {
	eng := connect(t, contract.Entries("go.mod"), contract.ExitCode(1), contract.Output("--- FAIL: TestX"))
	dir, err := module().Test(context.Background(), "", true)
	if err != nil {
		t.Fatalf("with allow-failure a failing run returned %v", err)
	}
	if _, err := dir.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustContain(t, eng.Transcript(), `.directory(path:"/reports").sync`)
	mustNotContain(t, eng.Transcript(), ".combinedOutput")
}

func TestToolchainForDebugging(t *testing.T) {
	eng := connect(t, contract.Entries("go.mod"))
	ctr, err := module().Toolchain(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctr.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustContain(t, eng.Transcript(), `.container.from(address:"golang:1.26.8-bookworm").withMountedCache(cache:{.cacheVolume(key:"pushdeploy-go-mod")}, path:"/go/pkg/mod")`, `.withWorkdir(path:"/src").sync`)
}
