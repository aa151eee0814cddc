package ci

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
	"sigs.k8s.io/yaml"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
)

// The files of the project's own CI and of what it ships to CI users.
const (
	actionFile     = "../../action.yml"
	actionScript   = "../../scripts/action-run"
	workflowsDir   = "../../.github/workflows"
	reusableFile   = "../../.github/workflows/deploy.yml"
	goreleaserFile = "../../.goreleaser.yaml"
	libraryFile    = "../../vars/pushdeploy.groovy"
)

// toolsBin is where scripts/setup installs the CI tools the tests run (goreleaser, act):
// $PUSHDEPLOY_TOOLS_BIN, default ~/.cache/pushdeploy/bin.
func toolsBin() string {
	if d := os.Getenv("PUSHDEPLOY_TOOLS_BIN"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "pushdeploy", "bin")
}

// tool returns the path of a CI tool scripts/setup installs; without it the test skips
// saying so, or fails under PUSHDEPLOY_REQUIRE_BENCH.
func tool(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(toolsBin(), name)
	if st, err := os.Stat(p); err != nil || st.Mode()&0o111 == 0 {
		testbench.Unavailable(t, "%s is not installed in %s: run scripts/setup (it builds it once from the Go module proxy)", name, toolsBin())
	}
	return p
}

// TestAllWorkflowsActionlint lints every workflow of .github/workflows and the minimal user
// workflow with actionlint (shellcheck on the run: scripts), in the repository's project so
// that local actions and reusable workflows are checked too: each file also as it reads with
// this repository's own action and reusable workflow in place of the remote references
// (pushdeploy/pushdeploy@v1 -> ./, .../deploy.yml@v1 -> ./.github/workflows/deploy.yml), so
// that every with: is checked against action.yml's inputs and deploy.yml's workflow_call.
func TestAllWorkflowsActionlint(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(workflowsDir, "*.yml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("want ci.yml, deploy.yml and release.yml in %s, have %v (%v)", workflowsDir, files, err)
	}
	files = append(files, workflowFile)
	for _, f := range files {
		src := read(t, f)
		for _, variant := range []struct {
			name string
			src  []byte
		}{{"", src}, {" (local refs)", localRefs(src)}} {
			if variant.name != "" && bytes.Equal(variant.src, src) {
				continue
			}
			for _, e := range lintInProject(t, filepath.Base(f), variant.src) {
				t.Errorf("%s%s:%d:%d: %s [%s]", f, variant.name, e.Line, e.Column, e.Message, e.Kind)
			}
		}
	}
}

// TestProjectLintCatchesMistakes: the project lint above fails on a with: the action or the
// reusable workflow does not have, and on an action.yml that does not parse.
func TestProjectLintCatchesMistakes(t *testing.T) {
	deploy := localRefs(read(t, reusableFile))
	for _, c := range []struct{ name, file, old, new, want string }{
		{"an input the action lacks", "deploy.yml", "approved-by: ${{", "aproved-by: ${{", "aproved-by"},
		{"an input the reusable workflow lacks", "github-actions.yml", "build: npm run build", "bild: npm run build", "bild"},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := deploy
			if c.file != "deploy.yml" {
				src = localRefs(read(t, workflowFile))
			}
			errs := lintInProject(t, c.file, []byte(replaceOnce(t, string(src), c.old, c.new)))
			var msgs []string
			for _, e := range errs {
				msgs = append(msgs, e.Message)
			}
			if !strings.Contains(strings.Join(msgs, "\n"), c.want) {
				t.Errorf("findings do not mention %q:\n%s", c.want, strings.Join(msgs, "\n"))
			}
		})
	}
}

// localRefs points a workflow's references to this repository (the action, the reusable
// workflow) at the checkout.
func localRefs(src []byte) []byte {
	s := strings.ReplaceAll(string(src), "pushdeploy/pushdeploy/.github/workflows/deploy.yml@v1", "./.github/workflows/deploy.yml")
	return []byte(strings.ReplaceAll(s, "uses: pushdeploy/pushdeploy@v1", "uses: ./"))
}

