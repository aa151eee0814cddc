package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/assemble"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/targets/ssh"
)

// common are the flags every command that reaches a target shares: where the environments
// file is, and the credentials, always given as env:NAME or file:PATH so that no secret
// value is ever typed on a command line; and the environment's settings, for when there is
// no file (or to override it).
type common struct {
	file             string
	settings         config.Settings
	sshKey           string
	knownHosts       string
	kubeconfig       string
	registryPassword string
	secrets          []string
	deployer         string
	pipelineID       string
	format           string
	checksum         bool
}

func (c *common) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVarP(&c.file, "file", "f", config.DefaultFile, "the environments file; without one, the environment settings flags describe the environment")
	f.StringVar(&c.sshKey, "ssh-key", "", "SSH private key for ssh and docker targets: env:NAME or file:PATH")
	f.StringVar(&c.knownHosts, "known-hosts", "", "known_hosts lines host keys are verified against: file:PATH or env:NAME")
	f.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig for kubernetes targets: file:PATH or env:NAME")
	f.StringVar(&c.registryPassword, "registry-password", "", "image registry password or token: env:NAME or file:PATH")
	f.StringArrayVar(&c.secrets, "secret", nil, "a secret the file names: NAME=env:VAR or NAME=file:PATH (repeatable); a NAME not given is read from $NAME")
	f.StringVar(&c.deployer, "deployer", "", "who acts, for the lock and the record (default $USER@hostname)")
	f.StringVar(&c.pipelineID, "pipeline-id", "", "the CI run that acts (id or URL), for the lock and the record")
	f.StringVarP(&c.format, "format", "o", "text", "text or json")
	f.BoolVar(&c.checksum, "checksum", false, "ssh targets: hash every artifact file, trusting none by size and modification time (as rsync --checksum)")
	BindFlags(f, &c.settings)
	cmd.SetUsageTemplate(settingsUsage)
}

// environments reads the file (or the settings flags, see load) and resolves the
// credentials where the CLI runs. env is the environment the command acts on, "" for all.
func (c *common) environments(cmd *cobra.Command, env string) (*pipeline.Environments, error) {
	stderr := cmd.ErrOrStderr()
	f, err := c.load(cmd.Flags(), env)
	if err != nil {
		return nil, err
	}
	s, err := c.resolveSecrets()
	if err != nil {
		return nil, err
	}
	s.Preload(f)
	var extra assemble.Extra
	if c.checksum {
		extra.Server = append(extra.Server, ssh.Checksum())
	}
	return &pipeline.Environments{File: f, Secrets: s, Targets: assemble.Maker(extra), Log: stderr,
		Deployer: c.deployer, PipelineID: c.pipelineID, RunHook: runHookLocally}, nil
}

func (c *common) resolveSecrets() (pipeline.Secrets, error) {
	s := pipeline.Secrets{Local: true, Named: map[string][]byte{}}
	for _, slot := range []struct {
		ref  string
		into *[]byte
		what string
	}{
		{c.sshKey, &s.SSHKey, "--ssh-key"},
		{c.knownHosts, &s.KnownHosts, "--known-hosts"},
		{c.kubeconfig, &s.Kubeconfig, "--kubeconfig"},
		{c.registryPassword, &s.RegistryPassword, "--registry-password"},
	} {
		if slot.ref == "" {
			continue
		}
		v, err := s.Resolve(localRef(slot.ref), nil, slot.what)
		if err != nil {
			return s, err
		}
		*slot.into = v
	}
	for _, kv := range c.secrets {
		name, ref, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			return s, fmt.Errorf("--secret %q: want NAME=env:VAR or NAME=file:PATH", name)
		}
		v, err := s.Resolve(localRef(ref), nil, "--secret "+name)
		if err != nil {
			return s, err
		}
		s.Named[name] = v
	}
	return s, nil
}

// localRef takes a credential flag's value: env:NAME or file:PATH; a bare path means a file.
func localRef(v string) config.SecretRef {
	if strings.HasPrefix(v, "env:") || strings.HasPrefix(v, "file:") {
		return config.SecretRef(v)
	}
	return config.SecretRef("file:" + v)
}

// runHookLocally runs a hook command with sh where the CLI runs: the CLI has no
// container engine, so the "container" of hooks is this machine.
func runHookLocally(ctx context.Context, _ string, cmd string, env map[string]string) ([]byte, error) {
	c := exec.CommandContext(ctx, "sh", "-c", cmd)
	c.Env = os.Environ()
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c.Env = append(c.Env, k+"="+env[k])
	}
	return c.CombinedOutput()
}
