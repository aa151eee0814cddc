// Package kubebench compares pushdeploy's Kubernetes target with `kubectl set image` +
// `kubectl rollout status` on the same real control plane (internal/testbench/k8s), side by
// side, interleaved: wall time, the delay between the rollout completing (the Deployment's
// status, seen by a watch of our own) and the tool returning, and the API requests each
// makes (counted by a reverse proxy in front of the API server that both tools go through).
//
//	internal/testbench/k8s/tools/build.sh ~/.cache/pushdeploy/k8s-v1.37.2/bin   # once
//	go test ./bench/kubernetes -run '^$' -bench . -benchtime 10x
package kubebench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/kubectl/pkg/polymorphichelpers"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
	k8sbench "github.com/pushdeploy/pushdeploy/internal/testbench/k8s"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/kubernetes"
)

func TestMain(m *testing.M) { os.Exit(k8sbench.Main(m)) }

// counter is a reverse proxy to the API server that counts and names the requests.
type counter struct {
	mu   sync.Mutex
	reqs []string
	h    http.Handler
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	verb := r.Method
	if r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1" {
		verb = "WATCH"
	}
	c.mu.Lock()
	c.reqs = append(c.reqs, verb+" "+r.URL.Path)
	c.mu.Unlock()
	c.h.ServeHTTP(w, r)
}

func (c *counter) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.reqs
	c.reqs = nil
	return out
}

// proxy starts the counting proxy: plain HTTP on 127.0.0.1, forwarding with the admin's
// client certificate. It returns a kubeconfig that points at it.
func proxy(b *testing.B, c *k8sbench.Cluster) (*counter, []byte) {
	rt, err := rest.TransportFor(c.Config)
	if err != nil {
		b.Fatal(err)
	}
	u, _ := url.Parse(c.Server)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = rt
	rp.FlushInterval = -1 // watches stream
	cnt := &counter{h: rp}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: cnt}
	go srv.Serve(l)
	b.Cleanup(func() { srv.Close() })
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["bench"] = &clientcmdapi.Cluster{Server: "http://" + l.Addr().String()}
	cfg.AuthInfos["bench"] = clientcmdapi.NewAuthInfo()
	cfg.Contexts["bench"] = &clientcmdapi.Context{Cluster: "bench", AuthInfo: "bench"}
	cfg.CurrentContext = "bench"
	kc, err := clientcmd.Write(*cfg)
	if err != nil {
		b.Fatal(err)
	}
	return cnt, kc
}

// completion watches the Deployment (directly, not through the proxy) and reports when its
// rollout of a generation after gen completes: kubectl's own verdict, done.
func completion(ctx context.Context, c *k8sbench.Cluster, ns string, gen int64) <-chan time.Time {
	out := make(chan time.Time, 1)
	deps := c.Client.AppsV1().Deployments(ns)
	sel := fields.OneTermEqualSelector("metadata.name", "web").String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return deps.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return deps.Watch(ctx, o)
		},
	}
	ready := make(chan struct{})
	go func() {
		var once sync.Once
		viewer := &polymorphichelpers.DeploymentStatusViewer{}
		watchtools.UntilWithSync(ctx, lw, &appsv1.Deployment{}, nil, func(e watch.Event) (bool, error) {
			once.Do(func() { close(ready) })
			d, ok := e.Object.(*appsv1.Deployment)
			if !ok || d.Generation <= gen {
				return false, nil
			}
			u, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(d)
			if _, done, _ := viewer.Status(&unstructured.Unstructured{Object: u}, 0); done {
				out <- time.Now()
				return true, nil
			}
			return false, nil
		})
	}()
	<-ready
	return out
}

type sample struct {
	wall, delay time.Duration
	reqs        []string
}

type tool struct {
	name    string
	ns      string
	deploy  func(i int, image string) error
	samples []sample
}

