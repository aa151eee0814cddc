package main

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"os"
	"strconv"

	"github.com/pushdeploy/pushdeploy/internal/dagger"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/assemble"
)

// Try pushdeploy with nothing configured: deploy to a throwaway SSH host, roll a broken build back.
//
// The host is a Dagger service (an SSH server of the module's own, on Debian). The app (a
// Go service serving HTTP on $PORT; default: examples/hello) is built, deployed through
// the normal flow (gates, lock, health, record), shown serving; the same build with an app
// that exits at start is rolled back by its health check; then it prints what to put in
// pushdeploy.yaml to go real.
// +cache="never"
func (m *Pushdeploy) Sandbox(
	ctx context.Context,
	// The Go service to deploy, its main package at the top. Default: examples/hello.
	// +optional
	app *dagger.Directory,
	// The path that answers 200 when the app is up.
	// +default="/health"
	healthPath string,
) (string, error) {
	mm := *m
	name := "app"
	switch own, err := m.Source.Exists(ctx, "examples/hello/go.mod"); {
	case app != nil:
		mm.Source = app
	case err != nil:
		return "", fmt.Errorf("reading the source: %w", err)
	case own:
		// The source is pushdeploy's own (the default when the caller passes none).
		mm.Source, name = m.Source.Directory("examples/hello"), "hello"
	}
	if ok, err := mm.Source.Exists(ctx, "go.mod"); err != nil || !ok {
		return "", fmt.Errorf("the sandbox deploys a Go service, its go.mod and main package at the top of the source (or of --app): no go.mod there (%v)", err)
	}
	good, err := mm.BuildArtifacts(ctx, pipeline.KindGo, ".", "")
	if err != nil {
		return "", err
	}
	broken := good.WithNewFile("app", pipeline.SandboxBrokenApp, dagger.DirectoryWithNewFileOpts{Permissions: 0o755})
	goodDir, err := exportDir(ctx, good)
	if err != nil {
		return "", err
	}
	brokenDir, err := exportDir(ctx, broken)
	if err != nil {
		return "", err
	}

	keys, err := pipeline.NewSandboxKeys()
	if err != nil {
		return "", err
	}
	svc, err := m.sandboxHost(keys).Start(ctx)
	if err != nil {
		return "", fmt.Errorf("starting the sandbox's SSH host: %w", err)
	}
	defer svc.Stop(context.WithoutCancel(ctx)) //nolint:errcheck // the engine stops it with the session anyway
	host, err := svc.Hostname(ctx)
	if err != nil {
		return "", fmt.Errorf("the sandbox's SSH host: %w", err)
	}
	var log bytes.Buffer
	err = pipeline.Sandbox(ctx, pipeline.SandboxRun{
		App: name, Addr: host + ":" + strconv.Itoa(pipeline.SandboxSSHPort), Keys: keys,
		Good: pipeline.Artifact{Dir: goodDir}, Broken: pipeline.Artifact{Dir: brokenDir},
		Source: pipeline.Source{Revision: m.Revision}, HealthPath: healthPath,
		Targets: assemble.Maker(targetExtra), Log: stream(&log),
	})
	if err != nil {
		return "", fmt.Errorf("%w\n%s", err, log.String())
	}
	return log.String(), nil
}

// The sandbox host's source, built in the toolchain container with the module's own
// dependency versions.
var (
	//go:embed go.mod
	sandboxGoMod string
	//go:embed go.sum
	sandboxGoSum string
	//go:embed internal/sandboxhost/main.go
	sandboxMain string
)

// sandboxHost is the sandbox's SSH host: the module's sandboxhost server on Debian, logging
// in the sandbox's client key.
func (m *Pushdeploy) sandboxHost(keys *pipeline.SandboxKeys) *dagger.Service {
	src := dag.Directory().
		WithNewFile("go.mod", sandboxGoMod).WithNewFile("go.sum", sandboxGoSum).
		WithNewFile("internal/sandboxhost/main.go", sandboxMain)
	bin := m.goToolchain().
		WithDirectory("/src", src).WithWorkdir("/src").
		WithEnvVariable("CGO_ENABLED", "0").
		WithExec([]string{"go", "build", "-trimpath", "-o", "/out/sandboxhost", "./internal/sandboxhost"}).
		File("/out/sandboxhost")
	return dag.Container().From(pipeline.SandboxImage).
		WithFile("/usr/local/bin/sandboxhost", bin).
		WithMountedSecret("/etc/sandbox/host_key", dag.SetSecret("pushdeploy-sandbox-host-key", string(keys.HostKey))).
		WithNewFile("/etc/sandbox/client.pub", string(keys.ClientAuthorized)).
		WithExposedPort(pipeline.SandboxSSHPort).
		WithExposedPort(pipeline.SandboxAppPort, dagger.ContainerWithExposedPortOpts{ExperimentalSkipHealthcheck: true}).
		AsService(dagger.ContainerAsServiceOpts{Args: []string{"/usr/local/bin/sandboxhost",
			"-addr", ":" + strconv.Itoa(pipeline.SandboxSSHPort),
			"-host-key", "/etc/sandbox/host_key", "-authorized-key", "/etc/sandbox/client.pub"}})
}

// exportDir exports d into a new directory of the function's filesystem.
func exportDir(ctx context.Context, d *dagger.Directory) (string, error) {
	dir, err := os.MkdirTemp("", "pushdeploy-artifacts-")
	if err != nil {
		return "", err
	}
	if _, err := d.Export(ctx, dir); err != nil {
		return "", fmt.Errorf("exporting the artifacts: %w", err)
	}
	return dir, nil
}
