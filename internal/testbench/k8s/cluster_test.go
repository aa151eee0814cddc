package k8s

import (
	"os"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestCluster checks that the shared control plane serves, isolates tests by namespace,
// and mints service-account kubeconfigs that authenticate as that account.
func TestCluster(t *testing.T) {
	c := Shared(t)
	ns := c.Namespace(t)
	if _, err := c.Client.CoreV1().ConfigMaps(ns).List(t.Context(), metav1.ListOptions{}); err != nil {
		t.Fatalf("listing config maps in %s: %v", ns, err)
	}
	kc, err := c.TokenKubeconfig(t.Context(), ns, "default")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(kc), "token:") {
		t.Fatalf("token kubeconfig has no token")
	}
}
