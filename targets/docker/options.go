package docker

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"text/template"
	"time"

	"github.com/docker/go-connections/nat"
	"github.com/docker/go-units"

	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// Option configures a Docker target.
type Option func(*options) error

type options struct {
	ssh          []sshconn.Option
	socket       string
	registryHost string
	registryUser string
	registryPass string
	exposed      nat.PortSet
	bindings     nat.PortMap
	ports        []string
	network      string
	env          []string
	volumes      []string
	restart      string
	restartMax   int
	memory       int64
	nanoCPUs     int64
	stopTimeout  time.Duration
	healthWait   time.Duration
	stateDir     string
	hostScope    bool
	namePrefix   string
	blueGreen    *BlueGreen
	switchTmpl   *template.Template
	envTmpl      []*template.Template
	hostEnv      map[string][]string
	updated      []string
	updatedWait  time.Duration
}

// envName is what a portable environment variable name looks like.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// DefaultSocket is where the Docker Engine listens on a host unless WithSocket says otherwise.
const DefaultSocket = "/var/run/docker.sock"

// DefaultStateDir is the directory on each host that holds the deploy lock and the
// deployment history, one subdirectory per application and environment. Relative: in the
// SSH user's home, which a deploy user that is not root (in the docker group) can write,
// as root can.
const DefaultStateDir = ".pushdeploy"

// WithSSH sets how hosts are reached: sshconn.User, sshconn.PrivateKey, sshconn.KnownHosts,
// sshconn.Jump, sshconn.Timeout... Host keys are verified against the known_hosts content
// given; the private key is required. Default: none (New fails without a key).
func WithSSH(opts ...sshconn.Option) Option {
	return func(o *options) error {
		o.ssh = append(o.ssh, opts...)
		return nil
	}
}

// WithSocket sets the path of the Docker Engine's unix socket on the hosts, which is
// forwarded over SSH as `docker -H ssh://` does. Default: DefaultSocket.
func WithSocket(path string) Option {
	return func(o *options) error {
		if !strings.HasPrefix(path, "/") {
			return fmt.Errorf("docker socket %q is not an absolute path", path)
		}
		o.socket = path
		return nil
	}
}

// WithRegistryAuth sets the credentials of registry ("ghcr.io", "127.0.0.1:5000"; Docker
// Hub is "docker.io"), sent with every pull of an image from that registry and no other (the
// engine gets them per request; nothing is written into the host's Docker configuration).
// The password is a secret: it never appears in errors or logs. Default: anonymous pulls.
func WithRegistryAuth(registry, user, password string) Option {
	return func(o *options) error {
		if registry == "" || strings.ContainsAny(registry, "/@") {
			return fmt.Errorf("registry credentials: registry %q: want a registry host such as ghcr.io or 127.0.0.1:5000", registry)
		}
		if user == "" || password == "" {
			return fmt.Errorf("registry credentials for %s: user and password must both be given", registry)
		}
		o.registryHost, o.registryUser, o.registryPass = registry, user, password
		return nil
	}
}

// WithPorts publishes container ports as `docker run -p` does: "8080:8080",
// "127.0.0.1:80:8080", "8443:8443/tcp". Not with host networking. Default: none.
func WithPorts(specs ...string) Option {
	return func(o *options) error {
		exposed, bindings, err := nat.ParsePortSpecs(specs)
		if err != nil {
			return fmt.Errorf("ports %q: %w", specs, err)
		}
		for p, b := range bindings {
			for _, hb := range b {
				if hb.HostPort == "" {
					return fmt.Errorf("port %q: give the host port too (\"8080:%s\"): a port the engine picks changes with every release", p, p.Port())
				}
			}
		}
		if o.exposed == nil {
			o.exposed, o.bindings = nat.PortSet{}, nat.PortMap{}
		}
		for p := range exposed {
			o.exposed[p] = struct{}{}
		}
		for p, b := range bindings {
			o.bindings[p] = append(o.bindings[p], b...)
		}
		o.ports = append(o.ports, specs...)
		return nil
	}
}