// lintInProject lints src as the workflow .github/workflows/name of this repository.
func lintInProject(t *testing.T, name string, src []byte) []*actionlint.Error {
	t.Helper()
	root, err := filepath.Abs(moduleRootDir)
	if err != nil {
		t.Fatal(err)
	}
	proj, err := actionlint.NewProject(root)
	if err != nil {
		t.Fatal(err)
	}
	opts := &actionlint.LinterOptions{}
	if sc, err := exec.LookPath("shellcheck"); err == nil {
		opts.Shellcheck = sc
	} else if os.Getenv(testbench.RequireEnv) != "" {
		t.Fatal("shellcheck is not installed (Debian package shellcheck): actionlint would not check the run: scripts")
	}
	l, err := actionlint.NewLinter(io.Discard, opts)
	if err != nil {
		t.Fatal(err)
	}
	errs, err := l.Lint(filepath.Join(root, ".github", "workflows", name), src, proj)
	if err != nil {
		t.Fatal(err)
	}
	return errs
}

// TestActionScripts: the composite action's run: scripts and scripts/action-run pass
// shellcheck (actionlint does not shellcheck an action's steps).
func TestActionScripts(t *testing.T) {
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		testbench.Unavailable(t, "shellcheck is not installed (Debian package shellcheck)")
	}
	var md struct {
		Runs struct {
			Using string `json:"using"`
			Steps []struct {
				Name  string `json:"name"`
				Run   string `json:"run"`
				Shell string `json:"shell"`
			} `json:"steps"`
		} `json:"runs"`
	}
	if err := yaml.Unmarshal(read(t, actionFile), &md); err != nil {
		t.Fatalf("%s: %v", actionFile, err)
	}
	if md.Runs.Using != "composite" {
		t.Fatalf("%s: runs.using is %q, want composite", actionFile, md.Runs.Using)
	}
	dir := t.TempDir()
	scripts := []string{actionScript}
	for i, s := range md.Runs.Steps {
		if s.Run == "" {
			continue
		}
		if s.Shell != "bash" {
			t.Errorf("%s: step %q: shell %q, want bash", actionFile, s.Name, s.Shell)
		}
		// ${{ }} expressions in an action's script would be template injection: inputs
		// reach the scripts through env: only.
		if strings.Contains(s.Run, "${{") {
			t.Errorf("%s: step %q expands an expression in its script; pass it through env:", actionFile, s.Name)
		}
		p := filepath.Join(dir, fmt.Sprintf("step%d.sh", i))
		writeFile(t, p, "#!/usr/bin/env bash\nset -eo pipefail\n"+s.Run)
		scripts = append(scripts, p)
	}
	out, err := exec.Command(sc, append([]string{"-x"}, scripts...)...).CombinedOutput()
	if err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}

// TestActionRefusesSecretValues runs the action's script with a secret where a reference
// belongs, and with bad inputs: each is refused (exit 2) before anything runs, naming the
// input and never printing the value.
func TestActionRefusesSecretValues(t *testing.T) {
	const key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA\n-----END OPENSSH PRIVATE KEY-----"
	base := map[string]string{"MODE": "cli", "FUNCTION": "deploy", "ENVIRONMENT": "staging", "FILE": "pushdeploy.yaml",
		"VERSION": "checkout", "SSH_KEY_REF": "env:SSH_KEY", "SSH_KEY": key}
	for _, c := range []struct {
		name string
		set  map[string]string
		want string
	}{
		{"a key as the ssh-key input", map[string]string{"SSH_KEY_REF": key}, "input ssh-key is not a reference"},
		{"a token as registry-password", map[string]string{"REGISTRY_PASSWORD_REF": "ghp_0123456789abcdef"}, "input registry-password is not a reference"},
		{"a value in secrets", map[string]string{"SECRET_NAMES": "SLACK_WEBHOOK,https://hooks.slack.com/x"}, `input secrets: "https://hooks.slack.com/x" is not a variable name`},
		{"a named secret not set", map[string]string{"SECRET_NAMES": "SLACK_WEBHOOK"}, "secret SLACK_WEBHOOK is not set"},
		{"a referenced secret not set", map[string]string{"SSH_KEY": ""}, "secret SSH_KEY is not set"},
		{"no environment", map[string]string{"ENVIRONMENT": ""}, "input environment is required"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command("bash", actionScript)
			env := []string{"PATH=/nonexistent:" + os.Getenv("PATH"), "GITHUB_OUTPUT=" + filepath.Join(t.TempDir(), "out")}
			for k, v := range base {
				if _, ok := c.set[k]; !ok {
					env = append(env, k+"="+v)
				}
			}
			for k, v := range c.set {
				env = append(env, k+"="+v)
			}
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
				t.Fatalf("want exit 2, got %v:\n%s", err, out)
			}
			if !strings.Contains(string(out), c.want) {
				t.Errorf("output does not say %q:\n%s", c.want, out)
			}
			for _, secret := range []string{"b3BlbnNzaC1rZXktdjEAAAA", "ghp_0123456789abcdef"} {
				if strings.Contains(string(out), secret) {
					t.Errorf("the output shows a secret's value:\n%s", out)
				}
			}
		})
	}
}

