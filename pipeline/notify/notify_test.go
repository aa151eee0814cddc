package notify_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/pipeline/notify"
)

// received is one request a receiver got.
type received struct {
	Path   string
	Header http.Header
	Body   []byte
}

// receiver is an HTTP endpoint on 127.0.0.1 that records what it gets and answers with
// what respond says for the nth request (1-based).
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []received
}

func newReceiver(t *testing.T, respond func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, received{r.URL.Path, r.Header.Clone(), body})
		n := len(rc.reqs)
		rc.mu.Unlock()
		if respond != nil {
			respond(n, w, r)
		}
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.reqs...)
}

func (rc *receiver) host() string { u, _ := url.Parse(rc.URL); return u.Host }

var (
	started  = time.Date(2026, 11, 27, 8, 15, 0, 0, time.UTC)
	finished = started.Add(42 * time.Second)
)

func successEvent() notify.Event {
	return notify.Event{
		ID: "20261127T081500Z", App: "hello", Env: "production", Kind: "docker", Version: "v1.2.3",
		Digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Outcome: notify.Success,
		ApprovedBy: "alice", Deployer: "ci", Started: started, Finished: finished,
		Hosts: []notify.HostOutcome{{Host: "10.0.0.1:22", Outcome: "deployed"}, {Host: "10.0.0.2:22", Outcome: "deployed"}},
		URL:   "https://ci.example.com/runs/7",
	}
}

func rolledBackEvent() notify.Event {
	e := successEvent()
	e.Outcome = notify.RolledBack
	e.Error = "health check failed on 10.0.0.2:22: 503 <unhealthy>"
	e.Hosts = []notify.HostOutcome{{Host: "10.0.0.1:22", Outcome: "rolled back"}, {Host: "10.0.0.2:22", Outcome: "rolled back", Error: "health: 503"}}
	e.Rollback = &notify.Rollback{Reason: "health check failed on 10.0.0.2:22", To: "20261120T100000Z", Hosts: []string{"10.0.0.1:22", "10.0.0.2:22"}}
	return e
}

// fast makes retries quick; the waits are not what the tests are about.
var fast = []notify.Option{notify.WithBackoff(time.Millisecond, 4*time.Millisecond), notify.WithAttemptTimeout(5 * time.Second), notify.WithTimeout(20 * time.Second)}

func newNotifier(t *testing.T, opts ...notify.Option) (*notify.Notifier, *bytes.Buffer) {
	t.Helper()
	var log bytes.Buffer
	n, err := notify.New(append(append(append([]notify.Option{}, fast...), notify.WithLogger(&syncWriter{w: &log})), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return n, &log
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestMarkerBodyAndBearer(t *testing.T) {
	rc := newReceiver(t, nil)
	n, _ := newNotifier(t, notify.WithMarker(notify.Marker{URL: rc.URL + "/api/markers", Token: "tok-123"}))
	if w := n.Send(context.Background(), successEvent()); w != nil {
		t.Fatalf("warnings: %v", w)
	}
	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Path != "/api/markers" || r.Header.Get("Authorization") != "Bearer tok-123" || r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("path %q, headers %v", r.Path, r.Header)
	}
	want := `{"service":"hello","version":"v1.2.3","action":"deploy","environment":"production","timestamp":"2026-11-27T08:15:42Z","outcome":"success","recordId":"20261127T081500Z","digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","deployer":"ci","url":"https://ci.example.com/runs/7"}`
	if string(r.Body) != want {
		t.Errorf("body:\n%s\nwant:\n%s", r.Body, want)
	}
}

func TestMarkerTemplate(t *testing.T) {
	rc := newReceiver(t, nil)
	body := `{"title": {{json (printf "%s %s" .Service .Version)}}, "env": {{json .Environment}}, "at": {{json .Timestamp}}, "ok": {{if eq .Outcome "success"}}true{{else}}false{{end}}, "id": {{json .RecordID}}}`
	n, _ := newNotifier(t, notify.WithMarker(notify.Marker{URL: rc.URL, Body: body}))
	// Rolled back: the marker names the version live afterwards, not the one that failed
	// (issue 11: the seed's four-field marker said the failed version was live).
	ev := rolledBackEvent()
	ev.LiveVersion = "v1.2.2"
	if w := n.Send(context.Background(), ev); w != nil {
		t.Fatalf("warnings: %v", w)
	}
	r := rc.requests()[0]
	want := `{"title": "hello v1.2.2", "env": "production", "at": "2026-11-27T08:15:42Z", "ok": false, "id": "20261127T081500Z"}`
	if string(r.Body) != want || r.Header.Get("Authorization") != "" {
		t.Errorf("body:\n%s\nwant:\n%s\nauthorization %q", r.Body, want, r.Header.Get("Authorization"))
	}
}

func TestMarkerTemplateMustRenderJSON(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		// A string written without {{json}} breaks on the first quote in a value.
		{`{"service": "{{.Service}}"}`, `notify: marker to 127.0.0.1:9: body template: renders invalid JSON (invalid character 'n' after object key:value pair): write strings with {{json .Field}}`},
		{`{"service": {{json .Servic}}}`, `notify: marker to 127.0.0.1:9: body template: template: body:1:19: executing "body" at <.Servic>: can't evaluate field Servic in type notify.MarkerRecord`},
		{`{"service": {{json .Service}`, `notify: marker to 127.0.0.1:9: body template: template: body:1: bad character U+007D '}'`},
	} {
		_, err := notify.New(notify.WithMarker(notify.Marker{URL: "http://127.0.0.1:9/m", Body: tc.body}))
		if err == nil || err.Error() != tc.want {
			t.Errorf("New(body %s) = %v\nwant %s", tc.body, err, tc.want)
		}
	}
}

func slackOf(t *testing.T, body []byte) notify.SlackMessage {
	t.Helper()
	var m notify.SlackMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("slack body %s: %v", body, err)
	}
	return m
}

