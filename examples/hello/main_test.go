package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestHealthAnswersVersion(t *testing.T) {
	for _, tc := range []struct {
		fail   bool
		status int
		body   string
	}{
		{false, http.StatusOK, "ok v1.2.3\n"},
		{true, http.StatusServiceUnavailable, "unhealthy v1.2.3\n"},
	} {
		srv := httptest.NewServer(handler("v1.2.3", tc.fail))
		resp, err := http.Get(srv.URL + "/health")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		srv.Close()
		if resp.StatusCode != tc.status || string(b) != tc.body {
			t.Errorf("fail=%v: got %d %q, want %d %q", tc.fail, resp.StatusCode, b, tc.status, tc.body)
		}
	}
}
