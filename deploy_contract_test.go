package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/contract"
	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline/assemble"
	"github.com/pushdeploy/pushdeploy/targets/docker"
)

// TestDeployThroughTheModule runs the module's deploy end to end with the recording engine
// standing in for Dagger and real servers behind it: the function tests the source, builds
// the image with its Dockerfile, exports it as a tarball into its own filesystem (written
// by the recording engine, as the engine would), publishes it to a real registry, deploys
// it to a Docker host over a real sshd, and runs the post-deploy hook in a container; a
// failing hook rolls the deploy back. Secrets are read inside the function and never sent
// in a query.
func TestDeployThroughTheModule(t *testing.T) {
	d := testbench.SharedDockerd(t)
	hosts := testbench.SSHHosts(t, 1)
	reg := testbench.InProcessRegistry(t)
	port := testbench.FreePort(t)
	targetExtra = assemble.Extra{Docker: []docker.Option{docker.WithSocket(d.Socket), docker.WithStateDir(hosts[0].Dir)}}
	t.Cleanup(func() { targetExtra = assemble.Extra{} })

	version := "v1"
	eng := connect(t,
		contract.Entries("Dockerfile", "go.mod", "main.go"),
		contract.Secret("env://SSH_KEY", string(hosts[0].ClientKey)),
		// The integration check fails for v2 only.
		contract.ExitCodeFor(`"sh","-c","./integration.sh v2"`, 1),
		contract.OnExport(func(chain, path string) error {
			if !strings.HasSuffix(chain, ".asTarball") {
				return fmt.Errorf("unexpected export of %s", chain)
			}
			testbench.WriteHelloTarball(t, path, testbench.HelloImage{Version: version, Addr: fmt.Sprintf("127.0.0.1:%d", port), HealthCheck: true})
			return nil
		}))
	file := func(hook string) string {
		return fmt.Sprintf(`app: hello
image:
  repository: %s/hello
environments:
  staging:
    docker:
      hosts: ["%s"]
      user: %s
      network: host
    health:
      http: {url: "http://{{.Address}}:%d/health"}
      interval: 100ms
    hooks:
      post_deploy: ["%s"]
`, reg.Host, hosts[0].Addr, hosts[0].User, port, hook)
	}
	deploy := func(rev string) (string, error) {
		m := New(dag.Directory(), rev, "", "", "main", "", "", "", "", "", "2026-11-27T08:00:00Z",
			dag.Secret("env://SSH_KEY"), dag.Directory().WithNewFile("known_hosts", string(testbench.KnownHostsOf(hosts))).File("known_hosts"), nil, nil, nil, false)
		cfg := dag.Directory().WithNewFile("pushdeploy.yaml", file("./integration.sh "+version)).File("pushdeploy.yaml")
		return m.Deploy(context.Background(), "staging", cfg, "", "", nil, false, false, "ci", "run-7", "text")
	}
	health := fmt.Sprintf("http://127.0.0.1:%d/health", port)

	out, err := deploy(strings.Repeat("1", 40))
	if err != nil {
		t.Fatalf("deploy v1 through the module: %v", err)
	}
	if got := testbench.Get(health); got != "200 ok v1" {
		t.Fatalf("after deploying v1 the service answers %q\n%s", got, out)
	}
	for _, want := range []string{"==> build: ok", "==> publish: ok", "published " + reg.Host + "/hello@sha256:", "post-deploy hook ok: ./integration.sh v1", "DEPLOYED"} {
		if !strings.Contains(out, want) {
			t.Errorf("deploy output lacks %q:\n%s", want, out)
		}
	}
	tr := eng.Transcript()
	mustContain(t, tr,
		// Tests first, then the image from the Dockerfile, exported for publishing.
		`withExec(args:["go","run","gotest.tools/gotestsum@v1.13.0"`,
		`.dockerBuild(buildArgs:[{name:"VERSION",value:"1111111111111111111111111111111111111111"}], dockerfile:"Dockerfile")`,
		`.asTarball.export(path:"`,
		// The hook runs in a container with the source and the record's fields.
		`withEnvVariable(name:"PUSHDEPLOY_ENV", value:"staging")`,
		`withExec(args:["sh","-c","./integration.sh v1"], expect:ANY)`,
		`.secret(uri:"env://SSH_KEY").plaintext`)
	if strings.Index(tr, "gotestsum") > strings.Index(tr, ".dockerBuild") {
		t.Errorf("the image was built before the tests ran:\n%s", tr)
	}
	keyLine := strings.Split(strings.TrimSpace(string(hosts[0].ClientKey)), "\n")[1]
	mustNotContain(t, eng.All()+out, keyLine)

	// v2's integration check fails: the deploy fails and v1 serves again.
	version = "v2"
	out, err = deploy(strings.Repeat("2", 40))
	if err == nil {
		t.Fatalf("a deploy whose post-deploy hook failed succeeded:\n%s", out)
	}
	for _, want := range []string{`post-deploy hooks: post-deploy hook "./integration.sh v2": exit code 1`, "ROLLED BACK"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if got := testbench.Get(health); got != "200 ok v1" {
		t.Fatalf("after the failed v2 deploy the service answers %q, want v1 back", got)
	}
}
