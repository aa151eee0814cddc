package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"text/template"
	"time"

	"github.com/pushdeploy/pushdeploy/targets"
)

// DefaultStable is the stability window a host must keep passing its checks for after the
// first pass (see HealthCheck.Stable and WithStable). Five seconds is Docker Swarm's
// --update-monitor default and a little under Kamal's readiness delay (7s) for containers
// without a health check: long enough to catch an application that crashes right after it
// starts, or a container that exits after its first answer, short enough that a batch of
// hosts waits for it only once.
const DefaultStable = 5 * time.Second

// HealthCheck says how to tell that a host serves a release: an HTTP GET of a per-host URL,
// or a command run on the host. Zero fields take the defaults noted.
type HealthCheck struct {
	// URL is a template for each host over the fields of the release checked:
	// {{.Address}} is the host's address (its name for hosts without one), {{.Host}} its
	// name, {{.Release}} the release id, {{.Version}}, {{.Digest}}, {{.Image}}, {{.App}},
	// {{.Env}} the record's fields. A field the template names that the release has empty
	// is an error, never an empty string.
	// Example: "http://{{.Address}}:8080/health".
	URL string `json:"url,omitempty"`
	// Command runs on the host instead (servers, Docker hosts); exit 0 is healthy. It gets
	// every PUSHDEPLOY_* variable of the release checked (targets.Release.Vars).
	Command string `json:"command,omitempty"`
	// Status is the HTTP status expected. Default: 200.
	Status int `json:"status,omitempty"`
	// Body is a regular expression the response body must match, first a template over the
	// same fields as URL, each field's value quoted (regexp.QuoteMeta): "{{.Version}}"
	// matches the release's version literally. Default: any body.
	Body string `json:"body,omitempty"`
	// Interval is the wait between attempts. Default: 1s.
	Interval time.Duration `json:"interval,omitempty"`
	// Timeout bounds one attempt: an HTTP request, or a command, which is killed on the host
	// when it runs longer. Default: 5s.
	Timeout time.Duration `json:"timeout,omitempty"`
	// Retries is how many attempts fail before the host counts as unhealthy. Default: 30.
	Retries int `json:"retries,omitempty"`

	// lookup finds the fields of release id on host h, and the target's kind: set by the
	// engine that runs the check.
	lookup func(ctx context.Context, h targets.Host, id string) (targets.Release, string)
}

// templateFields are the fields health templates may name, with a stand-in value each for
// checking a template before any release exists.
var templateFields = []string{"Address", "Host", "Release", "Version", "Digest", "Image", "App", "Env"}

func (h *HealthCheck) validate() error {
	if (h.URL == "") == (h.Command == "") {
		return errors.New("health check: give exactly one of url and command")
	}
	sample := map[string]string{}
	for _, f := range templateFields {
		sample[f] = "x"
	}
	if h.URL != "" {
		if _, err := render("url", h.URL, sample, nil); err != nil {
			return fmt.Errorf("health check url %q: %w", h.URL, err)
		}
	}
	if h.Body != "" {
		pat, err := render("body", h.Body, sample, regexp.QuoteMeta)
		if err != nil {
			return fmt.Errorf("health check body %q: %w", h.Body, err)
		}
		if _, err := regexp.Compile(pat); err != nil {
			return fmt.Errorf("health check body pattern %q: %w", h.Body, err)
		}
	}
	if h.Status == 0 {
		h.Status = http.StatusOK
	}
	if h.Interval <= 0 {
		h.Interval = time.Second
	}
	if h.Timeout <= 0 {
		h.Timeout = 5 * time.Second
	}
	if h.Retries <= 0 {
		h.Retries = 30
	}
	return nil
}

