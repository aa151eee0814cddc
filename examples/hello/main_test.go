package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
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
		srv := httptest.NewServer(handler(behaviour{version: "v1.2.3", failHealth: tc.fail}))
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

func TestErrorRateAndMetrics(t *testing.T) {
	srv := httptest.NewServer(handler(behaviour{version: "v2", errorRate: 0.5, failAfter: 1}))
	defer srv.Close()
	codes := map[int]int{}
	for range 10 {
		resp, err := http.Get(srv.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes[resp.StatusCode]++
	}
	if codes[200] != 5 || codes[500] != 5 {
		t.Errorf("10 requests at error rate 0.5 answered %v", codes)
	}
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`hello_http_requests_total{code="200"} 5`, `hello_http_requests_total{code="500"} 5`, `hello_build_info{version="v2"} 1`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %q:\n%s", want, b)
		}
	}
	for i, want := range []int{200, 503} {
		resp, err := http.Get(srv.URL + "/health")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("health check %d with fail-after 1: %d, want %d", i+1, resp.StatusCode, want)
		}
	}
}
