package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	k8sbench "github.com/pushdeploy/pushdeploy/internal/testbench/k8s"
)

// TestMain stops the shared Docker Engine and control plane the tests started.
func TestMain(m *testing.M) {
	code := testbench.MainWithDockerd(m)
	if err := k8sbench.StopShared(); err != nil {
		fmt.Fprintf(os.Stderr, "stopping the shared kubernetes control plane: %v\n", err)
		code = max(code, 1)
	}
	os.Exit(code)
}

// TestPublishPromoteInspect publishes the built image to a registry with auth, twice (the
// same source is the same image: one digest), inspects it and promotes it to another
// repository, as the README's commands do.
func TestPublishPromoteInspect(t *testing.T) {
	e := needEngine(t)
	reg := testbench.DistributionRegistry(t, testbench.RegistryListenHost(e.hostAddr))
	hello := filepath.Join(e.module, "examples", "hello")
	env := []string{"REGISTRY_PASSWORD=" + reg.Password}
	base := []string{"call", "--source", ".", "--revision", "0123456789abcdef0123456789abcdef01234567", "--branch", "main",
		"--registry-password", "env:REGISTRY_PASSWORD"}
	ref := strings.TrimSpace(e.ok(t, hello, env, append(base, "publish", "--repository", reg.Repo("e2e/hello"), "--username", reg.User)...))
	if !strings.HasPrefix(ref, reg.Repo("e2e/hello")+"@sha256:") {
		t.Fatalf("publish returned %q; want %s@sha256:...", ref, reg.Repo("e2e/hello"))
	}
	again := strings.TrimSpace(e.ok(t, hello, env, append(base, "publish", "--repository", reg.Repo("e2e/hello"), "--username", reg.User, "--latest")...))
	if again != ref {
		t.Errorf("publishing the same source twice gave %s and %s: the build is not reproducible", ref, again)
	}
	info := e.ok(t, hello, env, append(base, "inspect", "--ref", reg.Repo("e2e/hello")+":main", "--username", reg.User)...)
	mustContain(t, "inspect", info, strings.TrimPrefix(ref, reg.Repo("e2e/hello")+"@"), "0123456789abcdef0123456789abcdef01234567")
	promoted := strings.TrimSpace(e.ok(t, hello, env, append(base, "promote", "--source", ref, "--repository", reg.Repo("e2e/prod"), "--username", reg.User, "--tags", "v1.0.0")...))
	if !strings.HasSuffix(promoted, strings.TrimPrefix(ref, reg.Repo("e2e/hello"))) {
		t.Errorf("promote returned %q; want the same digest as %s", promoted, ref)
	}
	// Without the password the registry refuses, and the error says where.
	msg := e.fails(t, hello, nil, "call", "--source", ".", "publish", "--repository", reg.Repo("e2e/hello"), "--username", reg.User)
	mustContain(t, "publish without a password", msg, "--registry-password")
	assertNoSecret(t, reg.Password)
}

// TestDockerDeploy deploys examples/hello to a Docker host over SSH through the module:
// built, published to a registry with auth, pulled by digest on the host and health-checked
// there; a release whose health fails is rolled back to the running one.
func TestDockerDeploy(t *testing.T) {
	e := needEngine(t)
	d := testbench.SharedDockerd(t)
	reg := testbench.DistributionRegistry(t, testbench.RegistryListenHost(e.hostAddr))
	hosts := testbench.SSHHosts(t, 1, testbench.SSHListenHost(e.hostAddr))
	app := copyTree(t, filepath.Join(e.module, "examples", "hello"))
	if err := os.WriteFile(filepath.Join(app, "known_hosts"), hosts[0].KnownHosts, 0o644); err != nil {
		t.Fatal(err)
	}
	port := testbench.FreePort(t)
	file := fmt.Sprintf(`app: hello
build:
  kind: go
image:
  registry: %s
  repository: e2e/hello-docker
  username: %s
  password: env:REGISTRY_PASSWORD
environments:
  staging:
    docker:
      hosts: [%q]
      user: %s
      key: env:SSH_KEY
      known_hosts: file:known_hosts
      socket: %s
      network: host
      env:
        HELLO_ADDR: "%s:%d"
    health:
      http:
        url: "http://{{.Address}}:%d/health"
        body: "{{.Version}}"
      interval: 200ms
      retries: 10
      stable: 1s
`, reg.Host, reg.User, hosts[0].Addr, hosts[0].User, d.Socket, e.hostAddr, port, port)
	if err := os.WriteFile(filepath.Join(app, "pushdeploy.yaml"), []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"SSH_KEY=" + string(hosts[0].ClientKey), "REGISTRY_PASSWORD=" + reg.Password}
	pd := func(revision string, args ...string) []string {
		return append([]string{"call", "--source", ".", "--revision", revision, "--branch", "main",
			"--ssh-key", "env:SSH_KEY", "--registry-password", "env:REGISTRY_PASSWORD"}, args...)
	}
	out := e.ok(t, app, env, pd("d1", "deploy", "--env", "staging", "--format", "json")...)
	r1 := parseRecord(t, out)
	if r1.Outcome != "deployed" {
		t.Fatalf("docker deploy: %+v", r1)
	}
	if got := serving(t, e.hostAddr, port); !strings.Contains(got, "d1") {
		t.Errorf("the host serves %q after deploying d1", got)
	}
	if ids := running(t, d, "hello"); len(ids) != 1 {
		t.Errorf("%d containers of hello run; want 1", len(ids))
	}
	status := e.ok(t, app, env, pd("d1", "status", "--env", "staging")...)
	mustContain(t, "docker status", status, r1.Release)

	// A release that fails its health check (HELLO_FAIL_HEALTH makes /health answer 503)
	// goes, and the running one stays.
	msg := e.fails(t, app, env, pd("d2", "with-environment", "--env-var", "HELLO_FAIL_HEALTH=1", "--health-retries", "3",
		"deploy", "--env", "staging")...)
	mustContain(t, "the failed docker deploy", msg, "ROLLED BACK")
	if got := serving(t, e.hostAddr, port); !strings.Contains(got, "d1") {
		t.Errorf("after the failed deploy the host serves %q; want d1", got)
	}
	hist := e.ok(t, app, env, pd("d2", "history", "--env", "staging", "--format", "json")...)
	var h struct {
		Records []record `json:"records"`
	}
	if err := json.Unmarshal([]byte(hist), &h); err != nil || len(h.Records) < 2 {
		t.Errorf("docker history: %v: %s", err, hist)
	}
	assertNoSecret(t, reg.Password)
	assertNoSecret(t, string(hosts[0].ClientKey))
}

// serving is what the app on the host answers on /health ("" nothing).
func serving(t *testing.T, host string, port int) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://%s:%d/health", host, port))
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 512)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	return b.String()
}

// running lists the running containers whose name starts with prefix.
func running(t *testing.T, d *testbench.Dockerd, prefix string) []string {
	t.Helper()
	c, err := client.NewClientWithOpts(client.WithHost(d.Host()), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	list, err := c.ContainerList(context.Background(), container.ListOptions{Filters: filters.NewArgs(filters.Arg("status", "running"))})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, ct := range list {
		for _, n := range ct.Names {
			if strings.HasPrefix(strings.TrimPrefix(n, "/"), prefix) {
				ids = append(ids, ct.ID)
			}
		}
	}
	return ids
}