// render executes a health template over fields; quote, when set, is applied to every
// value first. A field the template names and fields lacks is an error.
func render(name, text string, fields map[string]string, quote func(string) string) (string, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", err
	}
	data := fields
	if quote != nil {
		data = make(map[string]string, len(fields))
		for k, v := range fields {
			data[k] = quote(v)
		}
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// templateData is what health templates see of release rel on host h: only the fields that
// are set, so that naming an empty one is an error.
func templateData(h targets.Host, rel targets.Release) map[string]string {
	addr := h.Name()
	if a, ok := h.(targets.Addresser); ok {
		addr = a.Address()
		// An IPv6 address goes into a URL in brackets: http://[::1]:8080/.
		if strings.Contains(addr, ":") && !strings.HasPrefix(addr, "[") {
			addr = "[" + addr + "]"
		}
	}
	d := map[string]string{}
	for k, v := range map[string]string{
		"Address": addr, "Host": h.Name(), "Release": rel.ID, "Version": rel.Version,
		"Digest": rel.Digest, "Image": rel.Image, "App": rel.App, "Env": rel.Env,
	} {
		if v != "" {
			d[k] = v
		}
	}
	return d
}

// follow tells the engine which release it deploys (for PUSHDEPLOY_* variables and health
// templates), read when a check runs: the flow fills the digest in after the engine is made.
func (e *engine) follow(current func() targets.Release) {
	e.o.current = current
	e.lookups()
}

// lookups lets the configured check find the fields of the release it checks.
func (e *engine) lookups() {
	if e.o.health != nil && e.o.health.lookup == nil {
		e.o.health.lookup = func(ctx context.Context, h targets.Host, id string) (targets.Release, string) {
			return e.releaseFor(ctx, h, id), e.t.Kind()
		}
	}
}

// releaseFor is release id as host h has it: the release being deployed, or (a rollback's
// previous release) what the host keeps of it.
func (e *engine) releaseFor(ctx context.Context, h targets.Host, id string) targets.Release {
	var cur targets.Release
	if e.o.current != nil {
		if cur = e.o.current(); cur.ID == id {
			return cur
		}
	}
	rel := targets.Release{ID: id, App: cur.App, Env: cur.Env, Deployer: cur.Deployer, PipelineID: cur.PipelineID, ApprovedBy: cur.ApprovedBy}
	if st, err := h.Status(ctx); err == nil {
		for _, k := range st.Kept {
			if k.ID == id {
				rel.Version, rel.Digest, rel.Image = k.Version, k.Digest, k.Image
			}
		}
	}
	return rel
}

// healthy waits until host serves release id, just made live there: first the host's own
// check when it has one, then the configured check until it passes, then the stability
// window, in which the host must keep passing (and stay up, when it can tell).
func (e *engine) healthy(ctx context.Context, h targets.Host, id string) error {
	e.lookups()
	if sc, ok := h.(targets.SelfChecker); ok {
		if err := sc.CheckHealth(ctx, id); err != nil {
			return err
		}
	}
	rel, kind := e.releaseFor(ctx, h, id), e.t.Kind()
	if e.o.health != nil {
		if err := e.o.health.run(ctx, h, rel, kind); err != nil {
			return err
		}
	}
	return e.steady(ctx, h, rel, kind)
}

// steady watches host h for the stability window: the configured check must keep passing
// and a targets.Steadier must stay up. With neither there is nothing to watch.
func (e *engine) steady(ctx context.Context, h targets.Host, rel targets.Release, kind string) error {
	d := e.o.stable
	sd, watch := h.(targets.Steadier)
	hc := e.o.health
	if d <= 0 || (!watch && hc == nil) {
		return nil
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	n := 0
	if watch {
		n++
		go func() { errc <- sd.Steady(wctx, rel.ID, d) }()
	}
	if hc != nil {
		n++
		go func() { errc <- hc.keepPassing(wctx, h, rel, kind, d) }()
	}
	for range n {
		if err := <-errc; err != nil {
			return fmt.Errorf("release %q on %s did not stay healthy for the stability window (%s): %w", rel.ID, h.Name(), d, err)
		}
	}
	e.logf("%s: stayed healthy for %s", h.Name(), d)
	return nil
}

// check runs the configured attempts against release id, returning the last failure.
func (hc *HealthCheck) check(ctx context.Context, h targets.Host, id string) error {
	rel, kind := targets.Release{ID: id}, ""
	if hc.lookup != nil {
		rel, kind = hc.lookup(ctx, h, id)
	}
	return hc.run(ctx, h, rel, kind)
}

// attempt returns one attempt of the check against rel on h, and what it checks (the URL or
// the command) for messages.
func (hc *HealthCheck) attempt(h targets.Host, rel targets.Release, kind string) (func(context.Context) error, string, error) {
	if hc.Command != "" {
		c, ok := h.(targets.Commander)
		if !ok {
			return nil, "", fmt.Errorf("health check command: host %q cannot run commands", h.Name())
		}
		env := rel.Vars(kind)
		return func(ctx context.Context) error {
			out, err := c.Run(ctx, hc.Command, env)
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("timed out after %s, killed: %s", hc.Timeout, tail(out, 2000))
				}
				return fmt.Errorf("%w: %s", err, tail(out, 2000))
			}
			return nil
		}, hc.Command, nil
	}
	data := templateData(h, rel)
	u, err := render("url", hc.URL, data, nil)
	if err != nil {
		return nil, "", fmt.Errorf("health check url %q for host %q: %w", hc.URL, h.Name(), err)
	}
	var body *regexp.Regexp
	if hc.Body != "" {
		pat, err := render("body", hc.Body, data, regexp.QuoteMeta)
		if err != nil {
			return nil, "", fmt.Errorf("health check body %q for host %q: %w", hc.Body, h.Name(), err)
		}
		if body, err = regexp.Compile(pat); err != nil {
			return nil, "", fmt.Errorf("health check body pattern %q for host %q: %w", pat, h.Name(), err)
		}
	}
	return func(ctx context.Context) error { return hc.httpAttempt(ctx, u, body) }, u, nil
}

