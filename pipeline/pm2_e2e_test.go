package pipeline_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

// Issue 11, case 1 and the pm2 deliverable: the Node/pm2 setup of examples/ci
// (pushdeploy.files.yaml's staging environment, ecosystem.config.js) deploys a real express
// app to real sshd hosts under pm2: v1 and v2 are served (the health check's body is the
// version), a v3 that crashes on start is rolled back, and every host runs v2 under pm2.

// npmPackages returns a node_modules directory holding pkg (name@version), installed from
// the npm registry once into a cache of the test's own under $HOME/.cache/pushdeploy
// (scripts/setup fills it). The test is skipped when npm cannot get it.
func npmPackages(t *testing.T, cache, pkg string) string {
	t.Helper()
	home, err := os.UserHomeDir()
	if err != nil {
		testbench.Unavailable(t, "no home directory for the npm cache: %v", err)
	}
	dir := filepath.Join(home, ".cache", "pushdeploy", cache)
	name := pkg[:strings.LastIndex(pkg, "@")]
	if _, err := os.Stat(filepath.Join(dir, "node_modules", name, "package.json")); err == nil {
		return filepath.Join(dir, "node_modules")
	}
	if _, err := exec.LookPath("npm"); err != nil {
		testbench.Unavailable(t, "npm is not installed: %v (apt-get install npm, or run scripts/setup)", err)
	}
	os.MkdirAll(dir, 0o755)
	cmd := exec.Command("npm", "install", "--no-audit", "--no-fund", "--prefix", dir, "--cache", filepath.Join(home, ".cache", "pushdeploy", "npm-cache"), pkg)
	if out, err := cmd.CombinedOutput(); err != nil {
		testbench.Unavailable(t, "npm install %s into %s: %v: %s", pkg, dir, err, out)
	}
	return filepath.Join(dir, "node_modules")
}

// Pinned versions, the same scripts/setup installs.
const (
	pm2Package     = "pm2@5.4.3"
	expressPackage = "express@4.22.3"
)

// serverJS is the app: express answering its version (package.json's) on /health; a 3.x
// version throws as it starts.
const serverJS = `const express = require('express');
const { version } = require('./package.json');
if (version.startsWith('3.')) throw new Error('version ' + version + ' crashes on start');
const app = express();
app.get('/health', (req, res) => res.type('text').send(version));
app.listen(Number(process.env.PORT || 3000), () => console.log('web ' + version + ' listening'));
`

// linkTree copies dir to dst as hard links (cp -al): node_modules in no time.
func linkTree(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-al", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -al %s %s: %v: %s", src, dst, err, out)
	}
}

// pm2Step is one deploy: the version, the record's outcome, the version served after.
type pm2Step struct{ version, outcome, serves string }

func TestPm2ExampleDeploysEveryRelease(t *testing.T) {
	eco, err := os.ReadFile("../examples/ci/ecosystem.config.js")
	if err != nil {
		t.Fatal(err)
	}
	pm2Deploys(t, eco, true, []pm2Step{
		{"1.0.0", pipeline.OutcomeDeployed, "1.0.0"},   // the first deploy starts the app
		{"2.0.0", pipeline.OutcomeDeployed, "2.0.0"},   // a reload serves the new release
		{"3.0.0", pipeline.OutcomeRolledBack, "2.0.0"}, // crashes on start: rolled back
		{"2.0.1", pipeline.OutcomeDeployed, "2.0.1"},   // and the next deploy works
	})
}

// The seed's setup, an ecosystem file without cwd: pm2 reloads the first release's
// directory, so v2 would be reported DEPLOYED while 1.0.0 answers. The body template of the
// version catches it: the deploy rolls back, and the report is what the hosts show.
func TestPm2WithoutCwdIsCaughtByTheVersionCheck(t *testing.T) {
	eco := []byte("module.exports = { apps: [{ name: 'web', script: 'server.js', env: { PORT: 3000 } }] };\n")
	pm2Deploys(t, eco, false, []pm2Step{
		{"1.0.0", pipeline.OutcomeDeployed, "1.0.0"},
		{"2.0.0", pipeline.OutcomeRolledBack, "1.0.0"},
	})
}

