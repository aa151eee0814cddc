package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/pushdeploy/pushdeploy/internal/contract"
	"github.com/pushdeploy/pushdeploy/internal/testbench"
	k8sbench "github.com/pushdeploy/pushdeploy/internal/testbench/k8s"
	"github.com/pushdeploy/pushdeploy/pipeline/publish"
)

// TestPublishExportsTarballAndPushesWithSecretByID drives the module's publish against a
// real registry with htpasswd auth: the function exports the container as a tarball into
// its own filesystem (the recording engine writes a real image there, as the engine would),
// reads the password secret inside the function, and pushes with go-containerregistry.
func TestPublishExportsTarballAndPushesWithSecretByID(t *testing.T) {
	reg := testbench.DistributionRegistry(t)
	img, err := random.Image(256, 2)
	if err != nil {
		t.Fatal(err)
	}
	eng := connect(t,
		contract.Secret("env://REGISTRY_PASSWORD", reg.Password),
		contract.OnExport(func(chain, path string) error {
			if !strings.HasSuffix(chain, ".asTarball") {
				t.Errorf("exported %s, want the container's tarball", chain)
			}
			ref, _ := name.ParseReference("pushdeploy.test/image:export")
			return tarball.WriteToFile(path, ref, img)
		}))
	m := module()
	m.RegistryPassword = dag.Secret("env://REGISTRY_PASSWORD")
	ctr := dag.Container().From("example.com/app:v1")
	got, err := m.Publish(context.Background(), reg.Repo("app"), ctr, reg.User, false, []string{"extra"}, false)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if got != reg.Repo("app")+"@"+want.String() {
		t.Errorf("publish returned %q, want %s@%s", got, reg.Repo("app"), want)
	}
	// The tags the source asks for are in the registry and point at the digest.
	for _, tag := range []string{testRevision, testRevision[:7], "main", "extra"} {
		info, err := publish.Inspect(context.Background(), reg.Repo("app")+":"+tag, publish.WithBasicAuth(reg.User, reg.Password))
		if err != nil || info.Digest != want.String() {
			t.Errorf("tag %q: %+v, %v; want digest %s", tag, info, err, want)
		}
	}
	all := eng.All()
	mustContain(t, eng.Transcript(),
		`.secret(uri:"env://REGISTRY_PASSWORD").plaintext`,
		`.container.from(address:"example.com/app:v1").asTarball.export(path:"`)
	mustNotContain(t, all, reg.Password)
}

func TestPublishWithoutPasswordIsAClearError(t *testing.T) {
	connect(t)
	m := module()
	_, err := m.Publish(context.Background(), "127.0.0.1:1/app", dag.Container(), "ci", false, nil, false)
	if err == nil || !strings.Contains(err.Error(), `registry user "ci" given without a password`) {
		t.Fatalf("got %v", err)
	}
}

const protectedFile = `app: hello
environments:
  production:
    protected: true
    docker:
      hosts: ["127.0.0.1:1"]
      user: deploy
`

// TestDeployRefusedWithoutApprovalChangesNothing: a protected environment stops at the
// gates before anything is built or touched, and says how to approve.
func TestDeployRefusedWithoutApprovalChangesNothing(t *testing.T) {
	eng := connect(t, contract.Secret("env://SSH_KEY", "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key-but-secret\n-----END OPENSSH PRIVATE KEY-----"))
	m := module()
	m.SSHKey = dag.Secret("env://SSH_KEY")
	cfg := dag.Directory().WithNewFile("pushdeploy.yaml", protectedFile).File("pushdeploy.yaml")
	_, err := m.Deploy(context.Background(), "production", cfg, "", "", nil, false, false, "", "", "text")
	if err == nil {
		t.Fatal("an unapproved deploy to a protected environment went ahead")
	}
	for _, want := range []string{"gates:", `environment "production" is protected`, "--approved-by", "nothing was changed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	tr := eng.Transcript()
	mustContain(t, tr, `.contents`, `.secret(uri:"env://SSH_KEY").plaintext`)
	// Nothing was built: no container was asked for.
	mustNotContain(t, tr, ".container.from")
	mustNotContain(t, eng.All()+err.Error(), "not-a-real-key-but-secret")
	contract.Golden(t, "deploy-refused", tr)
}

// TestMain stops the servers the package's tests share: a Docker Engine and a Kubernetes
// control plane, each started by the first test that needs it.
func TestMain(m *testing.M) {
	code := m.Run()
	for _, stop := range []func() error{testbench.StopSharedDockerd, k8sbench.StopShared} {
		if err := stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// TestPromoteAndInspectThroughTheModule copies an image by digest between two registries
// with htpasswd auth (one login for both, the password a secret read inside the function)
// and reads it back with inspect.
func TestPromoteAndInspectThroughTheModule(t *testing.T) {
	const user, password = "ci", "promote-pass-7d1e"
	staging := testbench.DistributionRegistry(t, testbench.RegistryCredentials(user, password))
	prod := testbench.DistributionRegistry(t, testbench.RegistryCredentials(user, password))
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	src, err := publish.Publish(context.Background(), img, staging.Repo("app"), []string{"v1"}, publish.WithBasicAuth(user, password))
	if err != nil {
		t.Fatal(err)
	}
	eng := connect(t, contract.Secret("env://REGISTRY_PASSWORD", password))
	m := module()
	m.RegistryPassword = dag.Secret("env://REGISTRY_PASSWORD")
	got, err := m.Promote(context.Background(), src, prod.Repo("app"), user, []string{"v1", "prod"})
	if err != nil {
		t.Fatalf("promote through the module: %v", err)
	}
	d, _ := img.Digest()
	if got != prod.Repo("app")+"@"+d.String() {
		t.Errorf("promote returned %q, want the same digest in production", got)
	}
	out, err := m.Inspect(context.Background(), prod.Repo("app")+":prod", user)
	if err != nil || !strings.Contains(out, d.String()) {
		t.Errorf("inspect: %v\n%s", err, out)
	}
	// A tag, not a digest, is refused: promotion copies exactly what was tested.
	if _, err := m.Promote(context.Background(), staging.Repo("app")+":v1", prod.Repo("app"), user, nil); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Errorf("promoting a tag: %v", err)
	}
	mustNotContain(t, eng.All(), password)
	mustContain(t, eng.Transcript(), `.secret(uri:"env://REGISTRY_PASSWORD").plaintext`)
}
