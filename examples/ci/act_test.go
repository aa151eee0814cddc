package ci

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

// TestActRunsTheMinimalWorkflow runs the minimal user workflow (github-actions.yml, mode
// cli) with act on this machine (-P ubuntu-latest=-self-hosted: every step runs on the host,
// no container engine), as a push to main of a small Node application: the reusable workflow
// (.github/workflows/deploy.yml) and the composite action (action.yml) come from this
// checkout (act's --local-repository for pushdeploy/pushdeploy@v1), the CLI is built from it
// (version: checkout, the one line the test adds), and the environments file is
// pushdeploy.files.yaml pointed at real sshd hosts: staging on one, production on the other
// (every bench host is this machine's file system, so two hosts of one environment would
// share its path).
//
// act runs the test job (npm ci, npm test writing JUnit), staging (npm run build, the action
// deploys dist/) and production (who approved, the same dist/, the action deploys with the
// approver). It asserts every job succeeded; what each host serves afterwards (the built
// files of this commit behind current); production runs the digest staging does; the records
// keep approver, deployer and run; the job summary of each deploy (environment, outcome,
// digest, every host, duration, record); the action's outputs (digest, release-id, outcome);
// Slack notified through the inherited secret; no secret in act's output.
//
// What no server here can stand in for is faked, each in a comment below: GitHub's artifact
// storage, checks API and actions cache (the remote actions that talk to them), and the
// run-approvals API (a stand-in gh).
func TestActRunsTheMinimalWorkflow(t *testing.T) {
	act := tool(t, "act")
	for _, bin := range []string{"node", "npm", "jq", "git", "go"} {
		if _, err := exec.LookPath(bin); err != nil {
			testbench.Unavailable(t, "%s is not installed: the workflow's steps run it", bin)
		}
	}
	hosts := testbench.SSHHosts(t, 2)
	root, _ := filepath.Abs(moduleRootDir)

	var mu sync.Mutex
	var slack []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		slack = append(slack, string(b))
		mu.Unlock()
	}))
	defer hook.Close()

	// The application's repository.
	app := t.TempDir()
	paths := writeActBenchFile(t, app, map[string][]*testbench.SSHHost{"staging": hosts[:1], "production": hosts[1:2]})
	writeFile(t, filepath.Join(app, ".ci", "known_hosts"), string(testbench.KnownHostsOf(hosts)))
	writeFile(t, filepath.Join(app, "package.json"), `{
  "name": "web", "version": "1.0.0", "private": true,
  "scripts": {
    "test": "mkdir -p reports && node --test --test-reporter=junit --test-reporter-destination=reports/junit.xml",
    "build": "mkdir -p dist && cp index.js ecosystem.config.js dist/ && git rev-parse HEAD > dist/REVISION"
  }
}
`)
	writeFile(t, filepath.Join(app, "package-lock.json"), `{"name": "web", "version": "1.0.0", "lockfileVersion": 3, "requires": true,
  "packages": {"": {"name": "web", "version": "1.0.0"}}}
`)
	writeFile(t, filepath.Join(app, "index.js"), "console.log('web v1')\n")
	writeFile(t, filepath.Join(app, "ecosystem.config.js"), string(read(t, "ecosystem.config.js")))
	writeFile(t, filepath.Join(app, "test", "app.test.js"), "const test = require('node:test');\nconst assert = require('node:assert');\ntest('adds', () => assert.equal(1 + 1, 2));\n")
	writeFile(t, filepath.Join(app, ".gitignore"), "node_modules/\ndist/\nreports/\n")
	// The minimal workflow as an application keeps it, with the CLI built from this
	// checkout (no release to download here): the one line added.
	wf := string(read(t, workflowFile))
	wf2 := replaceOnce(t, wf, "      mode: cli", "      version: checkout\n      mode: cli")
	writeFile(t, filepath.Join(app, ".github", "workflows", "deploy.yml"), wf2)
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = app
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=octocat", "GIT_AUTHOR_EMAIL=octocat@example.com",
			"GIT_COMMITTER_NAME=octocat", "GIT_COMMITTER_EMAIL=octocat@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q", "-b", "main")
	git("remote", "add", "origin", "https://github.com/acme/web")
	git("add", "-A")
	git("commit", "-q", "-m", "web v1")
	sha := git("rev-parse", "HEAD")

	// Stand-ins, each for a GitHub service no server here can be: act runs only local
	// actions, so the remote actions the reusable workflow and the action use resolve to
	// these (--local-repository). Artifacts go to a directory, the cache always misses, the
	// test report step checks the reports exist and have no failure.
	stubs := t.TempDir()
	store := filepath.Join(stubs, "artifact-store")
	writeStub(t, stubs, "actions/upload-artifact@v4", `inputs: {name: {required: true}, path: {required: true}, if-no-files-found: {default: warn}}`,
		`mkdir -p "$STORE/$NAME" && cp -a "$SRC/." "$STORE/$NAME/" && echo "uploaded $SRC as $NAME"`,
		map[string]string{"STORE": store, "NAME": "${{ inputs.name }}", "SRC": "${{ inputs.path }}"})
	writeStub(t, stubs, "actions/download-artifact@v4", `inputs: {name: {required: true}, path: {required: true}}`,
		`mkdir -p "$DEST" && cp -a "$STORE/$NAME/." "$DEST/" && echo "downloaded $NAME into $DEST"`,
		map[string]string{"STORE": store, "NAME": "${{ inputs.name }}", "DEST": "${{ inputs.path }}"})
	writeStub(t, stubs, "actions/cache@v4", "inputs: {path: {required: true}, key: {required: true}}\noutputs: {cache-hit: {value: 'false'}}",
		`echo "cache miss: $KEY"`, map[string]string{"KEY": "${{ inputs.key }}"})
	writeStub(t, stubs, "EnricoMi/publish-unit-test-result-action@v2", "inputs: {files: {required: true}, comment_mode: {}, action_fail: {}}",
		`shopt -s globstar nullglob; set -- $FILES; [ $# -gt 0 ] || { echo "no reports match $FILES"; exit 1; }; echo "test reports: $*"; ! grep -l '<failure' "$@"`,
		map[string]string{"FILES": "${{ inputs.files }}"})
	writeStub(t, stubs, "dagger/dagger-for-github@v8.4.0", "inputs: {version: {}}",
		`echo "the Dagger CLI is not installed under act: mode cli must not ask for it"; exit 1`, nil)
	// The run's approvals (GET /repos/{owner}/{repo}/actions/runs/{run_id}/approvals), as
	// GitHub returns them once alice approved production; the step's --jq filter runs with jq.
	approvals := filepath.Join(stubs, "approvals.json")
	writeFile(t, approvals, `[{"environments":[{"name":"staging"}],"state":"approved","comment":"","user":{"login":"carol"}},
{"environments":[{"name":"production"}],"state":"approved","comment":"ship it","user":{"login":"alice"}}]`)
	ghDir := filepath.Join(stubs, "gh-bin")
	writeFile(t, filepath.Join(ghDir, "gh"), `#!/bin/sh
# A stand-in gh for "gh api repos/OWNER/REPO/actions/runs/ID/approvals --jq FILTER".
[ "$1" = api ] && [ "$3" = --jq ] || { echo "stand-in gh: unexpected: $*" >&2; exit 1; }
case "$2" in repos/acme/web/actions/runs/*/approvals) ;; *) echo "stand-in gh: unexpected path $2" >&2; exit 1 ;; esac
exec jq -r "$4" "$GH_STANDIN_APPROVALS"
`)
	if err := os.Chmod(filepath.Join(ghDir, "gh"), 0o755); err != nil {
		t.Fatal(err)
	}
	event := filepath.Join(stubs, "push.json")
	writeFile(t, event, fmt.Sprintf(`{"ref": "refs/heads/main", "after": %q, "repository": {"full_name": "acme/web", "default_branch": "main"}}`, sha))

	args := []string{"push", "-C", app, "-W", ".github/workflows/deploy.yml", "-e", event,
		"-P", "ubuntu-latest=-self-hosted", "--json", "--no-cache-server", "-a", "octocat",
		"--action-cache-path", filepath.Join(stubs, "act-cache"),
		"--local-repository", "pushdeploy/pushdeploy@v1=" + root,
		"--secret", "SSH_KEY=" + string(hosts[0].ClientKey),
		"--secret", "SLACK_WEBHOOK=" + hook.URL + "/services/T0/B0/slackpath0123",
		"--env", "GH_STANDIN_APPROVALS=" + approvals,
	}
	for _, s := range []string{"actions/upload-artifact@v4", "actions/download-artifact@v4", "actions/cache@v4",
		"EnricoMi/publish-unit-test-result-action@v2", "dagger/dagger-for-github@v8.4.0"} {
		args = append(args, "--local-repository", s+"="+filepath.Join(stubs, s))
	}
	// A guard against a hung run, not a timing assertion: act is killed with what it
	// started, so that the test fails with the log instead of hanging.
	ctx, cancel := context.WithTimeout(context.Background(), actGuard)
	defer cancel()
	cmd := exec.CommandContext(ctx, act, args...)
	cmd.Dir = app
	cmd.Env = append(os.Environ(), "PATH="+ghDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	logFile := filepath.Join(t.TempDir(), "act.log")
	lf, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	t.Logf("act's log: %s", logFile)
	var buf bytes.Buffer
	cmd.Stdout = io.MultiWriter(&buf, lf)
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	err = cmd.Run()
	out := buf.Bytes()
	if ctx.Err() != nil {
		t.Fatalf("act did not end within %s:\n%s", actGuard, tail(out))
	}
	run := parseActLog(out)
	t.Logf("act %s ran in %s: jobs %v", strings.Join(args[:7], " "), time.Since(start).Round(time.Second), run.jobs)
	if err != nil {
		t.Fatalf("act: %v\n%s", err, tail(out))
	}
	for _, secret := range []string{"BEGIN OPENSSH PRIVATE KEY", "slackpath0123"} {
		if bytes.Contains(out, []byte(secret)) {
			t.Errorf("a secret (%q) appears in act's output", secret)
		}
	}
	for _, job := range []string{"test", "staging", "production"} {
		if got := run.jobs[job]; got != "success" {
			t.Errorf("job %s: result %q, want success (jobs: %v)", job, got, run.jobs)
		}
	}
	if !strings.Contains(run.stepText["test"], "test reports: reports/junit.xml") {
		t.Errorf("the test job did not publish reports/junit.xml:\n%s", run.stepText["test"])
	}

	// What every host serves: this commit's built files behind current.
	for env, hs := range map[string][]*testbench.SSHHost{"staging": hosts[:1], "production": hosts[1:2]} {
		for _, h := range hs {
			cur := filepath.Join(paths[env], "current")
			if got, err := os.ReadFile(filepath.Join(cur, "index.js")); err != nil || string(got) != "console.log('web v1')\n" {
				t.Errorf("%s %s: current/index.js: %q, %v", env, h.Addr, got, err)
			}
			if got, err := os.ReadFile(filepath.Join(cur, "REVISION")); err != nil || strings.TrimSpace(string(got)) != sha {
				t.Errorf("%s %s: current/REVISION is %q (%v), want the commit %s", env, h.Addr, got, err, sha)
			}
		}
	}

	// The action's outputs, as the deploy steps set them.
	for _, env := range []string{"staging", "production"} {
		o := run.outputs[env]
		if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(o["digest"]) || o["release-id"] == "" || o["outcome"] != "deployed" {
			t.Errorf("%s: the action's outputs are %v, want a digest, a release-id and outcome deployed", env, o)
		}
	}
	if s, p := run.outputs["staging"]["digest"], run.outputs["production"]["digest"]; s != p {
		t.Errorf("production deployed %s, staging %s: want the digest live in staging", p, s)
	}

	// The records on the hosts.
	bin := cliBinary(t)
	env := append(os.Environ(), "SSH_KEY="+string(hosts[0].ClientKey))
	staging, production := lastRecord(t, bin, app, env, "staging"), lastRecord(t, bin, app, env, "production")
	for _, c := range []struct{ field, got, want string }{
		{"production approvedBy", str(production["approvedBy"]), "alice"},
		{"production deployer", str(production["deployer"]), "octocat"},
		{"staging deployer", str(staging["deployer"]), "octocat"},
		{"production release", str(production["release"]), run.outputs["production"]["release-id"]},
		{"staging digest", str(staging["digest"]), run.outputs["staging"]["digest"]},
	} {
		if c.got != c.want || c.got == "" {
			t.Errorf("%s: got %q, want %q", c.field, c.got, c.want)
		}
	}
	if got := str(production["pipelineId"]); !strings.HasPrefix(got, "https://github.com/acme/web/actions/runs/") {
		t.Errorf("production pipelineId: got %q, want the run's URL", got)
	}

	// The job summary of each deploy.
	for _, env := range []string{"staging", "production"} {
		s := run.summary[env]
		want := []string{"### pushdeploy deploy --env " + env + ": deployed", "| digest | `" + run.outputs[env]["digest"] + "` |",
			"| release | `" + run.outputs[env]["release-id"] + "`", "| duration | ", "| record | `" + run.outputs[env]["release-id"] + "`",
			"| runner | cli (pushdeploy checkout) |"}
		for _, h := range map[string][]*testbench.SSHHost{"staging": hosts[:1], "production": hosts[1:2]}[env] {
			want = append(want, "| "+h.Addr+" | deployed |")
		}
		if env == "production" {
			want = append(want, "| approved by | alice |")
		}
		for _, w := range want {
			if !strings.Contains(s, w) {
				t.Errorf("%s's job summary has no %q:\n%s", env, w, s)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(slack) != 2 {
		t.Errorf("Slack got %d notifications, want 2 (staging and production): %q", len(slack), slack)
	}
	if t.Failed() {
		t.Logf("act's log: %s\n%s", logFile, tail(out))
	}
}

// actGuard bounds one act run of TestActRunsTheMinimalWorkflow.
const actGuard = 8 * time.Minute

// writeStub writes a composite action standing in for a remote one, as
// --local-repository OWNER/REPO@REF=DIR serves it: dir/OWNER/REPO@REF/action.yml.
func writeStub(t *testing.T, dir, uses, io, script string, env map[string]string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "name: stand-in for %s\ndescription: a stand-in (see TestActRunsTheMinimalWorkflow)\n%s\nruns:\n  using: composite\n  steps:\n    - shell: bash\n", uses, io)
	if len(env) > 0 {
		b.WriteString("      env:\n")
		for k, v := range env {
			fmt.Fprintf(&b, "        %s: %q\n", k, v)
		}
	}
	fmt.Fprintf(&b, "      run: %q\n", script)
	writeFile(t, filepath.Join(dir, uses, "action.yml"), b.String())
}

// writeActBenchFile writes dir/pushdeploy.yaml: pushdeploy.files.yaml with each environment
// on its bench hosts, deploying under the first host's scratch directory (every bench host
// is this machine), restarting with a command that leaves a trace, and healthy when the
// release's index.js is in place. It returns each environment's path.
func writeActBenchFile(t *testing.T, dir string, hosts map[string][]*testbench.SSHHost) map[string]string {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(read(t, cliConfig), &doc); err != nil {
		t.Fatal(err)
	}
	paths := map[string]string{}
	envs, _ := doc["environments"].(map[string]any)
	for name, hs := range hosts {
		e, _ := envs[name].(map[string]any)
		s, _ := e["ssh"].(map[string]any)
		if s == nil {
			t.Fatalf("%s: environment %q has no ssh target", cliConfig, name)
		}
		path := filepath.Join(hs[0].Dir, "web-"+name)
		var addrs []any
		for _, h := range hs {
			addrs = append(addrs, h.Addr)
		}
		s["hosts"], s["user"], s["path"] = addrs, hs[0].User, path
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

// actRun is what act's JSON log says about a run.
type actRun struct {
	jobs     map[string]string            // job id to result
	outputs  map[string]map[string]string // environment to the deploy step's outputs
	summary  map[string]string            // environment to the deploy step's job summary
	stepText map[string]string            // job id to its steps' output lines
}

// parseActLog reads act's --json log: one JSON object per line, with the job, the step,
// and for the runner's commands "command" (set-output with name and arg, summary with
// content), for a job's end "jobResult".
func parseActLog(out []byte) actRun {
	r := actRun{jobs: map[string]string{}, outputs: map[string]map[string]string{}, summary: map[string]string{}, stepText: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e struct {
			JobID     string `json:"jobID"`
			Step      string `json:"step"`
			Msg       string `json:"msg"`
			Command   string `json:"command"`
			Name      string `json:"name"`
			Arg       string `json:"arg"`
			Content   string `json:"content"`
			JobResult string `json:"jobResult"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		job := e.JobID
		if i := strings.LastIndex(job, "/"); i >= 0 {
			job = job[i+1:]
		}
		if e.JobResult != "" && job != "" && job != "pushdeploy" {
			r.jobs[job] = e.JobResult
		}
		r.stepText[job] += e.Msg + "\n"
		env := ""
		if m := regexp.MustCompile(`Deploy to (\w+)`).FindStringSubmatch(e.Step); m != nil {
			env = m[1]
		}
		switch {
		case env == "":
		case e.Command == "set-output" && (e.Name == "digest" || e.Name == "release-id" || e.Name == "outcome"):
			if r.outputs[env] == nil {
				r.outputs[env] = map[string]string{}
			}
			r.outputs[env][e.Name] = e.Arg
		case e.Command == "summary":
			r.summary[env] = e.Content
		}
	}
	return r
}

func tail(b []byte) string {
	const n = 12000
	if len(b) > n {
		return "...\n" + string(b[len(b)-n:])
	}
	return string(b)
}

// lastRecord is the newest deployment record of env, read with the CLI from dir's
// environments file.
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