// WithNetwork sets the container's network mode: "host" (the container shares the host's
// network; its ports are the host's), "bridge", "none" or a network's name. Default: the
// engine's default ("bridge").
func WithNetwork(mode string) Option {
	return func(o *options) error {
		if mode == "" {
			return errors.New("network mode is empty")
		}
		o.network = mode
		return nil
	}
}

// WithEnv adds environment variables, "NAME=value". Values may be secrets: they go to the
// engine only, never into errors, logs or plans (which name the variables only). Default:
// none beyond the image's.
func WithEnv(vars ...string) Option {
	return func(o *options) error {
		for i, v := range vars {
			k, _, ok := strings.Cut(v, "=")
			if !ok || !envName.MatchString(k) {
				// Only a name is shown: the rest may be a secret.
				if envName.MatchString(k) {
					return fmt.Errorf("environment variable %q: want NAME=value", k)
				}
				return fmt.Errorf("environment variable #%d: want NAME=value with a NAME of letters, digits and '_'", i+1)
			}
		}
		o.env = append(o.env, vars...)
		return nil
	}
}

// WithHostEnv adds environment variables for the container on one host only (a node id, a
// port). host is the address as given to New. Default: none.
func WithHostEnv(host string, vars ...string) Option {
	return func(o *options) error {
		if err := WithEnv(vars...)(&options{}); err != nil {
			return fmt.Errorf("host %q: %w", host, err)
		}
		if o.hostEnv == nil {
			o.hostEnv = map[string][]string{}
		}
		o.hostEnv[host] = append(o.hostEnv[host], vars...)
		return nil
	}
}

// WithVolumes mounts volumes as `docker run -v` does: "/srv/data:/data", "cache:/cache:ro".
// Default: none.
func WithVolumes(binds ...string) Option {
	return func(o *options) error {
		for _, b := range binds {
			parts := strings.Split(b, ":")
			if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || !strings.HasPrefix(parts[1], "/") {
				return fmt.Errorf("volume %q: want SOURCE:/container/path[:options]", b)
			}
		}
		o.volumes = append(o.volumes, binds...)
		return nil
	}
}

// WithRestartPolicy sets what the engine does when the container exits: "no",
// "unless-stopped" or "on-failure[:max]". "always" is refused: the engine would start the
// stopped containers kept for rollback on its next start, beside the live one. Default:
// "unless-stopped".
func WithRestartPolicy(policy string) Option {
	return func(o *options) error {
		name, max, _ := strings.Cut(policy, ":")
		switch name {
		case "no", "unless-stopped":
			if max != "" {
				return fmt.Errorf("restart policy %q: only on-failure takes a count", policy)
			}
		case "on-failure":
			if max != "" {
				var n int
				if _, err := fmt.Sscanf(max, "%d", &n); err != nil || n < 0 || fmt.Sprint(n) != max {
					return fmt.Errorf("restart policy %q: the count must be a non-negative number", policy)
				}
				o.restartMax = n
			}
		case "always":
			return fmt.Errorf("restart policy %q: the engine would restart the stopped containers kept for rollback; use \"unless-stopped\"", policy)
		default:
			return fmt.Errorf("restart policy %q: want no, unless-stopped or on-failure[:max]", policy)
		}
		o.restart = name
		return nil
	}
}

// WithMemory limits the container's memory: "512m", "2g" (docker run --memory). Default: no
// limit.
func WithMemory(limit string) Option {
	return func(o *options) error {
		n, err := units.RAMInBytes(limit)
		if err != nil || n <= 0 {
			return fmt.Errorf("memory limit %q: want a size such as 512m or 2g", limit)
		}
		o.memory = n
		return nil
	}
}

// WithCPUs limits the container to this many CPUs, e.g. 1.5 (docker run --cpus). Default:
// no limit.
func WithCPUs(cpus float64) Option {
	return func(o *options) error {
		if cpus <= 0 {
			return fmt.Errorf("cpus %g: must be positive", cpus)
		}
		o.nanoCPUs = int64(cpus * 1e9)
		return nil
	}
}

