package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// errDeleted ends a watch whose Deployment went away.
var errDeleted = errors.New("deleted")

// wait follows the Deployment until its rollout completes, as `kubectl rollout status`
// does: a list+watch on the one name under watchtools.UntilWithSync (which survives
// expired resource versions and dropped watches), each event judged by rolloutStatus, a
// pure function: kubectl's DeploymentStatusViewer after the fail-fast rules. Beside it an
// informer follows the Deployment's pods, so that a new pod crash-looping or unable to
// start fails the rollout when the kubelet reports it (or, for the states with a grace
// period, when that period ends), not at the deadline. No polling: it returns on the event
// that decides. A passed progress deadline, a deletion or the rollout timeout is an error
// that says which replicas are stuck and why. Objects older than generation (the one our
// patch made) are not judged: a list served from the API server's watch cache may predate
// it, and would look like a finished rollout.
func (d *Deployment) wait(ctx context.Context, generation int64) error {
	wctx, cancel := context.WithTimeout(ctx, d.t.o.rolloutTimeout)
	defer cancel()
	fctx, fail := context.WithCancelCause(wctx)
	defer fail(nil)
	deps := d.t.cs.AppsV1().Deployments(d.t.ns)
	byName := fields.OneTermEqualSelector("metadata.name", d.name).String()
	lw := cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = byName
			l, err := deps.List(ctx, o)
			return l, refused(err, fail)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = byName
			w, err := deps.Watch(ctx, o)
			return w, refused(err, fail)
		},
	}, d.t.cs)
	w := &rolloutWatch{d: d, ff: d.t.o.failFast, kick: make(chan struct{}, 1)}
	started := false
	var last *appsv1.Deployment
	var lastMsg string
	_, err := watchtools.UntilWithSync(fctx, lw, &appsv1.Deployment{}, nil, func(e watch.Event) (bool, error) {
		switch e.Type {
		case watch.Added, watch.Modified:
			dep, ok := e.Object.(*appsv1.Deployment)
			if !ok {
				return false, fmt.Errorf("unexpected object %T", e.Object)
			}
			if dep.Generation < generation {
				return false, nil
			}
			last = dep
			if !started {
				// The pods' watch starts with the first Deployment of our generation: its
				// selector says which pods are the Deployment's.
				if err := w.start(fctx, dep, fail); err != nil {
					return true, err
				}
				started = true
			}
			pods := w.observe(fctx, dep)
			msg, done, err := rolloutStatus(dep, pods, time.Now(), w.ff)
			lastMsg = msg
			return done, err
		case watch.Deleted:
			return true, errDeleted
		default:
			return true, fmt.Errorf("unexpected watch event %q", e.Type)
		}
	})
	if err == nil {
		return nil
	}
	// Explain on a context of its own: wctx may be what ended.
	ectx, ecancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer ecancel()
	var rf *RolloutFailure
	cause := context.Cause(fctx)
	switch {
	case errors.As(err, &rf) || errors.As(cause, &rf):
		return fmt.Errorf("deployment %q failed before its deadline: %w", d.name, rf)
	case apierrors.IsForbidden(cause):
		return d.t.explain(ectx, fmt.Errorf("following the rollout of deployment %q: %w", d.name, cause))
	case errors.Is(err, errDeleted):
		return fmt.Errorf("deployment %q was deleted during the rollout", d.name)
	case ctx.Err() != nil:
		return fmt.Errorf("waiting for the rollout of deployment %q: %w (%s)", d.name, ctx.Err(), lastMsg)
	case wctx.Err() != nil:
		return fmt.Errorf("deployment %q did not roll out within %s: %s%s", d.name, d.t.o.rolloutTimeout, lastMsg, d.stuck(ectx, last))
	case last != nil:
		// The viewer's verdict: the progress deadline passed.
		return fmt.Errorf("%w: %s%s", err, replicas(last), d.stuck(ectx, last))
	default:
		return fmt.Errorf("waiting for the rollout of deployment %q: %w", d.name, err)
	}
}

// refused ends the rollout's wait when the API server refuses a list or a watch: the
// reflector would otherwise retry for ever (or, refused a watch, fall back to listing
// again and again), and a Role that lacks the permission is to be named, not worked around.
func refused(err error, fail context.CancelCauseFunc) error {
	if apierrors.IsForbidden(err) {
		fail(err)
	}
	return err
}

// rolloutWatch is what the two watches of one rollout share: the latest Deployment, the
// pod-template hash of its new ReplicaSet, and the pods the informer holds.
type rolloutWatch struct {
	d    *Deployment
	ff   failFast
	kick chan struct{}

	mu   sync.Mutex
	dep  *appsv1.Deployment
	hash string // the new ReplicaSet's pod-template-hash, "" until known
	pods cache.Store
}

