package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/pushdeploy/pushdeploy/internal/dagger"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/assemble"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

// Deploy the application to one environment of pushdeploy.yaml: check its gates, build and
// test (or promote what another environment runs), publish, take the target's lock, run the
// hooks, deploy batch by batch with health checks, roll back on failure, record, notify.
// Returns the deployment record.
// +cache="never"
func (m *Pushdeploy) Deploy(
	ctx context.Context,
	// The environment, as pushdeploy.yaml names it.
	env string,
	// The environments file (without one, with-environment describes the environment).
	// +defaultPath="/pushdeploy.yaml"
	// +optional
	config *dagger.File,
	// Who approved this deploy: required by protected environments. In CI, the approver
	// from the CI's own gate (GitHub environment reviewers, Jenkins input submitter).
	// +optional
	approvedBy string,
	// An image published already (repo@sha256:...) to deploy instead of building one.
	// +optional
	image string,
	// Files built already (an earlier job's artifacts) for an ssh environment, instead of
	// building them; what a promotion of files deploys.
	// +optional
	artifacts *dagger.Directory,
	// Do not run the tests before building (an earlier job ran them).
	// +optional
	skipTests bool,
	// Who deploys, for the lock and the record. Default: the user and host the function runs
	// as, so CI should pass its actor.
	// +optional
	deployer string,
	// The CI run that deploys (its id or URL), for the lock and the record.
	// +optional
	pipelineId string,
	// How the record is printed: text or json.
	// +default="text"
	output string,
) (string, error) {
	x, err := m.environments(ctx, config, env)
	if err != nil {
		return "", err
	}
	var log bytes.Buffer
	build := m.buildFor(x.File, skipTests)
	req := pipeline.Request{
		File: x.File, Env: env, ApprovedBy: approvedBy, Deployer: deployer, PipelineID: pipelineId,
		Source:  m.source(),
		Secrets: x.Secrets, Targets: x.Targets, Log: &log,
		Build:   build,
		RunHook: m.runHook,
	}
	if req.Artifact, err = m.given(ctx, image, artifacts); err != nil {
		return "", err
	}
	rec, err := pipeline.Deploy(ctx, req)
	return render(output, log.String(), rec, err)
}

// Roll an environment back: to the release each host ran before, or to a named release
// that every host still keeps.
// +cache="never"
func (m *Pushdeploy) Rollback(
	ctx context.Context,
	// The environment, as pushdeploy.yaml names it.
	env string,
	// The environments file (without one, with-environment describes the environment).
	// +defaultPath="/pushdeploy.yaml"
	// +optional
	config *dagger.File,
	// The release to go back to; default: each host's previous release.
	// +optional
	to string,
	// Who approved the rollback: required by protected environments.
	// +optional
	approvedBy string,
	// Who rolls back, for the lock and the record. Default: the user and host the function
	// runs as, so CI should pass its actor.
	// +optional
	deployer string,
	// How the record is printed: text or json.
	// +default="text"
	output string,
) (string, error) {
	x, err := m.environments(ctx, config, env)
	if err != nil {
		return "", err
	}
	var log bytes.Buffer
	x.Log, x.Deployer = &log, deployer
	rec, err := x.Rollback(ctx, env, to, approvedBy)
	return render(output, log.String(), rec, err)
}

// What runs where: the live release, version and digest on every host of every
// environment of pushdeploy.yaml (or only env), and who holds a lock.
// +cache="never"
func (m *Pushdeploy) Status(
	ctx context.Context,
	// The environments file (without one, with-environment describes the environment).
	// +defaultPath="/pushdeploy.yaml"
	// +optional
	config *dagger.File,
	// Only this environment.
	// +optional
	env string,
	// text or json.
	// +default="text"
	output string,
) (string, error) {
	x, err := m.environments(ctx, config, env)
	if err != nil {
		return "", err
	}
	var names []string
	if env != "" {
		names = []string{env}
	}
	st := x.Status(ctx, names...)
	out, err := format(output, st, func(w io.Writer) error { return pipeline.RenderStatus(w, st) })
	if err != nil {
		return "", err
	}
	if err := pipeline.StatusError(st); err != nil {
		return "", fmt.Errorf("%w\n%s", err, out)
	}
	return out, nil
}

