package kubernetes_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	k8sbench "github.com/pushdeploy/pushdeploy/internal/testbench/k8s"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/kubernetes"
)

// TestCrashLoopFailsFast: a release whose pods crash-loop fails on the kubelet's report,
// not at the deadline (600 s progress deadline, 300 s rollout timeout): the error is the
// fail-fast one and names the Deployment, the pod, the container and the reason; the
// engine restores the previous release.
func TestCrashLoopFailsFast(t *testing.T) {
	t.Parallel()
	c := k8sbench.Shared(t)
	ns := c.Namespace(t)
	deployment(t, c, ns, "web", 2, 600)
	tg := target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: "web"}})
	good := release("20261201T100000Z", "registry.test/web")
	if _, err := rollout(t, tg, good); err != nil {
		t.Fatal(err)
	}
	bad := release("20261201T100100Z", "registry.test/web-crash")
	res, err := rollout(t, tg, bad)
	var rf *kubernetes.RolloutFailure
	if !errors.As(err, &rf) {
		t.Fatalf("crash-looping release: %v, want a *kubernetes.RolloutFailure", err)
	}
	if rf.Reason != "CrashLoopBackOff" || rf.Container != "web" || !strings.HasPrefix(rf.Pod, "web-") || rf.Restarts < kubernetes.DefaultCrashLoopRestarts {
		t.Errorf("failure %+v, want CrashLoopBackOff of container web in a web pod", rf)
	}
	for _, want := range []string{`deployment "web" failed before its deadline`, `pod "` + rf.Pod + `" container "web" CrashLoopBackOff`, "restarts"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "progress deadline") || strings.Contains(err.Error(), "did not roll out within") {
		t.Errorf("failed at the deadline, not fast: %v", err)
	}
	if res.Record.Outcome != pipeline.OutcomeRolledBack {
		t.Errorf("outcome %q, want %q", res.Record.Outcome, pipeline.OutcomeRolledBack)
	}
	st, err := tg.Hosts()[0].Status(t.Context())
	if err != nil || st.Live == nil || st.Live.ID != good.ID || st.Rollout != kubernetes.RolloutComplete {
		t.Errorf("status after the rollback: %+v, %v", st, err)
	}
}

// TestImagePullFailsFast: with a zero grace period, a pod in ImagePullBackOff fails the
// rollout at once; the container named is the one with the broken image, not the sidecar.
func TestImagePullFailsFast(t *testing.T) {
	t.Parallel()
	c := k8sbench.Shared(t)
	ns := c.Namespace(t)
	deployment(t, c, ns, "web", 1, 600)
	tg := target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: "web"}}, kubernetes.WithStartGrace(0))
	h := tg.Hosts()[0]
	r := release("20261201T101000Z", "registry.test/web-broken")
	if err := h.Prepare(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	err := h.Activate(t.Context(), r.ID)
	var rf *kubernetes.RolloutFailure
	if !errors.As(err, &rf) || rf.Reason != "ImagePullBackOff" || rf.Container != "web" || rf.Deployment != "web" {
		t.Fatalf("broken image: %v (%+v), want ImagePullBackOff of container web", err, rf)
	}
}

// TestRollbackAfterFailedDeploy: after a deploy that failed and was undone, rollback goes
// to the last good release before the live one, not to the failed release (which is
// marked so), and --to can still name the failed one.
func TestRollbackAfterFailedDeploy(t *testing.T) {
	t.Parallel()
	c := k8sbench.Shared(t)
	ns := c.Namespace(t)
	deployment(t, c, ns, "web", 1, 600)
	tg := target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: "web"}}, kubernetes.WithStartGrace(0))
	v3 := release("20261201T102000Z", "registry.test/web")
	v4 := release("20261201T102100Z", "registry.test/web")
	for _, r := range []targets.Release{v3, v4} {
		if _, err := rollout(t, tg, r); err != nil {
			t.Fatal(err)
		}
	}
	v5 := release("20261201T102200Z", "registry.test/web-broken")
	if _, err := rollout(t, tg, v5); err == nil {
		t.Fatal("broken release deployed")
	}
	st, err := tg.Hosts()[0].Status(t.Context())
	if err != nil || st.Live == nil || st.Live.ID != v4.ID {
		t.Fatalf("after the failed deploy: %+v, %v", st, err)
	}
	for _, k := range st.Kept {
		if (k.ID == v5.ID) != k.Failed {
			t.Errorf("kept %s: failed=%v", k.ID, k.Failed)
		}
		if strings.HasPrefix(k.ID, "rs-") != k.Foreign {
			t.Errorf("kept %s: foreign=%v", k.ID, k.Foreign)
		}
	}
	res, err := pipeline.Rollback(t.Context(), tg, "", pipeline.WithLogger(logWriter{t}))
	if err != nil {
		t.Fatal(err)
	}
	if res.Record.Release != v3.ID {
		t.Errorf("rollback went to %q, want the last good release %q", res.Record.Release, v3.ID)
	}
	if imgs, _ := images(t, c, ns, "web"); !strings.Contains(imgs, "web="+v3.Image) {
		t.Errorf("after rollback: %s, want %s", imgs, v3.Image)
	}
}

