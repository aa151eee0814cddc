package kubernetes_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	k8sbench "github.com/pushdeploy/pushdeploy/internal/testbench/k8s"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/pipeline/config"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/kubernetes"
)

// eventually retries fn every 50 ms until it returns nil or a minute passes: kwok picks
// up the ClusterLogs and ClusterExec objects a test creates through a watch.
func eventually(t *testing.T, what string, fn func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for {
		err := fn()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestLogsAndExecThroughKwok: a Deployment's pods' logs and exec in one of its pods, as
// real requests through the API server to kwok's kubelet server (the pods' logs come from
// a file in CRI format, exec runs on this machine: kwok has no containers).
func TestLogsAndExecThroughKwok(t *testing.T) {
	c := k8sbench.Shared(t)
	ns := c.Namespace(t)
	deployment(t, c, ns, "web", 2, 60)
	tg := target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: "web"}})
	h := tg.Hosts()[0]
	file := c.PodLogs(t, ns)
	// A line from long ago, in the runtime's format, that --since leaves out.
	if err := os.WriteFile(file, []byte("2020-01-02T03:04:05.000000000Z stdout F an old line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	k8sbench.AppendPodLog(t, file, "stdout", "hello from the release")
	k8sbench.AppendPodLog(t, file, "stderr", "a warning")

	var out string
	eventually(t, "reading the pods' logs", func() error {
		var b bytes.Buffer
		if err := h.(targets.LogReader).Logs(t.Context(), &b, targets.LogOptions{}); err != nil {
			return err
		}
		out = b.String()
		return nil
	})
	// Two pods, each line prefixed as kubectl logs --prefix does, stdout and stderr.
	if n := strings.Count(out, "hello from the release\n"); n != 2 || strings.Count(out, "an old line") != 2 || strings.Count(out, "a warning\n") != 2 || !strings.Contains(out, "[pod/web-") || !strings.Contains(out, "/web] hello") {
		t.Errorf("logs of two pods:\n%s", out)
	}

	var recent bytes.Buffer
	if err := h.(targets.LogReader).Logs(t.Context(), &recent, targets.LogOptions{Since: time.Hour}); err != nil || strings.Contains(recent.String(), "an old line") || strings.Count(recent.String(), "a warning") != 2 {
		t.Errorf("logs since an hour ago: %v\n%s", err, recent.String())
	}

	// --follow: a line written after the stream started arrives, and cancelling ends it.
	ctx, cancel := context.WithCancel(t.Context())
	var follow syncBuffer
	done := make(chan error, 1)
	go func() { done <- h.(targets.LogReader).Logs(ctx, &follow, targets.LogOptions{Follow: true}) }()
	eventually(t, "the first lines followed", func() error {
		if strings.Count(follow.String(), "a warning") < 2 {
			return errors.New("not yet: " + follow.String())
		}
		return nil
	})
	k8sbench.AppendPodLog(t, file, "stdout", "a new line")
	eventually(t, "the new line followed", func() error {
		if strings.Count(follow.String(), "a new line") < 2 {
			return errors.New("not yet: " + follow.String())
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("follow ended by the caller: %v", err)
	}

	// exec runs in one pod; its output and exit status come back.
	dir := t.TempDir()
	c.PodExec(t, ns, dir, map[string]string{"MARK": "in-the-pod"})
	eventually(t, "exec in a pod", func() error {
		var b bytes.Buffer
		if err := h.(targets.Executor).Exec(t.Context(), []string{"sh", "-c", `echo "$MARK"; pwd; echo oops >&2`}, &b); err != nil {
			return err
		}
		out = b.String()
		return nil
	})
	// stdout and stderr are two streams: their order between each other is not kept.
	if want := "in-the-pod\n" + dir + "\n"; len(out) != len(want+"oops\n") || !strings.Contains(out, want) || !strings.Contains(out, "oops\n") {
		t.Errorf("exec output %q", out)
	}
	// A failing command fails. (A kubelet reports its status as NonZeroExitCode, which
	// becomes a *targets.ExitError with the code; kwok's exec reports an internal error
	// that only names the status, so here the code is in the message.)
	var b bytes.Buffer
	err := h.(targets.Executor).Exec(t.Context(), []string{"sh", "-c", "exit 3"}, &b)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "deployment \"web\"") {
		t.Errorf("a failing command: %v", err)
	}

	// No pod runs: a clear error naming the Deployment.
	zero := int32(0)
	_, dep := images(t, c, ns, "web")
	dep.Spec.Replicas = &zero
	if _, err := c.Client.AppsV1().Deployments(ns).Update(t.Context(), dep, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var nolive *targets.NoLiveError
	eventually(t, "no pod left", func() error {
		err := h.(targets.Executor).Exec(t.Context(), []string{"true"}, &b)
		if errors.As(err, &nolive) {
			return nil
		}
		return errors.New("still a pod")
	})
	if !strings.Contains(nolive.Error(), "deployment/web has no live release") {
		t.Errorf("no pod: %v", nolive)
	}
}

// TestPipelineLogsAndExecOnDeployments: pipeline's logs and exec over two Deployments,
// through the API server and kwok: every line prefixed by its Deployment and pod, exec in
// one pod of each, --host picking one Deployment by its bare name.
func TestPipelineLogsAndExecOnDeployments(t *testing.T) {
	c := k8sbench.Shared(t)
	ns := c.Namespace(t)
	deployment(t, c, ns, "web", 2, 60)
	deployment(t, c, ns, "worker", 1, 60)
	file := c.PodLogs(t, ns)
	k8sbench.AppendPodLog(t, file, "stdout", "served a request")
	c.PodExec(t, ns, t.TempDir(), nil)
	f, err := config.Parse("pushdeploy.yaml", []byte("app: shop\nenvironments:\n  test:\n    kubernetes:\n      deployments: [web, worker]\n"))
	if err != nil {
		t.Fatal(err)
	}
	x := &pipeline.Environments{File: f, Targets: func(context.Context, *config.File, string, *pipeline.Secrets) (targets.Target, error) {
		return target(t, c.Kubeconfig, ns, []kubernetes.Workload{{Name: "web"}, {Name: "worker"}}), nil
	}}
	var out bytes.Buffer
	eventually(t, "logs of both deployments", func() error {
		out.Reset()
		_, err := x.Logs(t.Context(), "test", &out, pipeline.LogsSince(time.Hour))
		return err
	})
	if strings.Count(out.String(), "deployment/web    | [pod/web-") != 2 || strings.Count(out.String(), "deployment/worker | [pod/worker-") != 1 ||
		strings.Count(out.String(), "] served a request\n") != 3 {
		t.Errorf("logs of 2+1 pods:\n%s", out.String())
	}
	var rep *pipeline.OutputReport
	eventually(t, "exec in one pod of web", func() error {
		var err error
		rep, err = x.Exec(t.Context(), "test", pipeline.ShellCommand("echo hi"), nil, pipeline.ExecHost("web"))
		return err
	})
	if len(rep.Hosts) != 1 || rep.Hosts[0].Host != "deployment/web" || rep.Hosts[0].Output != "hi\n" {
		t.Errorf("exec on web: %+v", rep)
	}
}

// TestOperatorRole: the deployer's generated Role grants neither logs nor exec, and each
// fails naming the permission it lacks and the command that grants it; the operator's Role
// (`rbac --operator`), applied beside it under its own name, makes both work with the same
// token, and leaves the deployer's binding as it was.
func TestOperatorRole(t *testing.T) {
	t.Parallel()
	c := k8sbench.Shared(t)
	ns := c.Namespace(t)
	deployment(t, c, ns, "web", 1, 60)
	k8sbench.AppendPodLog(t, c.PodLogs(t, ns), "stdout", "hello operator")
	c.PodExec(t, ns, t.TempDir(), nil)
	ws := []kubernetes.Workload{{Name: "web"}}
	tg, _ := generatedRole(t, c, ns, ws, nil)
	h := tg.Hosts()[0]
	var b bytes.Buffer
	// The pods exist (list pods is the deployer's) before logs can be refused for them.
	eventually(t, "a pod of web", func() error {
		err := h.(targets.LogReader).Logs(t.Context(), &b, targets.LogOptions{})
		var nolive *targets.NoLiveError
		if err == nil || errors.As(err, &nolive) {
			return errors.New("no refusal yet")
		}
		return nil
	})
	err := h.(targets.LogReader).Logs(t.Context(), &b, targets.LogOptions{})
	if err == nil || !strings.Contains(err.Error(), "may not get pods/log") || !strings.Contains(err.Error(), "rbac --env test --operator") {
		t.Errorf("logs with the deployer's Role: %v", err)
	}
	err = h.(targets.Executor).Exec(t.Context(), []string{"true"}, &b)
	if err == nil || !strings.Contains(err.Error(), "may not get pods/exec, create pods/exec") || !strings.Contains(err.Error(), "--operator") {
		t.Errorf("exec with the deployer's Role: %v", err)
	}

	admin := target(t, c.Kubeconfig, ns, ws)
	role, rb, err := admin.Role("deployer", true)
	if err != nil {
		t.Fatal(err)
	}
	if role.Name != "pushdeploy-shop-test-operator" || rb.Name != role.Name {
		t.Errorf("operator role %q, binding %q", role.Name, rb.Name)
	}
	_, err = c.Client.RbacV1().Roles(ns).Create(t.Context(), role, metav1.CreateOptions{})
	must(t, err)
	_, err = c.Client.RbacV1().RoleBindings(ns).Create(t.Context(), rb, metav1.CreateOptions{})
	must(t, err)
	eventually(t, "logs with the operator's Role", func() error {
		b.Reset()
		if err := h.(targets.LogReader).Logs(t.Context(), &b, targets.LogOptions{}); err != nil {
			return err
		}
		if !strings.Contains(b.String(), "hello operator") {
			return errors.New("no line: " + b.String())
		}
		return nil
	})
	eventually(t, "exec with the operator's Role", func() error {
		return h.(targets.Executor).Exec(t.Context(), []string{"true"}, &b)
	})
	if _, err := c.Client.RbacV1().RoleBindings(ns).Get(t.Context(), "pushdeploy-shop-test", metav1.GetOptions{}); err != nil {
		t.Errorf("the deployer's binding: %v", err)
	}
}