// What a deploy of the current source to env would change on each host (files to add,
// change and remove and bytes to send; images to switch), changing nothing.
// +cache="never"
func (m *Pushdeploy) Plan(
	ctx context.Context,
	// The environment, as pushdeploy.yaml names it.
	env string,
	// The environments file (without one, with-environment describes the environment).
	// +defaultPath="/pushdeploy.yaml"
	// +optional
	config *dagger.File,
	// An image published already (repo@sha256:...) to plan instead of building one.
	// +optional
	image string,
	// Files built already for an ssh environment, to plan instead of building them.
	// +optional
	artifacts *dagger.Directory,
	// text or json.
	// +default="text"
	output string,
) (string, error) {
	x, err := m.environments(ctx, config, env)
	if err != nil {
		return "", err
	}
	e, err := x.File.Env(env)
	if err != nil {
		return "", err
	}
	art, err := m.given(ctx, image, artifacts)
	if err != nil {
		return "", err
	}
	if art == nil {
		if art, err = m.buildFor(x.File, true)(ctx, e.Kind()); err != nil {
			return "", err
		}
	}
	changes, err := x.Plan(ctx, env, *art)
	if err != nil {
		return "", err
	}
	return format(output, changes, func(w io.Writer) error { return pipeline.RenderPlan(w, changes) })
}

// The deployment records of an environment, oldest first, and the releases its hosts keep
// for rollback (Kubernetes: the revisions with their change-cause).
// +cache="never"
func (m *Pushdeploy) History(
	ctx context.Context,
	// The environment, as pushdeploy.yaml names it.
	env string,
	// The environments file (without one, with-environment describes the environment).
	// +defaultPath="/pushdeploy.yaml"
	// +optional
	config *dagger.File,
	// How many records, the newest.
	// +default=20
	limit int,
	// text or json.
	// +default="text"
	output string,
) (string, error) {
	x, err := m.environments(ctx, config, env)
	if err != nil {
		return "", err
	}
	h, err := x.History(ctx, env, limit)
	if err != nil {
		return "", err
	}
	return format(output, h, func(w io.Writer) error { return pipeline.RenderEnvHistory(w, h) })
}

// Break an environment's deploy lock, whoever holds it (a deploy that died before its
// lock expired).
// +cache="never"
func (m *Pushdeploy) Unlock(
	ctx context.Context,
	// The environment, as pushdeploy.yaml names it.
	env string,
	// The environments file (without one, with-environment describes the environment).
	// +defaultPath="/pushdeploy.yaml"
	// +optional
	config *dagger.File,
) (string, error) {
	x, err := m.environments(ctx, config, env)
	if err != nil {
		return "", err
	}
	held, err := x.Unlock(ctx, env)
	if err != nil {
		return "", err
	}
	if held == nil {
		return fmt.Sprintf("%s was not locked\n", env), nil
	}
	return fmt.Sprintf("%s unlocked; it was held by %s\n", env, held), nil
}

// targetExtra adds options to every target the module makes: a test seam (the bench's
// Docker socket), empty in use.
var targetExtra assemble.Extra

