package testbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DockerdBinary is the Docker Engine the bench starts: Debian's docker.io (20.10).
const DockerdBinary = "/usr/sbin/dockerd"

// Dockerd is a Docker Engine started by the bench: its own data root, exec root and unix
// socket, no bridge and no iptables rules, so containers run with host networking
// (NetworkMode "host") and reach, and are reached on, 127.0.0.1.
type Dockerd struct {
	// Socket is the path of the engine's unix socket. Clients dial it directly
	// (DOCKER_HOST=unix://<Socket>), or forward it over SSH as `docker -H ssh://` does.
	Socket string
	// Dir holds the data root, exec root, pid file, socket and log.
	Dir string
	// Started is how long the engine took to answer its first ping.
	Started time.Duration

	cmd  *exec.Cmd
	done chan struct{}
	log  *dockerdOutput
}

// Host is the DOCKER_HOST value that reaches the engine directly.
func (d *Dockerd) Host() string { return "unix://" + d.Socket }

// Log returns what the engine has printed so far.
func (d *Dockerd) Log() string { return d.log.String() }

// StartDockerd starts a Docker Engine for the calling test and stops it when the test ends.
// An engine takes a second or two to start: tests that can share one use SharedDockerd.
func StartDockerd(t testing.TB) *Dockerd {
	t.Helper()
	d, err := startDockerd()
	if err != nil {
		Unavailable(t, "%v", err)
	}
	t.Logf("dockerd %s ready in %s", d.Socket, d.Started.Round(time.Millisecond))
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("stopping dockerd: %v", err)
		}
	})
	return d
}

var sharedDockerd struct {
	sync.Mutex
	d   *Dockerd
	err error
}

// SharedDockerd returns the test binary's one shared Docker Engine, starting it on first use.
// Tests that share it keep apart by container names and labels. The package's TestMain stops
// it with StopSharedDockerd after m.Run (see MainWithDockerd); should the binary die first,
// the engine gets SIGTERM from the kernel when its parent goes.
func SharedDockerd(t testing.TB) *Dockerd {
	t.Helper()
	sharedDockerd.Lock()
	defer sharedDockerd.Unlock()
	if sharedDockerd.d == nil && sharedDockerd.err == nil {
		sharedDockerd.d, sharedDockerd.err = startDockerd()
		if sharedDockerd.err == nil {
			t.Logf("shared dockerd %s ready in %s", sharedDockerd.d.Socket, sharedDockerd.d.Started.Round(time.Millisecond))
		}
	}
	if sharedDockerd.err != nil {
		Unavailable(t, "%v", sharedDockerd.err)
	}
	return sharedDockerd.d
}

// StopSharedDockerd stops the shared engine if one was started.
func StopSharedDockerd() error {
	sharedDockerd.Lock()
	defer sharedDockerd.Unlock()
	if sharedDockerd.d == nil {
		return nil
	}
	err := sharedDockerd.d.Stop()
	sharedDockerd.d = nil
	return err
}

// MainWithDockerd runs the package's tests and then stops the shared engine:
//
//	func TestMain(m *testing.M) { os.Exit(testbench.MainWithDockerd(m)) }
func MainWithDockerd(m *testing.M) int {
	code := m.Run()
	if err := StopSharedDockerd(); err != nil {
		fmt.Fprintf(os.Stderr, "stopping shared dockerd: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func startDockerd() (*Dockerd, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("dockerd needs root")
	}
	if _, err := os.Stat(DockerdBinary); err != nil {
		return nil, fmt.Errorf("dockerd: %w (install docker.io)", err)
	}
	// A short directory: the socket path (and containerd's, under the exec root) must stay
	// below the 108 bytes a unix socket address holds, which t.TempDir() can exceed.
	dir, err := os.MkdirTemp("", "pd-dockerd-")
	if err != nil {
		return nil, fmt.Errorf("dockerd directory: %w", err)
	}
	// The bench's SSH user (DefaultSSHUser, in group docker) reaches the socket through
	// this directory, as a deploy user in the docker group does on a real host.
	if err := ensureGroup(DockerGroup); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("dockerd socket group: %w", err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("dockerd directory: %w", err)
	}
	d := &Dockerd{Socket: filepath.Join(dir, "docker.sock"), Dir: dir, done: make(chan struct{}), log: &dockerdOutput{}}
	d.cmd = exec.Command(DockerdBinary,
		"--group", DockerGroup,
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"),
		"-H", "unix://"+d.Socket,
		// No docker0 bridge, no NAT rules, no FORWARD policy change on a shared machine:
		// containers use the host's network.
		"--iptables=false", "--ip-masq=false", "--bridge=none",
		// Containers outlive no test: nothing to restore at start.
		"--live-restore=false",
	)
	// A registry on the address a Dagger engine's containers reach this machine at (the
	// real-engine suite publishes there) is plain HTTP, as loopback registries are.
	if addr := os.Getenv("DAGGER_HARNESS_HOST_ADDR"); addr != "" {
		d.cmd.Args = append(d.cmd.Args, "--insecure-registry="+addr+"/32")
	}
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	// The engine goes with the test binary even if TestMain never stops it.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	start := time.Now()
	if err := d.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting dockerd: %w", err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := d.waitReady(ctx); err != nil {
		d.Stop()
		return nil, fmt.Errorf("dockerd %s not ready: %w; log tail:\n%s", d.Socket, err, dockerdTail(d.Log(), 20))
	}
	d.Started = time.Since(start)
	return d, nil
}

// waitReady pings the socket until the engine answers "OK", the process exits or ctx ends.
func (d *Dockerd) waitReady(ctx context.Context) error {
	c := d.HTTPClient()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/_ping", nil)
		resp, err := c.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && string(b) == "OK" {
				return nil
			}
		}
		select {
		case <-d.done:
			return fmt.Errorf("dockerd exited: %v", d.cmd.ProcessState)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// HTTPClient is a plain HTTP client whose every request goes to the engine's socket.
func (d *Dockerd) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, "unix", d.Socket)
		},
	}}
}

// Stop sends the engine SIGTERM, waits for it (it stops its containers and containerd
// first), and removes its directory.
func (d *Dockerd) Stop() error {
	select {
	case <-d.done:
	default:
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(60 * time.Second):
			// The whole group: dockerd and the containerd it started.
			syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.done
			return fmt.Errorf("dockerd %s did not stop in 60s; killed", d.Socket)
		}
	}
	// The engine leaves mounts behind (the host network namespace under the exec root).
	unmountUnder(d.Dir)
	if err := os.RemoveAll(d.Dir); err != nil {
		return fmt.Errorf("removing dockerd directory: %w", err)
	}
	return nil
}

// unmountUnder detaches every mount below dir, deepest first.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	for _, p := range points {
		syscall.Unmount(p, syscall.MNT_DETACH)
	}
}

// dockerdOutput collects a process's output while tests read it.
type dockerdOutput struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *dockerdOutput) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *dockerdOutput) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// dockerdTail returns the last n lines of s.
func dockerdTail(s string, n int) string {
	lines := bytes.Split(bytes.TrimRight([]byte(s), "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
