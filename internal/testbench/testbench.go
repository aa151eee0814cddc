// Package testbench starts the real servers that pushdeploy's tests stand on — OpenSSH
// servers, a Docker Engine, OCI registries, a Kubernetes control plane — on demand, on
// loopback or in network namespaces the test creates, and stops them when the test ends.
//
// A component that cannot start (a binary missing, not root) skips the test with the reason,
// unless PUSHDEPLOY_REQUIRE_BENCH is set (CI sets it): then the skip is a failure, so CI never
// passes by skipping.
package testbench

import (
	"os"
	"testing"
)

// RequireEnv is the variable that turns every bench skip into a failure.
const RequireEnv = "PUSHDEPLOY_REQUIRE_BENCH"

// Unavailable stops the test because a bench component cannot start: a skip locally, a
// failure when RequireEnv is set.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(RequireEnv) != "" {
		t.Fatalf("bench component unavailable ("+RequireEnv+" is set): "+format, args...)
	}
	t.Skipf("bench component unavailable: "+format, args...)
}
