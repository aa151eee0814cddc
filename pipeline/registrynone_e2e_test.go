package pipeline_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/assemble"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/targets/docker"
)

// TestDockerWithoutRegistry: docker.registry: none deploys an image tarball straight to the
// hosts over SSH (no registry runs in this test), named by its image ID; a registry
// reference is refused before anything changes; production promotes only the image ID live
// in staging; a docker environment of a file with no image settings, given a tarball, does
// the same without the key.
func TestDockerWithoutRegistry(t *testing.T) {
	d := testbench.SharedDockerd(t)
	hosts := testbench.SSHHosts(t, 2)
	ports := []int{testbench.FreePort(t), testbench.FreePort(t), testbench.FreePort(t)}
	secrets := pipeline.Secrets{SSHKey: hosts[0].ClientKey, KnownHosts: testbench.KnownHostsOf(hosts)}
	env := func(name, host, user, extra string, port int) string {
		return fmt.Sprintf("  %s:\n%s    docker:\n      hosts: [%q]\n      user: %s\n      network: host\n%s      env: {HELLO_ADDR: \"127.0.0.1:%d\"}\n    health:\n      stable: 10ms\n",
			name, map[bool]string{true: "    from: staging\n", false: ""}[name == "production"], host, user, extra, port)
	}
	src := "app: noreg\nenvironments:\n" +
		env("staging", hosts[0].Addr, hosts[0].User, "      registry: none\n", ports[0]) +
		env("production", hosts[1].Addr, hosts[1].User, "      registry: none\n", ports[1]) +
		env("dev", hosts[1].Addr, hosts[1].User, "      container: noreg-dev\n", ports[2])
	f, err := config.Parse("pushdeploy.yaml", []byte(src))
	if err != nil {
		t.Fatalf("the test's environments file: %v\n%s", err, src)
	}
	t.Cleanup(func() { removeContainers(t, d, "noreg") })
	maker := assemble.Maker(assemble.Extra{Docker: []docker.Option{docker.WithSocket(d.Socket), docker.WithStateDir(hosts[0].Dir)}})
	tarball := func(version string) string {
		p := filepath.Join(t.TempDir(), version+".tar")
		testbench.WriteHelloTarball(t, p, testbench.HelloImage{Version: version, CheckEnvAddr: true, HealthCheck: true})
		return p
	}
	deploy := func(env, approvedBy string, art *pipeline.Artifact) (*pipeline.Record, error) {
		t.Helper()
		var log bytes.Buffer
		rec, err := pipeline.Deploy(context.Background(), pipeline.Request{
			File: f, Env: env, ApprovedBy: approvedBy, Deployer: "ci", Secrets: secrets, Targets: maker, Artifact: art, Log: &log,
		})
		t.Logf("deploy %s:\n%s", env, log.String())
		return rec, err
	}
	v1 := tarball("v1")
	id1, err := pipeline.ImageID(v1)
	if err != nil {
		t.Fatal(err)
	}

	rec, err := deploy("staging", "", &pipeline.Artifact{ImagePath: v1})
	if err != nil {
		t.Fatalf("staging deploy: %v", err)
	}
	if rec.Image != id1 || rec.Digest != id1 {
		t.Errorf("staging record: image %q digest %q, want the image ID %s", rec.Image, rec.Digest, id1)
	}
	if got := testbench.Get(fmt.Sprintf("http://127.0.0.1:%d/health", ports[0])); got != "200 ok v1" {
		t.Errorf("staging serves %q", got)
	}

	// plan names it by its image ID too: live already, nothing to do; another is a change.
	x := &pipeline.Environments{File: f, Secrets: secrets, Targets: maker}
	if changes, err := x.Plan(context.Background(), "staging", pipeline.Artifact{ImagePath: v1}); err != nil || len(changes) != 1 || !changes[0].Noop {
		t.Errorf("plan of the live tarball: %+v, %v; want no change", changes, err)
	}
	if changes, err := x.Plan(context.Background(), "staging", pipeline.Artifact{ImagePath: tarball("v3")}); err != nil || len(changes) != 1 || changes[0].Noop {
		t.Errorf("plan of another tarball: %+v, %v; want a change", changes, err)
	}

	// A registry reference: refused at resolve, nothing changed.
	rec, err = deploy("staging", "", &pipeline.Artifact{Image: "127.0.0.1:1/noreg@sha256:" + strings.Repeat("0", 64)})
	if err == nil || !strings.HasPrefix(err.Error(), "resolve: ") || !strings.Contains(err.Error(), "--image-tar") {
		t.Errorf("deploy of a registry reference = %v; want it refused at resolve, naming --image-tar", err)
	}

	// Production takes only what staging runs.
	v2 := tarball("v2")
	if _, err := deploy("production", "alice", &pipeline.Artifact{ImagePath: v2}); err == nil || !strings.Contains(err.Error(), "deploys only what is live in \"staging\"") {
		t.Errorf("production deploy of an image staging does not run = %v; want it refused", err)
	}
	rec, err = deploy("production", "alice", &pipeline.Artifact{ImagePath: v1})
	if err != nil {
		t.Fatalf("production deploy: %v", err)
	}
	if rec.Image != id1 {
		t.Errorf("production deployed %q, want %s", rec.Image, id1)
	}
	if got := testbench.Get(fmt.Sprintf("http://127.0.0.1:%d/health", ports[1])); got != "200 ok v1" {
		t.Errorf("production serves %q", got)
	}

	// No image settings in the file, a tarball given: over SSH as well.
	rec, err = deploy("dev", "", &pipeline.Artifact{ImagePath: v2})
	if err != nil {
		t.Fatalf("dev deploy: %v", err)
	}
	if id2, _ := pipeline.ImageID(v2); rec.Image != id2 {
		t.Errorf("dev deployed %q, want %s", rec.Image, id2)
	}
	if got := testbench.Get(fmt.Sprintf("http://127.0.0.1:%d/health", ports[2])); got != "200 ok v2" {
		t.Errorf("dev serves %q", got)
	}
}
