package docker

import (
	"context"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/sshconn"
)

// Issue 11, case 5: a container was healthy at its first inspection. Now, after its first
// passing check, it must keep passing and keep running for the stability window.

// scripted pushes a hello image of version without a HEALTHCHECK whose entrypoint is the
// shell script (busybox sh; /hello serves the bench's port), and returns its release.
func (b *bench) scripted(id, version, script string) targets.Release {
	b.t.Helper()
	ref, _ := b.image(version, func(s *testbench.HelloImage) { s.HealthCheck, s.CheckEnvAddr = false, true })
	opts := []remote.Option{remote.WithAuth(b.reg.Authenticator()), remote.WithTransport(b.reg.Transport())}
	src, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		b.t.Fatal(err)
	}
	img, err := remote.Image(src, opts...)
	if err != nil {
		b.t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		b.t.Fatal(err)
	}
	cfg := cf.Config
	cfg.Entrypoint = []string{"/bin/sh", "-c", script}
	if img, err = mutate.Config(img, cfg); err != nil {
		b.t.Fatal(err)
	}
	tag, err := name.NewTag(b.reg.Repo(b.app)+":"+version+"-scripted", name.Insecure)
	if err != nil {
		b.t.Fatal(err)
	}
	if err := remote.Write(tag, img, opts...); err != nil {
		b.t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		b.t.Fatal(err)
	}
	return b.release(id, version, b.reg.Repo(b.app)+"@"+d.String(), d.String())
}

func TestStabilityWindowOnDocker(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
		check  bool // an HTTP check of the version besides the container's state
		want   string
	}{
		// No HEALTHCHECK, no configured check: it ran at its first inspection.
		{"no-check-exits-after-2s", "/hello & sleep 2; exit 3", false, "rolled back"},
		// One good answer, then the container dies.
		{"http-check-dies-after-first-answer", "/hello & sleep 2; exit 3", true, "rolled back"},
		// Late, but within the health check's retries: healthy, then steady.
		{"http-check-listens-after-3s", "sleep 3; exec /hello", true, "deployed"},
		// No check: what keeps running for the window is deployed.
		{"no-check-keeps-running", "exec /hello", false, "deployed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBench(t)
			tg := b.target()
			var opts []pipeline.Option
			if tc.check {
				opts = append(opts, pipeline.WithHealthCheck(pipeline.HealthCheck{
					URL: "http://" + b.addr() + "/health", Body: `^ok {{.Version}}\s*$`, Interval: 100 * time.Millisecond, Retries: 100,
				}))
			}
			v1 := b.scripted("20261127T000001Z", "v1", "exec /hello")
			if err := b.rollout(tg, v1, opts...); err != nil {
				t.Fatalf("deploying v1: %v", err)
			}
			b.expect(b.name(v1.ID), "200 ok v1")
			v2 := b.scripted("20261127T000002Z", "v2", tc.script)
			err := b.rollout(tg, v2, opts...)
			switch tc.want {
			case "rolled back":
				if err == nil || !strings.Contains(err.Error(), "stability window") {
					t.Fatalf("deploy of a container that does not keep running: %v; want a failure in the stability window", err)
				}
				b.expect(b.name(v1.ID), "200 ok v1")
			case "deployed":
				if err != nil {
					t.Fatalf("deploy: %v", err)
				}
				b.expect(b.name(v2.ID), "200 ok v2")
			}
			if l, err := tg.Locker().Holder(context.Background()); err != nil || l != nil {
				t.Errorf("lock after the deploy: %v, %v; want free", l, err)
			}
		})
	}
}

// The body template is the version the release was deployed with: a container that answers
// another version (the old code still serving) fails its check.
func TestHealthBodyProvesTheVersion(t *testing.T) {
	b := newBench(t)
	tg := b.target()
	check := pipeline.WithHealthCheck(pipeline.HealthCheck{
		URL: "http://" + b.addr() + "/health", Body: `^ok {{.Version}}\s*$`, Interval: 100 * time.Millisecond, Retries: 5,
	})
	v1 := b.scripted("20261127T000001Z", "v1", "exec /hello")
	if err := b.rollout(tg, v1, check, pipeline.WithStable(time.Second)); err != nil {
		t.Fatalf("deploying v1: %v", err)
	}
	// Release v2's image still answers v1.
	stale := b.scripted("20261127T000002Z", "v1", "exec /hello")
	stale.Version = "v2"
	ref, dg := b.image("v2-stale", func(s *testbench.HelloImage) { s.HealthCheck, s.Version = false, "v1" })
	stale.Image, stale.Digest = ref, dg
	err := b.rollout(tg, stale, check, pipeline.WithStable(time.Second))
	if err == nil || !strings.Contains(err.Error(), `does not match "^ok v2\\s*$"`) {
		t.Fatalf("deploy of an image that answers the old version: %v; want the body check to fail", err)
	}
	b.expect(b.name(v1.ID), "200 ok v1")
}

// A deploy user that is not root, in the docker group, keeps the lock and history in its
// home by default (the fixed /var/lib/pushdeploy failed at the lock); a state directory it
// cannot write and a socket that is not there are named before the lock.
func TestStateDirForNonRootUser(t *testing.T) {
	b := newBench(t)
	if b.hosts[0].User == "root" {
		t.Fatal("the bench's login is root; this test needs a user in the docker group")
	}
	var addrs []string
	for _, h := range b.hosts {
		addrs = append(addrs, h.Addr)
	}
	ssh := WithSSH(sshconn.PrivateKey(b.hosts[0].ClientKey), sshconn.KnownHosts(testbench.KnownHostsOf(b.hosts)), sshconn.User(b.hosts[0].User))
	tg, err := New(b.app, "test", addrs, ssh, WithSocket(b.d.Socket), WithNetwork("host"))
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	u, err := user.Lookup(b.hosts[0].User)
	if err != nil {
		t.Fatal(err)
	}
	// The bench's login may have been made again with another uid, over an old home.
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(u.HomeDir, uid, gid); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(u.HomeDir, ".pushdeploy", b.app+"-test")
	t.Cleanup(func() { os.RemoveAll(state) })
	if err := tg.Preflight(context.Background()); err != nil {
		t.Fatalf("preflight with the default state directory: %v", err)
	}
	v1 := b.scripted("20261127T000001Z", "v1", "exec /hello")
	if err := b.rollout(tg, v1, pipeline.WithStable(time.Second)); err != nil {
		t.Fatalf("deploying as a user in the docker group: %v", err)
	}
	if _, err := os.Stat(filepath.Join(state, "history.jsonl")); err != nil {
		t.Errorf("the history is not in the login's home: %v", err)
	}
	if _, err := os.Stat(filepath.Join(state, "lock")); err == nil {
		t.Error("the lock is still held after the deploy")
	}

	for _, tc := range []struct {
		opt  Option
		want []string
	}{
		{WithStateDir("/proc/pushdeploy"), []string{`state directory "/proc/pushdeploy/` + b.app + `-test"`, b.hosts[0].Addr, "docker.state_dir"}},
		{WithSocket("/run/pushdeploy-no-such.sock"), []string{"unix:/run/pushdeploy-no-such.sock", b.hosts[0].Addr, "docker.socket"}},
	} {
		bad, err := New(b.app, "test", addrs, ssh, WithSocket(b.d.Socket), tc.opt)
		if err != nil {
			t.Fatal(err)
		}
		err = bad.Preflight(context.Background())
		bad.Close()
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("preflight: %v; want it to say %q", err, w)
			}
		}
	}
}
