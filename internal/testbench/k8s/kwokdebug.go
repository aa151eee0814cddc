package k8s

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"
)

// kwokCRDs are kwok's ClusterLogs and ClusterExec CRDs: with them, kwok's kubelet server
// (which the API server reaches at the node's InternalIP and daemon port) serves a pod's
// logs from a file and runs exec commands on this machine, so that `kubectl logs` and
// `kubectl exec` (and client-go's) are real requests through the API server.
//
//go:embed kwok-crds.yaml
var kwokCRDs []byte

var (
	crdGVR          = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	clusterLogsGVR  = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "clusterlogs"}
	clusterExecsGVR = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "clusterexecs"}
)

func (c *Cluster) dynamic() (dynamic.Interface, error) {
	d, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	return d, nil
}

// installKwokCRDs creates kwok's ClusterLogs and ClusterExec CRDs and waits until they are
// established (kwok watches them from its start).
func (c *Cluster) installKwokCRDs(ctx context.Context) error {
	d, err := c.dynamic()
	if err != nil {
		return err
	}
	var names []string
	for _, doc := range bytes.Split(kwokCRDs, []byte("\n---\n")) {
		var obj map[string]any
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			return fmt.Errorf("kwok CRDs: %w", err)
		}
		if len(obj) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		if _, err := d.Resource(crdGVR).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating CRD %s: %w", u.GetName(), err)
		}
		names = append(names, u.GetName())
	}
	for _, n := range names {
		if err := poll(ctx, nil, "CRD "+n+" established", func() (bool, error) {
			u, err := d.Resource(crdGVR).Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return false, ignoreNotFound(err)
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, cd := range conds {
				m, _ := cd.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// PodLogs makes every pod of namespace ns log lines (kwok serves them from a file in CRI
// format) and returns the file: append with AppendPodLog. The object goes when the test ends.
func (c *Cluster) PodLogs(t testing.TB, ns string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "pods.log")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c.clusterObject(t, clusterLogsGVR, "ClusterLogs", ns, map[string]any{
		"selector": map[string]any{"matchNamespaces": []any{ns}},
		"logs":     []any{map[string]any{"logsFile": file}},
	})
	return file
}

// AppendPodLog appends lines to a PodLogs file, as a container runtime writes them
// (CRI format: time, stream, "F", the line).
func AppendPodLog(t testing.TB, file, stream string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "%s %s F %s\n", time.Now().UTC().Format(time.RFC3339Nano), stream, l)
	}
	if _, err := f.WriteString(b.String()); err != nil {
		t.Fatal(err)
	}
}

// PodExec makes exec into every pod of namespace ns run the command on this machine, in
// dir, with env set (kwok's local exec). The object goes when the test ends.
func (c *Cluster) PodExec(t testing.TB, ns, dir string, env map[string]string) {
	t.Helper()
	var envs []any
	for k, v := range env {
		envs = append(envs, map[string]any{"name": k, "value": v})
	}
	c.clusterObject(t, clusterExecsGVR, "ClusterExec", ns, map[string]any{
		"selector": map[string]any{"matchNamespaces": []any{ns}},
		"execs":    []any{map[string]any{"local": map[string]any{"workDir": dir, "envs": envs}}},
	})
}

func (c *Cluster) clusterObject(t testing.TB, gvr schema.GroupVersionResource, kind, ns string, spec map[string]any) {
	t.Helper()
	d, err := c.dynamic()
	if err != nil {
		t.Fatal(err)
	}
	name := strings.ToLower(kind) + "-" + ns
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": kind,
		"metadata": map[string]any{"name": name}, "spec": spec,
	}}
	if _, err := d.Resource(gvr).Create(t.Context(), u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating %s %s: %v", kind, name, err)
	}
	t.Cleanup(func() {
		err := d.Resource(gvr).Delete(context.Background(), name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting %s %s: %v", kind, name, err)
		}
	})
}
