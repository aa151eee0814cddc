package k8s

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Deployment creates Deployment name in ns: replicas pods of one container, also called
// name, running image, with progressDeadlineSeconds deadline. It does not wait.
func (c *Cluster) Deployment(t testing.TB, ns, name, image string, replicas, deadline int32) *appsv1.Deployment {
	t.Helper()
	labels := map[string]string{"app": name}
	d, err := c.Client.AppsV1().Deployments(ns).Create(t.Context(), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas, ProgressDeadlineSeconds: &deadline,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: image}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating deployment %s/%s: %v", ns, name, err)
	}
	return d
}

// ApplyRBACFile creates the ServiceAccounts, Roles and RoleBindings of a YAML file (such
// as deploy/kubernetes/rbac.yaml) in ns, each Role edited by edit first when edit is not
// nil. Any other kind fails the test.
func (c *Cluster) ApplyRBACFile(t testing.TB, ns, path string, edit func(*rbacv1.Role)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range bytes.Split(b, []byte("\n---\n")) {
		if err := c.applyRBAC(t, ns, doc, edit); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
}

func (c *Cluster) applyRBAC(t testing.TB, ns string, doc []byte, edit func(*rbacv1.Role)) error {
	var meta metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		return err
	}
	var err error
	switch meta.Kind {
	case "":
		return nil
	case "ServiceAccount":
		var sa corev1.ServiceAccount
		if err = yaml.UnmarshalStrict(doc, &sa); err == nil {
			_, err = c.Client.CoreV1().ServiceAccounts(ns).Create(t.Context(), &sa, metav1.CreateOptions{})
		}
	case "Role":
		var r rbacv1.Role
		if err = yaml.UnmarshalStrict(doc, &r); err == nil {
			if edit != nil {
				edit(&r)
			}
			_, err = c.Client.RbacV1().Roles(ns).Create(t.Context(), &r, metav1.CreateOptions{})
		}
	case "RoleBinding":
		var rb rbacv1.RoleBinding
		if err = yaml.UnmarshalStrict(doc, &rb); err == nil {
			_, err = c.Client.RbacV1().RoleBindings(ns).Create(t.Context(), &rb, metav1.CreateOptions{})
		}
	default:
		return fmt.Errorf("unexpected kind %q", meta.Kind)
	}
	if err != nil {
		return fmt.Errorf("applying %s: %w", meta.Kind, err)
	}
	return nil
}
