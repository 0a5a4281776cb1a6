package deploy

import (
	"context"
	"errors"
	"fmt"
)

// Kind classifies a failure so that the command line can map it to an exit code.
type Kind int

// Failure kinds, with the exit code each maps to (see ExitCode).
const (
	// KindAPI is a Nomad or Consul API error, or no connection at all (exit 1).
	KindAPI Kind = iota + 1
	// KindInput is invalid input: bad flags, variables, job files, or a job spec the
	// Nomad server rejects (exit 2).
	KindInput
	// KindPlacement means the scheduler cannot place allocations (exit 3).
	KindPlacement
	// KindDeployment means a deployment failed or was reverted, or a batch task
	// failed (exit 4).
	KindDeployment
	// KindTimeout means the wait exceeded its deadline (exit 5).
	KindTimeout
	// KindThreshold means a load test finished but one of its thresholds failed, or
	// the load test task failed (exit 6).
	KindThreshold
	// KindInterrupted means the user interrupted the command (exit 130).
	KindInterrupted
)

// Exit codes returned by the deployer binary.
const (
	ExitOK          = 0
	ExitAPI         = 1
	ExitInput       = 2
	ExitPlacement   = 3
	ExitDeployment  = 4
	ExitTimeout     = 5
	ExitThreshold   = 6
	ExitInterrupted = 130
)

// Error is an error with a Kind.
type Error struct {
	Kind Kind
	Err  error
}

// Error returns the underlying error's message.
func (e *Error) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of the given kind with a formatted message (%w allowed).
func Errorf(kind Kind, format string, args ...any) error {
	return &Error{Kind: kind, Err: fmt.Errorf(format, args...)}
}

// KindOf returns the kind of err: that of the outermost *Error in its chain; else a
// context deadline is a timeout and a cancellation an interrupt; any other error is
// an API error.
func KindOf(err error) Kind {
	if err == nil {
		return 0
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return KindTimeout
	case errors.Is(err, context.Canceled):
		return KindInterrupted
	}
	return KindAPI
}

// ExitCode maps err to the deployer's exit code: 0 for nil, otherwise by KindOf.
func ExitCode(err error) int {
	switch KindOf(err) {
	case 0:
		return ExitOK
	case KindInput:
		return ExitInput
	case KindPlacement:
		return ExitPlacement
	case KindDeployment:
		return ExitDeployment
	case KindTimeout:
		return ExitTimeout
	case KindThreshold:
		return ExitThreshold
	case KindInterrupted:
		return ExitInterrupted
	default:
		return ExitAPI
	}
}
