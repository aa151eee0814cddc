package k8s

import (
	"os"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
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
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	who, err := cs.AuthenticationV1().SelfSubjectReviews().Create(t.Context(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := "system:serviceaccount:" + ns + ":default"; who.Status.UserInfo.Username != want {
		t.Errorf("token authenticates as %q, want %q", who.Status.UserInfo.Username, want)
	}
	// The account has no role: RBAC is on.
	if _, err := cs.CoreV1().ConfigMaps(ns).List(t.Context(), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("service account without a role listed config maps: %v", err)
	}
}
