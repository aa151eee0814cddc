// Package assemble makes the target an environment of pushdeploy.yaml describes: it turns
// the file's settings and the secrets the caller passed into one of the target packages'
// constructors, so that the Dagger module and the CLI build targets the same way.
package assemble

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/docker"
	"github.com/pushdeploy/pushdeploy/targets/kubernetes"
	"github.com/pushdeploy/pushdeploy/targets/ssh"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// Extra are options the caller adds to every target of a kind (tests: a socket path, a
// state directory).
type Extra struct {
	SSH        []sshconn.Option
	Docker     []docker.Option
	Kubernetes []kubernetes.Option
	Server     []ssh.Option
}

var _ pipeline.TargetMaker = Maker(Extra{})

// Maker returns the pipeline.TargetMaker that makes targets from the file.
func Maker(extra Extra) pipeline.TargetMaker {
	return func(ctx context.Context, f *config.File, name string, s *pipeline.Secrets) (targets.Target, error) {
		env, err := f.Env(name)
		if err != nil {
			return nil, err
		}
		app, img := f.App, f.Image
		switch env.Kind() {
		case "ssh":
			return server(app, name, env, s, extra)
		case "docker":
			return dockerTarget(app, name, env, img, s, extra)
		case "kubernetes":
			return kube(app, name, env, s, extra)
		}
		return nil, fmt.Errorf("environment %q has no target (ssh, docker or kubernetes)", name)
	}
}

// sshOptions are the connection options of docker environments.
func sshOptions(acc config.SSHAccess, s *pipeline.Secrets, extra []sshconn.Option) ([]sshconn.Option, error) {
	key, kh, err := s.SSHCredentials(acc)
	if err != nil {
		return nil, err
	}
	opts := []sshconn.Option{sshconn.PrivateKey(key)}
	if len(kh) > 0 {
		opts = append(opts, sshconn.KnownHosts(kh))
	}
	if acc.User != "" {
		opts = append(opts, sshconn.User(acc.User))
	}
	if acc.Jump != nil {
		jopts := []sshconn.Option{sshconn.PrivateKey(key)}
		if len(kh) > 0 {
			jopts = append(jopts, sshconn.KnownHosts(kh))
		}
		if u := firstNonEmpty(acc.Jump.User, acc.User); u != "" {
			jopts = append(jopts, sshconn.User(u))
		}
		opts = append(opts, sshconn.Jump(hostPort(*acc.Jump), jopts...))
	}
	return append(opts, extra...), nil
}

func hostPort(h config.HostSpec) string {
	port := h.Port
	if port == 0 {
		port = 22
	}
	return h.Host + ":" + strconv.Itoa(port)
}

