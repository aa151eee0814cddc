package pipeline

import (
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/pushdeploy/pushdeploy/targets"
)

// TestExitCode: each typed error the pipeline returns, wrapped as the flow wraps it (a stage,
// masking), maps to its exit code. The CLI's tests run each on a real host.
func TestExitCode(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	host := &HostError{Host: "web1", Step: StepActivate, Err: errors.New("restart failed")}
	for _, c := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, ExitOK},
		{"plain", errors.New("boom"), ExitFailed},
		{"usage", &UsageError{Err: errors.New("unknown flag")}, ExitUsage},
		{"gates", &StageError{Stage: "gates", Err: &GateError{Err: errors.New("not approved")}}, ExitRefused},
		{"held", &StageError{Stage: "lock", Err: fmt.Errorf("%w; wait", &targets.HeldError{Target: "t"})}, ExitLocked},
		{"live lock", &LiveLockError{Target: "t"}, ExitLocked},
		{"not owner", &NotOwnerError{Env: "staging"}, ExitLocked},
		{"rolled back", &StageError{Stage: "deploy", Err: &DeployError{HostError: host, RolledBack: []string{"web1"}}}, ExitRolledBack},
		{"lock lost", &LockLostError{Err: targets.ErrLockLost}, ExitRolledBack},
		{"mixed", &DeployError{HostError: host, RollbackErrors: []error{errors.New("web2: restart")}}, ExitMixed},
		{"unreachable", fmt.Errorf("environment %q: connecting to 127.0.0.1:1: %w", "staging", dial), ExitUnreachable},
		{"masked", maskError(fmt.Errorf("s3cr3t: %w", &GateError{Err: errors.New("x")}), [][]byte{[]byte("s3cr3t")}), ExitRefused},
	} {
		if got := ExitCode(c.err); got != c.want {
			t.Errorf("%s: ExitCode(%v) = %d, want %d", c.name, c.err, got, c.want)
		}
	}
}