// kubectl runs the control plane's kubectl with the admin kubeconfig.
func kubectl(t *testing.T, c *k8sbench.Cluster, args ...string) string {
	t.Helper()
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	must(t, os.WriteFile(kc, c.Kubeconfig, 0o600))
	out, err := exec.CommandContext(t.Context(), c.Kubectl(), append([]string{"--kubeconfig", kc}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestManualUndo: after `kubectl rollout undo --to-revision`, status tells the truth and
// rollback goes to the release live before the manual undo, not to the older revision by
// number (the pre-pushdeploy one); after a manual undo to a release whose deploy failed,
// status says the rollout is stuck, StatusError fails, and rollback goes to the release
// live before it.
func TestManualUndo(t *testing.T) {
	t.Parallel()
	c := k8sbench.Shared(t)
	ns := c.Namespace(t)
	deployment(t, c, ns, "web", 2, 2)
	tg := target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: "web"}}, kubernetes.WithStartGrace(0))
	v2 := release("20261201T103000Z", "registry.test/web")
	v3 := release("20261201T103100Z", "registry.test/web")
	for _, r := range []targets.Release{v2, v3} {
		if _, err := rollout(t, tg, r); err != nil {
			t.Fatal(err)
		}
	}
	// Revision 1 is the Deployment's own (web:initial), 2 is v2, 3 is v3.
	kubectl(t, c, "-n", ns, "rollout", "undo", "deployment/web", "--to-revision=2")
	st := waitStatus(t, tg, 0, func(s targets.Status) bool { return s.Rollout == kubernetes.RolloutComplete })
	if st.Live == nil || st.Live.ID != v2.ID {
		t.Fatalf("status after the manual undo: live %+v, want %s", st.Live, v2.ID)
	}
	if err := pipeline.StatusError([]pipeline.EnvStatus{{Env: "test", Kind: "kubernetes", Hosts: []targets.Status{st}}}); err != nil {
		t.Errorf("status error of a complete rollout: %v", err)
	}
	res, err := pipeline.Rollback(t.Context(), tg, "", pipeline.WithLogger(logWriter{t}))
	if err != nil {
		t.Fatal(err)
	}
	if res.Record.Release != v3.ID {
		t.Fatalf("rollback after the manual undo went to %q, want %q (live before it)", res.Record.Release, v3.ID)
	}

	// A failed deploy, then someone undoes by hand to its revision.
	bad := release("20261201T103200Z", "registry.test/web-broken")
	if _, err := rollout(t, tg, bad); err == nil {
		t.Fatal("broken release deployed")
	}
	var badRev string
	for _, k := range waitStatus(t, tg, 0, func(s targets.Status) bool { return s.Live != nil }).Kept {
		if k.ID == bad.ID {
			badRev = strings.TrimPrefix(strings.SplitN(k.Note, ":", 2)[0], "revision ")
		}
	}
	if badRev == "" {
		t.Fatal("the failed release's revision is not kept")
	}
	kubectl(t, c, "-n", ns, "rollout", "undo", "deployment/web", "--to-revision="+badRev)
	st = waitStatus(t, tg, 0, func(s targets.Status) bool { return s.Rollout == kubernetes.RolloutStuck })
	if st.Live == nil || st.Live.ID != bad.ID || !st.Live.Failed {
		t.Errorf("stuck status: live %+v, want the failed %s", st.Live, bad.ID)
	}
	if !strings.Contains(st.RolloutReason, "ImagePullBackOff") && !strings.Contains(st.RolloutReason, "progress deadline") {
		t.Errorf("stuck reason %q names neither the pods' reason nor the progress deadline", st.RolloutReason)
	}
	// What `pushdeploy status` runs: the environments' status, then its error for the exit code.
	file, err := config.Parse("pushdeploy.yaml", []byte("app: shop\nimage: {repository: registry.test/web}\nenvironments:\n  test:\n    kubernetes:\n      namespace: "+ns+"\n      deployments: [web]\n"))
	must(t, err)
	x := &pipeline.Environments{File: file, Targets: func(context.Context, *config.File, string, *pipeline.Secrets) (targets.Target, error) {
		return target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: "web"}}, kubernetes.WithStartGrace(0)), nil
	}}
	envs := x.CheckedStatus(t.Context(), false)
	err = pipeline.StatusError(envs)
	if err == nil || !strings.Contains(err.Error(), `test: deployment "web": rollout stuck`) {
		t.Errorf("status error of a stuck rollout: %v", err)
	}
	var js strings.Builder
	must(t, pipeline.JSON(&js, envs))
	if !strings.Contains(js.String(), `"rollout": "stuck"`) || !strings.Contains(js.String(), `"state": "not checked"`) {
		t.Errorf("status JSON lacks the stuck rollout or the health:\n%s", js.String())
	}
	var out strings.Builder
	must(t, pipeline.RenderStatus(&out, []pipeline.EnvStatus{{Env: "test", Kind: "kubernetes", Hosts: []targets.Status{st}}}))
	if !strings.Contains(out.String(), "ROLLOUT") || !strings.Contains(out.String(), "stuck: ") {
		t.Errorf("status table lacks the stuck rollout:\n%s", out.String())
	}
	res, err = pipeline.Rollback(t.Context(), tg, "", pipeline.WithLogger(logWriter{t}))
	if err != nil {
		t.Fatal(err)
	}
	if res.Record.Release != v3.ID {
		t.Errorf("rollback from the stuck release went to %q, want %q (live before it)", res.Record.Release, v3.ID)
	}
}