func dockerTarget(app, name string, env *config.Environment, img *config.Image, s *pipeline.Secrets, extra Extra) (targets.Target, error) {
	d := env.Docker
	sshOpts, err := sshOptions(d.SSHAccess, s, extra.SSH)
	if err != nil {
		return nil, err
	}
	opts := []docker.Option{docker.WithSSH(sshOpts...)}
	var hosts []string
	for _, h := range env.Hosts() {
		hosts = append(hosts, hostPort(h))
		if h.User != "" && h.User != d.User {
			return nil, fmt.Errorf("host %q names its own user %q: docker environments use one user (docker.user)", h.Host, h.User)
		}
	}
	if len(d.Ports) > 0 {
		opts = append(opts, docker.WithPorts(d.Ports...))
	}
	if d.Container != "" {
		opts = append(opts, docker.WithContainerName(d.Container))
	}
	// The hosts pull with the credentials the image is published with, sent per pull and
	// only to that registry.
	if img != nil && img.Username != "" {
		pw, err := s.Resolve(img.Password, s.RegistryPassword, "image.password")
		if err != nil {
			return nil, err
		}
		opts = append(opts, docker.WithRegistryAuth(registryOf(img), img.Username, strings.TrimSpace(string(pw))))
	}
	if d.Network != "" {
		opts = append(opts, docker.WithNetwork(d.Network))
	}
	var vars []string
	for k, v := range d.Env {
		vars = append(vars, k+"="+v)
	}
	for k, ref := range d.SecretEnv {
		v, err := s.Resolve(ref, nil, "docker.secret_env."+k)
		if err != nil {
			return nil, err
		}
		vars = append(vars, k+"="+string(v))
	}
	if len(vars) > 0 {
		opts = append(opts, docker.WithEnv(vars...))
	}
	if len(d.Volumes) > 0 {
		opts = append(opts, docker.WithVolumes(d.Volumes...))
	}
	if d.Restart != "" {
		opts = append(opts, docker.WithRestartPolicy(d.Restart))
	}
	if d.Memory != "" {
		opts = append(opts, docker.WithMemory(d.Memory))
	}
	if d.CPUs > 0 {
		opts = append(opts, docker.WithCPUs(d.CPUs))
	}
	if d.StopTimeout.Duration > 0 {
		opts = append(opts, docker.WithStopTimeout(d.StopTimeout.Duration))
	}
	if d.StateDir != "" {
		opts = append(opts, docker.WithStateDir(d.StateDir))
	}
	if d.Socket != "" {
		opts = append(opts, docker.WithSocket(d.Socket))
	}
	if len(env.Hooks.Updated) > 0 {
		// Run in a one-off container of the new image before the switch, bounded as every hook is.
		opts = append(opts, docker.WithUpdated(env.Hooks.Updated...))
		if d := env.Hooks.Timeout.Duration; d > 0 {
			opts = append(opts, docker.WithUpdatedTimeout(d))
		}
	}
	if bg := d.BlueGreen; bg != nil {
		if len(bg.Ports) != 2 {
			return nil, fmt.Errorf("docker.blue_green.ports: want two ports, got %d", len(bg.Ports))
		}
		opts = append(opts, docker.WithBlueGreen(docker.BlueGreen{
			Ports: [2]int{bg.Ports[0], bg.Ports[1]}, ContainerPort: bg.ContainerPort,
			Env: bg.Env, Switch: bg.Switch, Drain: bg.Drain.Duration,
		}))
	}
	return docker.New(app, name, hosts, append(opts, extra.Docker...)...)
}

func kube(app, name string, env *config.Environment, s *pipeline.Secrets, extra Extra) (targets.Target, error) {
	k := env.Kubernetes
	kc, err := s.Resolve(k.Kubeconfig, s.Kubeconfig, "kubeconfig")
	if err != nil {
		return nil, err
	}
	var opts []kubernetes.Option
	if len(kc) > 0 {
		opts = append(opts, kubernetes.WithKubeconfig(kc))
	} else if len(extra.Kubernetes) == 0 {
		opts = append(opts, kubernetes.WithInCluster())
	}
	if k.Context != "" {
		opts = append(opts, kubernetes.WithContext(k.Context))
	}
	if k.Namespace != "" {
		opts = append(opts, kubernetes.WithNamespace(k.Namespace))
	}
	if k.RolloutTimeout.Duration > 0 {
		opts = append(opts, kubernetes.WithRolloutTimeout(k.RolloutTimeout.Duration))
	}
	if k.CrashLoopRestarts > 0 {
		opts = append(opts, kubernetes.WithCrashLoopRestarts(k.CrashLoopRestarts))
	}
	if k.StartGrace.Duration > 0 {
		opts = append(opts, kubernetes.WithStartGrace(k.StartGrace.Duration))
	}
	var ws []kubernetes.Workload
	for _, d := range k.Deployments {
		ws = append(ws, kubernetes.Workload{Name: d.Name, Containers: d.Containers})
	}
	return kubernetes.New(app, name, ws, append(opts, extra.Kubernetes...)...)
}

// registryOf is the registry host of the file's image: Docker Hub when it names none.
func registryOf(img *config.Image) string {
	if img.Registry != "" {
		return img.Registry
	}
	return "index.docker.io"
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