// run tries the check until it passes or the retries run out.
func (hc *HealthCheck) run(ctx context.Context, h targets.Host, rel targets.Release, kind string) error {
	attempt, target, err := hc.attempt(h, rel, kind)
	if err != nil {
		return err
	}
	var last error
	for i := 0; i < hc.Retries; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("health check %s: %w (last: %v)", target, ctx.Err(), last)
			case <-time.After(hc.Interval):
			}
		}
		actx, cancel := context.WithTimeout(ctx, hc.Timeout)
		last = attempt(actx)
		cancel()
		if last == nil {
			return nil
		}
	}
	return fmt.Errorf("health check %s failed %d times: %w", target, hc.Retries, last)
}

// keepPassing checks every interval for d, and once more at its end: one failure fails.
func (hc *HealthCheck) keepPassing(ctx context.Context, h targets.Host, rel targets.Release, kind string, d time.Duration) error {
	attempt, target, err := hc.attempt(h, rel, kind)
	if err != nil {
		return err
	}
	end := time.Now().Add(d)
	for {
		if wait := min(hc.Interval, time.Until(end)); wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
		actx, cancel := context.WithTimeout(ctx, hc.Timeout)
		err := attempt(actx)
		cancel()
		if err != nil {
			return fmt.Errorf("health check %s passed, then failed: %w", target, err)
		}
		if !time.Now().Before(end) {
			return nil
		}
	}
}

var healthClient = &http.Client{
	// Never follow a redirect off the host: report it as the status it is.
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func (hc *HealthCheck) httpAttempt(ctx context.Context, u string, want *regexp.Regexp) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := healthClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != hc.Status {
		return fmt.Errorf("status %d, want %d: %s", resp.StatusCode, hc.Status, tail(body, 200))
	}
	if want != nil && !want.Match(body) {
		return fmt.Errorf("body %q does not match %q", tail(body, 200), want.String())
	}
	return nil
}

// tail keeps the last n bytes of out, trimmed, for error messages.
func tail(out []byte, n int) string {
	out = bytes.TrimSpace(out)
	if len(out) > n {
		out = append([]byte("…"), out[len(out)-n:]...)
	}
	return string(out)
}

// url is the check's URL for release id on h.
func (hc *HealthCheck) url(h targets.Host, id string) (string, error) {
	u, err := render("url", hc.URL, templateData(h, targets.Release{ID: id}), nil)
	if err != nil {
		return "", fmt.Errorf("health check url %q for host %q: %w", hc.URL, h.Name(), err)
	}
	return u, nil
}
