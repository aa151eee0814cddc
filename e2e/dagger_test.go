// Package e2e drives the pushdeploy module exactly as a user does: the dagger CLI, dagger
// call with the README's commands and flags, on a real Dagger engine, against real servers
// that the tests start where the engine's containers reach them.
//
// Outside CI the suite uses whatever engine the dagger CLI finds; without a dagger CLI, or
// without an address the engine's containers reach this machine at
// ($DAGGER_HARNESS_HOST_ADDR, set by the engine harness's env), it skips saying why, and
// PUSHDEPLOY_REQUIRE_BENCH=1 turns that skip into a failure.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
)

// HostAddrEnv names the address of this machine that the engine's containers reach.
const HostAddrEnv = "DAGGER_HARNESS_HOST_ADDR"

// ReportEnv names a file the suite appends one line per dagger command to: the command,
// pass or fail, and its wall time.
const ReportEnv = "PUSHDEPLOY_E2E_REPORT"

// engine is the dagger CLI and the address the engine's containers reach this machine at.
type engine struct {
	cli      string
	hostAddr string
	module   string // the module's directory: this repository
}

// needEngine returns the engine, or makes the test Unavailable saying why there is none.
func needEngine(t *testing.T) *engine {
	t.Helper()
	if testing.Short() {
		t.Skip("the real-engine suite is not short")
	}
	cli, err := exec.LookPath("dagger")
	if err != nil {
		testbench.Unavailable(t, "no dagger CLI on PATH (install Dagger, or ../shared/dagger/engine up && eval \"$(../shared/dagger/engine env)\")")
	}
	addr := os.Getenv(HostAddrEnv)
	if addr == "" {
		testbench.Unavailable(t, "$%s is not set: the address of this machine that the engine's containers reach, where the tests' servers listen", HostAddrEnv)
	}
	_, file, _, _ := runtime.Caller(0)
	return &engine{cli: cli, hostAddr: addr, module: filepath.Dir(filepath.Dir(file))}
}

// at is the engine with another module directory.
func (e *engine) at(module string) *engine {
	c := *e
	c.module = module
	return &c
}

// run is one dagger command's outcome.
type run struct {
	args   []string
	stdout string
	stderr string
	err    error
	took   time.Duration
}

// all is everything the command printed, for greps.
func (r *run) all() string { return r.stdout + "\n" + r.stderr }

// printed keeps every command's output, for the secret grep at the end.
var printed struct {
	sync.Mutex
	b bytes.Buffer
}

// ran holds every function and flag that a successful dagger call of the suite used (see
// uses), under printed's lock.
var ran = map[string]bool{}

// boolFlags are the module's flags that take no value.
var boolFlags = map[string]bool{"allow-failure": true, "skip-tests": true, "force": true, "latest": true,
	"image-latest": true, "protected": true, "no-check": true, "irreversible": true, "follow": true}

// uses lists what a `dagger call` command line uses, as "FUNCTION --FLAG" and "FUNCTION"
// ("call --FLAG" for the module's own arguments); the chained core functions after the
// module's (export, entries, with-exec...) count too.
func uses(args []string) []string {
	for len(args) > 0 && args[0] != "call" {
		args = args[1:]
	}
	if len(args) == 0 {
		return nil
	}
	fn := "call"
	var out []string
	for i := 1; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "--") {
			flag, _, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			out = append(out, fn+" --"+flag)
			if !hasValue && !boolFlags[flag] {
				i++ // its value
			}
			continue
		}
		fn = a
		out = append(out, fn)
	}
	return out
}

// dagger runs `dagger --progress=plain -m <module> <args...>` in dir with env added to the
// environment, as a user in the application's repository does (-m names the module the way
// `dagger -m github.com/pushdeploy/pushdeploy@main` does, here by its local path).
func (e *engine) dagger(t *testing.T, dir string, env []string, args ...string) *run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	full := append([]string{"--progress=plain", "-m", e.module}, args...)
	cmd := exec.CommandContext(ctx, e.cli, full...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := &run{args: args, stdout: stdout.String(), stderr: stderr.String(), err: err, took: time.Since(start)}
	printed.Lock()
	printed.b.WriteString(r.all())
	if err == nil {
		for _, u := range uses(args) {
			ran[u] = true
		}
	}
	printed.Unlock()
	return r
}

// report logs the command, whether it did what the test wanted (succeed, or fail as
// asserted), and its wall time; and appends that line to $PUSHDEPLOY_E2E_REPORT.
func (r *run) report(t *testing.T, wantFailure bool) {
	t.Helper()
	outcome := "pass"
	switch {
	case wantFailure && r.err != nil:
		outcome = "pass (failed as asserted)"
	case (r.err != nil) != wantFailure:
		outcome = "FAIL"
	}
	line := fmt.Sprintf("dagger %s\t%s\t%.1fs", strings.Join(r.args, " "), outcome, r.took.Seconds())
	t.Logf("%s", line)
	if p := os.Getenv(ReportEnv); p != "" {
		if f, ferr := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); ferr == nil {
			fmt.Fprintf(f, "%s\t%s\n", t.Name(), line)
			f.Close()
		}
	}
}

// ok runs a command that must succeed and returns its stdout.
func (e *engine) ok(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	r := e.dagger(t, dir, env, args...)
	r.report(t, false)
	if r.err != nil {
		t.Fatalf("dagger %s: %v\nstdout:\n%s\nstderr (end):\n%s", strings.Join(args, " "), r.err, r.stdout, tailOf(r.stderr, 6000))
	}
	return r.stdout
}

// fails runs a command that must fail and returns everything it printed.
func (e *engine) fails(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	r := e.dagger(t, dir, env, args...)
	r.report(t, true)
	if r.err == nil {
		t.Fatalf("dagger %s succeeded; want a failure\nstdout:\n%s", strings.Join(args, " "), r.stdout)
	}
	return r.all()
}

func tailOf(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// copyTree copies the directory src to a new temporary directory and returns it.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	if out, err := exec.Command("cp", "-a", src+"/.", dst).CombinedOutput(); err != nil {
		t.Fatalf("copying %s: %v: %s", src, err, out)
	}
	return dst
}

func mustContain(t *testing.T, what, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Errorf("%s does not contain %q:\n%s", what, w, tailOf(s, 4000))
		}
	}
}
