package notify_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/pushdeploy/pushdeploy/pipeline/notify"
)

// The pipeline makes one Notifier per deploy from the environment's settings and the
// secrets' values, and puts the warnings in the deployment record.
func Example() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()

	n, err := notify.New(
		notify.WithMarker(notify.Marker{URL: srv.URL + "/api/markers", Token: "token value"}),
		notify.WithSlack(notify.Slack{WebhookURL: srv.URL + "/services/T/B/x", On: []notify.Outcome{notify.Failure}}),
		notify.WithWebhook(notify.Webhook{URL: "http://127.0.0.1:1/down"}),
		notify.WithAttempts(2), notify.WithBackoff(time.Millisecond, time.Millisecond),
	)
	if err != nil {
		fmt.Println(err) // a configuration error: bad URL, template that does not render JSON
		return
	}
	warnings := n.Send(context.Background(), notify.Event{
		ID: "20261127T081500Z", App: "hello", Env: "staging", Version: "v1.2.3", Outcome: notify.Success,
	})
	for _, w := range warnings {
		fmt.Println(w.Kind, w.Endpoint, w.Attempts) // record.Warnings = append(record.Warnings, w.String())
	}
	// Output: webhook 127.0.0.1:1 2
}
