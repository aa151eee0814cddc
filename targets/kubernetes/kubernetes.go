// Package kubernetes deploys images to Kubernetes Deployments through client-go, the way
// `kubectl set image` + `kubectl rollout status` + `kubectl rollout undo` do, without kubectl.
//
// Each Deployment of an application is a host. Activating a release patches the named
// containers' image, pinned by digest, with the release recorded in pod-template
// annotations and the change-cause annotation, under the field manager "pushdeploy"; then it
// watches the Deployment with kubectl's own status viewer until the rollout completes, its
// progress deadline passes, it is deleted, or the rollout timeout ends. Activating an older
// release restores the pod template of the ReplicaSet that ran it (`kubectl rollout undo`).
// The deploy lock is a coordination.k8s.io Lease and the journal a ConfigMap, both in the
// Deployments' namespace; Preflight asks the API server for every permission this needs
// before anything changes (deploy/kubernetes/rbac.yaml grants exactly those).
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/pushdeploy/pushdeploy/targets"
)

// Workload is one Deployment of the application and the containers that run its image.
type Workload struct {
	// Name is the Deployment's name.
	Name string
	// Containers are the containers whose image a deploy sets. Empty means the Deployment's
	// only container, or when it has several, the one named like the Deployment (never
	// every container: sidecars keep their images).
	Containers []string
}

// Target is an application's Deployments in one namespace.
type Target struct {
	app, env string
	ns       string
	o        *options
	cs       kubernetes.Interface
	cfg      *rest.Config // for the streams of exec
	hosts    []*Deployment
	lease    *Lease
	journal  *Journal

	pre struct {
		sync.Mutex
		ok bool
	}
}

// Compile-time checks that the types implement what the pipeline uses.
var (
	_ targets.Target  = (*Target)(nil)
	_ targets.Host    = (*Deployment)(nil)
	_ targets.Locker  = (*Lease)(nil)
	_ targets.Journal = (*Journal)(nil)
)

// New returns the target for app in env: the Deployments of workloads, reached with the
// credentials the options give. It talks to no server: Preflight (run by the first step
// that changes anything) checks the credentials, the namespace and the Deployments.
func New(app, env string, workloads []Workload, opts ...Option) (*Target, error) {
	for _, n := range []struct{ what, v string }{{"app", app}, {"environment", env}} {
		if errs := validation.IsDNS1123Label(n.v); len(errs) > 0 {
			return nil, fmt.Errorf("kubernetes target: %s name %q: %s", n.what, n.v, strings.Join(errs, "; "))
		}
	}
	if len(workloads) == 0 {
		return nil, fmt.Errorf("kubernetes target %s/%s: no deployments given", app, env)
	}
	o, err := makeOptions(opts...)
	if err != nil {
		return nil, fmt.Errorf("kubernetes target %s/%s: %w", app, env, err)
	}
	cfg, ns, err := restConfig(o)
	if err != nil {
		return nil, fmt.Errorf("kubernetes target %s/%s: %w", app, env, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes target %s/%s: client: %w", app, env, err)
	}
	t := &Target{app: app, env: env, ns: ns, o: o, cs: cs, cfg: cfg}
	seen := map[string]bool{}
	for _, w := range workloads {
		if errs := validation.IsDNS1123Subdomain(w.Name); len(errs) > 0 {
			return nil, fmt.Errorf("kubernetes target %s/%s: deployment name %q: %s", app, env, w.Name, strings.Join(errs, "; "))
		}
		if seen[w.Name] {
			return nil, fmt.Errorf("kubernetes target %s/%s: deployment %q given twice", app, env, w.Name)
		}
		seen[w.Name] = true
		containers := slices.Clone(w.Containers)
		for _, c := range containers {
			if errs := validation.IsDNS1123Label(c); len(errs) > 0 {
				return nil, fmt.Errorf("kubernetes target %s/%s: deployment %q: container name %q: %s", app, env, w.Name, c, strings.Join(errs, "; "))
			}
		}
		t.hosts = append(t.hosts, &Deployment{t: t, name: w.Name, containers: containers, prepared: map[string]targets.Release{}})
	}
	name := "pushdeploy-" + app + "-" + env
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return nil, fmt.Errorf("kubernetes target %s/%s: lease name %q: %s", app, env, name, strings.Join(errs, "; "))
	}
	t.lease = &Lease{t: t, name: name}
	t.journal = &Journal{t: t, name: name + "-journal"}
	return t, nil
}