// pm2Deploys deploys the steps in turn with ecosystem file eco to two sshd hosts (each in a
// network namespace of its own, with a pm2 daemon of its own) and checks what they serve
// after each; underCurrent says pm2 runs the app from <path>/current.
func pm2Deploys(t *testing.T, eco []byte, underCurrent bool, steps []pm2Step) {
	if _, err := exec.LookPath("node"); err != nil {
		testbench.Unavailable(t, "node is not installed: %v", err)
	}
	pm2Modules := npmPackages(t, "node-pm2", pm2Package)
	expressModules := npmPackages(t, "node-express", expressPackage)

	b := &serverBench{t: t, hosts: testbench.SSHHosts(t, 2, testbench.SSHNetns())}
	b.secrets = pipeline.Secrets{SSHKey: b.hosts[0].ClientKey, KnownHosts: testbench.KnownHostsOf(b.hosts)}
	b.maker = b.perHostMaker()

	// pm2 where the deploy user can run it: this machine's cache is root's.
	tools, err := os.MkdirTemp("", "pushdeploy-pm2-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(tools, 0o755)
	t.Cleanup(func() { os.RemoveAll(tools) })
	linkTree(t, pm2Modules, filepath.Join(tools, "node_modules"))
	pm2 := filepath.Join(tools, "node_modules", ".bin", "pm2")
	// Each bench host is one machine of its own, with its own pm2 daemon (PM2_HOME); they
	// share this machine's disk and login.
	pm2Home := func(h *testbench.SSHHost) string { return filepath.Join(appDir(h), ".pm2") }
	t.Cleanup(func() {
		for _, h := range b.hosts {
			cmd := exec.Command(pm2, "kill")
			cmd.Env = append(os.Environ(), "PM2_HOME="+pm2Home(h))
			cmd.Run()
		}
	})

	// The example's staging environment, on the bench's hosts.
	src, err := os.ReadFile("../examples/ci/pushdeploy.files.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(src, &doc); err != nil {
		t.Fatal(err)
	}
	envs := doc["environments"].(map[string]any)
	staging := envs["staging"].(map[string]any)
	doc["environments"] = map[string]any{"staging": staging}
	s := staging["ssh"].(map[string]any)
	restart, _ := s["restart"].(string)
	if !strings.Contains(restart, "startOrReload") {
		t.Fatalf("the example's restart command %q does not start the app on a first deploy", restart)
	}
	var hosts []any
	for _, h := range b.hosts {
		hosts = append(hosts, h.Addr)
	}
	s["hosts"], s["user"], s["path"] = hosts, b.hosts[0].User, appDir(b.hosts[0])
	s["restart"] = fmt.Sprintf(`export PM2_HOME="$PUSHDEPLOY_PATH/.pm2" PATH=%s:"$PATH"; %s`, filepath.Dir(pm2), restart)
	health := staging["health"].(map[string]any)
	if body := health["http"].(map[string]any)["body"]; body != "^{{.Version}}$" {
		t.Errorf("the example's health check body is %q; want \"^{{.Version}}$\", the proof that the new code answers", body)
	}
	// A generous budget (15s) for pm2 to start the app on a busy machine; a healthy host
	// passes at its first answer.
	health["interval"], health["retries"], health["stable"] = "200ms", 75, "1s"
	delete(staging, "notifications")
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	f, err := config.Parse("pushdeploy.yaml", out)
	if err != nil {
		t.Fatalf("the example's staging environment on the bench: %v\n%s", err, out)
	}

	deploy := func(version string) (*pipeline.Record, error) {
		t.Helper()
		// The artifacts: the app, the ecosystem file and express.
		files := map[string]string{
			"server.js":           serverJS,
			"ecosystem.config.js": string(eco),
			"package.json":        fmt.Sprintf(`{"name": "web", "version": %q, "private": true}`+"\n", version),
		}
		dir := t.TempDir()
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		linkTree(t, expressModules, filepath.Join(dir, "node_modules"))
		return b.deployDir(f, version, dir)
	}
	serves := func(want string) {
		t.Helper()
		for _, h := range b.hosts {
			ip, _, _ := net.SplitHostPort(h.Addr)
			if got := testbench.Get("http://" + ip + ":3000/health"); got != "200 "+want {
				t.Errorf("%s answers %q; want %q", h.Name, got, "200 "+want)
			}
			// Under pm2, from path/current.
			cmd := exec.Command(pm2, "jlist")
			cmd.Env = append(os.Environ(), "PM2_HOME="+pm2Home(h))
			out, err := cmd.Output()
			if err != nil {
				t.Errorf("%s: pm2 jlist: %v", h.Name, err)
				continue
			}
			var apps []struct {
				Name string `json:"name"`
				Env  struct {
					Status   string `json:"status"`
					Cwd      string `json:"pm_cwd"`
					ExecPath string `json:"pm_exec_path"`
				} `json:"pm2_env"`
			}
			json.Unmarshal(out, &apps)
			if len(apps) != 1 || apps[0].Name != "web" || apps[0].Env.Status != "online" || underCurrent && apps[0].Env.Cwd != filepath.Join(appDir(h), "current") {
				t.Errorf("%s: pm2 runs %+v; want web online in %s", h.Name, apps, filepath.Join(appDir(h), "current"))
			}
		}
	}

	for _, step := range steps {
		rec, err := deploy(step.version)
		if (err == nil) != (step.outcome == pipeline.OutcomeDeployed) || rec == nil || rec.Outcome != step.outcome {
			t.Fatalf("deploy of %s: %v (record %+v); want %s", step.version, err, rec, step.outcome)
		}
		serves(step.serves)
		if t.Failed() {
			t.FailNow()
		}
	}
}
