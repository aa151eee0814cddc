// Package docker deploys container images to Docker hosts reached over SSH. It talks to each
// host's Docker Engine with the Engine's Go client, through the engine's unix socket
// forwarded over the SSH connection (what `docker -H ssh://` does), with typed calls and no
// shell strings.
//
// A release is a container named <app>-<env>-<release id> (see WithContainerName), created from the image pulled by
// digest and labelled with the release. Activating a release stops the live container
// gracefully (it is kept, stopped, for rollback) and starts the release's container. The
// container's own HEALTHCHECK says whether it is healthy when the image has one
// (targets.SelfChecker); the pipeline's configured check runs after it; then, for the
// pipeline's stability window, the container must keep running, the same start, not
// restarted (targets.Steadier, watched through the engine's events). A container with no
// check at all is healthy only once it has kept running for the window.
//
// Between stopping the old container and the new one listening, nothing serves: the seed's
// stop-then-start, measured in bench/docker. WithBlueGreen removes that gap when a reverse
// proxy on the host sits in front of the application: the new release starts beside the
// live one on a second port and takes over only once it is ready.
//
// The deploy lock and the history are files on the hosts (package hoststate), shared with
// the server target's design.
//
// This package is plain Go: it never imports the Dagger bindings.
package docker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// Labels every container of a release carries. They are how a host finds its releases: the
// engine is the only state.
const (
	LabelApp      = "io.pushdeploy.app"
	LabelEnv      = "io.pushdeploy.env"
	LabelRelease  = "io.pushdeploy.release"
	LabelVersion  = "io.pushdeploy.version"
	LabelDigest   = "io.pushdeploy.digest"
	LabelImage    = "io.pushdeploy.image"
	LabelDeployer = "io.pushdeploy.deployer"
	LabelPipeline = "io.pushdeploy.pipeline"
	// LabelHost is set only by the test seam withHostScope.
	LabelHost = "io.pushdeploy.host"
)

// Target is every Docker host of one application in one environment.
type Target struct {
	app, env string
	o        *options
	hosts    []*Host
	state    *state
	archives archives // image tarballs opened for releases without a registry
}

var (
	_ targets.Target      = (*Target)(nil)
	_ targets.Host        = (*Host)(nil)
	_ targets.SelfChecker = (*Host)(nil)
	_ targets.Commander   = (*Host)(nil)
	_ targets.Addresser   = (*Host)(nil)
	_ targets.Steadier    = (*Host)(nil)
	_ targets.Preflighter = (*Target)(nil)
)

