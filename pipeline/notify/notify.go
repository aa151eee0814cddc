// Package notify tells the world that a deploy ended: deployment markers posted to an
// observability endpoint (the seed's OneUptime call, generalised to a URL, a bearer token and
// a body template), Slack incoming-webhook messages, and the deployment record as JSON to a
// generic webhook.
//
// A notification is never part of the deploy: Send returns warnings, not an error, for the
// caller to put in the deployment record. Each endpoint is retried with exponential backoff
// on network errors, 5xx and 429 (honouring Retry-After), each attempt has its own timeout
// and the whole Send an overall one.
//
// Tokens, webhook secrets and Slack webhook URLs (whose path is the credential) appear in no
// warning, error or log line: endpoints are named by host only.
//
// This package is plain Go and a leaf: it imports no other pushdeploy package.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Marker is a deployment-marker endpoint.
type Marker struct {
	// URL receives the POST.
	URL string
	// Token is the bearer token's value; "" sends no Authorization header.
	Token string
	// Body is a text/template over MarkerRecord that must render JSON; {{json .X}} writes a
	// JSON value. "" sends the MarkerRecord as JSON.
	Body string
}

// Slack is a Slack incoming webhook.
type Slack struct {
	// WebhookURL is the incoming webhook's URL, a credential itself.
	WebhookURL string
	// On lists the outcomes sent: Success and/or Failure (which covers RolledBack). Empty:
	// both.
	On []Outcome
}

// Webhook is a generic JSON webhook: it receives the Event as JSON.
type Webhook struct {
	// URL receives the POST.
	URL string
	// Secret, when set, signs each body: the X-Pushdeploy-Signature-256 header is
	// "sha256=" and the hex HMAC-SHA256 of the body under Secret.
	Secret string
	// On lists the outcomes sent: Success and/or Failure (which covers RolledBack). Empty:
	// both.
	On []Outcome
}

// Warning is a notification or marker that was not delivered. It names the endpoint by
// host only.
type Warning struct {
	// Kind is "marker", "slack" or "webhook".
	Kind string `json:"kind"`
	// Endpoint is the endpoint's host[:port].
	Endpoint string `json:"endpoint"`
	// Attempts is how many attempts were made.
	Attempts int `json:"attempts"`
	// Reason is the last failure.
	Reason string `json:"reason"`
}

// String reads "slack to hooks.slack.com not delivered after 4 attempts: 503 Service
// Unavailable", the form for the deployment record's warnings.
func (w Warning) String() string {
	return fmt.Sprintf("%s to %s not delivered after %d attempt%s: %s", w.Kind, w.Endpoint, w.Attempts, plural(w.Attempts), w.Reason)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// Option configures a Notifier.
type Option func(*options) error

type options struct {
	markers        []Marker
	slacks         []Slack
	webhooks       []Webhook
	client         *http.Client
	attempts       int
	initial, max   time.Duration
	attemptTimeout time.Duration
	timeout        time.Duration
	log            io.Writer
}

// WithMarker posts a deployment marker after every deploy. Repeatable. Default: none.
func WithMarker(m Marker) Option {
	return func(o *options) error { o.markers = append(o.markers, m); return nil }
}

// WithSlack posts to a Slack incoming webhook. Repeatable. Default: none.
func WithSlack(s Slack) Option {
	return func(o *options) error { o.slacks = append(o.slacks, s); return nil }
}

// WithWebhook posts the event as JSON to a URL. Repeatable. Default: none.
func WithWebhook(w Webhook) Option {
	return func(o *options) error { o.webhooks = append(o.webhooks, w); return nil }
}

// WithHTTPClient sends with c; its CheckRedirect is kept (a redirect to another host would
// carry a POST body elsewhere, so the default client refuses redirects). Default: a client
// that refuses redirects, with the default transport.
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) error {
		if c == nil {
			return errors.New("http client must not be nil")
		}
		o.client = c
		return nil
	}
}

// WithAttempts makes up to n attempts per endpoint. Default: 4.
func WithAttempts(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("attempts %d: must be at least 1", n)
		}
		o.attempts = n
		return nil
	}
}

