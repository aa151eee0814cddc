package pipeline

import (
	"errors"
	"fmt"
)

// SkipError says a stage does not apply to this deploy, and why. A skipped stage is
// reported with its reason, never silently.
type SkipError struct{ Reason string }

func (e *SkipError) Error() string { return "skipped: " + e.Reason }

// Skip makes a stage's skip error.
func Skip(format string, args ...any) error { return &SkipError{Reason: fmt.Sprintf(format, args...)} }

// IsSkip says whether err skips a stage.
func IsSkip(err error) bool {
	var s *SkipError
	return errors.As(err, &s)
}

// StageError is a failure of the named stage.
type StageError struct {
	Stage string
	Err   error
}

func (e *StageError) Error() string { return e.Stage + ": " + e.Err.Error() }
func (e *StageError) Unwrap() error { return e.Err }