func TestSlackSuccess(t *testing.T) {
	rc := newReceiver(t, nil)
	n, _ := newNotifier(t, notify.WithSlack(notify.Slack{WebhookURL: rc.URL + "/services/T1/B2/xyz"}))
	if w := n.Send(context.Background(), successEvent()); w != nil {
		t.Fatalf("warnings: %v", w)
	}
	r := rc.requests()[0]
	if r.Path != "/services/T1/B2/xyz" || r.Header.Get("Authorization") != "" {
		t.Errorf("path %q authorization %q", r.Path, r.Header.Get("Authorization"))
	}
	m := slackOf(t, r.Body)
	if m.Text != ":white_check_mark: hello v1.2.3 deployed to production" {
		t.Errorf("text %q", m.Text)
	}
	want := []notify.SlackBlock{
		{Type: "section", Text: &notify.SlackText{Type: "mrkdwn", Text: m.Text}},
		{Type: "section", Fields: []notify.SlackText{
			{Type: "mrkdwn", Text: "*Environment*\nproduction"},
			{Type: "mrkdwn", Text: "*Version*\nv1.2.3"},
			{Type: "mrkdwn", Text: "*Digest*\n`sha256:0123456789ab`"},
			{Type: "mrkdwn", Text: "*Hosts*\n2 deployed"},
			{Type: "mrkdwn", Text: "*Duration*\n42s"},
			{Type: "mrkdwn", Text: "*Deployed by*\nci"},
			{Type: "mrkdwn", Text: "*Approved by*\nalice"},
		}},
		{Type: "context", Elements: []notify.SlackText{{Type: "mrkdwn", Text: "Record 20261127T081500Z · <https://ci.example.com/runs/7|pipeline run>"}}},
	}
	if !reflect.DeepEqual(m.Blocks, want) {
		got, _ := json.MarshalIndent(m.Blocks, "", " ")
		t.Errorf("blocks:\n%s", got)
	}
}

func TestSlackFailure(t *testing.T) {
	rc := newReceiver(t, nil)
	n, _ := newNotifier(t, notify.WithSlack(notify.Slack{WebhookURL: rc.URL + "/services/T1/B2/xyz", On: []notify.Outcome{notify.Failure}}))
	// On: failure skips a success...
	if w := n.Send(context.Background(), successEvent()); w != nil || len(rc.requests()) != 0 {
		t.Fatalf("success sent to a failure-only webhook: %v, %d requests", w, len(rc.requests()))
	}
	// ...and sends a rollback.
	if w := n.Send(context.Background(), rolledBackEvent()); w != nil {
		t.Fatalf("warnings: %v", w)
	}
	m := slackOf(t, rc.requests()[0].Body)
	want := ":leftwards_arrow_with_hook: hello v1.2.3 failed to deploy to production and was rolled back to 20261120T100000Z: health check failed on 10.0.0.2:22: 503 &lt;unhealthy&gt;"
	if m.Text != want {
		t.Errorf("text:\n%s\nwant:\n%s", m.Text, want)
	}
	if got := m.Blocks[1].Fields[3].Text; got != "*Hosts*\n2 rolled back" {
		t.Errorf("hosts field %q", got)
	}
	e := successEvent()
	e.Outcome, e.Error = notify.Failure, "pre-deploy hook failed: exit status 1"
	if w := n.Send(context.Background(), e); w != nil {
		t.Fatalf("warnings: %v", w)
	}
	if m := slackOf(t, rc.requests()[1].Body); m.Text != ":x: hello v1.2.3 failed to deploy to production: pre-deploy hook failed: exit status 1" {
		t.Errorf("failure text %q", m.Text)
	}
}

