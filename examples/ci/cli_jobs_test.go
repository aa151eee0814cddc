package ci

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rhysd/actionlint"
	"sigs.k8s.io/yaml"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

// TestCLIJobsDeploy runs the workflow's cli-staging and cli-production deploy steps, their
// run: scripts as written, against real sshd hosts: the environments file is
// pushdeploy.files.yaml with the hosts, paths, restart and health pointed at the bench.
// Staging deploys dist/; production without the approval is refused and changes nothing;
// with it, production runs the very files live in staging and its record keeps the approver,
// the deployer and the run. The Slack secret reaches the CLI only through the step's env.
func TestCLIJobsDeploy(t *testing.T) {
	steps := deploySteps(t)
	hosts := testbench.SSHHosts(t, 2)
	bin := cliBinary(t)

	var mu sync.Mutex
	var slack []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		slack = append(slack, string(b))
		mu.Unlock()
	}))
	defer hook.Close()

	dir := t.TempDir()
	paths := writeBenchFile(t, dir, hosts)
	if err := os.MkdirAll(filepath.Join(dir, ".ci"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, ".ci", "known_hosts"), string(testbench.KnownHostsOf(hosts)))
	writeFile(t, filepath.Join(dir, "dist", "index.js"), "console.log('web v1')\n")
	writeFile(t, filepath.Join(dir, "dist", "public", "app.css"), "body{}\n")

	env := append(os.Environ(),
		"PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"GITHUB_SHA=3f2a9c1d5e7b8a6f4c2d0e1f3a5b7c9d1e3f5a7b",
		"GITHUB_REF_NAME=main",
		"GITHUB_ACTOR=octocat",
		"GITHUB_SERVER_URL=https://github.com",
		"GITHUB_REPOSITORY=acme/web",
		"GITHUB_RUN_ID=4242",
		"SSH_KEY="+string(hosts[0].ClientKey),
		"SLACK_WEBHOOK="+hook.URL+"/services/T0/B0/slackpath0123",
	)
	run := func(job string, extra ...string) (string, error) {
		t.Helper()
		// A guard against a hung deploy, not a timing assertion: the step is killed, with
		// the CLI it started, so that the test fails with the output instead of hanging.
		ctx, cancel := context.WithTimeout(context.Background(), stepGuard)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", "-eo", "pipefail", "-c", steps[job])
		cmd.Dir, cmd.Env = dir, append(env, extra...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			t.Fatalf("%s's deploy step did not end within %s:\n%s", job, stepGuard, out)
		}
		return string(out), err
	}

	out, err := run("cli-staging")
	if err != nil {
		t.Fatalf("cli-staging's deploy step: %v\n%s", err, out)
	}
	if strings.Contains(out, "BEGIN OPENSSH PRIVATE KEY") || strings.Contains(out, "slackpath0123") {
		t.Errorf("a secret appears in the deploy's output:\n%s", out)
	}

	out, err = run("cli-production", "APPROVED_BY=")
	if err == nil || !strings.Contains(out, "protected") {
		t.Fatalf("production deployed without an approval: %v\n%s", err, out)
	}
	if _, err := os.Stat(paths["production"]); !os.IsNotExist(err) {
		t.Errorf("the refused production deploy changed the host: %s: %v", paths["production"], err)
	}

	if out, err = run("cli-production", "APPROVED_BY=alice"); err != nil {
		t.Fatalf("cli-production's deploy step: %v\n%s", err, out)
	}
	staging, production := lastRecord(t, bin, dir, env, "staging"), lastRecord(t, bin, dir, env, "production")
	for _, c := range []struct{ field, got, want string }{
		{"production approvedBy", str(production["approvedBy"]), "alice"},
		{"production deployer", str(production["deployer"]), "octocat"},
		{"production digest", str(production["digest"]), str(staging["digest"])},
		{"staging deployer", str(staging["deployer"]), "octocat"},
	} {
		if c.got != c.want || c.got == "" {
			t.Errorf("%s: got %q, want %q", c.field, c.got, c.want)
		}
	}
	if got := str(production["pipelineId"]); got != "https://github.com/acme/web/actions/runs/4242" {
		t.Errorf("production pipelineId: got %q, want the run's URL", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(slack) != 2 {
		t.Errorf("Slack got %d notifications, want 2 (staging and production): %q", len(slack), slack)
	}
}

// stepGuard bounds one deploy step of TestCLIJobsDeploy.
const stepGuard = 4 * time.Minute

// deploySteps returns the run: script of the deploy step of the cli-* jobs.
func deploySteps(t *testing.T) map[string]string {
	t.Helper()
	wf, errs := actionlint.Parse(read(t, workflowFile))
	if len(errs) > 0 {
		t.Fatal(errs[0])
	}
	steps := map[string]string{}
	for _, job := range []string{"cli-staging", "cli-production"} {
		j, ok := wf.Jobs[job]
		if !ok {
			t.Fatalf("%s has no job %q", workflowFile, job)
		}
		for _, s := range j.Steps {
			if r, ok := s.Exec.(*actionlint.ExecRun); ok && r.Run != nil && strings.Contains(r.Run.Value, "pushdeploy deploy") {
				steps[job] = r.Run.Value
			}
		}
		if steps[job] == "" {
			t.Fatalf("%s: job %q has no pushdeploy deploy step", workflowFile, job)
		}
	}
	return steps
}

// writeBenchFile writes dir/pushdeploy.yaml: pushdeploy.files.yaml with each environment
// on its own bench host (staging on the first, production on the second), deploying under
// the host's scratch directory, restarting with a command that leaves a trace, and healthy
// when the release's index.js is in place. It returns each environment's path.
func writeBenchFile(t *testing.T, dir string, hosts []*testbench.SSHHost) map[string]string {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(read(t, cliConfig), &doc); err != nil {
		t.Fatal(err)
	}
	paths := map[string]string{}
	envs, _ := doc["environments"].(map[string]any)
	for i, name := range []string{"staging", "production"} {
		e, _ := envs[name].(map[string]any)
		s, _ := e["ssh"].(map[string]any)
		if s == nil {
			t.Fatalf("%s: environment %q has no ssh target", cliConfig, name)
		}
		h := hosts[i]
		path := filepath.Join(h.Dir, "web-"+name)
		s["hosts"], s["user"], s["path"] = []any{h.Addr}, h.User, path
		s["restart"] = "date >> " + path + "/restarts"
		e["health"] = map[string]any{"command": "test -f " + path + "/current/index.js", "interval": "100ms", "retries": 20}
		paths[name] = path
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "pushdeploy.yaml")
	writeFile(t, file, string(b))
	if _, err := config.Load(file); err != nil {
		t.Fatalf("the bench's environments file: %v", err)
	}
	return paths
}

func lastRecord(t *testing.T, bin, dir string, environ []string, env string) map[string]any {
	t.Helper()
	cmd := exec.Command(bin, "history", "--env", env, "--limit", "1", "-o", "json",
		"--ssh-key", "env:SSH_KEY", "--known-hosts", "file:.ci/known_hosts")
	cmd.Dir = dir
	cmd.Env = environ
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pushdeploy history --env %s: %v\n%s", env, err, out)
	}
	var h struct {
		Records []map[string]any `json:"records"`
	}
	if err := json.Unmarshal(out, &h); err != nil || len(h.Records) == 0 {
		t.Fatalf("pushdeploy history --env %s: %v: %s", env, err, out)
	}
	return h.Records[len(h.Records)-1]
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