// environments reads the file and the credentials into plain Go values. The settings of
// with-environment describe env without a file, and override the file's values with one.
func (m *Pushdeploy) environments(ctx context.Context, file *dagger.File, env string) (*pipeline.Environments, error) {
	var f *config.File
	if file != nil {
		data, err := file.Contents(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading the environments file: %w", err)
		}
		name, err := file.Name(ctx)
		if err != nil {
			return nil, err
		}
		if f, err = config.Parse(name, []byte(data)); err != nil {
			return nil, err
		}
	}
	var s settings
	if m.Settings != "" {
		if err := json.Unmarshal([]byte(m.Settings), &s); err != nil {
			return nil, fmt.Errorf("reading with-environment's settings: %w", err)
		}
		s.Env = env
	}
	switch {
	case f != nil && m.Settings != "":
		if err := f.Override(env, s); err != nil {
			return nil, fmt.Errorf("overriding environment %q of %s with with-environment's arguments:\n%w", env, f.Name(), err)
		}
	case f == nil && m.Settings == "":
		return nil, fmt.Errorf("no %s in the source: add one, pass --config, or describe the environment with with-environment", config.DefaultFile)
	case f == nil:
		var err error
		if f, err = config.FromSettings(s); err != nil {
			return nil, fmt.Errorf("no %s, so with-environment's arguments describe the environment:\n%w", config.DefaultFile, err)
		}
	}
	sec, err := m.secrets(ctx)
	if err != nil {
		return nil, err
	}
	// file:PATH in the file names a file of the source, e.g. file:.ci/known_hosts.
	sec.ReadFile = func(p string) ([]byte, error) {
		if path.IsAbs(p) || strings.HasPrefix(path.Clean(p), "..") {
			return nil, fmt.Errorf("file:%s: in the module, file: names a file of the source directory, by a relative path", p)
		}
		s, err := m.Source.File(p).Contents(ctx)
		return []byte(s), err
	}
	sec.Preload(f)
	return &pipeline.Environments{File: f, Secrets: sec, Targets: assemble.Maker(targetExtra)}, nil
}

// given is what the caller hands a deploy instead of a build: a published image, or
// artifacts exported into the function's filesystem.
func (m *Pushdeploy) given(ctx context.Context, image string, artifacts *dagger.Directory) (*pipeline.Artifact, error) {
	switch {
	case image != "" && artifacts != nil:
		return nil, fmt.Errorf("give an image or artifacts, not both")
	case image != "":
		return &pipeline.Artifact{Image: image}, nil
	case artifacts != nil:
		dir, err := os.MkdirTemp("", "pushdeploy-artifacts-")
		if err != nil {
			return nil, err
		}
		if _, err := artifacts.Export(ctx, dir); err != nil {
			return nil, fmt.Errorf("exporting the artifacts: %w", err)
		}
		return &pipeline.Artifact{Dir: dir}, nil
	}
	return nil, nil
}

// secrets reads the credentials the module was given. They are read here, inside the
// function, and never put into a container or a query.
func (m *Pushdeploy) secrets(ctx context.Context) (pipeline.Secrets, error) {
	var s pipeline.Secrets
	read := func(sec *dagger.Secret, into *[]byte, what string) error {
		if sec == nil {
			return nil
		}
		v, err := sec.Plaintext(ctx)
		if err != nil {
			return fmt.Errorf("reading the %s secret: %w", what, err)
		}
		*into = []byte(v)
		return nil
	}
	if err := read(m.SSHKey, &s.SSHKey, "ssh key"); err != nil {
		return s, err
	}
	if err := read(m.Kubeconfig, &s.Kubeconfig, "kubeconfig"); err != nil {
		return s, err
	}
	if err := read(m.RegistryPassword, &s.RegistryPassword, "registry password"); err != nil {
		return s, err
	}
	if m.KnownHosts != nil {
		kh, err := m.KnownHosts.Contents(ctx)
		if err != nil {
			return s, fmt.Errorf("reading known_hosts: %w", err)
		}
		s.KnownHosts = []byte(kh)
	}
	s.Named = map[string][]byte{}
	for _, sec := range m.Secrets {
		name, err := sec.Name(ctx)
		if err != nil {
			return s, fmt.Errorf("reading a secret's name: %w", err)
		}
		var v []byte
		if err := read(sec, &v, name); err != nil {
			return s, err
		}
		s.Named[secretName(name)] = v
	}
	return s, nil
}

// secretName is how the file names a secret passed as env:NAME, file:PATH or by name.
func secretName(name string) string {
	if i := strings.LastIndex(name, "://"); i >= 0 {
		name = name[i+3:]
	} else if i := strings.Index(name, ":"); i >= 0 {
		name = name[i+1:]
	}
	return name
}

