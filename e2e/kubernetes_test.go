package e2e

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	k8sbench "github.com/pushdeploy/pushdeploy/internal/testbench/k8s"
)

// TestKubernetesDeploy deploys an image by digest to a Deployment on the bench's control
// plane through the module, under the shipped ci-deployer Role's token given as
// --kubeconfig file:PATH, then rolls it back, reads status and history, and unlocks.
func TestKubernetesDeploy(t *testing.T) {
	e := needEngine(t)
	c := k8sbench.Shared(t)
	ns := c.Namespace(t)
	c.ApplyRBACFile(t, ns, "../deploy/kubernetes/rbac.yaml", nil)
	c.Deployment(t, ns, "web", "registry.test/web:initial", 2, 60)

	// Two images in a registry the engine reaches, pushed by the test.
	reg := testbench.DistributionRegistry(t, testbench.RegistryNoAuth(), testbench.RegistryListenHost(e.hostAddr))
	refs := make([]string, 2)
	for i := range refs {
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		tag, err := name.NewTag(reg.Repo(fmt.Sprintf("e2e/web:v%d", i+1)), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(tag, img); err != nil {
			t.Fatalf("pushing %s: %v", tag, err)
		}
		dg, _ := img.Digest()
		refs[i] = reg.Repo("e2e/web") + "@" + dg.String()
	}

	app := t.TempDir()
	kc, err := c.TokenKubeconfig(t.Context(), ns, "ci-deployer")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "kubeconfig"), reachable(t, kc, e.hostAddr), 0o600); err != nil {
		t.Fatal(err)
	}
	file := fmt.Sprintf(`app: web
environments:
  staging:
    kubernetes:
      namespace: %s
      deployments: [web]
      rollout_timeout: 60s
`, ns)
	if err := os.WriteFile(filepath.Join(app, "pushdeploy.yaml"), []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	// --kubeconfig file:PATH reads the file where dagger runs, as a user's ~/.kube/config.
	pd := func(args ...string) []string {
		return append([]string{"call", "--source", ".", "--revision", "k1", "--kubeconfig", "file:" + filepath.Join(app, "kubeconfig")}, args...)
	}
	image := func() string {
		d, err := c.Client.AppsV1().Deployments(ns).Get(t.Context(), "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d.Spec.Template.Spec.Containers[0].Image
	}
	for i, ref := range refs {
		out := e.ok(t, app, nil, pd("deploy", "--env", "staging", "--image", ref, "--format", "json")...)
		if r := parseRecord(t, out); r.Outcome != "deployed" || image() != ref {
			t.Fatalf("deploy %d: %+v; the Deployment runs %s", i+1, r, image())
		}
	}
	status := e.ok(t, app, nil, pd("status", "--env", "staging")...)
	mustContain(t, "kubernetes status", status, strings.TrimPrefix(refs[1], reg.Repo("e2e/web")+"@sha256:")[:12])
	out := e.ok(t, app, nil, pd("rollback", "--env", "staging", "--format", "json")...)
	if r := parseRecord(t, out); r.Action != "rollback" || image() != refs[0] {
		t.Fatalf("rollback: %+v; the Deployment runs %s, want %s", r, image(), refs[0])
	}
	e.ok(t, app, nil, pd("history", "--env", "staging")...)
	role := e.ok(t, app, nil, "call", "--source", ".", "rbac", "--env", "staging")
	mustContain(t, "rbac", role, "kind: Role", "kind: RoleBinding", ns, "- web", "ci-deployer")
	if strings.Contains(role, "pods/exec") {
		t.Errorf("the deployer's Role grants exec:\n%s", role)
	}
	op := e.ok(t, app, nil, "call", "--source", ".", "rbac", "--env", "staging", "--operator", "--service-account", "oncall")
	mustContain(t, "rbac --operator", op, "pods/log", "pods/exec", "-staging-operator", "name: oncall")
	mustContain(t, "unlock", e.ok(t, app, nil, pd("unlock", "--env", "staging")...), "was not locked")
	assertNoSecret(t, string(kc))
}

// reachable rewrites a kubeconfig of the bench's API server (on 127.0.0.1) to go through a
// TCP relay on addr, the address the engine's containers reach, still verifying the
// server's certificate for its own name.
func reachable(t *testing.T, kubeconfig []byte, addr string) []byte {
	t.Helper()
	cfg, err := clientcmd.Load(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range cfg.Clusters {
		u, err := url.Parse(cl.Server)
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
		if err != nil {
			t.Fatalf("relay for the API server: %v", err)
		}
		t.Cleanup(func() { l.Close() })
		go relay(l, u.Host)
		cl.TLSServerName = u.Hostname()
		cl.Server = "https://" + l.Addr().String()
	}
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// relay copies every connection l accepts to and from target, until l is closed.
func relay(l net.Listener, target string) {
	for {
		in, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer in.Close()
			out, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer out.Close()
			go io.Copy(out, in)
			io.Copy(in, out)
		}()
	}
}
