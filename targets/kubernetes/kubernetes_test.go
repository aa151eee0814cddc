package kubernetes_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	k8sbench "github.com/pushdeploy/pushdeploy/internal/testbench/k8s"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/kubernetes"
)

// One control plane for the whole package: each test works in a namespace of its own.
func TestMain(m *testing.M) { os.Exit(k8sbench.Main(m)) }

// release makes a release whose image is repo pinned by a digest derived from id. A repo
// containing "broken" never becomes ready (ImagePullBackOff), "crash" crash-loops (the
// bench's kwok stages).
func release(id, repo string) targets.Release {
	sum := sha256.Sum256([]byte(id + repo))
	dg := "sha256:" + hex.EncodeToString(sum[:])
	return targets.Release{ID: id, App: "shop", Env: "test", Version: "v-" + id, Digest: dg, Image: repo + "@" + dg, Deployer: "tester"}
}

// deployment creates a Deployment with one container named like it, and waits until its
// first revision has rolled out.
func deployment(t *testing.T, c *k8sbench.Cluster, ns, name string, replicas, deadline int32) *appsv1.Deployment {
	t.Helper()
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas:                &replicas,
			ProgressDeadlineSeconds: &deadline,
			Selector:                &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{
					{Name: name, Image: "registry.test/" + name + ":initial"},
					{Name: "sidecar", Image: "registry.test/sidecar:1"},
				}},
			},
		},
	}
	d, err := c.Client.AppsV1().Deployments(ns).Create(t.Context(), d, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating deployment %s: %v", name, err)
	}
	// The target's own wait, through a rollback to the revision it runs.
	tg := target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: name}})
	st := waitStatus(t, tg, 0, func(s targets.Status) bool { return s.Live != nil })
	if err := tg.Hosts()[0].Activate(t.Context(), st.Live.ID); err != nil {
		t.Fatalf("initial rollout of %s: %v", name, err)
	}
	return d
}

// waitStatus polls host i's status until ok (the initial ReplicaSet appears asynchronously).
func waitStatus(t *testing.T, tg *kubernetes.Target, i int, ok func(targets.Status) bool) targets.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for {
		st, err := tg.Hosts()[i].Status(ctx)
		if err == nil && ok(st) {
			return st
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for status of %s: %v (last error %v, status %+v)", tg.Hosts()[i].Name(), ctx.Err(), err, st)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func target(t *testing.T, kubeconfig []byte, ns string, ws []kubernetes.Workload, opts ...kubernetes.Option) *kubernetes.Target {
	t.Helper()
	tg, err := kubernetes.New("shop", "test", ws, append([]kubernetes.Option{kubernetes.WithKubeconfig(kubeconfig), kubernetes.WithNamespace(ns)}, opts...)...)
	if err != nil {
		t.Fatalf("kubernetes.New: %v", err)
	}
	return tg
}

// logWriter sends the engine's log to the test's.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func rollout(t *testing.T, tg targets.Target, r targets.Release, opts ...pipeline.Option) (*pipeline.Result, error) {
	t.Helper()
	return pipeline.Rollout(t.Context(), tg, r, append([]pipeline.Option{pipeline.WithLogger(logWriter{t}), pipeline.WithOwner("tester@"+t.Name(), "")}, opts...)...)
}

