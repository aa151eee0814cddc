package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/pushdeploy/pushdeploy/targets"
)

var (
	_ targets.LogReader = (*Deployment)(nil)
	_ targets.Executor  = (*Deployment)(nil)
)

// livePods are the running pods of the Deployment's current ReplicaSet (all its running
// pods when no ReplicaSet runs its template yet), by name, and the container a deploy
// sets, whose logs and commands are the release's. None running is a *targets.NoLiveError.
func (d *Deployment) livePods(ctx context.Context) ([]corev1.Pod, string, error) {
	dep, err := d.get(ctx)
	if err != nil {
		return nil, "", err
	}
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil {
		return nil, "", fmt.Errorf("deployment %q: selector: %w", d.name, err)
	}
	rss, err := d.replicaSets(ctx, dep)
	if err != nil {
		return nil, "", err
	}
	if rs := current(dep, rss); rs != nil {
		if h := rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey]; h != "" {
			req, err := labels.NewRequirement(appsv1.DefaultDeploymentUniqueLabelKey, "=", []string{h})
			if err == nil {
				sel = sel.Add(*req)
			}
		}
	}
	list, err := d.t.cs.CoreV1().Pods(d.t.ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, "", d.t.explain(ctx, fmt.Errorf("listing the pods of deployment %q: %w", d.name, err))
	}
	var pods []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			pods = append(pods, p)
		}
	}
	if len(pods) == 0 {
		return nil, "", &targets.NoLiveError{Host: d.Name(), Detail: fmt.Sprintf("no pod of it runs (%d pods, none running)", len(list.Items))}
	}
	slices.SortFunc(pods, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return pods, d.primary(dep), nil
}

// Logs streams the logs of the release's container in every running pod of the
// Deployment's current ReplicaSet to w, each line prefixed as kubectl logs --prefix does
// ("[pod/NAME/CONTAINER] "), the pods side by side.
func (d *Deployment) Logs(ctx context.Context, w io.Writer, o targets.LogOptions) error {
	pods, ctr, err := d.livePods(ctx)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	errs := make([]error, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			opts := &corev1.PodLogOptions{Container: ctr, Follow: o.Follow}
			if o.Since > 0 {
				s := int64((o.Since + 999_999_999) / 1e9)
				opts.SinceSeconds = &s
			}
			rc, err := d.t.cs.CoreV1().Pods(d.t.ns).GetLogs(p.Name, opts).Stream(ctx)
			if err != nil {
				errs[i] = d.t.explainOperator(ctx, OperatorPermissions()[:1], fmt.Errorf("reading the logs of pod %q (container %q) of deployment %q: %w", p.Name, ctr, d.name, err))
				return
			}
			defer rc.Close()
			lw := targets.NewLineWriter(w, &mu, fmt.Sprintf("[pod/%s/%s] ", p.Name, ctr))
			_, err = io.Copy(lw, rc)
			lw.Close()
			if err != nil && ctx.Err() == nil {
				errs[i] = fmt.Errorf("reading the logs of pod %q of deployment %q: %w", p.Name, d.name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Exec runs argv in the release's container of one running pod of the Deployment (the
// first by name that is ready, else the first), as kubectl exec does (WebSocket, else
// SPDY), streaming stdout and stderr to w. A command that exits non-zero is a
// *targets.ExitError.
func (d *Deployment) Exec(ctx context.Context, argv []string, w io.Writer) error {
	if len(argv) == 0 {
		return errors.New("no command to run")
	}
	pods, ctr, err := d.livePods(ctx)
	if err != nil {
		return err
	}
	pod := pods[0]
	for _, p := range pods {
		if podReady(&p) {
			pod = p
			break
		}
	}
	doing := fmt.Sprintf("running %q in pod %q (container %q) of deployment %q", strings.Join(argv, " "), pod.Name, ctr, d.name)
	req := d.t.cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(d.t.ns).Name(pod.Name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: ctr, Command: argv, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(d.t.cfg, "GET", req.URL().String())
	if err != nil {
		return fmt.Errorf("%s: %w", doing, err)
	}
	spdy, err := remotecommand.NewSPDYExecutor(d.t.cfg, "POST", req.URL())
	if err != nil {
		return fmt.Errorf("%s: %w", doing, err)
	}
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return fmt.Errorf("%s: %w", doing, err)
	}
	w = targets.SyncWriter(w)
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: w, Stderr: w})
	var code utilexec.CodeExitError
	if errors.As(err, &code) {
		return &targets.ExitError{Host: d.Name(), Code: code.Code}
	}
	if err != nil {
		return d.t.explainOperator(ctx, OperatorPermissions()[1:], fmt.Errorf("%s: %w", doing, err))
	}
	return nil
}

// explainOperator turns a failed logs or exec call into what to do about it when the
// credentials lack any of perms (OperatorPermissions): the CI deployer's generated Role
// leaves them out. Over WebSocket a refusal is an upgrade failure, not a Forbidden status,
// so it asks the API server (a SelfSubjectAccessReview each) instead of reading the error.
func (t *Target) explainOperator(ctx context.Context, perms []Permission, err error) error {
	if ctx.Err() != nil {
		return err
	}
	var missing []string
	for _, p := range perms {
		ok, aerr := t.allowed(ctx, p, "")
		if aerr != nil {
			return err
		}
		if !ok {
			missing = append(missing, p.String())
		}
	}
	if len(missing) == 0 {
		return err
	}
	return fmt.Errorf("%w\n%s: the credentials may not %s in namespace %q (a deploy does not need it, so the CI deployer's Role leaves it out): grant it to an operator's account with `pushdeploy rbac --env %s --operator --service-account NAME | kubectl apply -f -`", err, t, strings.Join(missing, ", "), t.ns, t.env)
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