func TestWebhookBody(t *testing.T) {
	rc := newReceiver(t, nil)
	n, _ := newNotifier(t, notify.WithWebhook(notify.Webhook{URL: rc.URL + "/hook", Secret: "hmac-key"}))
	e := rolledBackEvent()
	if w := n.Send(context.Background(), e); w != nil {
		t.Fatalf("warnings: %v", w)
	}
	r := rc.requests()[0]
	mac := hmac.New(sha256.New, []byte("hmac-key"))
	mac.Write(r.Body)
	if got, want := r.Header.Get("X-Pushdeploy-Signature-256"), "sha256="+hex.EncodeToString(mac.Sum(nil)); got != want {
		t.Errorf("signature %q, want %q", got, want)
	}
	if r.Header.Get("X-Pushdeploy-Event") != "deployment" || r.Header.Get("Idempotency-Key") != "20261127T081500Z-webhook" {
		t.Errorf("headers %v", r.Header)
	}
	want := `{"id":"20261127T081500Z","app":"hello","env":"production","kind":"docker","version":"v1.2.3",` +
		`"digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","outcome":"rolled_back",` +
		`"approvedBy":"alice","deployer":"ci","started":"2026-11-27T08:15:00Z","finished":"2026-11-27T08:15:42Z",` +
		`"hosts":[{"host":"10.0.0.1:22","outcome":"rolled back"},{"host":"10.0.0.2:22","outcome":"rolled back","error":"health: 503"}],` +
		`"error":"health check failed on 10.0.0.2:22: 503 \u003cunhealthy\u003e",` +
		`"rollback":{"reason":"health check failed on 10.0.0.2:22","to":"20261120T100000Z","hosts":["10.0.0.1:22","10.0.0.2:22"]},` +
		`"url":"https://ci.example.com/runs/7","duration":"42s","durationSeconds":42}`
	if string(r.Body) != want {
		t.Errorf("body:\n%s\nwant:\n%s", r.Body, want)
	}
	var back notify.Event
	if err := json.Unmarshal(r.Body, &back); err != nil || !reflect.DeepEqual(back, e) {
		t.Errorf("the body does not read back as the event: %v\n%+v", err, back)
	}
}

func TestRetries503Then200(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n <= 2 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}
	})
	n, log := newNotifier(t, notify.WithWebhook(notify.Webhook{URL: rc.URL}))
	if w := n.Send(context.Background(), successEvent()); w != nil {
		t.Fatalf("warnings: %v", w)
	}
	if got := len(rc.requests()); got != 3 {
		t.Errorf("%d requests, want 3", got)
	}
	h := rc.host()
	want := fmt.Sprintf("notify: webhook to %[1]s: attempt 1 failed: 503 Service Unavailable: busy; retrying\n"+
		"notify: webhook to %[1]s: attempt 2 failed: 503 Service Unavailable: busy; retrying\n"+
		"notify: webhook to %[1]s: delivered (attempt 3)\n", h)
	if log.String() != want {
		t.Errorf("log:\n%s\nwant:\n%s", log, want)
	}
}