// buildFor builds and tests as the file says and exports what the target kind deploys into
// the function's own filesystem: the artifact directory for ssh targets, the image as an
// OCI tarball for the others.
func (m *Pushdeploy) buildFor(f *config.File, skipTests bool) func(context.Context, string) (*pipeline.Artifact, error) {
	return func(ctx context.Context, kind string) (*pipeline.Artifact, error) {
		b := f.Build
		mm := *m
		if b.Toolchain != "" {
			mm.GoImage, mm.NodeImage = b.Toolchain, b.Toolchain
		}
		if b.Base != "" {
			mm.GoRuntime, mm.NodeRuntime = b.Base, b.Base
		}
		if _, err := mm.detect(ctx, testKind(b.Kind), pipeline.DetectTest); err == nil && !skipTests {
			if _, err := mm.Test(ctx, testKind(b.Kind), false); err != nil {
				return nil, err
			}
		}
		dir, err := os.MkdirTemp("", "pushdeploy-build-")
		if err != nil {
			return nil, err
		}
		if kind == "ssh" {
			d, err := mm.BuildArtifacts(ctx, b.Kind, ".", strings.TrimSuffix(or(b.Artifacts, pipeline.DefaultArtifactsDir), "/"))
			if err != nil {
				return nil, err
			}
			if _, err := d.Export(ctx, dir); err != nil {
				return nil, fmt.Errorf("exporting the artifacts: %w", err)
			}
			return &pipeline.Artifact{Dir: dir}, nil
		}
		ctr, err := mm.Build(ctx, b.Kind, ".", or(b.Dockerfile, "Dockerfile"))
		if err != nil {
			return nil, err
		}
		tar := filepath.Join(dir, "image.tar")
		if _, err := ctr.AsTarball().Export(ctx, tar); err != nil {
			return nil, fmt.Errorf("exporting the image: %w", err)
		}
		return &pipeline.Artifact{ImagePath: tar}, nil
	}
}

// testKind is the kind to test as: a docker build tests by what the source holds.
func testKind(kind string) string {
	if kind == pipeline.KindDocker {
		return ""
	}
	return kind
}

// runHook runs a hook command in a container with the source at /src and the record's
// fields in its environment.
func (m *Pushdeploy) runHook(ctx context.Context, image, cmd string, env map[string]string) ([]byte, error) {
	if image == "" {
		image = m.GoImage
		if k, err := m.detect(ctx, "", pipeline.DetectTest); err == nil && k == pipeline.KindNode {
			image = m.NodeImage
		}
	}
	ctr := dag.Container().From(image).WithDirectory("/src", m.Source).WithWorkdir("/src")
	for _, k := range sortedKeys(env) {
		ctr = ctr.WithEnvVariable(k, env[k])
	}
	ctr = ctr.WithExec([]string{"sh", "-c", cmd}, dagger.ContainerWithExecOpts{Expect: dagger.ReturnTypeAny})
	code, err := ctr.ExitCode(ctx)
	if err != nil {
		return nil, err
	}
	out, err := ctr.CombinedOutput(ctx)
	if err != nil {
		return nil, err
	}
	if code != 0 {
		return []byte(out), fmt.Errorf("exit code %d", code)
	}
	return []byte(out), nil
}

// format prints v as JSON when output is "json", else as text prints it.
func format(output string, v any, text func(io.Writer) error) (string, error) {
	var b bytes.Buffer
	var err error
	if output == "json" {
		err = pipeline.JSON(&b, v)
	} else {
		err = text(&b)
	}
	return b.String(), err
}

// render prints the stage log and the record as text, or the record as JSON; when the
// operation failed (failed), that is the error, with what was printed.
func render(output, log string, rec *pipeline.Record, failed error) (string, error) {
	var b bytes.Buffer
	var err error
	if output == "json" {
		if rec != nil {
			err = pipeline.JSON(&b, rec)
		}
	} else {
		b.WriteString(log)
		if rec != nil && rec.Outcome != "" { // a deploy refused at its gates has no record to show
			pipeline.RenderRecord(&b, rec)
		}
	}
	if failed != nil {
		return "", fmt.Errorf("%w\n%s", failed, b.String())
	}
	return b.String(), err
}