// restConfig builds the client configuration and picks the namespace.
func restConfig(o *options) (*rest.Config, string, error) {
	var cfg *rest.Config
	ns := o.namespace
	switch {
	case o.restConfig != nil:
		cfg = o.restConfig
	case o.inCluster:
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, "", fmt.Errorf("in-cluster config: %w", err)
		}
		cfg = c
		if ns == "" {
			if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
				ns = strings.TrimSpace(string(b))
			}
		}
	default:
		raw, err := clientcmd.Load(o.kubeconfig)
		if err != nil {
			// The loader's message names the YAML line, not its content.
			return nil, "", fmt.Errorf("parsing kubeconfig: %w", err)
		}
		if o.kubeContext != "" && raw.Contexts[o.kubeContext] == nil {
			var names []string
			for n := range raw.Contexts {
				names = append(names, n)
			}
			slices.Sort(names)
			return nil, "", fmt.Errorf("kubeconfig has no context %q (it has: %s)", o.kubeContext, strings.Join(names, ", "))
		}
		cc := clientcmd.NewNonInteractiveClientConfig(*raw, o.kubeContext, &clientcmd.ConfigOverrides{}, nil)
		c, err := cc.ClientConfig()
		if err != nil {
			return nil, "", fmt.Errorf("kubeconfig: %w", err)
		}
		cfg = c
		if ns == "" {
			if n, _, err := cc.Namespace(); err == nil {
				ns = n
			}
		}
	}
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	// Field managers default to the user agent's first word: name ourselves even where a
	// request carries no explicit manager.
	cfg.UserAgent = o.fieldManager
	// client-go's default 5 requests/s would throttle a deploy of several Deployments.
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 50, 100
	}
	return cfg, ns, nil
}

// Kind is "kubernetes".
func (t *Target) Kind() string { return "kubernetes" }

// Namespace is the namespace of the Deployments, the Lease and the journal.
func (t *Target) Namespace() string { return t.ns }

// Hosts are the Deployments in the order given.
func (t *Target) Hosts() []targets.Host {
	out := make([]targets.Host, len(t.hosts))
	for i, h := range t.hosts {
		out[i] = h
	}
	return out
}

// Deployments are the hosts with their Kubernetes-specific methods (History).
func (t *Target) Deployments() []*Deployment { return t.hosts }

// Locker is the Lease "pushdeploy-<app>-<env>".
func (t *Target) Locker() targets.Locker { return t.lease }

// Journal is the ConfigMap "pushdeploy-<app>-<env>-journal".
func (t *Target) Journal() targets.Journal { return t.journal }

// Close releases nothing: client-go's connections are pooled and idle ones time out.
func (t *Target) Close() error { return nil }

// String names the target in messages: "kubernetes namespace \"prod\"".
func (t *Target) String() string { return fmt.Sprintf("kubernetes namespace %q", t.ns) }

// Permission is one thing the target does to the API server.
type Permission struct {
	Group    string // "" for the core group
	Resource string
	Verb     string
	// Object says which of the target's objects the call names, so that a Role can grant it
	// by resourceNames: ObjectDeployments, ObjectLease or ObjectJournal; "" when the call
	// names none the target knows beforehand (a list by label, a create, a ReplicaSet).
	Object string
}

// Objects a Permission names.
const (
	ObjectDeployments = "deployments" // the target's Deployments
	ObjectLease       = "lease"       // the lock Lease
	ObjectJournal     = "journal"     // the journal ConfigMap
)

func (p Permission) String() string {
	r := p.Resource
	if p.Group != "" {
		r += "." + p.Group
	}
	return p.Verb + " " + r
}

// Permissions lists every call the target makes, as (verb, resource) in its namespace and
// the objects it names: the one list the preflight asks for, deploy/kubernetes/rbac.yaml
// grants and Role generates a Role from.
func Permissions() []Permission {
	return []Permission{
		{"apps", "deployments", "get", ObjectDeployments},   // status, plan, preflight
		{"apps", "deployments", "list", ObjectDeployments},  // rollout watch: the list half, by a metadata.name field selector
		{"apps", "deployments", "watch", ObjectDeployments}, // rollout watch, by name too
		{"apps", "deployments", "patch", ObjectDeployments}, // set image, roll back
		{"apps", "replicasets", "list", ""},                 // revisions: status, history, rollback
		{"apps", "replicasets", "patch", ""},                // mark a failed release's revision (AnnotationFailed)
		{"", "pods", "list", ""},                            // why a rollout is stuck: the new pods' waiting reasons
		{"", "pods", "watch", ""},                           // fail fast: the new pods' crash loops and pull errors
		{"coordination.k8s.io", "leases", "get", ObjectLease},
		{"coordination.k8s.io", "leases", "create", ""},          // a create names no existing object: RBAC cannot restrict it by name
		{"coordination.k8s.io", "leases", "update", ObjectLease}, // acquire, renew, release: no delete needed
		{"", "configmaps", "get", ObjectJournal},
		{"", "configmaps", "create", ""},
		{"", "configmaps", "update", ObjectJournal}, // the journal
	}
}

