package e2e

import (
	"bytes"
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
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

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
	applyShippedRole(t, c, ns)
	replicas, deadline := int32(2), int32(60)
	labels := map[string]string{"app": "web"}
	_, err := c.Client.AppsV1().Deployments(ns).Create(t.Context(), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas, ProgressDeadlineSeconds: &deadline,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.test/web:initial"}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating deployment web: %v", err)
	}

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
	mustContain(t, "unlock", e.ok(t, app, nil, pd("unlock", "--env", "staging")...), "was not locked")
	assertNoSecret(t, string(kc))
}

// applyShippedRole creates deploy/kubernetes/rbac.yaml's objects in ns, verbatim.
func applyShippedRole(t *testing.T, c *k8sbench.Cluster, ns string) {
	t.Helper()
	b, err := os.ReadFile("../deploy/kubernetes/rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range bytes.Split(b, []byte("\n---\n")) {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		switch meta.Kind {
		case "ServiceAccount":
			var sa corev1.ServiceAccount
			if err = yaml.Unmarshal(doc, &sa); err == nil {
				_, err = c.Client.CoreV1().ServiceAccounts(ns).Create(t.Context(), &sa, metav1.CreateOptions{})
			}
		case "Role":
			var r rbacv1.Role
			if err = yaml.Unmarshal(doc, &r); err == nil {
				_, err = c.Client.RbacV1().Roles(ns).Create(t.Context(), &r, metav1.CreateOptions{})
			}
		case "RoleBinding":
			var rb rbacv1.RoleBinding
			if err = yaml.Unmarshal(doc, &rb); err == nil {
				_, err = c.Client.RbacV1().RoleBindings(ns).Create(t.Context(), &rb, metav1.CreateOptions{})
			}
		case "":
			continue
		default:
			t.Fatalf("rbac.yaml: unexpected kind %q", meta.Kind)
		}
		if err != nil {
			t.Fatalf("applying rbac.yaml's %s: %v", meta.Kind, err)
		}
	}
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