// TestGoreleaser checks .goreleaser.yaml (goreleaser check; its builds are linux and darwin
// on amd64 and arm64) and builds a snapshot release from this checkout (goreleaser release
// --snapshot --clean, into a temporary dist): one archive per platform named as action.yml
// downloads it, and checksums.txt with every archive's sha256; this machine's binary runs.
// The snapshot is of this machine's platform only, unless PUSHDEPLOY_SNAPSHOT_ALL=1: three
// cross-compiled builds of the CLI from a cold Go cache take 15-20 minutes each on this
// two-core machine under load, more than CI can give them.
func TestGoreleaser(t *testing.T) {
	gr := tool(t, "goreleaser")
	root, _ := filepath.Abs(moduleRootDir)
	if out, err := exec.Command(gr, "check", "--config", filepath.Join(root, ".goreleaser.yaml")).CombinedOutput(); err != nil {
		t.Fatalf("goreleaser check: %v\n%s", err, out)
	}
	// The same configuration, its dist in a temporary directory instead of the checkout's.
	var cfg map[string]any
	if err := yaml.Unmarshal(read(t, goreleaserFile), &cfg); err != nil {
		t.Fatal(err)
	}
	builds, _ := cfg["builds"].([]any)
	if len(builds) != 1 {
		t.Fatalf(".goreleaser.yaml: %d builds, want the CLI's one", len(builds))
	}
	build, _ := builds[0].(map[string]any)
	if got := fmt.Sprint(build["goos"], build["goarch"]); got != "[linux darwin] [amd64 arm64]" {
		t.Errorf(".goreleaser.yaml builds goos, goarch %s, want [linux darwin] [amd64 arm64]", got)
	}
	want := []string{"linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64"}
	if os.Getenv("PUSHDEPLOY_SNAPSHOT_ALL") != "1" {
		build["goos"], build["goarch"] = []string{runtime.GOOS}, []string{runtime.GOARCH}
		want = []string{runtime.GOOS + "/" + runtime.GOARCH}
	}
	dist := filepath.Join(t.TempDir(), "dist")
	cfg["dist"] = dist
	b, _ := yaml.Marshal(cfg)
	conf := filepath.Join(t.TempDir(), "goreleaser.yaml")
	writeFile(t, conf, string(b))
	cmd := exec.Command(gr, "release", "--snapshot", "--clean", "--config", conf, "--parallelism", "1")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("goreleaser release --snapshot: %v\n%s", err, out)
	}
	sums := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(read(t, filepath.Join(dist, "checksums.txt")))), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			t.Fatalf("checksums.txt: bad line %q", line)
		}
		sums[f[1]] = f[0]
	}
	archives, _ := filepath.Glob(filepath.Join(dist, "pushdeploy_*.tar.gz"))
	var names []string
	for _, a := range archives {
		names = append(names, filepath.Base(a))
	}
	sort.Strings(names)
	t.Logf("snapshot artifacts: %s, checksums.txt", strings.Join(names, ", "))
	name := regexp.MustCompile(`^pushdeploy_(linux|darwin)_(amd64|arm64)\.tar\.gz$`)
	platforms := map[string]bool{}
	for _, n := range names {
		m := name.FindStringSubmatch(n)
		if m == nil {
			t.Errorf("archive %q is not named pushdeploy_<os>_<arch>.tar.gz (what action.yml downloads)", n)
			continue
		}
		platforms[m[1]+"/"+m[2]] = true
		sum := sha256.Sum256(read(t, filepath.Join(dist, n)))
		if sums[n] != hex.EncodeToString(sum[:]) {
			t.Errorf("checksums.txt has %q for %s, the file's sha256 is %x", sums[n], n, sum)
		}
		list, err := exec.Command("tar", "-tzf", filepath.Join(dist, n)).Output()
		if err != nil || !strings.Contains("\n"+string(list), "\npushdeploy\n") {
			t.Errorf("%s has no pushdeploy at its root (tar: %v):\n%s", n, err, list)
		}
	}
	for _, p := range want {
		if !platforms[p] {
			t.Errorf("no archive for %s (have %v)", p, names)
		}
	}
	if len(sums) != len(names) {
		t.Errorf("checksums.txt lists %d files, the release has %d archives", len(sums), len(names))
	}
	// This machine's binary, as goreleaser built it, says its version: the snapshot's.
	var meta struct{ Version string }
	if err := json.Unmarshal(read(t, filepath.Join(dist, "metadata.json")), &meta); err != nil || !strings.HasSuffix(meta.Version, "-snapshot") {
		t.Fatalf("dist/metadata.json: version %q (%v), want a snapshot version", meta.Version, err)
	}
	version := meta.Version
	bins, _ := filepath.Glob(filepath.Join(dist, "pushdeploy_"+runtime.GOOS+"_"+runtime.GOARCH+"*", "pushdeploy"))
	if len(bins) != 1 {
		t.Fatalf("no single %s/%s binary in %s: %v", runtime.GOOS, runtime.GOARCH, dist, bins)
	}
	out, err := exec.Command(bins[0], "version", "-o", "json").Output()
	var v struct{ Version string }
	if err != nil || json.Unmarshal(out, &v) != nil || v.Version != "v"+version {
		t.Errorf("%s version -o json: %v: %s (want v%s)", bins[0], err, out, version)
	}
}