// validName is what Docker accepts in a container name; app, env and release ids become one.
var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// unsafeName matches what a container name cannot hold.
var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9_.-]`)

// New returns the Docker target of app in env on hosts ("host:port", port 22 when omitted).
// It connects to nothing: each host is dialled when first used.
func New(app, env string, hosts []string, opts ...Option) (*Target, error) {
	if !validName.MatchString(app) {
		return nil, fmt.Errorf("docker target: app %q: want letters, digits, '_', '.', '-', starting with a letter or digit", app)
	}
	if !validName.MatchString(env) {
		return nil, fmt.Errorf("docker target: environment %q: want letters, digits, '_', '.', '-', starting with a letter or digit", env)
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("docker target %s/%s: no hosts", app, env)
	}
	o, err := makeOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("docker target %s/%s: %w", app, env, err)
	}
	t := &Target{app: app, env: env, o: o}
	seen := map[string]bool{}
	for _, a := range hosts {
		if a == "" {
			return nil, fmt.Errorf("docker target %s/%s: a host address is empty", app, env)
		}
		if seen[a] {
			return nil, fmt.Errorf("docker target %s/%s: host %q is listed twice", app, env, a)
		}
		seen[a] = true
		t.hosts = append(t.hosts, &Host{t: t, addr: a})
	}
	for h := range o.hostEnv {
		if !seen[h] {
			return nil, fmt.Errorf("docker target %s/%s: environment given for host %q, which is not one of the hosts %q", app, env, h, hosts)
		}
	}
	t.state = &state{t: t}
	return t, nil
}

// Kind is "docker".
func (t *Target) Kind() string { return "docker" }

// Hosts are the target's hosts in the order given to New.
func (t *Target) Hosts() []targets.Host {
	out := make([]targets.Host, len(t.hosts))
	for i, h := range t.hosts {
		out[i] = h
	}
	return out
}

// Locker is the deploy lock, a file on the first host (see WithStateDir).
func (t *Target) Locker() targets.Locker { return &stateLock{t.state} }

// Journal is the deployment history, appended on every host and read from the first that
// answers (see WithStateDir).
func (t *Target) Journal() targets.Journal { return &stateJournal{t.state} }

// Close closes every host's connections.
func (t *Target) Close() error {
	var errs []error
	for _, h := range t.hosts {
		errs = append(errs, h.close())
	}
	errs = append(errs, t.archives.close())
	return errors.Join(errs...)
}

// Host is one Docker host.
type Host struct {
	t    *Target
	addr string

	mu   sync.Mutex
	ssh  *sshconn.Client
	cli  *client.Client
	sent SendStats // the last image sent over SSH
}

// Name is the host's address as given to New.
func (h *Host) Name() string { return h.addr }

// Address is the host's name or IP address, without the SSH port, for health-check URLs.
func (h *Host) Address() string {
	a := h.addr
	if i := strings.LastIndex(a, "@"); i >= 0 {
		a = a[i+1:]
	}
	if host, _, err := net.SplitHostPort(a); err == nil {
		return host
	}
	return strings.Trim(a, "[]")
}

func (h *Host) close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	if h.cli != nil {
		errs = append(errs, h.cli.Close())
		h.cli = nil
	}
	if h.ssh != nil {
		errs = append(errs, h.ssh.Close())
		h.ssh = nil
	}
	return errors.Join(errs...)
}

// sshClient returns the host's SSH connection, dialling it on first use. h.mu is held.
func (h *Host) sshClientLocked(ctx context.Context) (*sshconn.Client, error) {
	if h.ssh != nil {
		return h.ssh, nil
	}
	c, err := sshconn.Dial(ctx, h.addr, h.t.o.ssh...)
	if err != nil {
		return nil, err
	}
	h.ssh = c
	// When the connection drops (a network blip, sshd restarted), forget it and the engine
	// client that rides on it: the next call dials again, so a rollback after a lost
	// connection still reaches the host.
	go func() {
		c.SSH().Wait()
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.ssh == c {
			h.ssh = nil
			if h.cli != nil {
				h.cli.Close()
				h.cli = nil
			}
		}
	}()
	return c, nil
}

// sshClient returns the host's SSH connection, dialling it on first use.
func (h *Host) sshClient(ctx context.Context) (*sshconn.Client, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sshClientLocked(ctx)
}

// engine returns a client of the host's Docker Engine, connecting on first use.
func (h *Host) engine(ctx context.Context) (*client.Client, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cli != nil {
		return h.cli, nil
	}
	sc, err := h.sshClientLocked(ctx)
	if err != nil {
		return nil, err
	}
	socket := h.t.o.socket
	dial := func(ctx context.Context) (net.Conn, error) { return sc.DialUnix(ctx, socket) }
	var dialErr error
	var dmu sync.Mutex
	cli, err := client.NewClientWithOpts(
		// The host name is never resolved: every connection goes through dial.
		client.WithHost("http://docker.engine"),
		client.WithDialContext(func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := dial(ctx)
			dmu.Lock()
			dialErr = err
			dmu.Unlock()
			return c, err
		}),
		client.WithAPIVersionNegotiation(),
	)
	if err != nil {
		return nil, fmt.Errorf("docker client for %s: %w", h.addr, err)
	}
	if _, err := cli.Ping(ctx); err != nil {
		cli.Close()
		dmu.Lock()
		if dialErr != nil {
			err = dialErr
		}
		dmu.Unlock()
		return nil, fmt.Errorf("reaching the Docker Engine at unix:%s on %s: %w", h.t.o.socket, h.addr, err)
	}
	h.cli = cli
	return cli, nil
}

// containerName is the name of release id's container.
func (h *Host) containerName(id string) string {
	n := h.t.app + "-" + h.t.env + "-"
	if h.t.o.namePrefix != "" {
		n = h.t.o.namePrefix + "-"
	}
	if h.t.o.hostScope {
		n += unsafeName.ReplaceAllString(h.addr, "_") + "-"
	}
	return n + id
}

// release is one release's container on a host.
type release struct {
	id        string
	container container.Summary
}

func (r release) running() bool {
	return r.container.State == container.StateRunning || r.container.State == container.StateRestarting
}

func (r release) kept() targets.Kept {
	l := r.container.Labels
	return targets.Kept{ID: r.id, Version: l[LabelVersion], Digest: l[LabelDigest], Image: l[LabelImage], Created: unixTime(r.container.Created)}
}

// releases lists the host's releases of the target's app and env, oldest first (release ids
// sort by time).
func (h *Host) releases(ctx context.Context, cli *client.Client) ([]release, error) {
	f := filters.NewArgs(
		filters.Arg("label", LabelApp+"="+h.t.app),
		filters.Arg("label", LabelEnv+"="+h.t.env),
	)
	if h.t.o.hostScope {
		f.Add("label", LabelHost+"="+h.addr)
	}
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("listing containers of %s/%s on %s: %w", h.t.app, h.t.env, h.addr, err)
	}
	var out []release
	for _, c := range cs {
		if id := c.Labels[LabelRelease]; id != "" {
			out = append(out, release{id: id, container: c})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out, nil
}

func find(rs []release, id string) *release {
	for i := range rs {
		if rs[i].id == id {
			return &rs[i]
		}
	}
	return nil
}

func ids(rs []release) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.id
	}
	return out
}

// live is the running release: the newest when, against the rules, several run.
func live(rs []release) *release {
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i].running() {
			return &rs[i]
		}
	}
	return nil
}
