package kubernetes_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	k8sbench "github.com/pushdeploy/pushdeploy/internal/testbench/k8s"
	"github.com/pushdeploy/pushdeploy/pipeline"
	"github.com/pushdeploy/pushdeploy/targets"
	"github.com/pushdeploy/pushdeploy/targets/kubernetes"
)

// TestRoleShape: the generated Role is namespaced, names the Deployments, the Lease and
// the journal ConfigMap by resourceNames, grants only what Permissions lists (the code's
// own calls), and renders as two YAML documents kubectl can apply.
func TestRoleShape(t *testing.T) {
	tg, err := kubernetes.New("shop", "prod", []kubernetes.Workload{{Name: "web"}, {Name: "worker"}},
		kubernetes.WithKubeconfig([]byte(kubeconfigStub)), kubernetes.WithNamespace("shop-prod"))
	if err != nil {
		t.Fatal(err)
	}
	role, rb, err := tg.Role("", false)
	if err != nil {
		t.Fatal(err)
	}
	if role.Namespace != "shop-prod" || rb.Namespace != "shop-prod" || role.Name != "pushdeploy-shop-prod" || rb.RoleRef.Name != role.Name {
		t.Errorf("role %s/%s, binding %s/%s -> %s", role.Namespace, role.Name, rb.Namespace, rb.Name, rb.RoleRef.Name)
	}
	if len(rb.Subjects) != 1 || rb.Subjects[0].Kind != "ServiceAccount" || rb.Subjects[0].Name != kubernetes.DefaultServiceAccount || rb.Subjects[0].Namespace != "shop-prod" {
		t.Errorf("subjects %+v", rb.Subjects)
	}
	var granted, used []string
	names := map[string][]string{}
	for _, r := range role.Rules {
		for _, v := range r.Verbs {
			granted = append(granted, kubernetes.Permission{Group: r.APIGroups[0], Resource: r.Resources[0], Verb: v}.String())
			names[v+" "+r.Resources[0]] = r.ResourceNames
		}
	}
	for _, p := range kubernetes.Permissions() {
		used = append(used, p.String())
	}
	slices.Sort(granted)
	slices.Sort(used)
	if !slices.Equal(granted, used) {
		t.Errorf("role grants %v\nthe target uses %v", granted, used)
	}
	for k, want := range map[string][]string{
		"patch deployments": {"web", "worker"}, "watch deployments": {"web", "worker"},
		"update leases": {"pushdeploy-shop-prod"}, "create leases": nil,
		"update configmaps": {"pushdeploy-shop-prod-journal"}, "list pods": nil,
	} {
		if !slices.Equal(names[k], want) {
			t.Errorf("%s: resourceNames %v, want %v", k, names[k], want)
		}
	}
	b, err := tg.RoleYAML("deployer", false)
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(b), "\n---\n")
	var back rbacv1.RoleBinding
	if len(docs) != 2 || yaml.UnmarshalStrict([]byte(docs[1]), &back) != nil || back.Subjects[0].Name != "deployer" {
		t.Errorf("yaml:\n%s", b)
	}
	if strings.Contains(string(b), "creationTimestamp") {
		t.Errorf("yaml has creation timestamps:\n%s", b)
	}
}

