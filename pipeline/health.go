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

// HealthCheck says how to tell that a host serves a release: an HTTP GET of a per-host URL,
// or a command run on the host. Zero fields take the defaults noted.
type HealthCheck struct {
	// URL is a template for each host: {{.Address}} is the host's address (its name for
	// hosts without one), {{.Host}} its name, {{.Release}} the release id.
	// Example: "http://{{.Address}}:8080/health".
	URL string `json:"url,omitempty"`
	// Command runs on the host instead (servers, Docker hosts); exit 0 is healthy.
	Command string `json:"command,omitempty"`
	// Status is the HTTP status expected. Default: 200.
	Status int `json:"status,omitempty"`
	// Body is a regular expression the response body must match. Default: any body.
	Body string `json:"body,omitempty"`
	// Interval is the wait between attempts. Default: 1s.
	Interval time.Duration `json:"interval,omitempty"`
	// Timeout bounds one attempt. Default: 5s.
	Timeout time.Duration `json:"timeout,omitempty"`
	// Retries is how many attempts fail before the host counts as unhealthy. Default: 30.
	Retries int `json:"retries,omitempty"`
}

func (h *HealthCheck) validate() error {
	if (h.URL == "") == (h.Command == "") {
		return errors.New("health check: give exactly one of url and command")
	}
	if h.URL != "" {
		if _, err := template.New("url").Option("missingkey=error").Parse(h.URL); err != nil {
			return fmt.Errorf("health check url %q: %w", h.URL, err)
		}
	}
	if h.Body != "" {
		if _, err := regexp.Compile(h.Body); err != nil {
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

// healthy waits until host serves release id: first the host's own check when it has one,
// then the configured check.
func (e *engine) healthy(ctx context.Context, h targets.Host, id string) error {
	if sc, ok := h.(targets.SelfChecker); ok {
		if err := sc.CheckHealth(ctx, id); err != nil {
			return err
		}
	}
	if e.o.health == nil {
		return nil
	}
	return e.o.health.check(ctx, h, id)
}

// check runs the configured attempts, returning the last failure.
func (hc *HealthCheck) check(ctx context.Context, h targets.Host, id string) error {
	attempt := hc.httpAttempt
	target := ""
	if hc.Command != "" {
		c, ok := h.(targets.Commander)
		if !ok {
			return fmt.Errorf("health check command: host %q cannot run commands", h.Name())
		}
		target = hc.Command
		attempt = func(ctx context.Context, _ string) error {
			out, err := c.Run(ctx, hc.Command, map[string]string{"PUSHDEPLOY_RELEASE": id})
			if err != nil {
				return fmt.Errorf("%w: %s", err, tail(out, 2000))
			}
			return nil
		}
	} else {
		u, err := hc.url(h, id)
		if err != nil {
			return err
		}
		target = u
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
		last = attempt(actx, target)
		cancel()
		if last == nil {
			return nil
		}
	}
	return fmt.Errorf("health check %s failed %d times: %w", target, hc.Retries, last)
}

func (hc *HealthCheck) url(h targets.Host, id string) (string, error) {
	addr := h.Name()
	if a, ok := h.(targets.Addresser); ok {
		addr = a.Address()
		// An IPv6 address goes into a URL in brackets: http://[::1]:8080/.
		if strings.Contains(addr, ":") && !strings.HasPrefix(addr, "[") {
			addr = "[" + addr + "]"
		}
	}
	t, err := template.New("url").Option("missingkey=error").Parse(hc.URL)
	if err != nil {
		return "", fmt.Errorf("health check url %q: %w", hc.URL, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, map[string]string{"Address": addr, "Host": h.Name(), "Release": id}); err != nil {
		return "", fmt.Errorf("health check url %q for host %q: %w", hc.URL, h.Name(), err)
	}
	return b.String(), nil
}

var healthClient = &http.Client{
	// Never follow a redirect off the host: report it as the status it is.
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func (hc *HealthCheck) httpAttempt(ctx context.Context, u string) error {
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
	if hc.Body != "" && !regexp.MustCompile(hc.Body).Match(body) {
		return fmt.Errorf("body %q does not match %q", tail(body, 200), hc.Body)
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
