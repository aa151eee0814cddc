// Push-based deploys as typed functions: build, test, publish by digest, and deploy to plain
// servers over SSH, Docker hosts over SSH and Kubernetes, with health checks, automatic
// rollback, a deploy lock, approval gates, deployment records, markers and notifications.
//
// The same pipeline runs on a laptop (dagger call deploy --env staging), in a minimal CI
// job, and without a container engine through the pushdeploy CLI.
package main

import (
	"context"
	"fmt"
	"sort"

	"github.com/pushdeploy/pushdeploy/internal/dagger"
	"github.com/pushdeploy/pushdeploy/pipeline"
)

// Pushdeploy builds, tests, publishes and deploys one application.
type Pushdeploy struct {
	// The application's source.
	Source *dagger.Directory
	// The commit the source is at, for image labels, tags and records.
	Revision string
	// Where the source lives (repository URL), for the image's source label.
	SourceURL string
	// The version to stamp into builds: a git tag, or the commit.
	Version string
	// The branch the source is on, for image tags.
	Branch string
	// The git tag the source is at, if any, for image tags.
	Tag string
	// Go toolchain image.
	GoImage string
	// Node toolchain image.
	NodeImage string
	// Base image for Go services (the binary alone is copied in).
	GoRuntime string
	// Base image for Node services.
	NodeRuntime string
	// The build time for the image's created label, RFC 3339.
	Created string

	// The SSH private key, read only inside deploy-like functions.
	// +private
	SSHKey *dagger.Secret
	// The known_hosts lines host keys are verified against.
	// +private
	KnownHosts *dagger.File
	// The kubeconfig, read only inside deploy-like functions.
	// +private
	Kubeconfig *dagger.Secret
	// The registry password or token.
	// +private
	RegistryPassword *dagger.Secret
	// Further secrets the environments file names, each known by its name.
	// +private
	Secrets []*dagger.Secret
	// Checksum makes ssh targets hash every artifact file (--checksum).
	// +private
	Checksum bool
	// The environment described with arguments (with-environment), as JSON of
	// config.Settings; "" when the file alone describes it.
	// +private
	Settings string
}

// New takes what every function shares: the application's source and version, the
// toolchain images, and the credentials deploy-like functions read.
func New(
	// The application's source directory.
	// +defaultPath="/"
	// +ignore=[".git", "node_modules", "dist", "bin", ".dagger", "*.test"]
	source *dagger.Directory,
	// The commit the source is at (CI: $GITHUB_SHA, $GIT_COMMIT).
	// +optional
	revision string,
	// The source repository's URL, for the image's source label.
	// +optional
	sourceUrl string,
	// The version stamped into builds; defaults to the git tag, else the revision.
	// +optional
	version string,
	// The branch the source is on (CI: $GITHUB_REF_NAME, $BRANCH_NAME), for image tags.
	// +optional
	branch string,
	// The git tag the source is at, if any, for image tags.
	// +optional
	tag string,
	// Go toolchain image.
	// +default="golang:1.26.8-bookworm"
	goImage string,
	// Node toolchain image.
	// +default="node:22.21.1-bookworm-slim"
	nodeImage string,
	// Base image for Go services.
	// +default="gcr.io/distroless/static-debian12:nonroot"
	goRuntime string,
	// Base image for Node services.
	// +default="node:22.21.1-bookworm-slim"
	nodeRuntime string,
	// The build time for the image's created label (RFC 3339), e.g. the commit's time
	// (git log -1 --format=%cI). Default: no created label, so that a build of the same
	// source is the same image (a default of "now" would be the engine's cached first call).
	// +optional
	created string,
	// SSH private key for ssh and docker targets (e.g. env:SSH_KEY).
	// +optional
	sshKey *dagger.Secret,
	// known_hosts lines that host keys are verified against; an unknown or changed host
	// key stops the deploy.
	// +optional
	knownHosts *dagger.File,
	// kubeconfig for kubernetes targets (e.g. file:$HOME/.kube/config).
	// +optional
	kubeconfig *dagger.Secret,
	// Password or token for the image registry (the file names the user).
	// +optional
	registryPassword *dagger.Secret,
	// Further secrets that pushdeploy.yaml names (notification webhooks, marker tokens,
	// container environment), each known by its secret name.
	// +optional
	secrets []*dagger.Secret,
	// ssh targets: hash every artifact file, trusting none by size and modification time
	// (as rsync --checksum).
	// +optional
	checksum bool,
) *Pushdeploy {
	if version == "" {
		version = or(tag, revision)
	}
	return &Pushdeploy{
		Source: source, Revision: revision, SourceURL: sourceUrl, Version: version, Branch: branch, Tag: tag,
		GoImage: or(goImage, pipeline.DefaultGoImage), NodeImage: or(nodeImage, pipeline.DefaultNodeImage),
		GoRuntime: or(goRuntime, pipeline.DefaultGoRuntime), NodeRuntime: or(nodeRuntime, pipeline.DefaultNodeRuntime),
		Created: created,
		SSHKey:  sshKey, KnownHosts: knownHosts, Kubeconfig: kubeconfig, RegistryPassword: registryPassword,
		Secrets: secrets, Checksum: checksum,
	}
}