// OperatorPermissions are what logs and exec add to Permissions: reading a pod's logs and
// running a command in one. A deploy needs neither, so the CI deployer's Role leaves them out
// and `rbac --operator` grants them to an operator's account. Exec's WebSocket upgrade is
// a GET, authorized as get (create where the API server's
// AuthorizePodWebsocketUpgradeCreatePermission gate is on); its SPDY fallback a POST, create.
func OperatorPermissions() []Permission {
	return []Permission{
		{"", "pods/log", "get", ""},     // logs
		{"", "pods/exec", "get", ""},    // exec over WebSocket
		{"", "pods/exec", "create", ""}, // exec over SPDY, and over WebSocket behind the gate
	}
}

// names are the names of the target's objects p names; nil when it names none.
func (t *Target) names(p Permission) []string {
	switch p.Object {
	case ObjectDeployments:
		var out []string
		for _, d := range t.hosts {
			out = append(out, d.name)
		}
		return out
	case ObjectLease:
		return []string{t.lease.name}
	case ObjectJournal:
		return []string{t.journal.name}
	}
	return nil
}

// Preflight checks, before anything changes, that the credentials hold every permission
// the target uses in its namespace (one SelfSubjectAccessReview each), that the namespace
// exists, and that every Deployment exists with the named containers. The error names each
// missing permission. Lock, Prepare, Activate and the journal run it once per target.
func (t *Target) Preflight(ctx context.Context) error {
	t.pre.Lock()
	defer t.pre.Unlock()
	if t.pre.ok {
		return nil
	}
	if err := t.preflight(ctx); err != nil {
		return err
	}
	t.pre.ok = true
	return nil
}

// allowed asks the API server (a SelfSubjectAccessReview) whether the credentials hold p in
// the target's namespace, on the object name ("" any); p's resource may name a subresource
// ("pods/log").
func (t *Target) allowed(ctx context.Context, p Permission, name string) (bool, error) {
	res, sub, _ := strings.Cut(p.Resource, "/")
	r, err := t.cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: t.ns, Group: p.Group, Resource: res, Subresource: sub, Verb: p.Verb, Name: name,
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return r.Status.Allowed, nil
}

func (t *Target) preflight(ctx context.Context) error {
	// One review per permission and object named: a Role may grant by resourceNames.
	type review struct {
		p    Permission
		name string
	}
	var reviews []review
	for _, p := range Permissions() {
		names := t.names(p)
		if len(names) == 0 {
			names = []string{""}
		}
		for _, n := range names {
			reviews = append(reviews, review{p, n})
		}
	}
	allowed := make([]bool, len(reviews))
	errs := make([]error, len(reviews))
	var wg sync.WaitGroup
	for i, rv := range reviews {
		wg.Go(func() {
			allowed[i], errs[i] = t.allowed(ctx, rv.p, rv.name)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: asking the API server for permissions: %w", t, err)
	}
	var missing []string
	for i, rv := range reviews {
		if !allowed[i] {
			m := rv.p.String()
			if rv.name != "" {
				m += fmt.Sprintf(" %q", rv.name)
			}
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("%s: the credentials lack %d permission(s) the deploy needs: %s (pushdeploy rbac --env %s prints a Role that grants them)",
			t, len(missing), strings.Join(missing, ", "), t.env)
		if len(missing) == len(reviews) {
			msg += "; none is granted: is the namespace right?"
		}
		return errors.New(msg)
	}
	if err := t.namespaceExists(ctx); err != nil {
		return err
	}
	for _, d := range t.hosts {
		dep, err := d.get(ctx)
		if err != nil {
			return err
		}
		if err := d.checkContainers(dep); err != nil {
			return err
		}
	}
	return nil
}

// namespaceExists says whether the namespace exists, by a dry-run create of the lock Lease:
// reading the namespace itself takes a cluster-wide permission the Role does not grant.
func (t *Target) namespaceExists(ctx context.Context) error {
	_, err := t.cs.CoordinationV1().Leases(t.ns).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: t.lease.name}},
		metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldManager: t.o.fieldManager})
	switch {
	case err == nil || apierrors.IsAlreadyExists(err) || apierrors.IsForbidden(err):
		return nil // exists, or we cannot tell
	case apierrors.IsNotFound(err):
		return fmt.Errorf("namespace %q does not exist", t.ns)
	default:
		return fmt.Errorf("%s: checking the namespace: %w", t, err)
	}
}

// explain turns a refusal of the API server into the preflight's list of every missing
// permission: reads (status, plan) do not run the preflight, but when one is forbidden the
// whole list is more use than the one refusal.
func (t *Target) explain(ctx context.Context, err error) error {
	if !apierrors.IsForbidden(err) {
		return err
	}
	if perr := t.Preflight(ctx); perr != nil {
		return perr
	}
	return err
}