// TestRetryAfter: with a backoff of an hour, only the server's Retry-After: 0 lets the
// retry happen before the overall timeout.
func TestRetryAfter(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	})
	n, err := notify.New(notify.WithMarker(notify.Marker{URL: rc.URL}), notify.WithBackoff(time.Hour, time.Hour), notify.WithTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if w := n.Send(context.Background(), successEvent()); w != nil {
		t.Fatalf("warnings: %v", w)
	}
	if got := len(rc.requests()); got != 2 {
		t.Errorf("%d requests, want 2", got)
	}

	// A Retry-After beyond the overall timeout is not waited for.
	late := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	n, _ = newNotifier(t, notify.WithMarker(notify.Marker{URL: late.URL}))
	w := n.Send(context.Background(), successEvent())
	want := []notify.Warning{{Kind: "marker", Endpoint: late.host(), Attempts: 1, Reason: "429 Too Many Requests (Retry-After 1h0m0s is beyond the overall timeout)"}}
	if !reflect.DeepEqual(w, want) {
		t.Errorf("warnings %+v\nwant %+v", w, want)
	}
}

func TestClientErrorNotRetried(t *testing.T) {
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "invalid_payload", http.StatusBadRequest)
	})
	n, _ := newNotifier(t, notify.WithSlack(notify.Slack{WebhookURL: rc.URL + "/services/T/B/c"}))
	w := n.Send(context.Background(), successEvent())
	want := []notify.Warning{{Kind: "slack", Endpoint: rc.host(), Attempts: 1, Reason: "400 Bad Request: invalid_payload"}}
	if !reflect.DeepEqual(w, want) || len(rc.requests()) != 1 {
		t.Errorf("warnings %+v, %d requests\nwant %+v", w, len(rc.requests()), want)
	}
	if got := w[0].String(); got != "slack to "+rc.host()+" not delivered after 1 attempt: 400 Bad Request: invalid_payload" {
		t.Errorf("String() = %q", got)
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestEndpointDown(t *testing.T) {
	addr := closedPort(t)
	ok := newReceiver(t, nil)
	n, _ := newNotifier(t,
		notify.WithWebhook(notify.Webhook{URL: "http://" + addr + "/hook"}),
		notify.WithMarker(notify.Marker{URL: ok.URL}),
		notify.WithAttempts(3))
	w := n.Send(context.Background(), successEvent())
	if len(w) != 1 || w[0].Kind != "webhook" || w[0].Endpoint != addr || w[0].Attempts != 3 || !strings.Contains(w[0].Reason, "connection refused") {
		t.Fatalf("warnings %+v: want one for the webhook at %s, connection refused after 3 attempts", w, addr)
	}
	// The endpoint that is up got its marker regardless.
	if len(ok.requests()) != 1 {
		t.Errorf("the marker endpoint got %d requests, want 1", len(ok.requests()))
	}
}

// TestBoundedByContext: an endpoint that never answers holds Send only until the caller's
// deadline.
func TestBoundedByContext(t *testing.T) {
	release, arrived := make(chan struct{}), make(chan struct{}, 1)
	rc := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	n, err := notify.New(notify.WithWebhook(notify.Webhook{URL: rc.URL}), notify.WithAttemptTimeout(time.Hour), notify.WithTimeout(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	// Cancel once the request has arrived: a condition, not a sleep.
	go func() { <-arrived; cancel() }()
	w := n.Send(ctx, successEvent())
	if len(w) != 1 || w[0].Reason != "gave up: context canceled" {
		t.Fatalf("warnings %+v: want one that gave up on the cancelled context", w)
	}
}

func TestNewRejects(t *testing.T) {
	for _, tc := range []struct {
		opt  notify.Option
		want string
	}{
		{notify.WithSlack(notify.Slack{WebhookURL: "hooks.slack.com/services/T/B/secretpath"}), "notify: slack endpoint: not an http:// or https:// URL"},
		{notify.WithWebhook(notify.Webhook{URL: "https://h.example.com/x", On: []notify.Outcome{notify.RolledBack}}), `notify: webhook to h.example.com: on "rolled_back": must be "success" or "failure"`},
		{notify.WithAttempts(0), "notify: attempts 0: must be at least 1"},
		{notify.WithBackoff(time.Second, time.Millisecond), "notify: backoff 1s up to 1ms: need 0 < initial <= max"},
	} {
		if _, err := notify.New(tc.opt); err == nil || err.Error() != tc.want {
			t.Errorf("New() = %v\nwant %s", err, tc.want)
		}
	}
	if w := (*notify.Notifier)(nil).Send(context.Background(), successEvent()); w != nil {
		t.Errorf("a nil Notifier sent: %v", w)
	}
}

// TestSecretsNeverShown: receivers that fail and echo back everything they got — the
// Authorization header, the path, the body — still leave no token, signing secret or webhook
// path in any warning or log line.
func TestSecretsNeverShown(t *testing.T) {
	const token, slackPath, hmacKey = "tok-SECRET-1234", "/services/T0SECRET/B0SECRET/abcSECRETxyz", "whsec-SECRET-5678"
	echo := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, "%s %s %s", r.Header.Get("Authorization"), r.URL.Path, r.Header.Get("X-Pushdeploy-Signature-256"))
	})
	down := closedPort(t)
	var log bytes.Buffer
	n, err := notify.New(append(fast,
		notify.WithLogger(&syncWriter{w: &log}),
		notify.WithAttempts(2),
		notify.WithMarker(notify.Marker{URL: echo.URL + "/m?api_key=" + token, Token: token}),
		notify.WithSlack(notify.Slack{WebhookURL: echo.URL + slackPath}),
		notify.WithSlack(notify.Slack{WebhookURL: "http://" + down + slackPath}),
		notify.WithWebhook(notify.Webhook{URL: echo.URL + "/hook", Secret: hmacKey}),
	)...)
	if err != nil {
		t.Fatal(err)
	}
	w := n.Send(context.Background(), rolledBackEvent())
	if len(w) != 4 {
		t.Fatalf("%d warnings, want 4: %v", len(w), w)
	}
	var out strings.Builder
	for _, x := range w {
		out.WriteString(x.String() + "\n")
		b, _ := json.Marshal(x)
		out.Write(b)
	}
	out.WriteString(log.String())
	// Errors from New, too.
	for _, opt := range []notify.Option{
		notify.WithSlack(notify.Slack{WebhookURL: "ftp://x" + slackPath}),
		notify.WithMarker(notify.Marker{URL: echo.URL + slackPath, Token: token, Body: `{"x": "{{.Service}}"}`}),
	} {
		if _, err := notify.New(opt); err != nil {
			out.WriteString(err.Error() + "\n")
		} else {
			t.Errorf("New accepted a bad endpoint")
		}
	}
	all := out.String()
	for _, s := range []string{token, slackPath, strings.Trim(slackPath, "/"), "T0SECRET", "abcSECRETxyz", hmacKey} {
		if strings.Contains(all, s) {
			t.Errorf("%q appears in the output:\n%s", s, all)
		}
	}
	// A short path is no credential and is left alone, so messages stay readable.
	if !strings.Contains(all, "marker to "+echo.host()+" not delivered after 2 attempts: 500 Internal Server Error: Bearer [redacted] /m\n") {
		t.Errorf("the marker's warning is not as expected:\n%s", all)
	}
	if !strings.Contains(all, "[redacted]") || !strings.Contains(all, echo.host()) {
		t.Errorf("the output should name the hosts and show what was redacted:\n%s", all)
	}
}

