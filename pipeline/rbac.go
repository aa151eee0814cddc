package pipeline

import (
	"context"
	"fmt"
)

// RoleMaker is a target that can say which least-privilege access it needs: the Kubernetes
// target's Role and RoleBinding.
type RoleMaker interface {
	// RoleYAML is the Role and the RoleBinding granting it to serviceAccount ("" the
	// target's default), as a YAML stream for kubectl apply -f -. With operator the Role
	// also grants what logs and exec need, under a name of its own.
	RoleYAML(serviceAccount string, operator bool) ([]byte, error)
}

// RBAC returns the Role and RoleBinding, as YAML, that exactly the named environment needs:
// its namespace, its Deployments by name, its Lease and journal ConfigMap, only the verbs
// the target's calls use. serviceAccount is the RoleBinding's subject ("" the target's
// default, "ci-deployer"). It talks to no server. Only Kubernetes environments have one.
func (x *Environments) RBAC(ctx context.Context, name, serviceAccount string, operator bool) ([]byte, error) {
	if x.File != nil {
		if env, err := x.File.Env(name); err == nil && env.Kind() != "kubernetes" {
			return nil, fmt.Errorf("environment %q: %s %s target has no Role to generate (only kubernetes environments do)", name, article(env.Kind()), env.Kind())
		}
	}
	if len(x.Secrets.Kubeconfig) == 0 && x.File != nil {
		// The Role needs no credentials: without a kubeconfig the target is made with one
		// that is never dialled, and the namespace must come from the file.
		env, err := x.File.Env(name)
		if err != nil {
			return nil, err
		}
		if env.Kubernetes == nil || env.Kubernetes.Namespace == "" {
			return nil, fmt.Errorf("environment %q: the Role is namespaced: set kubernetes.namespace in the file, or pass the kubeconfig whose context names it", name)
		}
		xx := *x
		xx.Secrets.Kubeconfig = undialledKubeconfig(env.Kubernetes.Namespace)
		x = &xx
	}
	_, e, err := x.target(ctx, name)
	if err != nil {
		return nil, err
	}
	defer e.t.Close()
	rm, ok := e.t.(RoleMaker)
	if !ok {
		return nil, fmt.Errorf("environment %q: %s %s target has no Role to generate (only kubernetes environments do)", name, article(e.t.Kind()), e.t.Kind())
	}
	b, err := rm.RoleYAML(serviceAccount, operator)
	if err != nil {
		return nil, fmt.Errorf("environment %q: %w", name, err)
	}
	return b, nil
}

// article is "an" before a kind that starts with a vowel sound ("an ssh"), else "a".
func article(kind string) string {
	if kind == "ssh" {
		return "an"
	}
	return "a"
}

// undialledKubeconfig is a kubeconfig for namespace ns whose server is never contacted:
// what a target needs to say its Role.
func undialledKubeconfig(ns string) []byte {
	return []byte(`apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://kubernetes.invalid"}}]
users: [{name: none, user: {}}]
contexts: [{name: none, context: {cluster: none, user: none, namespace: "` + ns + `"}}]
current-context: none
`)
}