// WithStopTimeout is how long the live container gets to stop after SIGTERM before it is
// killed, when another release takes its place. Default: 10s.
func WithStopTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("stop timeout %s is negative", d)
		}
		o.stopTimeout = d
		return nil
	}
}

// WithContainerName sets the prefix of container names: each release's container is
// <prefix>-<release id>. Containers are found by their labels, not their names. Default:
// "<app>-<env>".
func WithContainerName(prefix string) Option {
	return func(o *options) error {
		if !validName.MatchString(prefix) {
			return fmt.Errorf("container name %q: want letters, digits, '_', '.', '-', starting with a letter or digit", prefix)
		}
		o.namePrefix = prefix
		return nil
	}
}

// WithHealthTimeout bounds the wait for the verdict of a container's HEALTHCHECK (its start
// period, intervals and retries must fit in it). Default: 5m.
func WithHealthTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("health timeout %s is not positive", d)
		}
		o.healthWait = d
		return nil
	}
}

// WithStateDir sets the directory on each host holding the deploy lock and the deployment
// history (<dir>/<app>-<env>/): an absolute path, or one relative to the SSH user's home.
// The SSH user must be able to write there (Preflight checks). Default: DefaultStateDir
// (~/.pushdeploy).
func WithStateDir(dir string) Option {
	return func(o *options) error {
		if dir == "" || path.Clean(dir) != strings.TrimSuffix(dir, "/") || dir == "/" || dir == "." || dir == ".." || strings.HasPrefix(dir, "../") {
			return fmt.Errorf("state directory %q: want a clean absolute path, or one inside the SSH user's home", dir)
		}
		o.stateDir = path.Clean(dir)
		return nil
	}
}

// BlueGreen runs each release on one of two host ports (slots) that a reverse proxy on the
// host sends requests to. Activating a release starts its container beside the live one on
// the free slot, waits until it is ready (its HEALTHCHECK passes, or without one, its port
// accepts connections), runs Switch to point the proxy at it, and only then stops the old
// container gracefully. A release that never gets ready never receives a request: it is
// stopped, the proxy is not switched and the old release serves on.
//
// nginx, for one: an upstream with the live slot as server and the other as backup, so that
// requests still sent to the old slot by the workers of the configuration before the reload
// go on to the new one once the old container has stopped:
//
//	upstream app { include /etc/nginx/app-upstream.conf; }   # proxy_next_upstream error (default)
//	Switch: printf 'server 127.0.0.1:{{.Port}};\nserver 127.0.0.1:{{.Other}} backup;\n' > /etc/nginx/app-upstream.conf && nginx -s reload
//
// Listing both slots as equal servers is wrong: the proxy would send requests to a release
// before it is ready.
type BlueGreen struct {
	// Ports are the two slots, host ports on 127.0.0.1. Required.
	Ports [2]int
	// ContainerPort is the port the application listens on inside the container; each
	// release publishes it as 127.0.0.1:<slot>. Required unless host networking.
	ContainerPort int
	// Env adds environment variables per slot, "NAME=value" where {{.Port}} is the slot (and
	// {{.Other}} the other one): "PORT={{.Port}}". With host networking the application must
	// listen on the slot. Default: none.
	Env []string
	// Switch is a shell command run on the host once the new release is ready, {{.Port}}
	// its slot and {{.Other}} the old one. Required: without it the proxy would not know.
	Switch string
	// Drain is how long the old container keeps running after Switch, for proxies that
	// need it (with the backup setup above nginx does not). Default: 0.
	Drain time.Duration
}