// groovyLint is npm-groovy-lint as scripts/setup installs it: $PUSHDEPLOY_NODE_TOOLS (default
// ~/.cache/pushdeploy)/node-groovy-lint.
func groovyLint(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("PUSHDEPLOY_NODE_TOOLS")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "pushdeploy")
	}
	p := filepath.Join(dir, "node-groovy-lint", "node_modules", ".bin", "npm-groovy-lint")
	if _, err := os.Stat(p); err != nil {
		testbench.Unavailable(t, "npm-groovy-lint is not installed in %s: run scripts/setup (npm registry)", filepath.Dir(p))
	}
	if _, err := exec.LookPath("java"); err != nil {
		testbench.Unavailable(t, "java is not installed: npm-groovy-lint runs CodeNarc on the JDK (Debian openjdk-17-jre-headless)")
	}
	return p
}

// TestGroovyLint lints the Jenkins library and the Jenkinsfile with npm-groovy-lint
// (CodeNarc's recommended rules, and Groovy's own parser: a file that does not parse is an
// error): no error and no warning. A file with a syntax error, linted in the same run, must
// be flagged, so that a lint that checks nothing cannot pass.
func TestGroovyLint(t *testing.T) {
	lint := groovyLint(t)
	dir := t.TempDir()
	files := map[string]string{"Jenkinsfile": jenkinsFile, "pushdeploy.groovy": libraryFile}
	for name, src := range files {
		writeFile(t, filepath.Join(dir, name), string(read(t, src)))
	}
	writeFile(t, filepath.Join(dir, "broken.groovy"), "def deploy(Map args) {\n    sh '''echo unterminated\n}\n")
	cmd := exec.Command(lint, "--noserver", "--output", "json", "--loglevel", "warning", "--failon", "warning",
		"--files", "Jenkinsfile,pushdeploy.groovy,broken.groovy")
	cmd.Dir = dir
	out, _ := cmd.Output() // exits 1 on the broken file
	start := bytes.IndexByte(out, '{')
	if start < 0 {
		t.Fatalf("npm-groovy-lint printed no JSON:\n%s", out)
	}
	var res struct {
		Files map[string]struct {
			Errors []struct {
				Line     any    `json:"line"`
				Rule     string `json:"rule"`
				Severity string `json:"severity"`
				Msg      string `json:"msg"`
			} `json:"errors"`
		} `json:"files"`
	}
	if err := json.Unmarshal(out[start:], &res); err != nil {
		t.Fatalf("npm-groovy-lint's JSON: %v\n%s", err, out)
	}
	found := map[string]int{}
	for path, f := range res.Files {
		name := filepath.Base(path)
		for _, e := range f.Errors {
			if e.Severity != "error" && e.Severity != "warning" {
				continue
			}
			found[name]++
			if name != "broken.groovy" {
				t.Errorf("%s:%v: %s: %s [%s]", files[name], e.Line, e.Severity, e.Msg, e.Rule)
			}
		}
	}
	if found["broken.groovy"] == 0 {
		t.Errorf("npm-groovy-lint found nothing wrong with a file that does not parse:\n%s", out)
	}
}
