package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
)

// Sentinel errors of the data path. StatusFor maps them (and the engine's
// transport errors) to the status the client gets.
var (
	// ErrNoRoute: no route of the listener matches the request.
	ErrNoRoute = errors.New("no route matches the request")
	// ErrNoBackend: the pool has no usable backend.
	ErrNoBackend = errors.New("no usable backend in the pool")
	// ErrConnect: the backend could not be reached (refused, unreachable,
	// connect timeout).
	ErrConnect = errors.New("backend unreachable")
	// ErrResponseTimeout: the backend did not send a response header in time.
	ErrResponseTimeout = errors.New("backend response timeout")
	// ErrBadResponse: the backend closed the connection or sent something that
	// is not a valid HTTP response.
	ErrBadResponse = errors.New("backend sent no valid response")
	// ErrClientGone: the client went away before the response was ready.
	ErrClientGone = errors.New("client closed the request")
	// ErrQueue: every backend was at max_conns and the request could not wait
	// for a slot (the queue was full, or the wait timed out).
	ErrQueue = errors.New("every backend busy")
	// errMethodNotAllowed: a method ballast does not proxy (CONNECT).
	errMethodNotAllowed = errors.New("method not allowed")
	// ErrBadRequest: the request cannot be forwarded as it is.
	ErrBadRequest = errors.New("bad request")
	// ErrBodyTooLarge: the request body passes the listener's max_body_bytes.
	ErrBodyTooLarge = errors.New("request body too large")
)

// StatusClientClosed is the status recorded (never sent) when the client went
// away first, as nginx logs it.
const StatusClientClosed = 499

// StatusFor is the one place that decides which HTTP status a failed request
// gets: 404 no route, 503 no usable backend, 502 backend unreachable or broken,
// 504 backend too slow, 413 request body over the listener's cap.
func StatusFor(err error) int {
	switch {
	case errors.Is(err, ErrNoRoute):
		return http.StatusNotFound
	case errors.Is(err, ErrNoBackend), errors.Is(err, ErrQueue):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, errMethodNotAllowed):
		return http.StatusMethodNotAllowed
	case errors.Is(err, ErrBodyTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrResponseTimeout):
		return http.StatusGatewayTimeout
	case errors.Is(err, ErrClientGone):
		return StatusClientClosed
	case errors.Is(err, ErrConnect), errors.Is(err, ErrBadResponse):
		return http.StatusBadGateway
	}
	return http.StatusBadGateway
}

// retryAfterSeconds is the Retry-After of ballast's own 503s (no backend up,
// every backend busy and the queue full or its wait over): soon, since health
// checks and the queue move within seconds.
const retryAfterSeconds = "1"

// errorBody is the short plain-text body sent with each error status.
func errorBody(status int) string {
	switch status {
	case http.StatusNotFound:
		return "404 no route for this host and path\n"
	case http.StatusServiceUnavailable:
		return "503 no backend available\n"
	case http.StatusGatewayTimeout:
		return "504 backend did not answer in time\n"
	case http.StatusBadRequest:
		return "400 bad request\n"
	case http.StatusMethodNotAllowed:
		return "405 method not allowed\n"
	case http.StatusRequestTimeout:
		return "408 request header timeout\n"
	case http.StatusRequestEntityTooLarge:
		return "413 request body too large\n"
	case http.StatusRequestHeaderFieldsTooLarge:
		return "431 request header fields too large\n"
	case http.StatusNotImplemented:
		return "501 transfer coding not implemented\n"
	}
	return "502 backend unreachable or broken\n"
}

// classify turns an error from the net/http transport into one of the
// sentinel errors above, keeping the original for logs.
func classify(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return errors.Join(ErrClientGone, err)
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return errors.Join(ErrConnect, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errors.Join(ErrResponseTimeout, err)
	}
	return errors.Join(ErrBadResponse, err)
}