// WithBackoff waits initial before the second attempt, doubling (with jitter) up to max.
// A Retry-After header overrides the wait. Default: 500ms up to 8s.
func WithBackoff(initial, max time.Duration) Option {
	return func(o *options) error {
		if initial <= 0 || max < initial {
			return fmt.Errorf("backoff %s up to %s: need 0 < initial <= max", initial, max)
		}
		o.initial, o.max = initial, max
		return nil
	}
}

// WithAttemptTimeout bounds each attempt. Default: 10s.
func WithAttemptTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("attempt timeout %s: must be positive", d)
		}
		o.attemptTimeout = d
		return nil
	}
}

// WithTimeout bounds a whole Send, every endpoint and retry included. Default: 30s.
func WithTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("timeout %s: must be positive", d)
		}
		o.timeout = d
		return nil
	}
}

// WithLogger writes a line per delivery and per failed attempt to w (hosts only, never a
// token or a webhook URL). Default: nothing is written.
func WithLogger(w io.Writer) Option {
	return func(o *options) error {
		if w == nil {
			return errors.New("logger must not be nil")
		}
		o.log = w
		return nil
	}
}

// endpoint is one validated destination.
type endpoint struct {
	kind    string // marker, slack, webhook
	url     string
	host    string
	token   string // bearer token
	secret  string // HMAC key
	on      []Outcome
	body    *template.Template
	secrets []string // values to scrub from messages: token, secret, URL, path, query
}

// Notifier sends an event to its endpoints. It is safe for concurrent use.
type Notifier struct {
	o         *options
	endpoints []endpoint
	logMu     sync.Mutex
}

// New checks the endpoints and returns a Notifier. Its errors are configuration errors (a
// URL that does not parse, a body template that does not render JSON); they name endpoints
// by host only.
func New(opts ...Option) (*Notifier, error) {
	o := &options{
		attempts:       4,
		initial:        500 * time.Millisecond,
		max:            8 * time.Second,
		attemptTimeout: 10 * time.Second,
		timeout:        30 * time.Second,
		log:            io.Discard,
	}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, fmt.Errorf("notify: %w", err)
		}
	}
	if o.client == nil {
		o.client = &http.Client{
			Transport:     http.DefaultTransport.(*http.Transport).Clone(),
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if o.attemptTimeout > o.timeout {
		o.attemptTimeout = o.timeout
	}
	n := &Notifier{o: o}
	var errs []error
	add := func(kind, raw, token, secret, body string, on []Outcome) {
		ep, err := newEndpoint(kind, raw, token, secret, body, on)
		if err != nil {
			errs = append(errs, err)
			return
		}
		n.endpoints = append(n.endpoints, ep)
	}
	for _, m := range o.markers {
		add("marker", m.URL, m.Token, "", m.Body, nil)
	}
	for _, s := range o.slacks {
		add("slack", s.WebhookURL, "", "", "", s.On)
	}
	for _, w := range o.webhooks {
		add("webhook", w.URL, "", w.Secret, "", w.On)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return n, nil
}

func newEndpoint(kind, raw, token, secret, body string, on []Outcome) (endpoint, error) {
	ep := endpoint{kind: kind, url: raw, token: token, secret: secret, on: on}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// Not even the host is safe to show from a URL that does not parse.
		return ep, fmt.Errorf("notify: %s endpoint: not an http:// or https:// URL", kind)
	}
	ep.host = u.Host
	ep.secrets = scrubList(raw, u, token, secret)
	for _, o := range on {
		if o != Success && o != Failure {
			return ep, fmt.Errorf("notify: %s to %s: on %q: must be %q or %q", kind, ep.host, o, Success, Failure)
		}
	}
	if body != "" {
		t, err := template.New("body").Funcs(funcs).Option("missingkey=error").Parse(body)
		if err != nil {
			return ep, fmt.Errorf("notify: %s to %s: body template: %w", kind, ep.host, err)
		}
		ep.body = t
		if _, err := ep.render(sample); err != nil {
			return ep, fmt.Errorf("notify: %s to %s: body template: %w", kind, ep.host, err)
		}
	}
	return ep, nil
}

// scrubList is what must never be shown of an endpoint: the whole URL, its path and query
// (a Slack webhook's path is its credential), the user info, the token and the secret.
// Short path pieces ("/m") are no credential and would mangle every message; they stay.
func scrubList(raw string, u *url.URL, token, secret string) []string {
	out := []string{raw}
	long := func(min int, ss ...string) {
		for _, s := range ss {
			if len(s) >= min {
				out = append(out, s)
			}
		}
	}
	long(8, strings.Trim(u.EscapedPath(), "/"), strings.Trim(u.Path, "/"), u.RawQuery)
	if u.User != nil {
		pw, _ := u.User.Password()
		long(4, u.User.String(), pw)
	}
	long(4, token, secret)
	return out
}

// funcs are the functions body templates may call (the names config.MarkerFuncs declares).
var funcs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
}

