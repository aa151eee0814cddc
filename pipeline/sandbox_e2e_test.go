package pipeline_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/assemble"
)

// The sandbox's flow against its own SSH host (internal/sandboxhost, what the module runs
// as a Dagger service), here a process on loopback: the build deployed and serving, the
// broken build rolled back, the build serving again. The module's side runs in e2e/.
func TestSandboxFlow(t *testing.T) {
	dir := t.TempDir()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	build := func(out, pkgDir string, args ...string) {
		t.Helper()
		cmd := exec.Command("go", append([]string{"build", "-o", out}, args...)...)
		cmd.Dir, cmd.Env = pkgDir, append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", out, err, b)
		}
	}
	build(filepath.Join(dir, "sandboxhost"), root, "./internal/sandboxhost")
	good := filepath.Join(dir, "good")
	build(filepath.Join(good, "app"), filepath.Join(root, "examples/hello"), "-ldflags", "-X main.version=v1", ".")
	broken := filepath.Join(dir, "broken")
	if err := os.MkdirAll(broken, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(broken, "app"), []byte(pipeline.SandboxBrokenApp), 0o755); err != nil {
		t.Fatal(err)
	}

	keys, err := pipeline.NewSandboxKeys()
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"host_key": keys.HostKey, "client.pub": keys.ClientAuthorized} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testbench.FreePort(t))
	srv := exec.Command(filepath.Join(dir, "sandboxhost"), "-addr", addr, "-host-key", filepath.Join(dir, "host_key"), "-authorized-key", filepath.Join(dir, "client.pub"))
	var srvLog bytes.Buffer
	pr, pw := io.Pipe()
	srv.Stdout, srv.Stderr = pw, pw
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	// Ready when it says it listens (the log line after net.Listen).
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			srvLog.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "listening on") {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatalf("sandboxhost did not start:\n%s", srvLog.String())
	}
	app := filepath.Join(dir, "srv")
	t.Cleanup(func() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
		pw.Close()
		if pid, err := os.ReadFile(filepath.Join(app, "app.pid")); err == nil {
			_ = exec.Command("kill", strings.TrimSpace(string(pid))).Run()
		}
	})

	var log bytes.Buffer
	err = pipeline.Sandbox(context.Background(), pipeline.SandboxRun{
		App: "hello", Addr: addr, Keys: keys, Path: app, AppPort: testbench.FreePort(t),
		Good: pipeline.Artifact{Dir: good}, Broken: pipeline.Artifact{Dir: broken},
		Targets: assemble.Maker(assemble.Extra{}), Log: &log,
	})
	if err != nil {
		t.Fatalf("sandbox: %v\n%s\nhost:\n%s", err, log.String(), srvLog.String())
	}
	out := log.String()
	for _, want := range []string{"serving: GET /health -> ok v1", "ROLLED BACK", "serving the build again: GET /health -> ok v1", "environments:\n  staging:"} {
		if !strings.Contains(strings.ToUpper(out), strings.ToUpper(want)) {
			t.Errorf("the sandbox's output lacks %q:\n%s", want, out)
		}
	}
	t.Log(out)
	// What the host shows: the good build is live, the broken release was discarded.
	live, err := os.Readlink(filepath.Join(app, "current"))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(app, live, "app")); err != nil || string(b) == pipeline.SandboxBrokenApp {
		t.Errorf("the live release %s is the broken one (%v)", live, err)
	}
}
