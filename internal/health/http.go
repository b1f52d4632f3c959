package health

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

const (
	// maxBody is how much of a probe's response body is read before the
	// connection is closed; a health endpoint that streams must not hold a
	// prober.
	maxBody = 4 << 10
	// maxInformational bounds the 1xx responses (103 Early Hints) skipped
	// before the final one.
	maxInformational = 5
)

// HTTPChecker passes when a GET of its path answers with a status in its
// expected range. Each probe opens a fresh connection and sends
// "Connection: close", so it sees what a new client would (a backend whose
// accept queue is stuck fails, even if an old keep-alive connection would
// still work). Redirects are not followed: a 302 is judged by its status.
type HTTPChecker struct {
	path   string
	host   string
	lo, hi int
	dialer net.Dialer
}

var _ Checker = (*HTTPChecker)(nil)

// NewHTTPChecker returns a checker that sends GET path with the Host header
// host (the probed address when host is ""), User-Agent ballast-health, and
// passes on a status in [expectLo, expectHi]. An empty path means "/". path and
// host are sent as they are: validate them at config load.
func NewHTTPChecker(path, host string, expectLo, expectHi int) *HTTPChecker {
	if path == "" {
		path = "/"
	}
	return &HTTPChecker{path: path, host: host, lo: expectLo, hi: expectHi, dialer: net.Dialer{KeepAlive: -1}}
}

// Check probes addr once within ctx's deadline.
func (c *HTTPChecker) Check(ctx context.Context, addr string) error {
	conn, err := c.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	// The deadline bounds every read and write; the AfterFunc also stops them
	// when ctx is canceled early (the monitor stopping or the backend removed).
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	err = c.exchange(conn, addr)
	if err != nil && ctx.Err() != nil {
		// The connection failed because ctx ended: say so, not "i/o timeout".
		return fmt.Errorf("GET %s%s: %w", addr, c.path, ctx.Err())
	}
	return err
}

// exchange sends the request on conn and judges the response.
func (c *HTTPChecker) exchange(conn net.Conn, addr string) error {
	host := c.host
	if host == "" {
		host = addr
	}
	req := "GET " + c.path + " HTTP/1.1\r\nHost: " + host +
		"\r\nUser-Agent: ballast-health\r\nAccept: */*\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return fmt.Errorf("GET %s%s: write request: %w", addr, c.path, err)
	}
	br := bufio.NewReaderSize(conn, maxBody)
	for range maxInformational {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return fmt.Errorf("GET %s%s: read response: %w", addr, c.path, err)
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue
		}
		// Read a little of the body so the backend is not answered with an RST
		// mid-write, then hang up.
		io.CopyN(io.Discard, resp.Body, maxBody)
		resp.Body.Close()
		if resp.StatusCode < c.lo || resp.StatusCode > c.hi {
			return &StatusError{Code: resp.StatusCode}
		}
		return nil
	}
	return errors.New("GET " + addr + c.path + ": too many informational responses")
}
