package kubernetes

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
)

// Option configures a Kubernetes target.
type Option func(*options) error

type options struct {
	kubeconfig     []byte
	kubeContext    string
	namespace      string
	inCluster      bool
	restConfig     *rest.Config
	rolloutTimeout time.Duration
	fieldManager   string
	journalLimit   int
	failFast       failFast
}

// DefaultRolloutTimeout is how long Activate waits for a Deployment to roll out unless
// WithRolloutTimeout says otherwise: the seed's `kubectl rollout status --timeout=300s`.
const DefaultRolloutTimeout = 300 * time.Second

// DefaultFieldManager names pushdeploy in the Deployments' managedFields.
const DefaultFieldManager = "pushdeploy"

// makeOptions sets every default, applies opts, then rejects bad combinations.
func makeOptions(opts ...Option) (*options, error) {
	o := &options{
		rolloutTimeout: DefaultRolloutTimeout,
		fieldManager:   DefaultFieldManager,
		journalLimit:   100,
		failFast:       failFast{restarts: DefaultCrashLoopRestarts, grace: DefaultStartGrace},
	}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	sources := 0
	for _, set := range []bool{o.kubeconfig != nil, o.inCluster, o.restConfig != nil} {
		if set {
			sources++
		}
	}
	switch {
	case sources > 1:
		return nil, errors.New("kubernetes credentials: give one of a kubeconfig, in-cluster config or a REST config")
	case sources == 0 && os.Getenv("KUBERNETES_SERVICE_HOST") != "":
		// Running in a pod: its service account is the natural identity.
		o.inCluster = true
	case sources == 0:
		return nil, errors.New("kubernetes credentials: no kubeconfig given and not running inside a cluster")
	}
	if o.kubeContext != "" && o.kubeconfig == nil {
		return nil, fmt.Errorf("kubeconfig context %q: only a kubeconfig has contexts", o.kubeContext)
	}
	return o, nil
}

// WithKubeconfig sets the credentials: the content of a kubeconfig file (from a secret; the
// CLI reads it from a file). Its content never appears in errors or logs. Default: none;
// inside a cluster the pod's service account is used.
func WithKubeconfig(kubeconfig []byte) Option {
	return func(o *options) error {
		if len(strings.TrimSpace(string(kubeconfig))) == 0 {
			return errors.New("kubeconfig is empty")
		}
		o.kubeconfig = kubeconfig
		return nil
	}
}

// WithContext picks the kubeconfig's context. Default: its current-context.
func WithContext(name string) Option {
	return func(o *options) error {
		if name == "" {
			return errors.New("kubeconfig context: empty name")
		}
		o.kubeContext = name
		return nil
	}
}

// WithNamespace sets the namespace of the Deployments, the lock Lease and the journal.
// Default: the kubeconfig context's namespace, in a cluster the pod's, else "default".
func WithNamespace(ns string) Option {
	return func(o *options) error {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return fmt.Errorf("namespace %q: %s", ns, strings.Join(errs, "; "))
		}
		o.namespace = ns
		return nil
	}
}

// WithInCluster uses the service account of the pod pushdeploy runs in. Default: used when
// no kubeconfig is given and KUBERNETES_SERVICE_HOST is set.
func WithInCluster() Option {
	return func(o *options) error {
		o.inCluster = true
		return nil
	}
}

// WithRESTConfig uses a ready client-go configuration (embedding, tests). Default: none.
func WithRESTConfig(cfg *rest.Config) Option {
	return func(o *options) error {
		if cfg == nil {
			return errors.New("kubernetes REST config is nil")
		}
		o.restConfig = rest.CopyConfig(cfg)
		return nil
	}
}

// WithRolloutTimeout sets how long Activate waits for a Deployment to roll out before it
// fails. Default: DefaultRolloutTimeout (300 s). The Deployment's progressDeadlineSeconds
// can fail it sooner.
func WithRolloutTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("rollout timeout %s: must be positive", d)
		}
		o.rolloutTimeout = d
		return nil
	}
}

// WithFieldManager names the field manager of every patch. Default: DefaultFieldManager
// ("pushdeploy").
func WithFieldManager(name string) Option {
	return func(o *options) error {
		if name == "" || len(name) > 128 {
			return fmt.Errorf("field manager %q: must be 1 to 128 characters", name)
		}
		o.fieldManager = name
		return nil
	}
}

// WithJournalLimit sets how many deployment records the journal ConfigMap keeps, the oldest
// dropped first (a ConfigMap holds at most 1 MiB, and older ones are dropped sooner if
// they would not fit). Default: 100.
func WithJournalLimit(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("journal limit %d: must be at least 1", n)
		}
		o.journalLimit = n
		return nil
	}
}

// WithCrashLoopRestarts fails a rollout, before its deadline, once a container of a new
// pod is in CrashLoopBackOff with at least n restarts. Default: DefaultCrashLoopRestarts (3).
func WithCrashLoopRestarts(n int) Option {
	return func(o *options) error {
		if n < 1 || n > 1<<20 {
			return fmt.Errorf("crash-loop restarts %d: must be at least 1", n)
		}
		o.failFast.restarts = int32(n)
		return nil
	}
}

// WithStartGrace fails a rollout, before its deadline, once a container of a new pod has
// waited longer than d in ImagePullBackOff, ErrImagePull, InvalidImageName or
// CreateContainerConfigError, or the new ReplicaSet has reported FailedCreate (quota,
// admission) for longer than d. Zero fails at the first report. Default: DefaultStartGrace
// (60 s).
func WithStartGrace(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("start grace %s: must not be negative", d)
		}
		o.failFast.grace = d
		return nil
	}
}