// BenchmarkRollout deploys a new digest to a 3-replica Deployment with each tool in turn.
func BenchmarkRollout(b *testing.B) {
	c := k8sbench.Shared(b)
	kubectl := c.Kubectl()
	if _, err := os.Stat(kubectl); err != nil {
		testbench.Unavailable(b, "kubectl: %v", err)
	}
	cnt, kc := proxy(b, c)
	dir := b.TempDir()
	kcFile := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kcFile, kc, 0o600); err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	setup := func(ns string) {
		n := int32(3)
		labels := map[string]string{"app": "web"}
		_, err := c.Client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: appsv1.DeploymentSpec{Replicas: &n, Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.test/web:initial"}}}}},
		}, metav1.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		out, err := exec.Command(kubectl, "--kubeconfig", kcFile, "-n", ns, "rollout", "status", "deploy/web", "--timeout=120s").CombinedOutput()
		if err != nil {
			b.Fatalf("initial rollout in %s: %v: %s", ns, err, out)
		}
	}

	// testing calls the benchmark once per b.N it tries: fresh namespaces each time.
	nsPD, nsPipeline, nsKubectl, nsCold := c.Namespace(b), c.Namespace(b), c.Namespace(b), c.Namespace(b)
	pdTarget, err := kubernetes.New("web", "bench", []kubernetes.Workload{{Name: "web"}}, kubernetes.WithKubeconfig(kc), kubernetes.WithNamespace(nsPD))
	if err != nil {
		b.Fatal(err)
	}
	cacheDir := filepath.Join(dir, "kube-cache")
	tools := []*tool{
		{name: "pushdeploy", ns: nsPD, deploy: func(i int, image string) error {
			// The primitives a deploy of one Deployment runs: Prepare + Activate. The
			// target's one-time preflight ran before the first measured iteration.
			h := pdTarget.Hosts()[0]
			r := release(i, image)
			if err := h.Prepare(ctx, r); err != nil {
				return err
			}
			return h.Activate(ctx, r.ID)
		}},
		{name: "pushdeploy-rollout", ns: nsPipeline, deploy: func(i int, image string) error {
			// The whole engine on a fresh target: preflight, status, Lease, prepare,
			// activate, prune, journal, release.
			tg, err := kubernetes.New("web", "bench", []kubernetes.Workload{{Name: "web"}}, kubernetes.WithKubeconfig(kc), kubernetes.WithNamespace(nsPipeline))
			if err != nil {
				return err
			}
			_, err = pipeline.Rollout(ctx, tg, release(i, image))
			return err
		}},
		{name: "kubectl", ns: nsKubectl, deploy: func(i int, image string) error {
			// kubectl keeps its discovery cache between runs, as on a developer's machine.
			base := []string{"--kubeconfig", kcFile, "--cache-dir", cacheDir, "-n", nsKubectl}
			if out, err := exec.Command(kubectl, append(base, "set", "image", "deploy/web", "web="+image)...).CombinedOutput(); err != nil {
				return fmt.Errorf("kubectl set image: %v: %s", err, out)
			}
			if out, err := exec.Command(kubectl, append(base, "rollout", "status", "deploy/web", "--timeout=300s")...).CombinedOutput(); err != nil {
				return fmt.Errorf("kubectl rollout status: %v: %s", err, out)
			}
			return nil
		}},
		{name: "kubectl-cold-cache", ns: nsCold, deploy: func(i int, image string) error {
			// A fresh CI runner: no discovery cache.
			base := []string{"--kubeconfig", kcFile, "--cache-dir", filepath.Join(dir, fmt.Sprint("cold-", i)), "-n", nsCold}
			if out, err := exec.Command(kubectl, append(base, "set", "image", "deploy/web", "web="+image)...).CombinedOutput(); err != nil {
				return fmt.Errorf("kubectl set image: %v: %s", err, out)
			}
			if out, err := exec.Command(kubectl, append(base, "rollout", "status", "deploy/web", "--timeout=300s")...).CombinedOutput(); err != nil {
				return fmt.Errorf("kubectl rollout status: %v: %s", err, out)
			}
			return nil
		}},
	}
	for _, t := range tools {
		setup(t.ns)
	}
	if err := pdTarget.Preflight(ctx); err != nil {
		b.Fatal(err)
	}
	// One unmeasured round warms kubectl's discovery cache and client-go's connections.
	run := func(i int, t *tool) sample {
		d, err := c.Client.AppsV1().Deployments(t.ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			b.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		done := completion(wctx, c, t.ns, d.Generation)
		cnt.take()
		image := fmt.Sprintf("registry.test/web@sha256:%x", sha256.Sum256([]byte(fmt.Sprint(t.name, i))))
		start := time.Now()
		if err := t.deploy(i, image); err != nil {
			b.Fatalf("%s: %v", t.name, err)
		}
		end := time.Now()
		reqs := cnt.take()
		var complete time.Time
		select {
		case complete = <-done:
		case <-wctx.Done():
			b.Fatalf("%s: rollout completion never seen", t.name)
		}
		return sample{wall: end.Sub(start), delay: end.Sub(complete), reqs: reqs}
	}
	for _, t := range tools {
		run(-1, t)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, t := range tools {
			t.samples = append(t.samples, run(i, t))
		}
	}
	b.StopTimer()
	for _, t := range tools {
		var wall, delay []time.Duration
		reqs := 0
		for _, s := range t.samples {
			wall, delay = append(wall, s.wall), append(delay, s.delay)
			reqs += len(s.reqs)
		}
		b.ReportMetric(ms(median(wall)), t.name+"-wall-ms")
		b.ReportMetric(ms(median(delay)), t.name+"-delay-ms")
		b.ReportMetric(float64(reqs)/float64(len(t.samples)), t.name+"-requests")
		b.Logf("%-18s wall median %6.1f ms  max %6.1f ms | return delay median %5.1f ms  max %5.1f ms | requests %s",
			t.name, ms(median(wall)), ms(slicesMax(wall)), ms(median(delay)), ms(slicesMax(delay)), summary(t.samples[len(t.samples)-1].reqs))
	}
}

func release(i int, image string) targets.Release {
	_, dg, _ := strings.Cut(image, "@")
	id := fmt.Sprintf("%s%04d", time.Now().UTC().Format("20060102T150405Z"), i+1)
	h := sha256.Sum256([]byte(image))
	return targets.Release{ID: id, App: "web", Env: "bench", Version: hex.EncodeToString(h[:4]), Digest: dg, Image: image}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func slicesMax(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// summary counts requests by verb and path: "3 (PATCH deployments/web, LIST deployments, ...)".
func summary(reqs []string) string {
	n := map[string]int{}
	var keys []string
	for _, r := range reqs {
		if n[r] == 0 {
			keys = append(keys, r)
		}
		n[r]++
	}
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k
		if n[k] > 1 {
			parts[i] = fmt.Sprintf("%dx %s", n[k], k)
		}
	}
	return fmt.Sprintf("%d [%s]", len(reqs), strings.Join(parts, ", "))
}