func images(t *testing.T, c *k8sbench.Cluster, ns, name string) (string, *appsv1.Deployment) {
	t.Helper()
	d, err := c.Client.AppsV1().Deployments(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ct := range d.Spec.Template.Spec.Containers {
		out = append(out, ct.Name+"="+ct.Image)
	}
	return strings.Join(out, " "), d
}

// TestGoodRollout: three replicas get the image by digest on the named container only,
// with the release annotations, the change-cause and our field manager; the rollout is
// complete when Activate returns; deploying the live digest again changes nothing.
func TestGoodRollout(t *testing.T) {
	t.Parallel()
	c := k8sbench.Shared(t)
	ns := c.Namespace(t)
	deployment(t, c, ns, "web", 3, 600)
	tg := target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: "web", Containers: []string{"web"}}})
	h := tg.Hosts()[0]
	r := release("20261127T090000Z", "registry.test/web")

	ch, err := h.Plan(t.Context(), r)
	if err != nil || ch.Noop || len(ch.Update) != 1 || !strings.Contains(ch.Summary, r.Image) {
		t.Fatalf("plan before deploy: %+v, %v", ch, err)
	}
	if err := h.Prepare(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	if err := h.Activate(t.Context(), r.ID); err != nil {
		t.Fatal(err)
	}
	imgs, d := images(t, c, ns, "web")
	if want := "web=" + r.Image + " sidecar=registry.test/sidecar:1"; imgs != want {
		t.Errorf("images: %s, want %s", imgs, want)
	}
	// Activate returned after the rollout: the status is complete already, no waiting here.
	if d.Status.UpdatedReplicas != 3 || d.Status.AvailableReplicas != 3 || d.Status.Replicas != 3 || d.Status.ObservedGeneration < d.Generation {
		t.Errorf("rollout not complete when Activate returned: %+v", d.Status)
	}
	a := d.Spec.Template.Annotations
	if a[kubernetes.AnnotationRelease] != r.ID || a[kubernetes.AnnotationDigest] != r.Digest || a[kubernetes.AnnotationVersion] != r.Version {
		t.Errorf("template annotations: %v", a)
	}
	if cause := d.Annotations[kubernetes.AnnotationChangeCause]; !strings.Contains(cause, r.Version) || !strings.Contains(cause, r.Digest) || !strings.Contains(cause, "by tester") {
		t.Errorf("change-cause %q lacks version, digest or deployer", cause)
	}
	managers := map[string]bool{}
	for _, mf := range d.ManagedFields {
		managers[mf.Manager] = true
	}
	if !managers["pushdeploy"] {
		t.Errorf("field managers %v lack pushdeploy", managers)
	}

	st, err := h.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Live == nil || st.Live.ID != r.ID || st.Live.Digest != r.Digest || st.Live.Image != r.Image || st.Live.Version != r.Version {
		t.Errorf("status live: %+v", st.Live)
	}
	if len(st.Kept) != 2 || st.Kept[1].ID != r.ID || !strings.HasPrefix(st.Kept[0].ID, "rs-") {
		t.Errorf("status kept: %+v", st.Kept)
	}
	if !strings.Contains(st.Detail, "revision 2") || !strings.Contains(st.Detail, "3/3 ready, 3 updated, 3 available") {
		t.Errorf("status detail: %q", st.Detail)
	}
	hist, err := tg.Deployments()[0].History(t.Context())
	if err != nil || len(hist) != 2 || hist[1].Number != 2 || hist[1].ID != r.ID || !hist[1].Live || !strings.Contains(hist[1].ChangeCause, r.Digest) {
		t.Errorf("history: %+v, %v", hist, err)
	}

	if ch, err := h.Plan(t.Context(), r); err != nil || !ch.Noop {
		t.Errorf("plan of the live release: %+v, %v", ch, err)
	}
	if _, err := rollout(t, tg, release("20261127T090100Z", "registry.test/web")); err != nil {
		t.Fatal(err)
	}
	// Same digest under another id: the engine sees it live and changes nothing.
	again := r
	again.ID = "20261127T090200Z"
	res, err := rollout(t, tg, again)
	if err != nil {
		t.Fatal(err)
	}
	if res.Record.Outcome == pipeline.OutcomeUnchanged {
		t.Errorf("redeploying %s (not live) was a no-op", again.Digest)
	}
	gen := func() int64 { _, d := images(t, c, ns, "web"); return d.Generation }
	before := gen()
	res, err = rollout(t, tg, again)
	if err != nil || res.Record.Outcome != pipeline.OutcomeUnchanged {
		t.Fatalf("redeploying the live digest: outcome %q, %v", res.Record.Outcome, err)
	}
	if after := gen(); after != before {
		t.Errorf("redeploying the live digest changed the deployment: generation %d -> %d", before, after)
	}
}

// TestTwoDeployments deploys web and worker of one app together through the engine.
func TestTwoDeployments(t *testing.T) {
	t.Parallel()
	c := k8sbench.Shared(t)
	ns := c.Namespace(t)
	deployment(t, c, ns, "web", 2, 600)
	deployment(t, c, ns, "worker", 2, 600)
	tg := target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: "web"}, {Name: "worker"}})
	r := release("20261127T091000Z", "registry.test/shop")
	res, err := rollout(t, tg, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"web", "worker"} {
		imgs, _ := images(t, c, ns, name)
		if !strings.Contains(imgs, name+"="+r.Image) {
			t.Errorf("%s: %s", name, imgs)
		}
	}
	st, err := pipeline.Status(t.Context(), tg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Live == nil || s.Live.ID != r.ID {
			t.Errorf("%s live: %+v", s.Host, s.Live)
		}
	}
	recs, err := pipeline.History(t.Context(), tg, 0)
	if err != nil || len(recs) != 1 || recs[0].Outcome != pipeline.OutcomeDeployed || len(recs[0].Hosts) != 2 {
		t.Errorf("journal: %+v, %v (result %+v)", recs, err, res.Record)
	}
}

