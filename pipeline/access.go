package pipeline

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

// Access is an environment's access as the pipeline has it, for a debug shell: the SSH
// login of every host (an ssh_config naming each, the key and the known_hosts lines the
// pipeline verifies host keys against), the Docker engine of docker hosts over SSH, and
// the kubeconfig of Kubernetes environments with its namespace set. Key and Kubeconfig are
// secrets: the module mounts them as secret files, never as environment variables.
type Access struct {
	Env  string `json:"env"`
	Kind string `json:"kind"`
	// Hosts are the aliases SSHConfig defines, one per host, in the file's order.
	Hosts []string `json:"hosts,omitempty"`
	// SSHConfig is an ssh_config with a Host entry per host (HostName, Port, User, the key
	// and known_hosts at KeyPath and KnownHostsPath, StrictHostKeyChecking yes) and the jump
	// host as ProxyJump.
	SSHConfig  string `json:"sshConfig,omitempty"`
	Key        []byte `json:"-"`
	KnownHosts []byte `json:"-"`
	// DockerHost is DOCKER_HOST for the first docker host ("ssh://alias"); "" for the others.
	DockerHost string `json:"dockerHost,omitempty"`
	// Kubeconfig has the environment's context current, with its namespace.
	Kubeconfig []byte `json:"-"`
	Namespace  string `json:"namespace,omitempty"`
}

// Where Access's files go in a debug container; SSHConfig names them.
const (
	AccessKeyPath        = "/root/.ssh/id_pushdeploy"
	AccessKnownHostsPath = "/root/.ssh/known_hosts"
	AccessKubeconfigPath = "/root/.kube/config"
)

// Access resolves the named environment's credentials into what a shell needs to reach its
// hosts as the pipeline does. It talks to no host.
func (x *Environments) Access(ctx context.Context, name string) (*Access, error) {
	if x.File == nil {
		return nil, fmt.Errorf("no environments file")
	}
	env, err := x.File.Env(name)
	if err != nil {
		return nil, err
	}
	a := &Access{Env: name, Kind: env.Kind()}
	if env.Kubernetes != nil {
		return a, a.kube(env.Kubernetes, &x.Secrets)
	}
	acc, _, _ := sshAccess(env)
	if acc == nil {
		return nil, fmt.Errorf("environment %q: no target to reach", name)
	}
	if a.Key, a.KnownHosts, err = x.Secrets.SSHCredentials(*acc); err != nil {
		return nil, fmt.Errorf("environment %q: %w", name, err)
	}
	var b strings.Builder
	jump := ""
	if j := acc.Jump; j != nil {
		jh := *j
		if jh.User == "" {
			jh.User = acc.User
		}
		jump = "pushdeploy-jump"
		writeHost(&b, jump, jh, "")
	}
	for i, h := range env.Hosts() {
		alias := fmt.Sprintf("%s-%d", name, i+1)
		a.Hosts = append(a.Hosts, alias)
		writeHost(&b, alias, h, jump)
	}
	a.SSHConfig = b.String()
	if env.Docker != nil && len(a.Hosts) > 0 {
		a.DockerHost = "ssh://" + a.Hosts[0]
	}
	return a, nil
}

// writeHost writes one ssh_config Host entry.
func writeHost(b *strings.Builder, alias string, h config.HostSpec, jump string) {
	port := h.Port
	if port == 0 {
		port = 22
	}
	fmt.Fprintf(b, "# %s\nHost %s\n  HostName %s\n  Port %s\n", h.String(), alias, h.Host, strconv.Itoa(port))
	if h.User != "" {
		fmt.Fprintf(b, "  User %s\n", h.User)
	}
	fmt.Fprintf(b, "  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n", AccessKeyPath, AccessKnownHostsPath)
	if jump != "" {
		fmt.Fprintf(b, "  ProxyJump %s\n", jump)
	}
	b.WriteString("\n")
}

// kube sets the environment's context current in its kubeconfig, with its namespace.
func (a *Access) kube(k *config.KubernetesTarget, s *Secrets) error {
	kc, err := s.Resolve(k.Kubeconfig, s.Kubeconfig, "kubeconfig")
	if err != nil {
		return fmt.Errorf("environment %q: %w", a.Env, err)
	}
	if len(kc) == 0 {
		return fmt.Errorf("environment %q: no kubeconfig: pass one (--kubeconfig) or name its secret in the file (kubeconfig:)", a.Env)
	}
	cfg, err := clientcmd.Load(kc)
	if err != nil {
		return fmt.Errorf("environment %q: reading the kubeconfig: %w", a.Env, err)
	}
	if k.Context != "" {
		cfg.CurrentContext = k.Context
	}
	c, ok := cfg.Contexts[cfg.CurrentContext]
	if !ok {
		names := make([]string, 0, len(cfg.Contexts))
		for n := range cfg.Contexts {
			names = append(names, n)
		}
		sort.Strings(names)
		return fmt.Errorf("environment %q: the kubeconfig has no context %q (it has %s)", a.Env, cfg.CurrentContext, strings.Join(names, ", "))
	}
	if k.Namespace != "" {
		c.Namespace = k.Namespace
	}
	a.Namespace = c.Namespace
	if a.Kubeconfig, err = clientcmd.Write(*cfg); err != nil {
		return fmt.Errorf("environment %q: writing the kubeconfig: %w", a.Env, err)
	}
	return nil
}
