package pipeline_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/assemble"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/targets/docker"
)

// Case 4: an empty artifact directory (directories, no file) is refused at resolve: every
// host keeps what it ran, no lock is taken, nobody is notified.
func TestEmptyArtifactDirectoryRefusedAtResolve(t *testing.T) {
	f := newFleet(t, 2)
	hook := newReceiver(t)
	file := f.file(t, fmt.Sprintf("    notifications:\n      webhook: {url: %q}\n", hook.URL))
	x := f.envs(file)
	if _, err := f.deploy(t, file, "first", writeFiles(t, "v1"), nil); err != nil {
		t.Fatal(err)
	}
	hook.take()

	empty := t.TempDir()
	if err := os.MkdirAll(filepath.Join(empty, "assets", "css"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{empty, filepath.Join(t.TempDir(), "missing")} {
		rec, err := f.deploy(t, file, "second", &pipeline.Artifact{Dir: dir}, nil)
		if err == nil || !strings.HasPrefix(err.Error(), "resolve: ") || !strings.Contains(err.Error(), dir) {
			t.Errorf("deploying %s: %v; want it refused at resolve, naming the directory", dir, err)
		}
		if s := stageOf(rec, "lock"); s != "" {
			t.Errorf("the lock stage ran (%q) for a refused deploy", s)
		}
	}
	f.assertServes(t, "v1")
	if l := f.lockHolder(t, x); l != nil {
		t.Errorf("lock after refused deploys: %+v", l)
	}
	if bodies, _ := hook.take(); len(bodies) != 0 {
		t.Errorf("refused deploys notified: %q", bodies)
	}
}

// Case 7: a malformed or tag-less image reference is refused at resolve, before the lock
// and before any notification; a tag is resolved to its digest once, up front: the hosts
// run the digest, the record keeps tag and digest.
func TestImageReferenceCheckedAndTagResolvedAtResolve(t *testing.T) {
	d := testbench.SharedDockerd(t)
	hosts := testbench.SSHHosts(t, 1)
	reg := testbench.InProcessRegistry(t)
	port := testbench.FreePort(t)
	hook := newReceiver(t)
	src := fmt.Sprintf(`app: hello
environments:
  test:
    docker:
      hosts: ["%s"]
      user: %s
      network: host
      env:
        HELLO_ADDR: "127.0.0.1:%d"
    health:
      http: {url: "http://{{.Address}}:%d/health", body: "^ok "}
      interval: 100ms
      retries: 50
    notifications:
      webhook: {url: "%s"}
`, hosts[0].Addr, hosts[0].User, port, port, hook.URL)
	file, err := config.Parse("pushdeploy.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	secrets := pipeline.Secrets{SSHKey: hosts[0].ClientKey, KnownHosts: testbench.KnownHostsOf(hosts)}
	maker := assemble.Maker(assemble.Extra{Docker: []docker.Option{docker.WithSocket(d.Socket), docker.WithStateDir(hosts[0].Dir)}})
	t.Cleanup(func() { removeContainers(t, d, "hello") })
	ref := testbench.PushHelloRef(t, reg, "hello", testbench.HelloImage{Version: "v1", CheckEnvAddr: true, HealthCheck: true})
	deploy := func(image string) (*pipeline.Record, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		var log bytes.Buffer
		rec, err := pipeline.Deploy(ctx, pipeline.Request{File: file, Env: "test", Deployer: "tester", Secrets: secrets,
			Targets: maker, Artifact: &pipeline.Artifact{Image: image}, Log: &log, Source: pipeline.Source{Version: "v1"}})
		t.Logf("deploy %s:\n%s", image, log.String())
		return rec, err
	}
	x := &pipeline.Environments{File: file, Secrets: secrets, Targets: maker}

	for _, bad := range []string{reg.Repo("hello"), reg.Repo("hello") + ":", "Not A Ref!", reg.Repo("hello") + "@sha256:abc", reg.Repo("hello") + ":nosuchtag"} {
		rec, err := deploy(bad)
		if err == nil || !strings.HasPrefix(err.Error(), "resolve: ") || !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
			t.Errorf("deploying %q: %v; want it refused at resolve, naming the reference", bad, err)
		}
		if s := stageOf(rec, "lock"); s != "" {
			t.Errorf("deploying %q: the lock stage ran (%q)", bad, s)
		}
	}
	if bodies, _ := hook.take(); len(bodies) != 0 {
		t.Errorf("refused deploys notified: %q", bodies)
	}
	st := x.Status(context.Background(), "test")
	if st[0].Error != "" || st[0].Lock != nil || st[0].Hosts[0].Live != nil {
		t.Fatalf("after refused deploys: %+v; want nothing live and no lock", st[0])
	}

	tag := reg.Repo("hello") + ":v1"
	rec, err := deploy(tag)
	if err != nil {
		t.Fatalf("deploying the tag %s: %v", tag, err)
	}
	if rec.Outcome != pipeline.OutcomeDeployed || rec.Image != ref || rec.ImageTag != tag || rec.Digest != digest(ref) {
		t.Errorf("record: outcome %q image %q tag %q digest %q; want deployed, %s from %s", rec.Outcome, rec.Image, rec.ImageTag, rec.Digest, ref, tag)
	}
	if got := testbench.Get(fmt.Sprintf("http://127.0.0.1:%d/health", port)); got != "200 ok v1" {
		t.Errorf("the host serves %q", got)
	}
	st = x.Status(context.Background(), "test")
	if live := st[0].Hosts[0].Live; live == nil || live.Digest != digest(ref) {
		t.Errorf("the host runs %+v; want %s", live, digest(ref))
	}
	// plan resolves the tag too: the digest it names is live, nothing to do.
	changes, err := x.Plan(context.Background(), "test", pipeline.Artifact{Image: tag})
	if err != nil || len(changes) != 1 || !changes[0].Noop {
		t.Errorf("plan of the live tag: %+v, %v; want no change", changes, err)
	}
}