// Build the application's runtime image from its Dockerfile, else as a Go module or Node project.
func (m *Pushdeploy) Build(
	ctx context.Context,
	// What to build as instead of detecting it: docker, go or node.
	// +optional
	kind string,
	// The Go package of the service's main.
	// +default="."
	pkg string,
	// The Dockerfile, relative to the source.
	// +default="Dockerfile"
	dockerfile string,
) (*dagger.Container, error) {
	kind, err := m.detect(ctx, kind, pipeline.DetectBuild)
	if err != nil {
		return nil, err
	}
	var ctr *dagger.Container
	switch kind {
	case pipeline.KindDocker:
		opts := dagger.DirectoryDockerBuildOpts{Dockerfile: or(dockerfile, "Dockerfile")}
		// The engine refuses a build argument without a value: VERSION only when known.
		if m.Version != "" {
			opts.BuildArgs = []dagger.BuildArg{{Name: "VERSION", Value: m.Version}}
		}
		ctr = m.Source.DockerBuild(opts)
	case pipeline.KindGo:
		bin := m.goToolchain().
			WithExec(pipeline.GoBuildArgs(or(pkg, "."), "/out/app", m.Version)).
			File("/out/app")
		ctr = dag.Container().From(m.GoRuntime).
			WithFile("/app", bin).
			WithEntrypoint([]string{"/app"})
	case pipeline.KindNode:
		ctr = dag.Container().From(m.NodeRuntime).
			WithDirectory("/app", m.nodeBuild().Directory("/src")).
			WithWorkdir("/app").
			WithEntrypoint([]string{"npm", "start"})
	}
	return m.label(ctr), nil
}

// Build the files a file-based deploy ships: Node's dist/, the Go binary, or a directory of the image.
func (m *Pushdeploy) BuildArtifacts(
	ctx context.Context,
	// What to build as instead of detecting it: docker, go or node.
	// +optional
	kind string,
	// The Go package of the service's main.
	// +default="."
	pkg string,
	// The directory holding the artifacts (in the source for Node, in the image for a
	// Dockerfile build).
	// +default="dist"
	path string,
) (*dagger.Directory, error) {
	kind, err := m.detect(ctx, kind, pipeline.DetectBuild)
	if err != nil {
		return nil, err
	}
	path = or(path, pipeline.DefaultArtifactsDir)
	switch kind {
	case pipeline.KindGo:
		return m.goToolchain().
			WithExec(pipeline.GoBuildArgs(or(pkg, "."), "/out/app", m.Version)).
			Directory("/out"), nil
	case pipeline.KindNode:
		return m.nodeBuild().Directory("/src/" + path), nil
	default:
		ctr, err := m.Build(ctx, kind, pkg, "")
		if err != nil {
			return nil, err
		}
		ok, err := ctr.Rootfs().Exists(ctx, path)
		if err != nil {
			return nil, fmt.Errorf("building the Dockerfile's image for its artifacts: %w", err)
		}
		if !ok {
			return nil, fmt.Errorf("the image the Dockerfile builds has no %q to deploy as files: name the directory (build.artifacts, --path) or build as go or node (build.kind, --kind)", path)
		}
		return ctr.Directory(path), nil
	}
}