// TestBrokenImageRollsBack: a release whose pods sit in ImagePullBackOff fails at the
// Deployment's progress deadline; the engine restores the previous release on both
// Deployments (the one that rolled out fine too); the old pods serve throughout.
func TestBrokenImageRollsBack(t *testing.T) {
	t.Parallel()
	c := k8sbench.Shared(t)
	ns := c.Namespace(t)
	deployment(t, c, ns, "web", 3, 2)
	deployment(t, c, ns, "worker", 1, 2)
	tg := target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: "web"}, {Name: "worker"}})
	good := release("20261127T092000Z", "registry.test/shop")
	if _, err := rollout(t, tg, good); err != nil {
		t.Fatal(err)
	}
	// Only web's pods break: worker rolls out, then must come back too.
	bad := release("20261127T092100Z", "registry.test/shop")
	res, err := pipeline.Rollout(t.Context(), &brokenFor{Target: tg, name: "deployment/web"}, bad, pipeline.WithLogger(logWriter{t}))
	if err == nil {
		t.Fatal("broken release deployed without error")
	}
	msg := err.Error()
	for _, want := range []string{`deployment/web`, "progress deadline", "ImagePullBackOff", "not ready"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(msg, "sidecar") {
		t.Errorf("error blames the sidecar, which is running: %v", err)
	}
	if res.Record.Outcome != pipeline.OutcomeRolledBack {
		t.Errorf("outcome %q, want %q (rollback: %+v)", res.Record.Outcome, pipeline.OutcomeRolledBack, res.Record.Rollback)
	}
	for i, name := range []string{"web", "worker"} {
		st, err := tg.Hosts()[i].Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if st.Live == nil || st.Live.ID != good.ID {
			t.Errorf("%s live after rollback: %+v", name, st.Live)
		}
		_, d := images(t, c, ns, name)
		if d.Status.AvailableReplicas != *d.Spec.Replicas || d.Status.UpdatedReplicas != *d.Spec.Replicas {
			t.Errorf("%s after rollback: %+v", name, d.Status)
		}
	}
	// The old pods serve: web's three ready pods all run the good image.
	pods, err := c.Client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	ready := 0
	for _, p := range pods.Items {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Name == "web" && cs.Ready && cs.Image == good.Image {
				ready++
			}
		}
	}
	if ready != 3 {
		t.Errorf("%d ready web pods run %s, want 3", ready, good.Image)
	}
}

// brokenFor deploys a broken image (same digest) to one host and the release's image to
// the others, so that one Deployment fails and the other succeeds in the same deploy.
type brokenFor struct {
	*kubernetes.Target
	name string
}

func (b *brokenFor) Hosts() []targets.Host {
	hs := b.Target.Hosts()
	for i, h := range hs {
		if h.Name() == b.name {
			hs[i] = brokenHost{h}
		}
	}
	return hs
}

type brokenHost struct{ targets.Host }

func (h brokenHost) Prepare(ctx context.Context, r targets.Release) error {
	r.Image = "registry.test/shop-broken@" + r.Digest
	return h.Host.Prepare(ctx, r)
}

