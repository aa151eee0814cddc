package kubernetes

import (
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/kubectl/pkg/polymorphichelpers"
	deploymentutil "k8s.io/kubectl/pkg/util/deployment"
)

// Fail-fast defaults: a rollout fails before its deadline, the way Argo Rollouts aborts,
// once its new pods show they cannot start.
const (
	// DefaultCrashLoopRestarts: a new pod's container in CrashLoopBackOff that has restarted
	// this many times fails the rollout. One restart can be a race with a dependency that
	// starts at the same time; three is a pattern (the kubelet's back-off of 10 s, 20 s,
	// 40 s puts it about a minute after the first failure, far below the 300 s timeout).
	DefaultCrashLoopRestarts = 3
	// DefaultStartGrace is how long a new pod's container may wait in ImagePullBackOff,
	// ErrImagePull, InvalidImageName or CreateContainerConfigError, or the new ReplicaSet
	// report FailedCreate, before the rollout fails: a minute covers the kubelet's first
	// pull retries (a registry that is slow to serve a just-pushed digest), a ConfigMap or
	// Secret applied just after the deploy, and a quota freed by old pods terminating.
	DefaultStartGrace = 60 * time.Second
)

// waitingReasons are the container waiting reasons that fail a rollout past the grace
// period: the pod will not start without a change.
var waitingReasons = map[string]bool{
	"ImagePullBackOff":           true,
	"ErrImagePull":               true,
	"InvalidImageName":           true,
	"CreateContainerConfigError": true,
}

// failFast is when a rollout fails before its deadline.
type failFast struct {
	restarts int32         // CrashLoopBackOff with at least this many restarts
	grace    time.Duration // a waiting reason or FailedCreate lasting longer than this
}

// RolloutFailure is a rollout ended before its deadline because its new pods cannot start:
// a container crash-looping or unable to start, or the ReplicaSet unable to create pods.
type RolloutFailure struct {
	// Deployment is the Deployment's name.
	Deployment string
	// Pod and Container name the failing container; both empty for FailedCreate.
	Pod, Container string
	// Reason is the kubelet's waiting reason (CrashLoopBackOff, ImagePullBackOff...) or
	// FailedCreate.
	Reason string
	// Message is the kubelet's or the ReplicaSet controller's message.
	Message string
	// Restarts is the container's restart count.
	Restarts int32
	// Since is when the state began, as far as the API tells (FailedCreate, waiting).
	Since time.Time
}

func (f *RolloutFailure) Error() string {
	var s string
	if f.Pod == "" {
		s = "the new replica set cannot create pods: " + f.Reason
	} else {
		s = fmt.Sprintf("pod %q container %q %s", f.Pod, f.Container, f.Reason)
	}
	if f.Message != "" {
		s += " (" + f.Message + ")"
	}
	if f.Restarts > 0 {
		s += fmt.Sprintf(", %d restarts", f.Restarts)
	}
	return s
}

// rolloutStatus is the verdict on one rollout at now: the fail-fast rules on the
// Deployment and the new ReplicaSet's pods first, then kubectl's DeploymentStatusViewer
// (observed generation, progress deadline, updated/old/available replicas). It is a pure
// function of its arguments: the waiting feeds it what the watches saw.
func rolloutStatus(dep *appsv1.Deployment, newPods []*corev1.Pod, now time.Time, ff failFast) (msg string, done bool, err error) {
	if f, _ := failure(dep, newPods, now, ff); f != nil {
		return f.Error(), true, f
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(dep)
	if err != nil {
		return "", false, err
	}
	msg, done, err = (&polymorphichelpers.DeploymentStatusViewer{}).Status(&unstructured.Unstructured{Object: u}, 0)
	return strings.TrimSpace(msg), done, err
}

// failure applies the fail-fast rules at now. It returns the failure, or nil and the
// earliest time a state seen now would pass the grace period (zero when none would), so
// that the waiting can judge again then without an event.
func failure(dep *appsv1.Deployment, newPods []*corev1.Pod, now time.Time, ff failFast) (*RolloutFailure, time.Time) {
	var next time.Time
	later := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	if dep != nil {
		if c := deploymentutil.GetDeploymentCondition(dep.Status, appsv1.DeploymentReplicaFailure); c != nil &&
			c.Status == corev1.ConditionTrue && c.Reason == "FailedCreate" {
			since := c.LastTransitionTime.Time
			if !now.Before(since.Add(ff.grace)) {
				return &RolloutFailure{Deployment: dep.Name, Reason: c.Reason, Message: c.Message, Since: since}, time.Time{}
			}
			later(since.Add(ff.grace))
		}
	}
	for _, p := range newPods {
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			w := cs.State.Waiting
			if w == nil {
				continue
			}
			f := &RolloutFailure{Pod: p.Name, Container: cs.Name, Reason: w.Reason, Message: w.Message, Restarts: cs.RestartCount}
			if dep != nil {
				f.Deployment = dep.Name
			}
			switch {
			case w.Reason == "CrashLoopBackOff":
				if cs.RestartCount >= ff.restarts {
					return f, time.Time{}
				}
			case waitingReasons[w.Reason]:
				f.Since = waitingSince(p)
				if !now.Before(f.Since.Add(ff.grace)) {
					return f, time.Time{}
				}
				later(f.Since.Add(ff.grace))
			}
		}
	}
	return nil, next
}

// waitingSince is when a pod's containers began waiting, as far as the API tells: the
// last change of its Ready condition (a pod that never ran: when the kubelet took it),
// else its start time, else its creation.
func waitingSince(p *corev1.Pod) time.Time {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && !c.LastTransitionTime.IsZero() {
			return c.LastTransitionTime.Time
		}
	}
	if p.Status.StartTime != nil {
		return p.Status.StartTime.Time
	}
	return p.CreationTimestamp.Time
}
