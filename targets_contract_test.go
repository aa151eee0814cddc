package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pushdeploy/pushdeploy/internal/contract"
	"github.com/pushdeploy/pushdeploy/internal/testbench"
	k8sbench "github.com/pushdeploy/pushdeploy/internal/testbench/k8s"
)

// TestModuleDeploysToKubernetes: the module's deploy, status, history and rollback reach
// a real control plane with the kubeconfig passed as a secret (read inside the function,
// never in a query), and roll a Deployment to the image digest given.
func TestModuleDeploysToKubernetes(t *testing.T) {
	c := k8sbench.Shared(t)
	ns := c.Namespace(t)
	c.Deployment(t, ns, "web", "registry.test/web:initial", 2, 30)
	kubeconfig := string(c.Kubeconfig)
	eng := connect(t, contract.Secret("file:///kubeconfig", kubeconfig))
	m := module()
	m.Kubeconfig = dag.Secret("file:///kubeconfig")
	cfg := dag.Directory().WithNewFile("pushdeploy.yaml", fmt.Sprintf(`app: web
environments:
  production:
    kubernetes:
      namespace: %s
      deployments: [web]
      rollout_timeout: 60s
`, ns)).File("pushdeploy.yaml")
	ctx := context.Background()
	img := func(n int) string { return "registry.test/web@sha256:" + strings.Repeat(fmt.Sprint(n), 64) }

	for _, n := range []int{1, 2} {
		out, err := m.Deploy(ctx, "production", cfg, "", img(n), nil, false, false, "ci", "", "text")
		if err != nil {
			t.Fatalf("deploy %d through the module: %v", n, err)
		}
		if !strings.Contains(out, "deployment/web: deployed") {
			t.Errorf("deploy output:\n%s", out)
		}
	}
	d, err := c.Client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil || d.Spec.Template.Spec.Containers[0].Image != img(2) || d.Status.UpdatedReplicas != 2 {
		t.Fatalf("deployment after two deploys: image %q updated %d, %v", d.Spec.Template.Spec.Containers[0].Image, d.Status.UpdatedReplicas, err)
	}
	status, err := m.Status(ctx, cfg, "", false, "json")
	if err != nil || !strings.Contains(status, img(2)) {
		t.Errorf("status: %v\n%s", err, status)
	}
	t.Logf("status before rollback:\n%s", status)
	if out, err := m.Rollback(ctx, "production", cfg, "", "", false, "ci", "text"); err != nil {
		t.Fatalf("rollback through the module: %v\n%s", err, out)
	}
	d, _ = c.Client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if d.Spec.Template.Spec.Containers[0].Image != img(1) {
		t.Errorf("after the rollback the deployment runs %q, want %q", d.Spec.Template.Spec.Containers[0].Image, img(1))
	}
	hist, err := m.History(ctx, "production", cfg, 10, "json")
	if err != nil || strings.Count(hist, `"action": "deploy"`) != 2 || strings.Count(hist, `"action": "rollback"`) != 1 {
		t.Errorf("history: %v\n%s", err, hist)
	}
	// The revisions the Deployment keeps, with kubectl's change-cause.
	text, err := m.History(ctx, "production", cfg, 10, "text")
	if err != nil || !strings.Contains(text, "kept for rollback") || !strings.Contains(text, "revision 4: pushdeploy") || !strings.Contains(text, "revision 1") {
		t.Errorf("history text: %v\n%s", err, text)
	}
	// The kubeconfig's key never travels in a query.
	for _, line := range strings.Split(kubeconfig, "\n") {
		if strings.Contains(line, "client-key-data") {
			mustNotContain(t, eng.All(), strings.TrimSpace(strings.SplitN(line, ":", 2)[1]))
		}
	}
	mustContain(t, eng.Transcript(), `.secret(uri:"file:///kubeconfig").plaintext`)
}

// TestModuleDeploysFilesOverSSH: for an ssh environment the module builds the artifacts,
// exports them into its own filesystem and deploys them as a release over a real sshd.
func TestModuleDeploysFilesOverSSH(t *testing.T) {
	hosts := testbench.SSHHosts(t, 1)
	h := hosts[0]
	eng := connect(t,
		contract.Entries("go.mod", "main.go"),
		contract.Secret("env://SSH_KEY", string(h.ClientKey)),
		contract.OnExport(func(chain, path string) error {
			if !strings.HasSuffix(chain, `.directory(path:"/out")`) {
				return fmt.Errorf("unexpected export of %s", chain)
			}
			return os.WriteFile(filepath.Join(path, "app"), []byte("#!/bin/sh\necho v1\n"), 0o755)
		}))
	m := New(dag.Directory(), testRevision, "", "", "main", "", "", "", "", "", "2026-11-27T08:00:00Z",
		dag.Secret("env://SSH_KEY"), dag.Directory().WithNewFile("known_hosts", string(h.KnownHosts)).File("known_hosts"), nil, nil, nil, false)
	cfg := dag.Directory().WithNewFile("pushdeploy.yaml", fmt.Sprintf(`app: app
environments:
  staging:
    ssh:
      hosts: ["%s"]
      user: %s
      path: %s/app
      restart: "touch restarted"
    health:
      command: "test \"$(./app)\" = v1"
`, h.Addr, h.User, h.Dir)).File("pushdeploy.yaml")
	out, err := m.Deploy(context.Background(), "staging", cfg, "", "", nil, false, false, "ci", "", "text")
	if err != nil {
		t.Fatalf("deploy through the module: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(h.Dir, "app", "current", "app"))
	if err != nil || string(got) != "#!/bin/sh\necho v1\n" {
		t.Fatalf("current/app on the host: %q, %v\n%s", got, err, out)
	}
	mustContain(t, eng.Transcript(),
		`withExec(args:["go","build","-trimpath","-o","/out/app","-ldflags","-s -w -X main.version=`+testRevision+`","."]).directory(path:"/out").export(path:"`)
}