// TestRolloutTimeout: a rollout that is still progressing when the rollout timeout ends
// fails, and the error names the replicas and why they wait.
func TestRolloutTimeout(t *testing.T) {
	t.Parallel()
	c := k8sbench.Shared(t)
	ns := c.Namespace(t)
	deployment(t, c, ns, "web", 2, 600)
	// The crash loop is not to fail fast here: the timeout is what this test is about.
	tg := target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: "web"}}, kubernetes.WithRolloutTimeout(2*time.Second), kubernetes.WithCrashLoopRestarts(1000))
	h := tg.Hosts()[0]
	r := release("20261127T093000Z", "registry.test/web-crash")
	if err := h.Prepare(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	err := h.Activate(t.Context(), r.ID)
	if err == nil {
		t.Fatal("crash-looping release activated without error")
	}
	for _, want := range []string{`deployment "web" did not roll out within 2s`, "CrashLoopBackOff", "restarts"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

// TestDeletedMidRollout: deleting the Deployment while it rolls out ends the wait with an
// error saying so.
func TestDeletedMidRollout(t *testing.T) {
	t.Parallel()
	c := k8sbench.Shared(t)
	ns := c.Namespace(t)
	deployment(t, c, ns, "web", 2, 600)
	tg := target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: "web"}})
	h := tg.Hosts()[0]
	r := release("20261127T094000Z", "registry.test/web-broken")
	if err := h.Prepare(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Activate(t.Context(), r.ID) }()
	// Delete once the broken release's pods exist: the rollout is under way.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(pods.Items, func(p corev1.Pod) bool { return p.Spec.Containers[0].Image == r.Image }) {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Activate returned before the deletion: %v", err)
		case <-ctx.Done():
			t.Fatal("the broken release's pods never appeared")
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := c.Client.AppsV1().Deployments(ns).Delete(t.Context(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err := <-done
	if err == nil || !strings.Contains(err.Error(), `deployment "web" was deleted during the rollout`) {
		t.Fatalf("Activate after deletion: %v", err)
	}
}

// TestManualRollback rolls back to a named release and to the previous one, through the
// engine, and the history shows every revision with its change-cause.
func TestManualRollback(t *testing.T) {
	t.Parallel()
	c := k8sbench.Shared(t)
	ns := c.Namespace(t)
	deployment(t, c, ns, "web", 2, 600)
	tg := target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: "web"}})
	var rs []targets.Release
	for _, id := range []string{"20261127T095000Z", "20261127T095100Z", "20261127T095200Z"} {
		r := release(id, "registry.test/web")
		if _, err := rollout(t, tg, r); err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	if _, err := pipeline.Rollback(t.Context(), tg, rs[0].ID, pipeline.WithLogger(logWriter{t})); err != nil {
		t.Fatal(err)
	}
	if imgs, _ := images(t, c, ns, "web"); !strings.Contains(imgs, "web="+rs[0].Image) {
		t.Fatalf("after rollback to %s: %s", rs[0].ID, imgs)
	}
	hist, err := tg.Deployments()[0].History(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// Revisions 1 (initial), 3, 4 and 5 (release 0 restored, as kubectl renumbers it).
	last := hist[len(hist)-1]
	if len(hist) != 4 || last.Number != 5 || last.ID != rs[0].ID || !last.Live || !strings.Contains(last.ChangeCause, rs[0].Digest) {
		t.Errorf("history after rollback: %+v", hist)
	}
	// Previous of the live release 0 is the one live before it, release 2 (revision 4), not
	// the older revision by number.
	if _, err := pipeline.Rollback(t.Context(), tg, "", pipeline.WithLogger(logWriter{t})); err != nil {
		t.Fatal(err)
	}
	if imgs, _ := images(t, c, ns, "web"); !strings.Contains(imgs, "web="+rs[2].Image) {
		t.Errorf("after rollback to previous: %s, want %s", imgs, rs[2].Image)
	}
	if _, err := pipeline.Rollback(t.Context(), tg, "20200101T000000Z"); err == nil || !strings.Contains(err.Error(), "does not keep release") {
		t.Errorf("rollback to an unknown release: %v", err)
	}
}

// TestLease: one holder at a time; a second deploy is told who holds it and changes
// nothing; a dead holder's lapsed lease is taken over; release leaves others' locks alone.
func TestLease(t *testing.T) {
	t.Parallel()
	c := k8sbench.Shared(t)
	ns := c.Namespace(t)
	deployment(t, c, ns, "web", 1, 600)
	tg := target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: "web"}})
	lk := tg.Locker()
	now := time.Now()
	a := targets.Lock{Owner: "alice@ci", PipelineID: "run-1", Acquired: now, Expires: now.Add(time.Minute)}
	b := targets.Lock{Owner: "bob@laptop", Acquired: now, Expires: now.Add(time.Minute)}

	// Two at once: exactly one wins.
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, l := range []targets.Lock{a, b} {
		wg.Go(func() { errs[i] = lk.Acquire(t.Context(), l) })
	}
	wg.Wait()
	var held *targets.HeldError
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("concurrent acquire: %v, %v (want exactly one winner)", errs[0], errs[1])
	}
	winner, loser := a, b
	if errs[0] != nil {
		winner, loser = b, a
	}
	if !errors.As(errors.Join(errs...), &held) || held.Holder.Owner != winner.Owner {
		t.Fatalf("loser's error: %v", errors.Join(errs...))
	}
	h, err := lk.Holder(t.Context())
	if err != nil || h == nil || h.Owner != winner.Owner || h.Expires.Before(now.Add(59*time.Second)) {
		t.Fatalf("holder: %+v, %v", h, err)
	}
	// A deploy meanwhile is refused and changes nothing.
	_, before := images(t, c, ns, "web")
	_, err = rollout(t, tg, release("20261127T096000Z", "registry.test/web"))
	if err == nil || !strings.Contains(err.Error(), winner.Owner) {
		t.Fatalf("deploy under someone else's lock: %v", err)
	}
	if _, after := images(t, c, ns, "web"); after.Generation != before.Generation {
		t.Errorf("refused deploy changed the deployment")
	}
	if err := lk.Release(t.Context(), loser); err != nil {
		t.Fatal(err)
	}
	if h, _ := lk.Holder(t.Context()); h == nil || h.Owner != winner.Owner {
		t.Fatalf("release by %s freed %s's lock: %+v", loser.Owner, winner.Owner, h)
	}
	renewed := winner
	renewed.Expires = time.Now().Add(2 * time.Minute)
	if err := lk.Renew(t.Context(), renewed); err != nil {
		t.Fatal(err)
	}
	if err := lk.Renew(t.Context(), loser); err == nil || !errors.As(err, &held) {
		t.Errorf("renew by a non-holder: %v", err)
	}
	if err := lk.Release(t.Context(), winner); err != nil {
		t.Fatal(err)
	}
	if h, err := lk.Holder(t.Context()); err != nil || h != nil {
		t.Fatalf("holder after release: %+v, %v", h, err)
	}

	// A dead holder: its lease was renewed ten minutes ago for one minute. The state a
	// crashed deploy leaves, written directly rather than waited for.
	name := tg.Locker().(*kubernetes.Lease).Name()
	le, err := c.Client.CoordinationV1().Leases(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	transitions := *le.Spec.LeaseTransitions
	dead, old, sixty := "dead@ci", metav1.NewMicroTime(time.Now().Add(-10*time.Minute)), int32(60)
	le.Spec = coordinationv1.LeaseSpec{HolderIdentity: &dead, AcquireTime: &old, RenewTime: &old, LeaseDurationSeconds: &sixty, LeaseTransitions: le.Spec.LeaseTransitions}
	if _, err := c.Client.CoordinationV1().Leases(ns).Update(t.Context(), le, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if h, _ := lk.Holder(t.Context()); h == nil || h.Owner != dead || !h.Expired(time.Now()) {
		t.Fatalf("dead holder: %+v", h)
	}
	r := release("20261127T096100Z", "registry.test/web")
	if _, err := rollout(t, tg, r); err != nil {
		t.Fatalf("deploy over a dead holder's lapsed lock: %v", err)
	}
	le, _ = c.Client.CoordinationV1().Leases(ns).Get(t.Context(), name, metav1.GetOptions{})
	if le.Spec.HolderIdentity != nil || le.Spec.LeaseTransitions == nil || *le.Spec.LeaseTransitions != transitions+1 {
		t.Errorf("lease after the deploy over the dead holder: %+v, want %d transitions", le.Spec, transitions+1)
	}

	// Two deploys while a third party holds the lock, both willing to wait: when it goes,
	// they take turns, and the second reads the first's release as the previous one.
	if err := lk.Acquire(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	deploys := []targets.Release{release("20261127T096200Z", "registry.test/web"), release("20261127T096300Z", "registry.test/web")}
	logs := []*syncBuffer{{}, {}}
	errs = make([]error, 2)
	for i, r := range deploys {
		wg.Go(func() {
			tg := target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: "web"}})
			_, errs[i] = pipeline.Rollout(t.Context(), tg, r, pipeline.WithLockWait(time.Minute), pipeline.WithOwner(fmt.Sprintf("deploy-%d", i), ""), pipeline.WithLogger(logs[i]))
		})
	}
	wctx, wcancel := context.WithTimeout(t.Context(), time.Minute)
	defer wcancel()
	for !strings.Contains(logs[0].String(), "waiting") || !strings.Contains(logs[1].String(), "waiting") {
		select {
		case <-wctx.Done():
			t.Fatalf("deploys never waited for the lock: %q, %q", logs[0], logs[1])
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := lk.Release(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent deploys: %v", err)
	}
	recs, err := pipeline.History(t.Context(), tg, 2)
	if err != nil || len(recs) != 2 || recs[0].Outcome != pipeline.OutcomeDeployed || recs[1].Outcome != pipeline.OutcomeDeployed ||
		recs[1].Hosts[0].Previous != recs[0].Release {
		t.Errorf("journal after concurrent deploys: %+v, %v", recs, err)
	}

	if err := lk.Acquire(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	if err := lk.Break(t.Context()); err != nil {
		t.Fatal(err)
	}
	if h, _ := lk.Holder(t.Context()); h != nil {
		t.Errorf("holder after break: %+v", h)
	}
}

// TestJournal keeps the newest records up to the limit.
func TestJournal(t *testing.T) {
	t.Parallel()
	c := k8sbench.Shared(t)
	ns := c.Namespace(t)
	deployment(t, c, ns, "web", 1, 600)
	tg := target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: "web"}}, kubernetes.WithJournalLimit(3))
	j := tg.Journal()
	if recs, err := j.Records(t.Context(), 0); err != nil || len(recs) != 0 {
		t.Fatalf("empty journal: %v, %v", recs, err)
	}
	for i := range 5 {
		if err := j.Append(t.Context(), json.RawMessage(fmt.Sprintf("{\n \"n\": %d}", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Append(t.Context(), json.RawMessage("{not json")); err == nil {
		t.Error("appended a record that is not JSON")
	}
	recs, err := j.Records(t.Context(), 2)
	if err != nil || len(recs) != 2 || string(recs[0]) != `{"n":3}` || string(recs[1]) != `{"n":4}` {
		t.Errorf("records: %s, %v", recs, err)
	}
	if all, _ := j.Records(t.Context(), 0); len(all) != 3 {
		t.Errorf("kept %d records, want 3", len(all))
	}
}

// applyRBAC creates the objects of deploy/kubernetes/rbac.yaml in ns, edited by edit.
func applyRBAC(t *testing.T, c *k8sbench.Cluster, ns string, edit func(*rbacv1.Role)) {
	t.Helper()
	b, err := os.ReadFile("../../deploy/kubernetes/rbac.yaml")
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
			must(t, yaml.UnmarshalStrict(doc, &sa))
			_, err = c.Client.CoreV1().ServiceAccounts(ns).Create(t.Context(), &sa, metav1.CreateOptions{})
		case "Role":
			var r rbacv1.Role
			must(t, yaml.UnmarshalStrict(doc, &r))
			if edit != nil {
				edit(&r)
			}
			_, err = c.Client.RbacV1().Roles(ns).Create(t.Context(), &r, metav1.CreateOptions{})
		case "RoleBinding":
			var rb rbacv1.RoleBinding
			must(t, yaml.UnmarshalStrict(doc, &rb))
			_, err = c.Client.RbacV1().RoleBindings(ns).Create(t.Context(), &rb, metav1.CreateOptions{})
		default:
			t.Fatalf("rbac.yaml: unexpected kind %q", meta.Kind)
		}
		must(t, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestShippedRole: rbac.yaml grants exactly the permissions the target uses, namespaced.
func TestShippedRole(t *testing.T) {
	b, err := os.ReadFile("../../deploy/kubernetes/rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var granted []string
	kinds := map[string]bool{}
	for _, doc := range bytes.Split(b, []byte("\n---\n")) {
		var r rbacv1.Role
		must(t, yaml.Unmarshal(doc, &r))
		kinds[r.Kind] = true
		if r.Kind != "Role" {
			continue
		}
		for _, rule := range r.Rules {
			for _, g := range rule.APIGroups {
				for _, res := range rule.Resources {
					for _, v := range rule.Verbs {
						granted = append(granted, kubernetes.Permission{Group: g, Resource: res, Verb: v}.String())
					}
				}
			}
		}
	}
	var used []string
	for _, p := range kubernetes.Permissions() {
		used = append(used, p.String())
	}
	slices.Sort(granted)
	slices.Sort(used)
	if !slices.Equal(granted, used) {
		t.Errorf("rbac.yaml grants %v\nthe target uses %v", granted, used)
	}
	if len(kinds) != 3 || !kinds["ServiceAccount"] || !kinds["Role"] || !kinds["RoleBinding"] {
		t.Errorf("rbac.yaml kinds: %v (want ServiceAccount, Role, RoleBinding and nothing cluster-wide)", kinds)
	}
}

// TestLeastPrivilege runs the whole flow (deploy, failed deploy with automatic rollback,
// manual rollback, status, history) with a token of the shipped Role only.
func TestLeastPrivilege(t *testing.T) {
	t.Parallel()
	c := k8sbench.Shared(t)
	ns := c.Namespace(t)
	deployment(t, c, ns, "web", 2, 2)
	applyRBAC(t, c, ns, nil)
	kc, err := c.TokenKubeconfig(t.Context(), ns, "ci-deployer")
	if err != nil {
		t.Fatal(err)
	}
	// The namespace comes from the kubeconfig's context here.
	tg, err := kubernetes.New("shop", "test", []kubernetes.Workload{{Name: "web"}}, kubernetes.WithKubeconfig(kc))
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.Preflight(t.Context()); err != nil {
		t.Fatal(err)
	}
	good := release("20261127T097000Z", "registry.test/web")
	if _, err := rollout(t, tg, good); err != nil {
		t.Fatal(err)
	}
	bad := release("20261127T097100Z", "registry.test/web-broken")
	if _, err := rollout(t, tg, bad); err == nil || !strings.Contains(err.Error(), "ImagePullBackOff") {
		t.Fatalf("broken deploy under the Role: %v", err)
	}
	st, err := pipeline.Status(t.Context(), tg)
	if err != nil || st[0].Live == nil || st[0].Live.ID != good.ID {
		t.Fatalf("status after automatic rollback: %+v, %v", st, err)
	}
	if _, err := pipeline.Rollback(t.Context(), tg, st[0].Kept[0].ID); err != nil {
		t.Fatalf("manual rollback under the Role: %v", err)
	}
	if _, err := tg.Deployments()[0].History(t.Context()); err != nil {
		t.Fatal(err)
	}
	recs, err := pipeline.History(t.Context(), tg, 0)
	if err != nil || len(recs) != 3 {
		t.Errorf("journal under the Role: %d records, %v", len(recs), err)
	}
}

// TestMissingPatch: under a Role without patch on deployments, the preflight names the
// missing permission and nothing changes: no lock, no journal, the same Deployment.
func TestMissingPatch(t *testing.T) {
	t.Parallel()
	c := k8sbench.Shared(t)
	ns := c.Namespace(t)
	deployment(t, c, ns, "web", 1, 600)
	applyRBAC(t, c, ns, func(r *rbacv1.Role) {
		for i, rule := range r.Rules {
			r.Rules[i].Verbs = slices.DeleteFunc(slices.Clone(rule.Verbs), func(v string) bool {
				return v == "patch" && slices.Contains(rule.Resources, "deployments")
			})
		}
	})
	kc, err := c.TokenKubeconfig(t.Context(), ns, "ci-deployer")
	if err != nil {
		t.Fatal(err)
	}
	tg := target(t, kc, ns, []kubernetes.Workload{{Name: "web"}})
	_, before := images(t, c, ns, "web")
	_, err = rollout(t, tg, release("20261127T098000Z", "registry.test/web"))
	if err == nil {
		t.Fatal("deploy without patch permission succeeded")
	}
	if !strings.Contains(err.Error(), "patch deployments.apps") || strings.Contains(err.Error(), "get deployments.apps") {
		t.Errorf("error should name exactly the missing permission: %v", err)
	}
	if _, after := images(t, c, ns, "web"); after.Generation != before.Generation || after.ResourceVersion != before.ResourceVersion {
		t.Error("the deployment changed")
	}
	if _, err := c.Client.CoordinationV1().Leases(ns).Get(t.Context(), "pushdeploy-shop-test", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("lock lease: %v (want not found)", err)
	}
	if _, err := c.Client.CoreV1().ConfigMaps(ns).Get(t.Context(), "pushdeploy-shop-test-journal", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("journal config map: %v (want not found)", err)
	}

	// A read refused (no list on replica sets) names every missing permission too.
	must(t, c.Client.RbacV1().Roles(ns).Delete(t.Context(), "ci-deployer", metav1.DeleteOptions{}))
	applyRole := func(drop string) {
		b, _ := os.ReadFile("../../deploy/kubernetes/rbac.yaml")
		for _, doc := range bytes.Split(b, []byte("\n---\n")) {
			var r rbacv1.Role
			must(t, yaml.Unmarshal(doc, &r))
			if r.Kind != "Role" {
				continue
			}
			r.Rules = slices.DeleteFunc(r.Rules, func(rule rbacv1.PolicyRule) bool { return slices.Contains(rule.Resources, drop) })
			_, err := c.Client.RbacV1().Roles(ns).Create(t.Context(), &r, metav1.CreateOptions{})
			must(t, err)
		}
	}
	applyRole("replicasets")
	tg = target(t, kc, ns, []kubernetes.Workload{{Name: "web"}})
	// RBAC changes reach the authorizer through an informer: wait for the new Role to count.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for {
		_, err = tg.Hosts()[0].Status(ctx)
		if err != nil && strings.Contains(err.Error(), "lack 2 permission(s) the deploy needs: list replicasets.apps, patch replicasets.apps") {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("status without list on replica sets: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestBadInput: a malformed kubeconfig, an unknown context, a namespace that does not
// exist, a Deployment or container that does not, an image not pinned by digest.
func TestBadInput(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-t0ken-value"
	_, err := kubernetes.New("shop", "test", []kubernetes.Workload{{Name: "web"}},
		kubernetes.WithKubeconfig([]byte("apiVersion: v1\nusers:\n- name: x\n  user: {token: "+secret+"\n  oops: [")))
	if err == nil || !strings.Contains(err.Error(), "parsing kubeconfig") || strings.Contains(err.Error(), secret) {
		t.Errorf("malformed kubeconfig: %v", err)
	}
	c := k8sbench.Shared(t)
	_, err = kubernetes.New("shop", "test", []kubernetes.Workload{{Name: "web"}}, kubernetes.WithKubeconfig(c.Kubeconfig), kubernetes.WithContext("nope"))
	if err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown context: %v", err)
	}
	for name, opts := range map[string][]kubernetes.Option{
		"two credentials": {kubernetes.WithKubeconfig(c.Kubeconfig), kubernetes.WithInCluster()},
		"zero timeout":    {kubernetes.WithKubeconfig(c.Kubeconfig), kubernetes.WithRolloutTimeout(0)},
		"bad namespace":   {kubernetes.WithKubeconfig(c.Kubeconfig), kubernetes.WithNamespace("Not_A_Namespace")},
		"context alone":   {kubernetes.WithRESTConfig(c.Config), kubernetes.WithContext("x")},
	} {
		if _, err := kubernetes.New("shop", "test", []kubernetes.Workload{{Name: "web"}}, opts...); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// A context other than the current one: the current one points at a closed port.
	cfg, err := clientcmd.Load(c.Kubeconfig)
	must(t, err)
	cur := cfg.Contexts[cfg.CurrentContext]
	dead := *cfg.Clusters[cur.Cluster]
	dead.Server = "https://127.0.0.1:1"
	cfg.Clusters["dead"] = &dead
	cfg.Contexts["good"] = cur.DeepCopy()
	cfg.Contexts["good"].Namespace = "kube-system"
	cur.Cluster = "dead"
	two, err := clientcmd.Write(*cfg)
	must(t, err)
	tg, err := kubernetes.New("shop", "test", []kubernetes.Workload{{Name: "web"}}, kubernetes.WithKubeconfig(two), kubernetes.WithContext("good"))
	must(t, err)
	if tg.Namespace() != "kube-system" {
		t.Errorf("namespace from the context: %q", tg.Namespace())
	}
	if err := tg.Preflight(t.Context()); err == nil || !strings.Contains(err.Error(), `deployment "web" not found in namespace "kube-system"`) {
		t.Errorf("preflight through context good: %v", err)
	}
	if _, err := kubernetes.New("Shop", "test", []kubernetes.Workload{{Name: "web"}}, kubernetes.WithKubeconfig(c.Kubeconfig)); err == nil || !strings.Contains(err.Error(), `app name "Shop"`) {
		t.Errorf("bad app name: %v", err)
	}

	tg = target(t, c.Kubeconfig, "does-not-exist", []kubernetes.Workload{{Name: "web"}})
	_, err = rollout(t, tg, release("20261127T099000Z", "registry.test/web"))
	if err == nil || !strings.Contains(err.Error(), `namespace "does-not-exist" does not exist`) {
		t.Errorf("missing namespace: %v", err)
	}

	ns := c.Namespace(t)
	deployment(t, c, ns, "web", 1, 600)
	tg = target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: "api"}})
	if err := tg.Preflight(t.Context()); err == nil || !strings.Contains(err.Error(), `deployment "api" not found in namespace "`+ns+`"`) {
		t.Errorf("missing deployment: %v", err)
	}
	tg = target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: "web", Containers: []string{"app"}}})
	if err := tg.Preflight(t.Context()); err == nil || !strings.Contains(err.Error(), `deployment "web" has no container "app" (it has: web, sidecar)`) {
		t.Errorf("missing container: %v", err)
	}
	// No containers named: the only one, else the one named like the Deployment, else an
	// error (sidecars keep their images).
	for name, containers := range map[string][]string{"solo": {"app"}, "multi": {"app", "proxy"}} {
		labels := map[string]string{"app": name}
		var cs []corev1.Container
		for _, n := range containers {
			cs = append(cs, corev1.Container{Name: n, Image: "registry.test/" + n + ":1"})
		}
		_, err := c.Client.AppsV1().Deployments(ns).Create(t.Context(), &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: cs}}},
		}, metav1.CreateOptions{})
		must(t, err)
	}
	tg = target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: "solo"}})
	if ch, err := tg.Hosts()[0].Plan(t.Context(), release("20261127T099050Z", "registry.test/app")); err != nil || !slices.Equal(ch.Update, []string{"spec.template.spec.containers[app].image"}) {
		t.Errorf("plan for the only container: %+v, %v", ch, err)
	}
	tg = target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: "multi"}})
	if err := tg.Preflight(t.Context()); err == nil || !strings.Contains(err.Error(), `deployment "multi" has 2 containers and none is named "multi": name the ones to update (it has: app, proxy)`) {
		t.Errorf("ambiguous containers: %v", err)
	}

	tg = target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: "web"}})
	r := release("20261127T099100Z", "registry.test/web")
	r.Image = "registry.test/web:latest"
	if err := tg.Hosts()[0].Prepare(t.Context(), r); err == nil || !strings.Contains(err.Error(), "not pinned by digest") {
		t.Errorf("tag instead of digest: %v", err)
	}
}

// syncBuffer is a log buffer one goroutine writes while another reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