// TestFailedCreateFailsFast: a ResourceQuota that leaves no room for the surge pod makes
// the new ReplicaSet report FailedCreate; with a zero grace period the rollout fails on it
// and says so, with the quota's refusal.
func TestFailedCreateFailsFast(t *testing.T) {
	t.Parallel()
	c := k8sbench.Shared(t)
	ns := c.Namespace(t)
	deployment(t, c, ns, "web", 1, 600)
	_, err := c.Client.CoreV1().ResourceQuotas(ns).Create(t.Context(), &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "pods"},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("1")}},
	}, metav1.CreateOptions{})
	must(t, err)
	tg := target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: "web"}}, kubernetes.WithStartGrace(0))
	h := tg.Hosts()[0]
	r := release("20261201T104000Z", "registry.test/web")
	must(t, h.Prepare(t.Context(), r))
	err = h.Activate(t.Context(), r.ID)
	var rf *kubernetes.RolloutFailure
	if !errors.As(err, &rf) || rf.Reason != "FailedCreate" || rf.Pod != "" || !strings.Contains(rf.Message, "quota") {
		t.Fatalf("rollout over quota: %v (%+v), want FailedCreate naming the quota", err, rf)
	}
	if !strings.Contains(err.Error(), `deployment "web" failed before its deadline: the new replica set cannot create pods: FailedCreate`) {
		t.Errorf("error: %v", err)
	}
}

// TestPruneDoesNotMarkFailed: a target that deploys twice discards (prunes) the first
// release later: that is no failure, and the release is not marked failed.
func TestPruneDoesNotMarkFailed(t *testing.T) {
	t.Parallel()
	c := k8sbench.Shared(t)
	ns := c.Namespace(t)
	deployment(t, c, ns, "web", 1, 600)
	tg := target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: "web"}})
	r1 := release("20261201T105000Z", "registry.test/web")
	r2 := release("20261201T105100Z", "registry.test/web")
	for _, r := range []targets.Release{r1, r2} {
		if _, err := rollout(t, tg, r); err != nil {
			t.Fatal(err)
		}
	}
	h := tg.Hosts()[0]
	must(t, h.Discard(t.Context(), r1.ID))
	st, err := h.Status(t.Context())
	must(t, err)
	for _, k := range st.Kept {
		if k.Failed {
			t.Errorf("release %s marked failed after a prune", k.ID)
		}
	}
}

// TestCrashLoopThreshold: a container that crash-loops the way the kubelet reports it
// (kwok's "flapping": restart 1, then one more at each report) fails the rollout at the
// report that reaches the threshold, not before.
func TestCrashLoopThreshold(t *testing.T) {
	t.Parallel()
	c := k8sbench.Shared(t)
	ns := c.Namespace(t)
	deployment(t, c, ns, "web", 1, 600)
	tg := target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: "web"}})
	h := tg.Hosts()[0]
	r := release("20261201T106000Z", "registry.test/web-flapping")
	must(t, h.Prepare(t.Context(), r))
	err := h.Activate(t.Context(), r.ID)
	var rf *kubernetes.RolloutFailure
	if !errors.As(err, &rf) || rf.Reason != "CrashLoopBackOff" || rf.Container != "web" {
		t.Fatalf("flapping release: %v, want a CrashLoopBackOff failure of container web", err)
	}
	if rf.Restarts != kubernetes.DefaultCrashLoopRestarts {
		t.Errorf("failed at %d restarts, want exactly the threshold %d", rf.Restarts, kubernetes.DefaultCrashLoopRestarts)
	}
}
