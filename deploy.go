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

// Deploy the application to one environment: gates, build, publish, lock, health, rollback.
//
// It checks the environment's gates, builds and tests (or promotes what another environment
// runs), publishes, takes the target's lock, runs the hooks, deploys batch by batch with
// health checks, rolls back on failure, records and notifies. Returns the deployment record.
// +cache="never"
func (m *Pushdeploy) Deploy(
	ctx context.Context,
	// The environment, as pushdeploy.yaml names it.
	env string,
	// The environments file. Default: pushdeploy.yaml of the source, if it has one (without
	// one, with-environment describes the environment).
	// +optional
	config *dagger.File,
	// Who approved this deploy: required by protected environments. In CI, the approver
	// from the CI's own gate (GitHub environment reviewers, Jenkins input submitter).
	// +optional
	approvedBy string,
	// An image published already (repo@sha256:... or repo:tag, resolved to its digest once)
	// to deploy instead of building one.
	// +optional
	image string,
	// Files built already (an earlier job's artifacts) for an ssh environment, instead of
	// building them; what a promotion of files deploys.
	// +optional
	artifacts *dagger.Directory,
	// Do not run the tests before building (an earlier job ran them).
	// +optional
	skipTests bool,
	// The release crosses a change a rollback cannot undo (a migration): once a host
	// switches, no automatic rollback goes back past it, and rollback refuses without --force.
	// +optional
	irreversible bool,
	// Who deploys, for the lock and the record. Default: the user and host the function runs
	// as, so CI should pass its actor.
	// +optional
	deployer string,
	// The CI run that deploys (its id or URL), for the lock and the record.
	// +optional
	pipelineId string,
	// How the record is printed: text or json.
	// +default="text"
	format string,
) (string, error) {
	return m.envCall(ctx, config, env, format, deployer, func(ctx context.Context, x *pipeline.Environments, log io.Writer) (result, error) {
		req := pipeline.Request{
			File: x.File, Env: env, ApprovedBy: approvedBy, Deployer: deployer, PipelineID: pipelineId,
			Source:  m.source(),
			Secrets: x.Secrets, Targets: x.Targets, Log: log,
			Build:   m.buildFor(x.File, skipTests),
			RunHook: m.runHook, Irreversible: irreversible,
		}
		var err error
		if req.Artifact, err = m.given(ctx, image, artifacts); err != nil {
			return result{}, err
		}
		rec, err := pipeline.Deploy(ctx, req)
		return recordResult(rec), err
	})
}

// Roll an environment back to the release live before, or to a named release every host keeps.
// +cache="never"
func (m *Pushdeploy) Rollback(
	ctx context.Context,
	// The environment, as pushdeploy.yaml names it.
	env string,
	// The environments file. Default: pushdeploy.yaml of the source, if it has one.
	// +optional
	config *dagger.File,
	// The release to go back to. Default: the release live before the current one.
	// +optional
	to string,
	// Who approved the rollback: required by protected environments.
	// +optional
	approvedBy string,
	// Roll back across a release that crossed an irreversible change (a migration), which is
	// refused without it.
	// +optional
	force bool,
	// Who rolls back, for the lock and the record. Default: the user and host the function
	// runs as, so CI should pass its actor.
	// +optional
	deployer string,
	// How the record is printed: text or json.
	// +default="text"
	format string,
) (string, error) {
	return m.envCall(ctx, config, env, format, deployer, func(ctx context.Context, x *pipeline.Environments, _ io.Writer) (result, error) {
		rec, err := x.Rollback(ctx, env, to, approvedBy, pipeline.WithAcrossIrreversible(force))
		return recordResult(rec), err
	})
}

// Show what runs where: live release, version and digest per host, and who holds a lock.
//
// Every environment of pushdeploy.yaml, or only env; each host's health check run once, and
// each Deployment's rollout state (complete, progressing, stuck). Fails when an environment
// cannot be read, a rollout is stuck or a host is unhealthy, printing the table all the same.
// +cache="never"
func (m *Pushdeploy) Status(
	ctx context.Context,
	// The environments file. Default: pushdeploy.yaml of the source, if it has one.
	// +optional
	config *dagger.File,
	// Only this environment.
	// +optional
	env string,
	// Do not run each host's health check once (the HEALTH column then says "not checked").
	// +optional
	noCheck bool,
	// text or json.
	// +default="text"
	format string,
) (string, error) {
	return m.envCall(ctx, config, env, format, "", func(ctx context.Context, x *pipeline.Environments, _ io.Writer) (result, error) {
		var names []string
		if env != "" {
			names = []string{env}
		}
		st := x.CheckedStatus(ctx, !noCheck, names...)
		return result{v: st, text: func(w io.Writer) error { return pipeline.RenderStatus(w, st) }}, pipeline.StatusError(st)
	})
}