// start runs the informer on the Deployment's pods and the loop that applies the
// fail-fast rules to them; a failure cancels the rollout's wait with the failure as cause.
func (w *rolloutWatch) start(ctx context.Context, dep *appsv1.Deployment, fail context.CancelCauseFunc) error {
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil {
		return fmt.Errorf("deployment %q: selector: %w", w.d.name, err)
	}
	pods := w.d.t.cs.CoreV1().Pods(w.d.t.ns)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = sel.String()
			l, err := pods.List(ctx, o)
			return l, refused(err, fail)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = sel.String()
			w, err := pods.Watch(ctx, o)
			return w, refused(err, fail)
		},
	}
	kick := func() {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	store, ctrl := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: lw,
		ObjectType:    &corev1.Pod{},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { kick() },
			UpdateFunc: func(any, any) { kick() },
			DeleteFunc: func(any) { kick() },
		},
	})
	w.mu.Lock()
	w.pods = store
	w.mu.Unlock()
	go ctrl.RunWithContext(ctx)
	go func() {
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-w.kick:
			case <-timer.C:
			}
			w.mu.Lock()
			dep := w.dep
			w.mu.Unlock()
			f, next := failure(dep, w.newPods(), time.Now(), w.ff)
			if f != nil {
				fail(f)
				return
			}
			timer.Stop()
			if !next.IsZero() {
				timer.Reset(time.Until(next))
			}
		}
	}()
	return nil
}

// observe records dep, finds its new ReplicaSet's pod-template hash once the controller
// has made it, and returns the new ReplicaSet's pods.
func (w *rolloutWatch) observe(ctx context.Context, dep *appsv1.Deployment) []*corev1.Pod {
	w.mu.Lock()
	w.dep = dep
	hash := w.hash
	w.mu.Unlock()
	if hash == "" && dep.Status.ObservedGeneration >= dep.Generation {
		if rss, err := w.d.replicaSets(ctx, dep); err == nil {
			if rs := current(dep, rss); rs != nil {
				w.mu.Lock()
				w.hash = rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
				w.mu.Unlock()
			}
		}
	}
	select { // the pod loop judges the new Deployment too (FailedCreate's grace)
	case w.kick <- struct{}{}:
	default:
	}
	return w.newPods()
}

// newPods are the informer's pods of the new ReplicaSet.
func (w *rolloutWatch) newPods() []*corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.hash == "" || w.pods == nil {
		return nil
	}
	var out []*corev1.Pod
	for _, o := range w.pods.List() {
		if p, ok := o.(*corev1.Pod); ok && p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] == w.hash {
			out = append(out, p)
		}
	}
	return out
}

// replicas summarises a Deployment's replica counts.
func replicas(dep *appsv1.Deployment) string {
	want := int32(1)
	if dep.Spec.Replicas != nil {
		want = *dep.Spec.Replicas
	}
	s := dep.Status
	return fmt.Sprintf("%d of %d replicas updated, %d available, %d unavailable", s.UpdatedReplicas, want, s.AvailableReplicas, s.UnavailableReplicas)
}

// stuck says why the new ReplicaSet's pods are not ready: each container's waiting reason
// (ImagePullBackOff, CrashLoopBackOff...), or the pod's unscheduled condition. It returns
// "" when it cannot tell.
func (d *Deployment) stuck(ctx context.Context, dep *appsv1.Deployment) string {
	if dep == nil {
		return ""
	}
	rss, err := d.replicaSets(ctx, dep)
	if err != nil {
		return "; " + err.Error()
	}
	rs := current(dep, rss)
	if rs == nil {
		return "; the new replica set does not exist yet"
	}
	sel := labels.Set(rs.Spec.Selector.MatchLabels).AsSelector()
	pods, err := d.t.cs.CoreV1().Pods(d.t.ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return fmt.Sprintf("; listing the pods of replica set %q: %v", rs.Name, err)
	}
	var why []string
	notReady := 0
	for _, p := range pods.Items {
		if ready(&p) {
			continue
		}
		notReady++
		if len(why) < 3 {
			why = append(why, fmt.Sprintf("pod %s: %s", p.Name, podReason(&p)))
		}
	}
	if notReady == 0 {
		return fmt.Sprintf("; replica set %s has %d pod(s), none waiting", rs.Name, len(pods.Items))
	}
	s := fmt.Sprintf("; %d new pod(s) of replica set %s not ready: %s", notReady, rs.Name, strings.Join(why, "; "))
	if notReady > len(why) {
		s += fmt.Sprintf("; and %d more", notReady-len(why))
	}
	return s
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podReason is why one pod is not ready.
func podReason(p *corev1.Pod) string {
	var out []string
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		switch {
		case cs.State.Waiting != nil:
			s := fmt.Sprintf("container %q %s", cs.Name, cs.State.Waiting.Reason)
			if m := cs.State.Waiting.Message; m != "" {
				s += " (" + m + ")"
			}
			if cs.RestartCount > 0 {
				s += fmt.Sprintf(", %d restarts", cs.RestartCount)
			}
			out = append(out, s)
		case cs.State.Terminated != nil:
			out = append(out, fmt.Sprintf("container %q terminated: %s, exit code %d", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode))
		case !cs.Ready:
			out = append(out, fmt.Sprintf("container %q running, not ready", cs.Name))
		}
	}
	if len(out) > 0 {
		return strings.Join(out, ", ")
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return fmt.Sprintf("not scheduled: %s (%s)", c.Reason, c.Message)
		}
	}
	return "phase " + string(p.Status.Phase)
}
