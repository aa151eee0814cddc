package kubernetes

import (
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestFailFastRules: the pure verdict, table-driven with exact messages: crash loops past
// the restart threshold, waiting reasons and FailedCreate past the grace period (and when
// to judge again before), other states left to the deadline.
func TestFailFastRules(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	ff := failFast{restarts: 3, grace: time.Minute}
	pod := func(reason string, restarts int32, since time.Duration) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web-abc"},
			Status: corev1.PodStatus{
				Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, LastTransitionTime: metav1.NewTime(now.Add(-since))}},
				ContainerStatuses: []corev1.ContainerStatus{
					{Name: "sidecar", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
					{Name: "web", RestartCount: restarts, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "m"}}},
				},
			},
		}
	}
	dep := func(cond *appsv1.DeploymentCondition) *appsv1.Deployment {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"}}
		if cond != nil {
			d.Status.Conditions = []appsv1.DeploymentCondition{*cond}
		}
		return d
	}
	failedCreate := func(since time.Duration) *appsv1.DeploymentCondition {
		return &appsv1.DeploymentCondition{Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue, Reason: "FailedCreate",
			Message: `pods "web-abc-1" is forbidden: exceeded quota: pods`, LastTransitionTime: metav1.NewTime(now.Add(-since))}
	}
	for _, tc := range []struct {
		name string
		dep  *appsv1.Deployment
		pods []*corev1.Pod
		want string
		next time.Time
	}{
		{"crash loop at the threshold", dep(nil), []*corev1.Pod{pod("CrashLoopBackOff", 3, 0)}, `pod "web-abc" container "web" CrashLoopBackOff (m), 3 restarts`, time.Time{}},
		{"crash loop below it", dep(nil), []*corev1.Pod{pod("CrashLoopBackOff", 2, time.Hour)}, "", time.Time{}},
		{"image pull past the grace", dep(nil), []*corev1.Pod{pod("ImagePullBackOff", 0, 61*time.Second)}, `pod "web-abc" container "web" ImagePullBackOff (m)`, time.Time{}},
		{"image pull within it", dep(nil), []*corev1.Pod{pod("ErrImagePull", 0, 20*time.Second)}, "", now.Add(40 * time.Second)},
		{"config error past the grace", dep(nil), []*corev1.Pod{pod("CreateContainerConfigError", 0, time.Minute)}, `pod "web-abc" container "web" CreateContainerConfigError (m)`, time.Time{}},
		{"invalid name", dep(nil), []*corev1.Pod{pod("InvalidImageName", 0, 2*time.Minute)}, `pod "web-abc" container "web" InvalidImageName (m)`, time.Time{}},
		{"creating", dep(nil), []*corev1.Pod{pod("ContainerCreating", 0, time.Hour)}, "", time.Time{}},
		{"failed create past the grace", dep(failedCreate(2 * time.Minute)), nil, `the new replica set cannot create pods: FailedCreate (pods "web-abc-1" is forbidden: exceeded quota: pods)`, time.Time{}},
		{"failed create within it", dep(failedCreate(30 * time.Second)), nil, "", now.Add(30 * time.Second)},
	} {
		f, next := failure(tc.dep, tc.pods, now, ff)
		got := ""
		if f != nil {
			got = f.Error()
		}
		if got != tc.want || !next.Equal(tc.next) {
			t.Errorf("%s: %q, next %v; want %q, next %v", tc.name, got, next, tc.want, tc.next)
		}
	}
	// rolloutStatus: a failure is done with the failure as its error; otherwise kubectl's.
	msg, done, err := rolloutStatus(dep(nil), []*corev1.Pod{pod("CrashLoopBackOff", 5, 0)}, now, ff)
	if !done || err == nil || msg != err.Error() {
		t.Errorf("crash loop: %q, %v, %v", msg, done, err)
	}
	d := dep(nil)
	d.Generation, d.Status.ObservedGeneration = 2, 1
	if msg, done, err := rolloutStatus(d, nil, now, ff); done || err != nil || msg != "Waiting for deployment spec update to be observed..." {
		t.Errorf("unobserved: %q, %v, %v", msg, done, err)
	}
}
