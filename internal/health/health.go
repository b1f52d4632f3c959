// Package health runs active health checks: it probes each backend of a pool on
// its own jittered schedule and moves the backend between up and down after Rise
// consecutive passes or Fall consecutive failures.
//
// The package never sits on the request path. A Monitor's only effect on a
// backend is a call to its SetState when a transition is due; balancers see the
// new state with their next read of the backend's atomic.
package health

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
)

// Checker probes one target once; nil means healthy. The error says why not;
// Reason turns it into the short text that is logged once per state change.
// A Checker must return promptly once ctx is done, and must be safe for
// concurrent use: a Monitor calls it from one goroutine per backend.
type Checker interface {
	Check(ctx context.Context, addr string) error
}

// CheckerFunc adapts a plain function to Checker.
type CheckerFunc func(ctx context.Context, addr string) error

// Check calls f(ctx, addr).
func (f CheckerFunc) Check(ctx context.Context, addr string) error { return f(ctx, addr) }

// StatusError is an HTTP probe's answer with a status outside the expected range.
type StatusError struct {
	// Code is the status the backend answered with.
	Code int
}

// Error returns "status NNN".
func (e *StatusError) Error() string { return "status " + strconv.Itoa(e.Code) }

// Reason classifies a probe error into a short reason for logs and the admin
// API: "timeout", "connection refused", "status NNN", "reset" (RST or broken
// pipe), "connection closed" (the backend hung up before a full answer), or
// else the error's own text. It returns "" for nil.
func Reason(err error) string {
	var se *StatusError
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &se):
		return se.Error()
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return "reset"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	}
	return err.Error()
}
