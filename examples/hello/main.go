// Command hello is the example service that pushdeploy builds, tests and deploys in its own
// tests and sandbox: an HTTP server whose /health answers with its version.
//
//	hello -addr :8080           serve
//	hello -check http://127.0.0.1:8080/health   exit 0 when the URL answers 200 (for HEALTHCHECK)
//
// The version is set at build time (-ldflags "-X main.version=v1.2.3") or by $HELLO_VERSION.
// $HELLO_FAIL_HEALTH=1 makes /health answer 503, for tests of failing deploys.
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
	srv := &http.Server{Addr: *addr, Handler: handler(version, os.Getenv("HELLO_FAIL_HEALTH") == "1"), ReadHeaderTimeout: 5 * time.Second}
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

// handler serves / and /health.
func handler(version string, failHealth bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if failHealth {
			http.Error(w, "unhealthy "+version, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "ok %s\n", version)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", version)
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