// Show what a deploy of the current source would change on each host, changing nothing.
//
// Files to add, change and remove and the bytes to send; images to switch.
// +cache="never"
func (m *Pushdeploy) Plan(
	ctx context.Context,
	// The environment, as pushdeploy.yaml names it.
	env string,
	// The environments file. Default: pushdeploy.yaml of the source, if it has one.
	// +optional
	config *dagger.File,
	// An image published already (repo@sha256:... or repo:tag, resolved to its digest) to
	// plan instead of building one.
	// +optional
	image string,
	// Files built already for an ssh environment, to plan instead of building them.
	// +optional
	artifacts *dagger.Directory,
	// text or json.
	// +default="text"
	format string,
) (string, error) {
	return m.envCall(ctx, config, env, format, "", func(ctx context.Context, x *pipeline.Environments, _ io.Writer) (result, error) {
		e, err := x.File.Env(env)
		if err != nil {
			return result{}, err
		}
		art, err := m.given(ctx, image, artifacts)
		if err != nil {
			return result{}, err
		}
		if art == nil {
			if art, err = m.buildFor(x.File, true)(ctx, e.Kind()); err != nil {
				return result{}, err
			}
		}
		changes, err := x.Plan(ctx, env, *art)
		return result{v: changes, text: func(w io.Writer) error { return pipeline.RenderPlan(w, changes) }}, err
	})
}

// List an environment's deployment records and the releases its hosts keep for rollback.
//
// Records oldest first, merged from every host; Kubernetes: the revisions with their
// change-cause.
// +cache="never"
func (m *Pushdeploy) History(
	ctx context.Context,
	// The environment, as pushdeploy.yaml names it.
	env string,
	// The environments file. Default: pushdeploy.yaml of the source, if it has one.
	// +optional
	config *dagger.File,
	// How many records, the newest.
	// +default=20
	limit int,
	// text or json.
	// +default="text"
	format string,
) (string, error) {
	return m.envCall(ctx, config, env, format, "", func(ctx context.Context, x *pipeline.Environments, _ io.Writer) (result, error) {
		h, err := x.History(ctx, env, limit)
		return result{v: h, text: func(w io.Writer) error { return pipeline.RenderEnvHistory(w, h) }}, err
	})
}

// Break an environment's deploy lock left by a dead deploy (a live one only with --force).
// +cache="never"
func (m *Pushdeploy) Unlock(
	ctx context.Context,
	// The environment, as pushdeploy.yaml names it.
	env string,
	// The environments file. Default: pushdeploy.yaml of the source, if it has one.
	// +optional
	config *dagger.File,
	// Break the lock even while it is within its TTL (its deploy may still be running).
	// +optional
	force bool,
	// text or json.
	// +default="text"
	format string,
) (string, error) {
	return m.envCall(ctx, config, env, format, "", func(ctx context.Context, x *pipeline.Environments, _ io.Writer) (result, error) {
		held, err := x.Unlock(ctx, env, pipeline.WithForce(force))
		s := pipeline.Unlocked(env, held)
		return result{v: s, text: func(w io.Writer) error { return pipeline.RenderLock(w, s) }}, err
	})
}

// Print the least-privilege Role and RoleBinding a Kubernetes environment needs, talking to no server.
//
// Its namespace, its Deployments, Lease and journal ConfigMap by name, only the verbs the
// target's calls use: dagger call rbac --env production | kubectl apply -f -.
// +cache="never"
func (m *Pushdeploy) Rbac(
	ctx context.Context,
	// The environment, as pushdeploy.yaml names it.
	env string,
	// The environments file. Default: pushdeploy.yaml of the source, if it has one.
	// +optional
	config *dagger.File,
	// The ServiceAccount the RoleBinding grants the Role to, in the environment's namespace.
	// +default="ci-deployer"
	serviceAccount string,
	// Also grant what logs and exec need (get pods/log, create pods/exec), as a Role of its
	// own for an operator's account: a deploy needs neither.
	// +optional
	operator bool,
) (string, error) {
	return m.envCall(ctx, config, env, pipeline.FormatText, "", func(ctx context.Context, x *pipeline.Environments, _ io.Writer) (result, error) {
		b, err := x.RBAC(ctx, env, or(serviceAccount, "ci-deployer"), operator)
		return result{text: func(w io.Writer) error { _, err := w.Write(b); return err }}, err
	})
}

// result is what an environment operation returns: the value printed as JSON, and how
// it prints as text.
type result struct {
	v    any
	text func(io.Writer) error
}

// recordResult prints a deployment record; a deploy refused at its gates has none to show.
func recordResult(rec *pipeline.Record) result {
	if rec == nil || rec.Outcome == "" {
		return result{}
	}
	return result{v: rec, text: func(w io.Writer) error { pipeline.RenderRecord(w, rec); return nil }}
}

// envCall is the one path of every function that acts on environments: check the
// format, read the file and the credentials, run op with the stage log, and print the
// log and the result as text (or the result as JSON). When op fails, the error carries
// what was printed.
func (m *Pushdeploy) envCall(ctx context.Context, file *dagger.File, env, format, deployer string, op func(context.Context, *pipeline.Environments, io.Writer) (result, error)) (string, error) {
	if err := pipeline.CheckFormat(format); err != nil {
		return "", err
	}
	x, err := m.environments(ctx, file, env)
	if err != nil {
		return "", err
	}
	var log bytes.Buffer
	x.Log, x.Deployer = stream(&log), deployer
	res, failed := op(ctx, x, x.Log)
	var b bytes.Buffer
	if format == pipeline.FormatJSON {
		if res.v != nil {
			err = pipeline.JSON(&b, res.v)
		}
	} else {
		b.WriteString(log.String())
		if res.text != nil {
			err = res.text(&b)
		}
	}
	if failed != nil {
		return "", fmt.Errorf("%w\n%s", failed, b.String())
	}
	return b.String(), err
}