// WithBlueGreen deploys with no downtime behind a reverse proxy on the host; see BlueGreen.
// Default: stop-then-start (the old container stops, then the new one starts: a moment with
// no container serving).
func WithBlueGreen(bg BlueGreen) Option {
	return func(o *options) error {
		for _, p := range bg.Ports {
			if p <= 0 || p > 65535 {
				return fmt.Errorf("blue-green ports %v: want two ports between 1 and 65535", bg.Ports)
			}
		}
		if bg.Ports[0] == bg.Ports[1] {
			return fmt.Errorf("blue-green ports %v: the two slots must differ", bg.Ports)
		}
		if bg.ContainerPort < 0 || bg.ContainerPort > 65535 {
			return fmt.Errorf("blue-green container port %d: want a port between 1 and 65535", bg.ContainerPort)
		}
		if bg.Drain < 0 {
			return fmt.Errorf("blue-green drain %s is negative", bg.Drain)
		}
		o.envTmpl = nil
		for i, e := range bg.Env {
			k, v, ok := strings.Cut(e, "=")
			if !ok || !envName.MatchString(k) {
				return fmt.Errorf("blue-green environment variable #%d: want NAME=value", i+1)
			}
			t, err := template.New(k).Option("missingkey=error").Parse(v)
			if err != nil {
				return fmt.Errorf("blue-green environment variable %q: %w", k, err)
			}
			o.envTmpl = append(o.envTmpl, t)
		}
		if bg.Switch == "" {
			return errors.New("blue-green: no switch command: the proxy must be pointed at the new release's slot")
		}
		t, err := template.New("switch").Option("missingkey=error").Parse(bg.Switch)
		if err != nil {
			return fmt.Errorf("blue-green switch command: %w", err)
		}
		o.switchTmpl = t
		o.blueGreen = &bg
		return nil
	}
}

// withHostScope names containers after their host too and looks only at containers labelled
// with it: a test seam for several test hosts sharing one engine. Real hosts each have their
// own engine, and a host renamed in the configuration must still find its containers.
func withHostScope() Option {
	return func(o *options) error { o.hostScope = true; return nil }
}

// WithUpdated sets commands run before the switch in a one-off container of the staged
// release's image, with its environment, volumes and network (hooks.updated): migrations,
// a cache warm-up. Each runs with /bin/sh -c, so the image needs a shell. Default: none.
func WithUpdated(cmds ...string) Option {
	return func(o *options) error {
		for _, c := range cmds {
			if strings.TrimSpace(c) == "" {
				return errors.New("an empty hooks.updated command")
			}
		}
		o.updated = append(o.updated, cmds...)
		return nil
	}
}

// WithUpdatedTimeout bounds each WithUpdated command; one that runs longer is killed and
// fails the deploy. Default: 5m.
func WithUpdatedTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("hooks.updated timeout %s: must be positive", d)
		}
		o.updatedWait = d
		return nil
	}
}

func makeOptions(opts []Option) (*options, error) {
	o := &options{
		socket:      DefaultSocket,
		restart:     "unless-stopped",
		stopTimeout: 10 * time.Second,
		healthWait:  5 * time.Minute,
		stateDir:    DefaultStateDir,
		updatedWait: 5 * time.Minute,
	}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	if o.network == "host" && len(o.ports) > 0 {
		return nil, fmt.Errorf("ports %q with host networking: the container's ports are the host's already; drop one of them", o.ports)
	}
	if o.network == "none" && len(o.ports) > 0 {
		return nil, fmt.Errorf("ports %q with network mode \"none\": nothing could reach them", o.ports)
	}
	if bg := o.blueGreen; bg != nil {
		if len(o.ports) > 0 {
			return nil, fmt.Errorf("ports %q with blue-green: both releases run during the switch and cannot share a host port; the slots %d and %d are the published ports", o.ports, bg.Ports[0], bg.Ports[1])
		}
		if o.network == "host" && bg.ContainerPort != 0 {
			return nil, fmt.Errorf("blue-green container port %d with host networking: nothing is published; give the slot to the application with Env (\"PORT={{.Port}}\")", bg.ContainerPort)
		}
		if o.network == "host" && len(bg.Env) == 0 {
			return nil, errors.New("blue-green with host networking: the application must listen on its slot's port; pass it with Env (\"PORT={{.Port}}\")")
		}
		if o.network != "host" && bg.ContainerPort == 0 {
			return nil, errors.New("blue-green: give ContainerPort, the port the application listens on in the container, to publish on each slot")
		}
	}
	if len(o.ssh) == 0 {
		return nil, errors.New("no SSH options given (WithSSH with at least sshconn.PrivateKey and sshconn.KnownHosts)")
	}
	return o, nil
}
