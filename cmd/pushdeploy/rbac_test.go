package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRBACCommand: pushdeploy rbac prints the environment's Role and RoleBinding, in its
// namespace, its Deployments by name, talking to no server; a non-Kubernetes environment is
// refused by name.
func TestRBACCommand(t *testing.T) {
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: not-a-secret}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "pushdeploy.yaml")
	if err := os.WriteFile(file, []byte(`app: shop
image: {repository: registry.test/shop}
environments:
  prod:
    kubernetes:
      namespace: shop-prod
      deployments: [web, {name: worker, containers: [app]}]
  staging:
    ssh: {hosts: [web1], user: deploy, path: /srv/shop}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "rbac", "-f", file, "--env", "prod", "--kubeconfig", "file:"+kc, "--service-account", "deployer")
	if err != nil {
		t.Fatalf("rbac: %v\n%s", err, out)
	}
	for _, want := range []string{"kind: Role\n", "kind: RoleBinding\n", "namespace: shop-prod", "name: pushdeploy-shop-prod\n",
		"- web\n  - worker\n", "pushdeploy-shop-prod-journal", "name: deployer"} {
		if !strings.Contains(out, want) {
			t.Errorf("rbac output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "not-a-secret") {
		t.Errorf("rbac output shows the token:\n%s", out)
	}
	// Without credentials: the same Role, from the file's namespace.
	if bare, err := run(t, "rbac", "-f", file, "--env", "prod", "--service-account", "deployer"); err != nil || bare != out {
		t.Errorf("rbac without a kubeconfig: %v\n%s\nwant the same as with one:\n%s", err, bare, out)
	}
	if out, err := run(t, "rbac", "-f", file, "--env", "staging"); err == nil || !strings.Contains(err.Error(), `environment "staging": an ssh target has no Role`) {
		t.Errorf("rbac of an ssh environment: %v\n%s", err, out)
	}
}