// sample is the record a body template is tried on when the Notifier is made: its strings
// hold quotes, so a template that writes a string without {{json}} fails then, not later.
var sample = Event{
	ID: `20260101T000000Z "id"`, App: `app "name"`, Env: `env "name"`, Version: `v1.0.0 "tag"`,
	Digest: "sha256:" + strings.Repeat("0", 64), Outcome: Success, Deployer: `ci "bot"`,
	URL: `https://ci.example.com/run/1?"x"`, Finished: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
}

func (ep *endpoint) render(e Event) ([]byte, error) {
	if ep.body == nil {
		return json.Marshal(e.Marker())
	}
	var b bytes.Buffer
	if err := ep.body.Execute(&b, e.Marker()); err != nil {
		return nil, err
	}
	if !json.Valid(b.Bytes()) {
		var v any
		err := json.Unmarshal(b.Bytes(), &v)
		return nil, fmt.Errorf("renders invalid JSON (%v): write strings with {{json .Field}}", err)
	}
	return b.Bytes(), nil
}

// wants says whether the endpoint is sent this outcome.
func (ep *endpoint) wants(o Outcome) bool {
	if len(ep.on) == 0 {
		return true
	}
	for _, x := range ep.on {
		if x == o || (x == Failure && o.Failed()) {
			return true
		}
	}
	return false
}

// scrub removes every secret of the endpoint from a message.
func (ep *endpoint) scrub(s string) string {
	for _, x := range ep.secrets {
		if x != "" {
			s = strings.ReplaceAll(s, x, "[redacted]")
		}
	}
	return s
}

// Send delivers e to every endpoint that wants its outcome, in parallel, and returns a
// warning for each one that was not delivered, in the order the endpoints were given. It
// never fails a deploy: there is no error to return. It returns when every endpoint is done,
// ctx is done, or the overall timeout passed, whichever is first.
func (n *Notifier) Send(ctx context.Context, e Event) []Warning {
	if n == nil || len(n.endpoints) == 0 {
		return nil
	}
	if !e.Outcome.valid() {
		return []Warning{{Kind: "notify", Endpoint: "-", Reason: fmt.Sprintf("event outcome %q: must be success, failure or rolled_back", e.Outcome)}}
	}
	ctx, cancel := context.WithTimeout(ctx, n.o.timeout)
	defer cancel()
	warnings := make([]*Warning, len(n.endpoints))
	var wg sync.WaitGroup
	for i := range n.endpoints {
		ep := &n.endpoints[i]
		if !ep.wants(e.Outcome) {
			continue
		}
		wg.Go(func() { warnings[i] = n.deliver(ctx, ep, e) })
	}
	wg.Wait()
	var out []Warning
	for _, w := range warnings {
		if w != nil {
			out = append(out, *w)
		}
	}
	return out
}

func (n *Notifier) logf(ep *endpoint, format string, args ...any) {
	n.logMu.Lock()
	defer n.logMu.Unlock()
	fmt.Fprintf(n.o.log, "notify: %s to %s: %s\n", ep.kind, ep.host, ep.scrub(fmt.Sprintf(format, args...)))
}

