package pipeline

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"

	"github.com/pushdeploy/pushdeploy/targets"
)

// Exit codes a script can act on, derived from the errors the pipeline returns (ExitCode).
const (
	// ExitOK: the command did what it was asked (a no-op deploy included).
	ExitOK = 0
	// ExitFailed: any failure not named below.
	ExitFailed = 1
	// ExitUsage: the command line was wrong (unknown command or flag, bad format, missing
	// argument); nothing ran.
	ExitUsage = 2
	// ExitRefused: refused at the gates (not approved, not what the promotion source runs);
	// nothing was changed.
	ExitRefused = 3
	// ExitLocked: the deploy lock is held by someone else (a deploy, a maintenance window);
	// nothing was changed.
	ExitLocked = 4
	// ExitRolledBack: the deploy failed and every host it switched is back on its previous
	// release.
	ExitRolledBack = 5
	// ExitMixed: a rollback failed: hosts run different releases and need a hand.
	ExitMixed = 6
	// ExitUnreachable: a host or the cluster could not be reached; nothing was changed.
	ExitUnreachable = 7
)

// UsageError is a command line the command refuses before running anything.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// GateError is a deploy refused at its gates: not approved, or not what the promotion
// source runs. Nothing was changed.
type GateError struct{ Err error }

func (e *GateError) Error() string { return e.Err.Error() }
func (e *GateError) Unwrap() error { return e.Err }

// UnreachableError says that a host or the cluster could not be reached at all (refused
// or timed-out connections, unknown names), so the command could not do its work there:
// check with no host reachable, status with a host or cluster out of reach. ExitCode makes
// ExitUnreachable of it.
type UnreachableError struct{ Err error }

func (e *UnreachableError) Error() string { return e.Err.Error() }
func (e *UnreachableError) Unwrap() error { return e.Err }

// ExitCode maps an error of the pipeline to the process exit code a script can act on (the
// Exit constants); nil is ExitOK.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var (
		usage  *UsageError
		gate   *GateError
		held   *targets.HeldError
		live   *LiveLockError
		deploy *DeployError
		lost   *LockLostError
		owner  *NotOwnerError
		irrev  *IrreversibleError
	)
	switch {
	case errors.As(err, &usage):
		return ExitUsage
	case errors.As(err, &gate), errors.As(err, &irrev):
		return ExitRefused
	case errors.As(err, &deploy):
		// Before the lock's errors: a deploy stopped by its lost lock rolled back too.
		if deploy.Stopped != "" {
			return ExitIrreversible
		}
		if len(deploy.RollbackErrors) > 0 {
			return ExitMixed
		}
		return ExitRolledBack
	case errors.As(err, &lost):
		return ExitRolledBack
	case errors.As(err, &held), errors.As(err, &live), errors.As(err, &owner):
		return ExitLocked
	case unreachable(err):
		return ExitUnreachable
	}
	return ExitFailed
}

// unreachable says whether err is a failure to reach a host or a server at all: a refused
// or timed-out connection, an unknown name, no route.
func unreachable(err error) bool {
	var all *UnreachableError
	if errors.As(err, &all) {
		return true
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return true
	}
	for _, e := range []error{syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ETIMEDOUT} {
		if errors.Is(err, e) {
			return true
		}
	}
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.Is(err, context.DeadlineExceeded) && errors.As(err, &op))
}
