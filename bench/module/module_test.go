// Package modulebench measures the Dagger module's own overhead: `dagger call deploy` of a
// one-file change on a warm engine against `pushdeploy deploy` of the same change to the
// same real sshd host, side by side in one run, and where the difference goes:
//
//   - load: `dagger functions` (connect, session, module load from the engine's cache);
//   - a function call: `dagger call config --env mod`, which reads the file and returns
//     its text, less load: the cost of any function of any module on this engine (its
//     runtime container started, the SDK's calls back, the result returned);
//   - export: the artifacts directory given with --artifacts exported into the function;
//   - the deploy itself: the record's own duration, the same code as the CLI's;
//   - a new commit: the same deploy after a file of the source changed, as in every CI run:
//     the constructor's call is not cached then;
//   - the floor: `dagger call hello` of testdata/floor, a Go module whose one function
//     returns a constant: what any call of any Go module costs here, load included.
//
// PUSHDEPLOY_BENCH_TRACE=PREFIX writes every command's --progress=plain output to
// PREFIX.<time>, for the engine's own spans.
//
// It needs the real engine (the harness: `../shared/dagger/engine up`, `eval "$(... env)"`)
// and skips without it.
//
//	go test ./bench/module -run '^$' -bench . -benchtime 3x
package modulebench

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
)

func BenchmarkModuleOverhead(b *testing.B) {
	cli, err := exec.LookPath("dagger")
	addr := os.Getenv("DAGGER_HARNESS_HOST_ADDR")
	if err != nil || addr == "" {
		b.Skip("needs the dagger CLI and the engine harness (DAGGER_HARNESS_HOST_ADDR)")
	}
	root, _ := filepath.Abs("../..")
	hosts := testbench.SSHHosts(b, 1, testbench.SSHListenHost(addr))
	h := hosts[0]
	dir := b.TempDir()
	dist := filepath.Join(dir, "dist")
	// 200 files of 16 KB: one changes per deploy.
	for i := 0; i < 200; i++ {
		p := filepath.Join(dist, fmt.Sprintf("f%03d.bin", i))
		buf := make([]byte, 16<<10)
		_, _ = rand.Read(buf)
		must(b, os.MkdirAll(filepath.Dir(p), 0o755))
		must(b, os.WriteFile(p, buf, 0o644))
	}
	must(b, os.WriteFile(filepath.Join(dir, "known_hosts"), h.KnownHosts, 0o644))
	file := fmt.Sprintf(`app: bench
environments:
  mod:
    ssh: {hosts: [%q], user: %s, key: env:SSH_KEY, known_hosts: file:known_hosts, path: %s}
  cli:
    ssh: {hosts: [%q], user: %s, key: env:SSH_KEY, known_hosts: file:known_hosts, path: %s}
`, h.Addr, h.User, filepath.Join(h.Dir, "mod"), h.Addr, h.User, filepath.Join(h.Dir, "cli"))
	must(b, os.WriteFile(filepath.Join(dir, "pushdeploy.yaml"), []byte(file), 0o644))
	// Not in the source directory: the constructor would take its 85 MB as part of the source.
	pd := filepath.Join(b.TempDir(), "pushdeploy")
	build := exec.Command("go", "build", "-o", pd, "./cmd/pushdeploy")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building the CLI: %v\n%s", err, out)
	}
	env := append(os.Environ(), "SSH_KEY="+string(h.ClientKey))
	run := func(name string, args ...string) (time.Duration, string) {
		cmd := exec.Command(name, args...)
		cmd.Dir, cmd.Env = dir, env
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, tail(errb.String()))
		}
		if f := os.Getenv("PUSHDEPLOY_BENCH_TRACE"); f != "" {
			_ = os.WriteFile(fmt.Sprintf("%s.%d", f, time.Now().UnixNano()), errb.Bytes(), 0o644)
		}
		return time.Since(start), out.String()
	}
	took := func(rec string) time.Duration {
		var r struct {
			Started  time.Time `json:"started"`
			Finished time.Time `json:"finished"`
		}
		if json.Unmarshal([]byte(rec), &r) != nil || r.Finished.IsZero() {
			return 0
		}
		return r.Finished.Sub(r.Started)
	}
	dagger := func(args ...string) []string { return append([]string{"--progress=plain", "-m", root}, args...) }
	// Warm: the module loaded, the first deploys made.
	run(cli, dagger("call", "--source", ".", "--ssh-key", "env:SSH_KEY", "deploy", "--env", "mod", "--artifacts", "dist")...)
	run(pd, "deploy", "--env", "cli", "--artifacts", "dist", "-f", "pushdeploy.yaml", "--ssh-key", "env:SSH_KEY")

	floor := filepath.Join(root, "bench", "module", "testdata", "floor")
	run(cli, "--progress=plain", "-m", floor, "call", "hello")
	var mod, cl, load, call, modDeploy, cliDeploy, floorCall, commit time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buf := make([]byte, 16<<10)
		_, _ = rand.Read(buf)
		must(b, os.WriteFile(filepath.Join(dist, "f000.bin"), buf, 0o644))
		d, rec := run(cli, dagger("call", "--source", ".", "--ssh-key", "env:SSH_KEY", "deploy", "--env", "mod", "--artifacts", "dist", "--format", "json")...)
		mod += d
		modDeploy += took(rec)
		d, rec = run(pd, "deploy", "--env", "cli", "--artifacts", "dist", "-f", "pushdeploy.yaml", "--ssh-key", "env:SSH_KEY", "-o", "json")
		cl += d
		cliDeploy += took(rec)
		d, _ = run(cli, dagger("functions")...)
		load += d
		d, _ = run(cli, dagger("call", "--source", ".", "config", "--env", "mod")...)
		call += d
		d, _ = run(cli, "--progress=plain", "-m", floor, "call", "hello")
		floorCall += d
		must(b, os.WriteFile(filepath.Join(dir, "REVISION"), []byte(rand.Text()), 0o644))
		_, _ = rand.Read(buf)
		must(b, os.WriteFile(filepath.Join(dist, "f000.bin"), buf, 0o644))
		d, _ = run(cli, dagger("call", "--source", ".", "--ssh-key", "env:SSH_KEY", "deploy", "--env", "mod", "--artifacts", "dist", "--format", "json")...)
		commit += d
	}
	n := float64(b.N)
	b.ReportMetric(float64(mod.Milliseconds())/n, "module-ms")
	b.ReportMetric(float64(cl.Milliseconds())/n, "cli-ms")
	b.ReportMetric(float64((mod-cl).Milliseconds())/n, "overhead-ms")
	b.ReportMetric(float64(load.Milliseconds())/n, "load-ms")
	b.ReportMetric(float64(call.Milliseconds())/n, "call-ms")
	b.ReportMetric(float64(floorCall.Milliseconds())/n, "floor-ms")
	b.ReportMetric(float64(commit.Milliseconds())/n, "new-commit-ms")
	b.ReportMetric(float64((mod-cl-floorCall).Milliseconds())/n, "beyond-floor-ms")
	b.ReportMetric(float64(modDeploy.Milliseconds())/n, "module-record-ms")
	b.ReportMetric(float64(cliDeploy.Milliseconds())/n, "cli-record-ms")
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

func tail(s string) string {
	if len(s) > 3000 {
		return "..." + s[len(s)-3000:]
	}
	return s
}