// Run the application's tests in its toolchain container and return the JUnit XML reports.
//
// Jenkins' junit step and GitHub's test reporters read them. A failing test fails the call
// with the test output.
func (m *Pushdeploy) Test(
	ctx context.Context,
	// What to test as instead of detecting it: go or node.
	// +optional
	kind string,
	// Return the reports even when tests fail, for a CI step that publishes them and
	// fails the build on its own (Jenkins' junit, GitHub's test reporters).
	// +optional
	allowFailure bool,
) (*dagger.Directory, error) {
	kind, err := m.detect(ctx, kind, pipeline.DetectTest)
	if err != nil {
		return nil, err
	}
	var ctr *dagger.Container
	switch kind {
	case pipeline.KindGo:
		ctr = m.goToolchain().
			WithDirectory("/reports", dag.Directory()).
			WithExec(pipeline.GoTestArgs(pipeline.DefaultGotestsum, "/reports/junit.xml"), dagger.ContainerWithExecOpts{Expect: dagger.ReturnTypeAny})
	case pipeline.KindNode:
		ctr = m.nodeToolchain().
			WithDirectory("/reports", dag.Directory()).
			// Where the common reporters write when the project configures one.
			WithEnvVariable("JEST_JUNIT_OUTPUT_DIR", "/reports").
			WithEnvVariable("MOCHA_FILE", "/reports/junit.xml").
			// Node's own test runner (node --test) writes JUnit beside its usual output.
			WithEnvVariable("NODE_OPTIONS", pipeline.NodeTestReporters("/reports/junit.xml")).
			WithExec([]string{"npm", "ci"}).
			WithExec([]string{"npm", "test"}, dagger.ContainerWithExecOpts{Expect: dagger.ReturnTypeAny})
	}
	code, err := ctr.ExitCode(ctx)
	if err != nil {
		return nil, err
	}
	if code != 0 && !allowFailure {
		out, err := ctr.CombinedOutput(ctx)
		if err != nil {
			return nil, err
		}
		return nil, pipeline.TestFailure(kind, code, out)
	}
	return ctr.Directory("/reports"), nil
}

// Open the build's toolchain container, with the source at /src and the caches mounted.
//
// For debugging by hand: dagger call toolchain terminal.
func (m *Pushdeploy) Toolchain(
	ctx context.Context,
	// Which toolchain instead of detecting it: go or node.
	// +optional
	kind string,
) (*dagger.Container, error) {
	kind, err := m.detect(ctx, kind, pipeline.DetectTest)
	if err != nil {
		return nil, err
	}
	if kind == pipeline.KindNode {
		return m.nodeToolchain(), nil
	}
	return m.goToolchain(), nil
}

// detect lists the source's top level and picks the project kind with pick.
func (m *Pushdeploy) detect(ctx context.Context, kind string, pick func([]string, string) (string, error)) (string, error) {
	if kind != "" {
		return pick(nil, kind)
	}
	entries, err := m.Source.Entries(ctx)
	if err != nil {
		return "", err
	}
	return pick(entries, "")
}

func (m *Pushdeploy) goToolchain() *dagger.Container {
	return dag.Container().From(m.GoImage).
		WithMountedCache("/go/pkg/mod", dag.CacheVolume(pipeline.CacheGoMod)).
		WithMountedCache("/root/.cache/go-build", dag.CacheVolume(pipeline.CacheGoBuild)).
		WithEnvVariable("CGO_ENABLED", "0").
		WithDirectory("/src", m.Source).
		WithWorkdir("/src")
}

func (m *Pushdeploy) nodeToolchain() *dagger.Container {
	return dag.Container().From(m.NodeImage).
		WithMountedCache("/root/.npm", dag.CacheVolume(pipeline.CacheNpm)).
		WithDirectory("/src", m.Source, dagger.ContainerWithDirectoryOpts{Exclude: []string{"node_modules"}}).
		WithWorkdir("/src")
}

func (m *Pushdeploy) nodeBuild() *dagger.Container {
	return m.nodeToolchain().
		WithExec([]string{"npm", "ci"}).
		WithExec([]string{"npm", "run", "build"})
}

// label adds the OCI labels, in a fixed order.
func (m *Pushdeploy) label(ctr *dagger.Container) *dagger.Container {
	labels := pipeline.Labels(m.Revision, m.SourceURL, m.Version, m.Created)
	for _, k := range sortedKeys(labels) {
		ctr = ctr.WithLabel(k, labels[k])
	}
	return ctr
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
