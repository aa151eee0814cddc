package publish

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Option configures Publish, Promote and Inspect.
type Option func(*options) error

type options struct {
	auth         authn.Authenticator // from WithBasicAuth or WithBearerToken
	keychain     authn.Keychain      // from WithDockerConfig
	rootCAs      *x509.CertPool
	transport    http.RoundTripper
	force        bool
	jobs         int
	backoff      remote.Backoff
	retryCodes   []int
	userAgent    string
	sourceOpts   []Option // Promote: options for the source registry
	sourceIsUsed bool
}

// DefaultRetryBackoff is the retry schedule when WithRetryBackoff is not given: three tries,
// 1 s after the first failure, 3 s after the second (go-containerregistry's own default).
var DefaultRetryBackoff = remote.Backoff{Duration: time.Second, Factor: 3, Jitter: 0.1, Steps: 3}

// retryStatusCodes are the answers retried with backoff: rate limiting and server-side or
// gateway failures.
var retryStatusCodes = []int{
	http.StatusRequestTimeout,
	http.StatusTooManyRequests,
	http.StatusInternalServerError,
	http.StatusBadGateway,
	http.StatusServiceUnavailable,
	http.StatusGatewayTimeout,
}

// makeOptions sets every default, applies opts, then rejects bad combinations.
func makeOptions(opts []Option) (*options, error) {
	o := &options{
		auth:       nil, // anonymous unless an auth option is given
		jobs:       4,
		backoff:    DefaultRetryBackoff,
		retryCodes: retryStatusCodes,
		userAgent:  "pushdeploy",
	}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	switch {
	case o.auth != nil && o.keychain != nil:
		return nil, errors.New("registry credentials: give either a user and password/token or a Docker config, not both")
	case o.transport != nil && o.rootCAs != nil:
		return nil, errors.New("registry TLS: give either a transport or root CAs, not both (configure the transport's TLS instead)")
	}
	return o, nil
}

// WithBasicAuth authenticates as user with a password or an access token (GitHub, GitLab and
// most registries take a token as the password). Default: anonymous.
func WithBasicAuth(user, passwordOrToken string) Option {
	return func(o *options) error {
		if user == "" || passwordOrToken == "" {
			return errors.New("registry credentials: user and password/token must both be non-empty")
		}
		o.auth = &authn.Basic{Username: user, Password: passwordOrToken}
		return nil
	}
}

// WithBearerToken sends token as a registry bearer token, with no user. Default: anonymous.
func WithBearerToken(token string) Option {
	return func(o *options) error {
		if token == "" {
			return errors.New("registry credentials: empty bearer token")
		}
		o.auth = &authn.Bearer{Token: token}
		return nil
	}
}

// WithDockerConfig takes credentials from the content of a Docker config.json (its "auths"
// section: "auth", "username"/"password", "identitytoken" or "registrytoken" per registry).
// Registries it does not list are accessed anonymously. Credential helpers ("credsStore",
// "credHelpers") are ignored: the content comes from a secret, not from this machine.
// Default: anonymous.
func WithDockerConfig(configJSON []byte) Option {
	return func(o *options) error {
		kc, err := parseDockerConfig(configJSON)
		if err != nil {
			return err
		}
		o.keychain = kc
		return nil
	}
}

// WithRootCAs trusts exactly the certificates in pool for the registry's TLS certificate.
// Default: the system's roots.
func WithRootCAs(pool *x509.CertPool) Option {
	return func(o *options) error {
		if pool == nil {
			return errors.New("registry TLS: nil certificate pool")
		}
		o.rootCAs = pool
		return nil
	}
}

// WithCAPEM trusts the system's roots plus the PEM certificates in caPEM (a private
// registry's CA). Default: the system's roots only.
func WithCAPEM(caPEM []byte) Option {
	return func(o *options) error {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(caPEM) {
			return errors.New("registry TLS: the CA holds no PEM certificate")
		}
		o.rootCAs = pool
		return nil
	}
}

// WithTransport sends requests through rt (proxies, custom TLS). Default: a clone of
// go-containerregistry's remote.DefaultTransport. Auth and retries are still added on top.
func WithTransport(rt http.RoundTripper) Option {
	return func(o *options) error {
		if rt == nil {
			return errors.New("registry transport: nil")
		}
		o.transport = rt
		return nil
	}
}

// WithForce lets Publish and Promote move a commit-SHA or version tag that already points at
// another digest. Default: false (such a tag is immutable: the push is refused).
func WithForce(force bool) Option {
	return func(o *options) error { o.force = force; return nil }
}

