package docker

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

func TestMain(m *testing.M) { os.Exit(testbench.MainWithDockerd(m)) }

// bench is one test's world: the shared engine, a registry, a free port for the service.
type bench struct {
	t     *testing.T
	d     *testbench.Dockerd
	hosts []*testbench.SSHHost // sshd servers; each forwards the shared engine's socket
	reg   *testbench.Registry
	app   string
	port  int
	cli   *client.Client // the test's own view of the engine, for assertions
}

func newBench(t *testing.T) *bench { t.Helper(); return newBenchN(t, 1) }

// newBenchN is a bench of n sshd hosts, all reaching the one shared engine.
func newBenchN(t *testing.T, n int) *bench {
	t.Helper()
	// Tests keep apart by app name and port: they run side by side, mostly waiting.
	t.Parallel()
	d := testbench.SharedDockerd(t)
	b := &bench{t: t, d: d, hosts: testbench.SSHHosts(t, n, noRehashWait), reg: testbench.InProcessRegistry(t), port: freePort(t)}
	b.app = strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	cli, err := client.NewClientWithOpts(client.WithHost(d.Host()), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	b.cli = cli
	t.Cleanup(func() {
		// The engine is shared: leave none of this test's containers behind.
		ctx := context.Background()
		cs, _ := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", LabelApp+"="+b.app))})
		for _, c := range cs {
			cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		}
		cli.Close()
	})
	return b
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (b *bench) addr() string { return fmt.Sprintf("127.0.0.1:%d", b.port) }

// image pushes a hello image answering version on the bench's port.
func (b *bench) image(version string, mod func(*testbench.HelloImage)) (ref, digest string) {
	spec := testbench.HelloImage{Version: version, Addr: b.addr(), HealthCheck: true}
	if mod != nil {
		mod(&spec)
	}
	return testbench.PushHello(b.t, b.reg, b.app, spec)
}

func (b *bench) release(id, version, ref, digest string) targets.Release {
	return targets.Release{ID: id, App: b.app, Env: "test", Version: version, Digest: digest, Image: ref, Deployer: "tester"}
}

// target builds the Docker target of the bench's app on the bench's hosts, reached over SSH.
func (b *bench) target(opts ...Option) *Target {
	b.t.Helper()
	var addrs []string
	for _, h := range b.hosts {
		addrs = append(addrs, h.Addr)
	}
	all := append([]Option{
		WithSSH(sshconn.PrivateKey(b.hosts[0].ClientKey), sshconn.KnownHosts(testbench.KnownHostsOf(b.hosts))),
		WithSocket(b.d.Socket),
		WithStateDir(b.hosts[0].Dir),
		WithNetwork("host"),
		WithStopTimeout(5 * time.Second),
	}, opts...)
	tg, err := New(b.app, "test", addrs, all...)
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { tg.Close() })
	return tg
}

// health GETs the service's /health: "" when nothing answers.
func (b *bench) health() string { return healthAt(b.addr()) }

func healthAt(addr string) string {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + addr + "/health")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
}

// running lists the running containers of the bench's app by name.
func (b *bench) running(labels ...string) []string {
	b.t.Helper()
	f := filters.NewArgs(filters.Arg("label", LabelApp+"="+b.app))
	for _, l := range labels {
		f.Add("label", l)
	}
	cs, err := b.cli.ContainerList(context.Background(), container.ListOptions{Filters: f})
	if err != nil {
		b.t.Fatal(err)
	}
	var out []string
	for _, c := range cs {
		out = append(out, strings.TrimPrefix(c.Names[0], "/"))
	}
	return out
}

// expect asserts the one running container and what /health answers.
func (b *bench) expect(name, health string) {
	b.t.Helper()
	got := b.running()
	if name == "" && len(got) != 0 || name != "" && (len(got) != 1 || got[0] != name) {
		b.t.Errorf("running containers = %q, want %q", got, name)
	}
	if h := b.health(); h != health {
		b.t.Errorf("/health answers %q, want %q", h, health)
	}
}

// deploy runs the primitives the pipeline runs for one host.
func deploy(ctx context.Context, h targets.Host, r targets.Release) error {
	if err := h.Prepare(ctx, r); err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	if err := h.Activate(ctx, r.ID); err != nil {
		return fmt.Errorf("activate: %w", err)
	}
	if err := h.(targets.SelfChecker).CheckHealth(ctx, r.ID); err != nil {
		return fmt.Errorf("health: %w", err)
	}
	return nil
}

func TestPrimitivesFirstDeployAndUpgrade(t *testing.T) {
	b := newBench(t)
	ctx := context.Background()
	tg := b.target()
	h := tg.Hosts()[0]

	st, err := h.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Live != nil || len(st.Kept) != 0 {
		t.Fatalf("fresh host status = %+v, want nothing", st)
	}

	ref1, dg1 := b.image("v1", nil)
	r1 := b.release("20261127T000001Z", "v1", ref1, dg1)
	if err := deploy(ctx, h, r1); err != nil {
		t.Fatal(err)
	}
	b.expect(b.app+"-test-"+r1.ID, "200 ok v1")

	ref2, dg2 := b.image("v2", nil)
	r2 := b.release("20261127T000002Z", "v2", ref2, dg2)
	ch, err := h.Plan(ctx, r2)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Live != r1.ID || ch.Noop || len(ch.Update) != 1 {
		t.Errorf("plan = %+v, want an image update from %s", ch, r1.ID)
	}
	if err := deploy(ctx, h, r2); err != nil {
		t.Fatal(err)
	}
	b.expect(b.app+"-test-"+r2.ID, "200 ok v2")

	st, err = h.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Live == nil || st.Live.ID != r2.ID || st.Live.Digest != dg2 || st.Live.Version != "v2" {
		t.Errorf("live = %+v, want %s", st.Live, r2.ID)
	}
	if len(st.Kept) != 2 || st.Kept[0].ID != r1.ID || st.Kept[1].ID != r2.ID {
		t.Errorf("kept = %+v, want %s then %s", st.Kept, r1.ID, r2.ID)
	}
	ch, err = h.Plan(ctx, r2)
	if err != nil || !ch.Noop {
		t.Errorf("plan of the live release = %+v, %v; want a no-op", ch, err)
	}

	// Rollback is activating the kept release.
	if err := h.Activate(ctx, r1.ID); err != nil {
		t.Fatal(err)
	}
	if err := h.(targets.SelfChecker).CheckHealth(ctx, r1.ID); err != nil {
		t.Fatal(err)
	}
	b.expect(b.app+"-test-"+r1.ID, "200 ok v1")
}

// noRehashWait stops root's .bashrc on this machine (pyenv init) from waiting up to 60s, in
// every SSH session, for a lock file that a killed session left behind.
var noRehashWait = testbench.SSHSetEnv("PYENV_REHASH_TIMEOUT", "0")
