// Command hello is the example service that pushdeploy builds, tests and deploys in its own
// tests and sandbox: an HTTP server whose /health answers with its version.
//
//	hello -addr :8080           serve
//	hello -check http://127.0.0.1:8080/health   exit 0 when the URL answers 200 (for HEALTHCHECK)
//
// The version is set at build time (-ldflags "-X main.version=v1.2.3") or by $HELLO_VERSION.
// $HELLO_FAIL_HEALTH=1 makes /health answer 503, for tests of failing deploys;
// $HELLO_FAIL_AFTER=N makes it answer 503 after its first N answers (a release that fails
// during a bake); $HELLO_ERROR_RATE=0.5 makes that share of the requests to / answer 500.
// /metrics counts the requests to / by status in the Prometheus text format
// (hello_http_requests_total{code="200"}), for canary analysis.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

var version = "dev"

func main() {
	addr := flag.String("addr", envOr("HELLO_ADDR", ":8080"), "address to listen on")
	check := flag.String("check", "", "instead of serving, GET this URL and exit 0 on 200")
	flag.Parse()
	if *check != "" {
		os.Exit(probe(*check))
	}
	if v := os.Getenv("HELLO_VERSION"); v != "" {
		version = v
	}
	failAfter, _ := strconv.Atoi(os.Getenv("HELLO_FAIL_AFTER"))
	errorRate, _ := strconv.ParseFloat(os.Getenv("HELLO_ERROR_RATE"), 64)
	h := handler(behaviour{version: version, failHealth: os.Getenv("HELLO_FAIL_HEALTH") == "1", failAfter: failAfter, errorRate: errorRate})
	srv := &http.Server{Addr: *addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Printf("hello %s listening on %s", version, *addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// behaviour is what the environment asks of the service.
type behaviour struct {
	version    string
	failHealth bool
	failAfter  int     // /health fails after this many answers; 0 never
	errorRate  float64 // the share of requests to / that answer 500
}

// handler serves /, /health and /metrics.
func handler(b behaviour) http.Handler {
	var mu sync.Mutex
	var checks, requests, errors int
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		checks++
		late := b.failAfter > 0 && checks > b.failAfter
		mu.Unlock()
		if b.failHealth || late {
			http.Error(w, "unhealthy "+b.version, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "ok %s\n", b.version)
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ok, failed := requests-errors, errors
		mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# TYPE hello_http_requests_total counter\n")
		fmt.Fprintf(w, "hello_http_requests_total{code=\"200\"} %d\n", ok)
		fmt.Fprintf(w, "hello_http_requests_total{code=\"500\"} %d\n", failed)
		fmt.Fprintf(w, "# TYPE hello_build_info gauge\nhello_build_info{version=%q} 1\n", b.version)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests++
		// Deterministic: the n-th request fails when the failures so far fall behind the rate.
		fail := float64(errors+1) <= float64(requests)*b.errorRate
		if fail {
			errors++
		}
		mu.Unlock()
		if fail {
			http.Error(w, "error from "+b.version, http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "hello from %s\n", b.version)
	})
	return mux
}

func probe(url string) int {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, resp.Status)
		return 1
	}
	return 0
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