// WithJobs sets how many blobs go up at once. Default: 4.
func WithJobs(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("upload jobs: %d, want at least 1", n)
		}
		o.jobs = n
		return nil
	}
}

// WithRetryBackoff sets the retry schedule for network errors, 429 and 5xx answers.
// Default: DefaultRetryBackoff (3 tries, 1 s then 3 s).
func WithRetryBackoff(b remote.Backoff) Option {
	return func(o *options) error {
		if b.Steps < 1 {
			return fmt.Errorf("retry backoff: %d steps, want at least 1", b.Steps)
		}
		o.backoff = b
		return nil
	}
}

// WithUserAgent sets the User-Agent prefix. Default: "pushdeploy".
func WithUserAgent(ua string) Option {
	return func(o *options) error { o.userAgent = ua; return nil }
}

// WithSourceOptions configures the source registry of Promote (credentials, CA, transport)
// separately from the destination, which the other options configure. Default: the source is
// accessed anonymously, trusting the system's roots, with the default retries.
// Not valid for Publish and Inspect.
func WithSourceOptions(opts ...Option) Option {
	return func(o *options) error {
		for _, so := range opts {
			// Validate now so a bad source option fails before anything is sent.
			if _, err := makeOptions([]Option{so}); err != nil {
				return fmt.Errorf("source registry: %w", err)
			}
		}
		o.sourceOpts = append(o.sourceOpts, opts...)
		o.sourceIsUsed = true
		return nil
	}
}

// remoteOptions turns o into go-containerregistry options.
func (o *options) remoteOptions() []remote.Option {
	rt := o.transport
	if rt == nil {
		tr := remote.DefaultTransport.(*http.Transport).Clone()
		if o.rootCAs != nil {
			tr.TLSClientConfig = &tls.Config{RootCAs: o.rootCAs, MinVersion: tls.VersionTLS12}
		}
		rt = tr
	}
	ropts := []remote.Option{
		remote.WithTransport(rt),
		remote.WithJobs(o.jobs),
		remote.WithRetryBackoff(o.backoff),
		remote.WithRetryStatusCodes(o.retryCodes...),
		remote.WithUserAgent(o.userAgent),
	}
	switch {
	case o.keychain != nil:
		ropts = append(ropts, remote.WithAuthFromKeychain(o.keychain))
	case o.auth != nil:
		ropts = append(ropts, remote.WithAuth(o.auth))
	default:
		ropts = append(ropts, remote.WithAuth(authn.Anonymous))
	}
	return ropts
}

// dockerConfigKeychain resolves registries against the "auths" of a config.json.
type dockerConfigKeychain map[string]types.AuthConfig

func newDockerConfigKeychainError(err error) error {
	var serr *json.SyntaxError
	if errors.As(err, &serr) {
		// Never echo the content: it holds secrets.
		return fmt.Errorf("docker config: not valid JSON (at byte %d)", serr.Offset)
	}
	return errors.New("docker config: not a valid config.json (an \"auths\" entry could not be decoded)")
}

func parseDockerConfig(configJSON []byte) (dockerConfigKeychain, error) {
	if len(bytes.TrimSpace(configJSON)) == 0 {
		return nil, errors.New("docker config: empty")
	}
	cf := configfile.New("")
	if err := cf.LoadFromReader(bytes.NewReader(configJSON)); err != nil {
		return nil, newDockerConfigKeychainError(err)
	}
	return dockerConfigKeychain(cf.AuthConfigs), nil
}

// Resolve implements authn.Keychain.
func (kc dockerConfigKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	reg := target.RegistryStr()
	keys := []string{reg, "https://" + reg, "http://" + reg, "https://" + reg + "/v1/", "https://" + reg + "/v2/"}
	if reg == "index.docker.io" || reg == "docker.io" {
		keys = append([]string{"https://index.docker.io/v1/", "index.docker.io", "docker.io"}, keys...)
	}
	for _, k := range keys {
		ac, ok := kc[k]
		if !ok {
			continue
		}
		if ac.Username == "" && ac.Password == "" && ac.IdentityToken == "" && ac.RegistryToken == "" {
			continue
		}
		return authn.FromConfig(authn.AuthConfig{
			Username:      ac.Username,
			Password:      ac.Password,
			IdentityToken: ac.IdentityToken,
			RegistryToken: ac.RegistryToken,
		}), nil
	}
	return authn.Anonymous, nil
}