// Issue 11, case 8: a marker carries the outcome and the version live afterwards; the
// version tried is beside it when they differ; unknown is empty, never the failed version.
func TestMarkerSaysWhatIsLive(t *testing.T) {
	rb := rolledBackEvent()
	rb.LiveVersion = "v1.2.2"
	unknown := rolledBackEvent()
	manual := successEvent()
	manual.Action, manual.Version, manual.LiveVersion = "rollback", "v1.2.2", "v1.2.2"
	for _, tc := range []struct {
		name string
		e    notify.Event
		want notify.MarkerRecord
	}{
		{"deployed", successEvent(), notify.MarkerRecord{Version: "v1.2.3", Action: "deploy", Outcome: notify.Success}},
		{"rolled back", rb, notify.MarkerRecord{Version: "v1.2.2", AttemptedVersion: "v1.2.3", Action: "deploy", Outcome: notify.RolledBack}},
		{"live unknown", unknown, notify.MarkerRecord{Version: "", AttemptedVersion: "v1.2.3", Action: "deploy", Outcome: notify.RolledBack}},
		{"manual rollback", manual, notify.MarkerRecord{Version: "v1.2.2", Action: "rollback", Outcome: notify.Success}},
	} {
		m := tc.e.Marker()
		if m.Version != tc.want.Version || m.AttemptedVersion != tc.want.AttemptedVersion || m.Action != tc.want.Action || m.Outcome != tc.want.Outcome {
			t.Errorf("%s: marker version %q attempted %q action %q outcome %q; want %+v", tc.name, m.Version, m.AttemptedVersion, m.Action, m.Outcome, tc.want)
		}
	}
}
