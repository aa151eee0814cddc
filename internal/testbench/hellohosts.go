package testbench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// HelloRestart is a restart command that runs examples/hello on a server from its live
// release (<path>/current/hello): it stops the hello running there, sources the release's
// hello.env (HELLO_* variables: HELLO_ERROR_RATE, HELLO_FAIL_AFTER), fails /health when
// <path>/fail-<version> exists (a host-specific failure), appends "<release> <version>" to
// <path>/ran.log (every release the host ever started), and starts hello on 127.0.0.1 at
// the port in <path>/port, its pid in <path>/app.pid. HelloServer prepares a path for it.
const HelloRestart = `cd "$PUSHDEPLOY_PATH" && ` +
	// Waits for the old one to exit (a zombie counts as gone: this machine's pid 1 may not
	// reap the orphans).
	`if [ -f app.pid ]; then p=$(cat app.pid); kill "$p" 2>/dev/null; i=0; ` +
	`while [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; fi; ` +
	`set -a; . current/hello.env; set +a; ` +
	`if [ -f "fail-$PUSHDEPLOY_VERSION" ]; then export HELLO_FAIL_HEALTH=1; fi; ` +
	`echo "$PUSHDEPLOY_RELEASE $PUSHDEPLOY_VERSION" >> ran.log; ` +
	`HELLO_ADDR="127.0.0.1:$(cat port)" HELLO_VERSION="$PUSHDEPLOY_VERSION" setsid ./current/hello </dev/null >>app.log 2>&1 & echo $! > app.pid`

// HelloHealthCommand checks the hello of HelloRestart on the host's own port (a command
// check starts in <path>/current, so $PWD names the path).
const HelloHealthCommand = `./hello -check "http://127.0.0.1:$(cat "${PWD%/current}/port")/health"`

// HelloServer prepares path on host h for HelloRestart: the directory, owned by the host's
// user, with a free port in path/port, which it returns; the hello started there is killed
// when the test ends.
func HelloServer(t testing.TB, h *SSHHost, path string) int {
	t.Helper()
	port := FreePort(t)
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path, "port"), []byte(strconv.Itoa(port)), 0o644); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(h.Dir); err == nil {
		uid := int(fi.Sys().(*syscall.Stat_t).Uid)
		os.Chown(path, uid, -1)
		os.Chown(filepath.Join(path, "port"), uid, -1)
	}
	t.Cleanup(func() {
		if pid, err := os.ReadFile(filepath.Join(path, "app.pid")); err == nil {
			if n, err := strconv.Atoi(strings.TrimSpace(string(pid))); err == nil && n > 0 {
				syscall.Kill(n, syscall.SIGKILL)
			}
		}
	})
	return port
}

// HelloRelease writes a release of hello as version into dir: the binary, VERSION and a
// hello.env of env (HELLO_* variables).
func HelloRelease(t testing.TB, dir, version string, env map[string]string) {
	t.Helper()
	bin, err := os.ReadFile(HelloBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for k, v := range env {
		lines = append(lines, k+"="+v)
	}
	for name, content := range map[string]string{"VERSION": version + "\n", "hello.env": strings.Join(lines, "\n") + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "hello"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
}

// Traffic sends a GET of / to every 127.0.0.1 port every 10ms until the test ends (and at
// most 500,000 per port), so that the error rates Prometheus computes have requests to count.
func Traffic(t testing.TB, ports ...int) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	c := &http.Client{Timeout: time.Second}
	for _, p := range ports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for range 500000 {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				if resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", p)); err == nil {
					resp.Body.Close()
				}
			}
		}()
	}
}