// deliver posts to one endpoint with retries; nil when it was delivered.
func (n *Notifier) deliver(ctx context.Context, ep *endpoint, e Event) *Warning {
	var body []byte
	var err error
	switch ep.kind {
	case "marker":
		body, err = ep.render(e)
	case "slack":
		body, err = json.Marshal(e.Slack())
	default:
		body, err = json.Marshal(e)
	}
	if err != nil {
		w := &Warning{Kind: ep.kind, Endpoint: ep.host, Reason: ep.scrub("rendering the body: " + err.Error())}
		n.logf(ep, "%s", w.Reason)
		return w
	}
	attempts := 0
	var last error
	_, err = backoff.Retry(ctx, func() (struct{}, error) {
		attempts++
		err := n.attempt(ctx, ep, e, body)
		if err == nil {
			return struct{}{}, nil
		}
		last = err
		var perm *backoff.PermanentError
		if attempts < n.o.attempts && !errors.As(err, &perm) && ctx.Err() == nil {
			n.logf(ep, "attempt %d failed: %v; retrying", attempts, err)
		}
		return struct{}{}, err
	},
		backoff.WithBackOff(&backoff.ExponentialBackOff{InitialInterval: n.o.initial, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: n.o.max}),
		backoff.WithMaxTries(uint(n.o.attempts)),
		backoff.WithMaxElapsedTime(0), // ctx bounds the whole Send
	)
	if err == nil {
		n.logf(ep, "delivered (attempt %d)", attempts)
		return nil
	}
	reason := err.Error()
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		reason = "gave up: " + reason
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			reason = fmt.Sprintf("gave up: the notifications' overall timeout (%s) passed", n.o.timeout)
		}
		if last != nil && !errors.Is(last, context.Canceled) && !errors.Is(last, context.DeadlineExceeded) {
			reason += "; last attempt: " + last.Error()
		}
	}
	w := &Warning{Kind: ep.kind, Endpoint: ep.host, Attempts: attempts, Reason: ep.scrub(reason)}
	n.logf(ep, "not delivered after %d attempt%s: %s", attempts, plural(attempts), w.Reason)
	return w
}

// statusError is an HTTP answer that is not 2xx. It unwraps to a retry-after delay when the
// server gave one.
type statusError struct {
	status     string
	body       string
	retryAfter *backoff.RetryAfterError
}

func (e *statusError) Error() string {
	if e.body != "" {
		return e.status + ": " + e.body
	}
	return e.status
}

func (e *statusError) Unwrap() error {
	if e.retryAfter == nil {
		return nil
	}
	return e.retryAfter
}

// attempt makes one POST. Errors worth no retry come back as *backoff.PermanentError.
func (n *Notifier) attempt(ctx context.Context, ep *endpoint, e Event, body []byte) error {
	actx, cancel := context.WithTimeout(ctx, n.o.attemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, ep.url, bytes.NewReader(body))
	if err != nil {
		return backoff.Permanent(errors.New("making the request failed"))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "pushdeploy")
	if e.ID != "" {
		req.Header.Set("Idempotency-Key", e.ID+"-"+ep.kind)
	}
	switch {
	case ep.token != "":
		req.Header.Set("Authorization", "Bearer "+ep.token)
	case ep.kind == "webhook":
		req.Header.Set("X-Pushdeploy-Event", "deployment")
		if ep.secret != "" {
			mac := hmac.New(sha256.New, []byte(ep.secret))
			mac.Write(body)
			req.Header.Set("X-Pushdeploy-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		}
	}
	resp, err := n.o.client.Do(req)
	if err != nil {
		// *url.Error repeats the URL: keep only what went wrong.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if actx.Err() != nil && ctx.Err() == nil {
			return fmt.Errorf("attempt timed out after %s", n.o.attemptTimeout)
		}
		if ctx.Err() != nil {
			return backoff.Permanent(ctx.Err())
		}
		return errors.New(err.Error()) // a network error: retried
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	se := &statusError{status: resp.Status, body: strings.Join(strings.Fields(string(snippet)), " ")}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout:
		if d, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			if dl, has := ctx.Deadline(); has && time.Until(dl) < d {
				return backoff.Permanent(fmt.Errorf("%w (Retry-After %s is beyond the overall timeout)", se, d))
			}
			se.retryAfter = &backoff.RetryAfterError{Duration: d}
		}
		return se
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return backoff.Permanent(fmt.Errorf("%w: redirects are not followed", se))
	default:
		return backoff.Permanent(se)
	}
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(h string, now time.Time) (time.Duration, bool) {
	if h == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