// stream is the stage log of a function: kept for its result, and written to stderr as it
// goes, which the engine shows while the function runs (dagger call's progress output).
func stream(log *bytes.Buffer) io.Writer { return io.MultiWriter(log, os.Stderr) }

// targetExtra adds options to every target the module makes: a test seam (the bench's
// Docker socket), empty in use.
var targetExtra assemble.Extra

// environments reads the file and the credentials into plain Go values. The settings of
// with-environment describe env without a file, and override the file's values with one.
func (m *Pushdeploy) environments(ctx context.Context, file *dagger.File, env string) (*pipeline.Environments, error) {
	f, err := m.environmentsFile(ctx, file)
	if err != nil {
		return nil, err
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
	return &pipeline.Environments{File: f, Secrets: sec, Targets: assemble.Maker(targetExtra), RunHook: m.runHook}, nil
}

// environmentsFile parses the file given, else the source's pushdeploy.yaml when it has
// one; nil when there is neither.
func (m *Pushdeploy) environmentsFile(ctx context.Context, file *dagger.File) (*config.File, error) {
	name := config.DefaultFile
	if file == nil {
		ok, err := m.Source.Exists(ctx, config.DefaultFile)
		if err != nil {
			return nil, fmt.Errorf("looking for %s in the source: %w", config.DefaultFile, err)
		}
		if !ok {
			return nil, nil
		}
		file = m.Source.File(config.DefaultFile)
	} else {
		var err error
		if name, err = file.Name(ctx); err != nil {
			return nil, fmt.Errorf("reading the environments file's name: %w", err)
		}
	}
	data, err := file.Contents(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the environments file %s: %w", name, err)
	}
	return config.Parse(name, []byte(data))
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
		dir, err := exportDir(ctx, artifacts)
		if err != nil {
			return nil, err
		}
		return &pipeline.Artifact{Dir: dir}, nil
	}
	return nil, nil
}

// secrets reads the credentials the module was given. They are read here, inside the
// function, and never put into a container or a query. Every secret is also known by the
// name the engine identifies it by (--secrets env:SLACK_WEBHOOK is SLACK_WEBHOOK, and so
// is a slot given as --ssh-key env:SSH_KEY), so the file's `key: env:SSH_KEY` finds the
// slot's value.
func (m *Pushdeploy) secrets(ctx context.Context) (pipeline.Secrets, error) {
	s := pipeline.Secrets{Named: map[string][]byte{}}
	read := func(sec *dagger.Secret, what string) ([]byte, error) {
		if sec == nil {
			return nil, nil
		}
		name, err := secretName(ctx, sec)
		if err != nil {
			return nil, fmt.Errorf("reading the %s secret's name: %w", what, err)
		}
		v, err := sec.Plaintext(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading the %s secret %q: %w", what, name, err)
		}
		if name != "" {
			s.Named[name] = []byte(v)
		}
		return []byte(v), nil
	}
	var err error
	if s.SSHKey, err = read(m.SSHKey, "ssh key"); err != nil {
		return s, err
	}
	if s.Kubeconfig, err = read(m.Kubeconfig, "kubeconfig"); err != nil {
		return s, err
	}
	if s.RegistryPassword, err = read(m.RegistryPassword, "registry password"); err != nil {
		return s, err
	}
	if m.KnownHosts != nil {
		kh, err := m.KnownHosts.Contents(ctx)
		if err != nil {
			return s, fmt.Errorf("reading known_hosts: %w", err)
		}
		s.KnownHosts = []byte(kh)
	}
	for i, sec := range m.Secrets {
		if _, err := read(sec, fmt.Sprintf("--secrets #%d", i+1)); err != nil {
			return s, err
		}
	}
	return s, nil
}

// secretName is the name the file knows a secret by. The engine gives a secret made by
// dag.SetSecret its name, and one from the CLI (--secrets env:NAME, file:PATH, cmd:...)
// only its URI (env://NAME, file://PATH): the part after the scheme names it.
func secretName(ctx context.Context, sec *dagger.Secret) (string, error) {
	name, err := sec.Name(ctx)
	if err != nil {
		return "", err
	}
	if name == "" {
		if name, err = sec.URI(ctx); err != nil {
			return "", err
		}
	}
	return pipeline.SecretNameOf(name), nil
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
		// build.context: the directory to build, relative to the source.
		if c := path.Clean(b.Context); c != "." && c != "" {
			if path.IsAbs(c) || strings.HasPrefix(c, "..") {
				return nil, fmt.Errorf("build.context %q: a directory of the source, by a relative path", b.Context)
			}
			mm.Source = m.Source.Directory(c)
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
