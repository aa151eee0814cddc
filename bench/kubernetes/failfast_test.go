package kubebench

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	k8sbench "github.com/pushdeploy/pushdeploy/internal/testbench/k8s"
	"github.com/pushdeploy/pushdeploy/targets/kubernetes"
)

// firstCrash watches the Deployment's pods (a watch of our own, as the bench's completion
// watch is) and reports when the first pod of image is seen in CrashLoopBackOff: the
// crash-looping pod's first failure as the API server has it.
func firstCrash(ctx context.Context, c *k8sbench.Cluster, ns, image string) <-chan time.Time {
	out := make(chan time.Time, 1)
	pods := c.Client.CoreV1().Pods(ns)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = "app=web"
			return pods.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = "app=web"
			return pods.Watch(ctx, o)
		},
	}
	var once sync.Once
	seen := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Image == image && cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff" {
				once.Do(func() { out <- time.Now() })
			}
		}
	}
	_, ctrl := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: lw, ObjectType: &corev1.Pod{},
		Handler: cache.ResourceEventHandlerFuncs{AddFunc: seen, UpdateFunc: func(_, n any) { seen(n) }},
	})
	go ctrl.RunWithContext(ctx)
	cache.WaitForCacheSync(ctx.Done(), ctrl.HasSynced)
	return out
}

// BenchmarkCrashLoopFailFast deploys a crash-looping image to a 3-replica Deployment whose
// progress deadline (600 s) and rollout timeout (300 s, the default) are far off, and
// measures the time from the first pod seen in CrashLoopBackOff (its first failure, at
// restart 1) to Activate returning the fail-fast error at the default threshold of 3
// restarts; then it restores the good release for the next round. The kwok stage
// "flapping" reports a restart a second; a kubelet backs off 10 s, then 20 s, so there the
// same threshold is reached about 30 s after the first failure.
func BenchmarkCrashLoopFailFast(b *testing.B) {
	c := k8sbench.Shared(b)
	ctx := b.Context()
	ns := c.Namespace(b)
	n, deadline := int32(3), int32(600)
	labels := map[string]string{"app": "web"}
	if _, err := c.Client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: &n, ProgressDeadlineSeconds: &deadline, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.test/web:initial"}}}}},
	}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	tg, err := kubernetes.New("web", "bench", []kubernetes.Workload{{Name: "web"}}, kubernetes.WithKubeconfig(c.Kubeconfig), kubernetes.WithNamespace(ns))
	if err != nil {
		b.Fatal(err)
	}
	h := tg.Hosts()[0]
	deploy := func(r int, repo string) (string, error) {
		image := fmt.Sprintf("%s@sha256:%x", repo, sha256.Sum256([]byte(fmt.Sprint(repo, r))))
		rel := release(r, image)
		if err := h.Prepare(ctx, rel); err != nil {
			b.Fatal(err)
		}
		return image, h.Activate(ctx, rel.ID)
	}
	var delays, walls []time.Duration
	round := func(i int) {
		if _, err := deploy(2*i, "registry.test/web"); err != nil {
			b.Fatalf("good release: %v", err)
		}
		wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		image := fmt.Sprintf("registry.test/web-flapping@sha256:%x", sha256.Sum256([]byte(fmt.Sprint("registry.test/web-flapping", 2*i+1))))
		crashed := firstCrash(wctx, c, ns, image)
		start := time.Now()
		got, err := deploy(2*i+1, "registry.test/web-flapping")
		end := time.Now()
		var rf *kubernetes.RolloutFailure
		if got != image || !errors.As(err, &rf) || rf.Reason != "CrashLoopBackOff" {
			b.Fatalf("crash-looping release: %v, want a CrashLoopBackOff fail-fast failure", err)
		}
		select {
		case at := <-crashed:
			delays = append(delays, end.Sub(at))
		case <-wctx.Done():
			b.Fatal("the crash loop was never seen")
		}
		walls = append(walls, end.Sub(start))
	}
	round(-1) // warm: preflight, connections
	delays, walls = nil, nil
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		round(i)
	}
	b.StopTimer()
	b.ReportMetric(ms(median(delays)), "first-crash-to-failed-ms")
	b.ReportMetric(ms(median(walls)), "deploy-to-failed-ms")
	b.ReportMetric(kubernetes.DefaultRolloutTimeout.Seconds()*1000, "deadline-ms")
	b.Logf("crash loop: failed %.1f ms (median, max %.1f ms) after the first pod was seen crash-looping, %.1f ms after the deploy began; the deadline was %s",
		ms(median(delays)), ms(slicesMax(delays)), ms(median(walls)), kubernetes.DefaultRolloutTimeout)
}