const kubeconfigStub = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`

// generatedRole applies the target's generated Role, edited by edit, for a new
// ServiceAccount in ns, and returns a target that acts with that ServiceAccount's token
// once the authorizer knows the Role.
func generatedRole(t *testing.T, c *k8sbench.Cluster, ns string, ws []kubernetes.Workload, edit func([]rbacv1.PolicyRule) []rbacv1.PolicyRule) (*kubernetes.Target, []rbacv1.PolicyRule) {
	t.Helper()
	admin := target(t, c.Kubeconfig, ns, ws)
	role, rb, err := admin.Role("deployer", false)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		role.Rules = edit(role.Rules)
	}
	_, err = c.Client.CoreV1().ServiceAccounts(ns).Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "deployer"}}, metav1.CreateOptions{})
	must(t, err)
	_, err = c.Client.RbacV1().Roles(ns).Create(t.Context(), role, metav1.CreateOptions{})
	must(t, err)
	_, err = c.Client.RbacV1().RoleBindings(ns).Create(t.Context(), rb, metav1.CreateOptions{})
	must(t, err)
	kc, err := c.TokenKubeconfig(t.Context(), ns, "deployer")
	if err != nil {
		t.Fatal(err)
	}
	// RBAC reaches the authorizer through an informer: wait until the binding counts (a
	// Role's first verb on Deployments is granted in every variant but the one without it).
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for {
		r, err := c.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, sarFor(ns, role.Rules), metav1.CreateOptions{})
		if err == nil && r.Status.Allowed {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the generated role never took effect: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return target(t, kc, ns, ws, kubernetes.WithStartGrace(0)), role.Rules
}

// sarFor asks whether the deployer may do the first verb of the first rule.
func sarFor(ns string, rules []rbacv1.PolicyRule) *authorizationv1.SubjectAccessReview {
	r := rules[0]
	name := ""
	if len(r.ResourceNames) > 0 {
		name = r.ResourceNames[0]
	}
	return &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   "system:serviceaccount:" + ns + ":deployer",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Group: r.APIGroups[0], Resource: r.Resources[0], Verb: r.Verbs[0], Name: name,
		},
	}}
}

// flow is the whole life of an environment: deploy twice, a crash-looping deploy that
// fails fast and is undone (its revision marked failed), rollback to the last good
// release, status, history, and breaking a lock. It returns the first failure.
func flow(ctx context.Context, tg *kubernetes.Target, log pipeline.Option) error {
	opts := []pipeline.Option{log, pipeline.WithOwner("tester", "")}
	good1 := release("20261201T110000Z", "registry.test/web")
	good2 := release("20261201T110100Z", "registry.test/web")
	for _, r := range []targets.Release{good1, good2} {
		if _, err := pipeline.Rollout(ctx, tg, r, opts...); err != nil {
			return fmt.Errorf("deploy: %w", err)
		}
	}
	bad := release("20261201T110200Z", "registry.test/web-crash")
	_, err := pipeline.Rollout(ctx, tg, bad, opts...)
	var rf *kubernetes.RolloutFailure
	if !errors.As(err, &rf) {
		return fmt.Errorf("fail-fast deploy: %v, want a fail-fast failure", err)
	}
	st, err := pipeline.Status(ctx, tg)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if !slices.ContainsFunc(st[0].Kept, func(k targets.Kept) bool { return k.ID == bad.ID && k.Failed }) {
		return fmt.Errorf("status: the failed release is not marked failed: %+v", st[0].Kept)
	}
	res, err := pipeline.Rollback(ctx, tg, "", opts...)
	if err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	if res.Record.Release != good1.ID {
		return fmt.Errorf("rollback went to %q, want %q", res.Record.Release, good1.ID)
	}
	st, err = pipeline.Status(ctx, tg)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if err := pipeline.StatusError([]pipeline.EnvStatus{{Env: "test", Kind: "kubernetes", Hosts: st}}); err != nil || st[0].Rollout != kubernetes.RolloutComplete {
		return fmt.Errorf("status: %v (rollout %q)", err, st[0].Rollout)
	}
	// Every operation's record is in the journal: two deploys, the failed one, the rollback.
	if recs, err := pipeline.History(ctx, tg, 0); err != nil || len(recs) != 4 {
		return fmt.Errorf("history: %d records, want 4: %v", len(recs), err)
	}
	if _, err := tg.Deployments()[0].History(ctx); err != nil {
		return fmt.Errorf("revisions: %w", err)
	}
	lk := tg.Locker()
	now := time.Now()
	if err := lk.Acquire(ctx, targets.Lock{Owner: "dead deploy", Acquired: now, Expires: now.Add(time.Hour)}); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if err := lk.Break(ctx); err != nil {
		return fmt.Errorf("unlock: %w", err)
	}
	if h, err := lk.Holder(ctx); err != nil || h != nil {
		return fmt.Errorf("unlock: still held by %v, %v", h, err)
	}
	return nil
}

// TestGeneratedRole runs the whole flow with a token of exactly the generated Role.
func TestGeneratedRole(t *testing.T) {
	t.Parallel()
	c := k8sbench.Shared(t)
	ns := c.Namespace(t)
	deployment(t, c, ns, "web", 1, 600)
	tg, _ := generatedRole(t, c, ns, []kubernetes.Workload{{Name: "web"}}, nil)
	if err := flow(t.Context(), tg, pipeline.WithLogger(logWriter{t})); err != nil {
		t.Fatal(err)
	}
}

// TestGeneratedRoleHasNoUnusedRule removes each rule of the generated Role in turn: some
// step of the flow must then fail. The preflight is skipped, so that what fails is the
// call that needs the rule (or what it should have done: a journal record missing, a failed
// release not marked), not the preflight's list of the permissions: no rule is unused.
func TestGeneratedRoleHasNoUnusedRule(t *testing.T) {
	t.Parallel()
	c := k8sbench.Shared(t)
	probe := target(t, c.Kubeconfig, "default", []kubernetes.Workload{{Name: "web"}})
	for i, rule := range probe.Rules(false) {
		t.Run(fmt.Sprintf("%d-%s-%s", i, rule.Resources[0], strings.Join(rule.Verbs, "-")), func(t *testing.T) {
			t.Parallel()
			ns := c.Namespace(t)
			deployment(t, c, ns, "web", 1, 600)
			without := func(rs []rbacv1.PolicyRule) []rbacv1.PolicyRule { return slices.Delete(slices.Clone(rs), i, i+1) }
			tg, _ := generatedRole(t, c, ns, []kubernetes.Workload{{Name: "web"}}, without)
			kubernetes.SkipPreflight(tg)
			err := flow(t.Context(), tg, pipeline.WithLogger(logWriter{t}))
			if err == nil {
				t.Fatalf("the flow succeeded without rule %+v: the rule is unused", rule)
			}
			t.Logf("without %v %s: %v", rule.Verbs, rule.Resources[0], err)
		})
	}
}
