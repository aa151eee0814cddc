package docker

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
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
	hostEnv      map[string][]string
}

// envName is what a portable environment variable name looks like.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// DefaultSocket is where the Docker Engine listens on a host unless WithSocket says otherwise.
const DefaultSocket = "/var/run/docker.sock"

// DefaultStateDir is the directory on each host that holds the deploy lock and the
// deployment history, one subdirectory per application and environment.
const DefaultStateDir = "/var/lib/pushdeploy"

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

// WithRegistryAuth sets the credentials sent with every pull (the engine gets them per
// request; nothing is written into the host's Docker configuration). The password is a
// secret: it never appears in errors or logs. Default: anonymous pulls.
func WithRegistryAuth(user, password string) Option {
	return func(o *options) error {
		if user == "" || password == "" {
			return errors.New("registry credentials: user and password must both be given")
		}
		o.registryUser, o.registryPass = user, password
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
// history (<dir>/<app>-<env>/). The SSH user must be able to write there. Default:
// DefaultStateDir.
func WithStateDir(dir string) Option {
	return func(o *options) error {
		if !strings.HasPrefix(dir, "/") {
			return fmt.Errorf("state directory %q is not an absolute path", dir)
		}
		o.stateDir = dir
		return nil
	}
}

// withHostScope names containers after their host too and looks only at containers labelled
// with it: a test seam for several test hosts sharing one engine. Real hosts each have their
// own engine, and a host renamed in the configuration must still find its containers.
func withHostScope() Option {
	return func(o *options) error { o.hostScope = true; return nil }
}

func makeOptions(opts []Option) (*options, error) {
	o := &options{
		socket:      DefaultSocket,
		restart:     "unless-stopped",
		stopTimeout: 10 * time.Second,
		healthWait:  5 * time.Minute,
		stateDir:    DefaultStateDir,
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
	if len(o.ssh) == 0 {
		return nil, errors.New("no SSH options given (WithSSH with at least sshconn.PrivateKey and sshconn.KnownHosts)")
	}
	return o, nil
}
