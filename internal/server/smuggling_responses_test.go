package server

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The response side of desynchronisation: a backend that answers malformed
// or ambiguous responses must get the client a 502 — or, when the head was
// already relayed, a closed connection — and never leave the client or a
// pooled backend connection out of step. After each bad response the same
// client connection (if it is still open) and then fresh ones ask for /good,
// and must get the backend's real answer to that request, not bytes of the
// bad one. Runs on both engines; net/http's transport is more lenient than
// h1 on a few heads (listed with their reason).

// scriptBackend answers /good* with tapEcho and /bad with the current script;
// a script reports whether the connection stays open for more requests.
type scriptBackend struct {
	ln     net.Listener
	script atomic.Pointer[func(c net.Conn) bool]
	ran    atomic.Int64 // scripts that have run to their end
}

func newScriptBackend(t *testing.T) *scriptBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sb := &scriptBackend{ln: ln}
	done := make(chan struct{})
	conns := make(chan net.Conn, 1024)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
			go sb.serve(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		close(conns)
		for c := range conns {
			c.Close()
		}
	})
	return sb
}

func (sb *scriptBackend) Addr() string { return sb.ln.Addr().String() }

func (sb *scriptBackend) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return
		}
		if req.URL.Path == "/bad" {
			s := sb.script.Load()
			keep := s != nil && (*s)(c)
			sb.ran.Add(1)
			if !keep {
				return
			}
			continue
		}
		echo := tapEcho(req.Method, req.RequestURI, "")
		if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(echo), echo); err != nil {
			return
		}
	}
}

// writes returns a script that writes s and keeps the connection open.
func writes(s string) func(net.Conn) bool {
	return func(c net.Conn) bool {
		io.WriteString(c, s)
		return true
	}
}

// writesClose returns a script that writes s and closes the connection.
func writesClose(s string) func(net.Conn) bool {
	return func(c net.Conn) bool {
		io.WriteString(c, s)
		return false
	}
}

// writesThen returns a script that writes first, then later after a pause
// (while the connection may already be idle in the proxy's pool).
func writesThen(first, later string) func(net.Conn) bool {
	return func(c net.Conn) bool {
		io.WriteString(c, first)
		time.Sleep(30 * time.Millisecond)
		io.WriteString(c, later)
		return true
	}
}

// interims returns a script that sends 102 Processing every 5 ms for d,
// then final (if any) and closes.
func interims(d time.Duration, final string) func(net.Conn) bool {
	return func(c net.Conn) bool {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			if _, err := io.WriteString(c, "HTTP/1.1 102 Processing\r\n\r\n"); err != nil {
				return false
			}
		}
		io.WriteString(c, final)
		return false
	}
}

const fakeResponse = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nPOISONED"

// relayedAbort is the first response's outcome "no complete response, the
// connection closed" (the head may have gone out before the body broke).
const relayedAbort = 0

type badResponse struct {
	name    string
	script  func(net.Conn) bool
	want    []int // the first response's allowed statuses (relayedAbort: none, closed)
	netHTTP []int // for the net_http engine, when its transport decides otherwise
	why     string
	body    string // a 200's body, when the response is relayed
}

// Failure kinds of checkBadResponse.
var (
	errDesync = errors.New("desynchronised: a request got another response's bytes")
	errSlow   = errors.New("too slow")
)

var badResponses = []badResponse{
	{name: "CL and TE", script: writes("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
		want: []int{502}, netHTTP: []int{200}, body: "hello",
		why: "net/http's transport lets Transfer-Encoding win, drops Content-Length and closes the backend connection after"},
	{name: "TE and CL", script: writes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
		want: []int{502}, netHTTP: []int{200}, body: "hello"},
	{name: "differing duplicate CL", script: writes("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"), want: []int{502}},
	{name: "CL list", script: writes("HTTP/1.1 200 OK\r\nContent-Length: 2, 8\r\n\r\nokPOISONED"), want: []int{502}},
	{name: "signed CL", script: writes("HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok"), want: []int{502}},
	{name: "TE chunked twice", script: writes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"), want: []int{502}},
	{name: "invalid chunk size", script: writes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n"), want: []int{relayedAbort}},
	{name: "negative chunk size", script: writes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\nok\r\n0\r\n\r\n"), want: []int{relayedAbort}},
	{name: "chunk size overflow", script: writes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000002\r\nok\r\n0\r\n\r\n"), want: []int{relayedAbort}},
	{name: "chunk data longer than its size", script: writes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokPOISONED\r\n0\r\n\r\n"), want: []int{relayedAbort}},
	{name: "bare LF line ends", script: writes("HTTP/1.1 200 OK\nContent-Length: 2\n\nok"),
		want: []int{502}, netHTTP: []int{200}, body: "ok", why: "net/http's transport accepts bare LF in a response head"},
	{name: "bare LF in a chunked body", script: writes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nok\r\n0\r\n\r\n"), want: []int{relayedAbort}},
	{name: "NUL in a field value", script: writes("HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok"), want: []int{502}},
	{name: "obs-fold", script: writes("HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok"),
		want: []int{502}, netHTTP: []int{200}, body: "ok", why: "net/http's transport unfolds obs-fold"},
	{name: "field without colon", script: writes("HTTP/1.1 200 OK\r\nContent-Length 2\r\n\r\nok"), want: []int{502}},
	{name: "four-digit status", script: writes("HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok"), want: []int{502}},
	{name: "two-digit status", script: writes("HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok"), want: []int{502}},
	{name: "no status code", script: writes("HTTP/1.1 OK\r\nContent-Length: 2\r\n\r\nok"), want: []int{502}},
	{name: "HTTP/2 status line", script: writes("HTTP/2 200 OK\r\nContent-Length: 2\r\n\r\nok"), want: []int{502}},
	{name: "not HTTP", script: writes("ICY 200 OK\r\nContent-Length: 2\r\n\r\nok"), want: []int{502}},
	{name: "status line with bare CR", script: writesClose("HTTP/1.1 200 OK\rContent-Length: 2\r\n\r\nok"),
		want: []int{502}, netHTTP: []int{200}, body: "ok",
		why: "net/http's transport takes the CR and what follows for the reason phrase: no Content-Length, the body runs until close"},
	{name: "endless 1xx", script: interims(2500*time.Millisecond, ""), want: []int{502, 504}},
	{name: "many 1xx, then a response", script: interims(300*time.Millisecond, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"),
		want: []int{200}, body: "ok"},
	{name: "body longer than CL, fake response behind", script: writes("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + fakeResponse),
		want: []int{200}, body: "ok"},
	// Last: bytes a backend sends after its response, once the connection
	// is parked, must never answer the next request sent on it.
	{name: "fake response arriving while idle", script: writesThen("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", fakeResponse),
		want: []int{200}, body: "ok"},
}

// TestMalformedResponses: after each bad response the client connection is
// either closed or in step, and no pooled backend connection answers a later
// request with the bad response's leftovers.
func TestMalformedResponses(t *testing.T) {
	sb := newScriptBackend(t)
	_, url := start(t, httpConfig(t, "timeouts: {response_header: 1s}", sb.Addr()))
	addr := strings.TrimPrefix(url, "http://")
	for _, br := range badResponses {
		t.Run(br.name, func(t *testing.T) {
			sb.script.Store(&br.script)
			want := br.want
			if testEngine() == "net_http" && br.netHTTP != nil {
				want = br.netHTTP
				if br.why != "" {
					t.Log("net_http differs:", br.why)
				}
			}
			err := checkBadResponse(t, sb, addr, br, want)
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func checkBadResponse(t *testing.T, sb *scriptBackend, addr string, br badResponse, want []int) error {
	ran := sb.ran.Load()
	rc := dialRaw(t, addr)
	start := time.Now()
	io.WriteString(rc.c, "GET /bad HTTP/1.1\r\nHost: x\r\n\r\n")
	st, body, resp, err := rc.response("GET")
	open := false
	var slow error // reported last: what follows is checked all the same
	switch {
	case err != nil:
		if !slices.Contains(want, relayedAbort) {
			return fmt.Errorf("no complete response (%v), want one of %v", err, want)
		}
		if closed, extra := rc.closedWithin(3 * time.Second); !closed {
			return fmt.Errorf("after a broken response the connection stays open; extra bytes %q", extra)
		}
	case !slices.Contains(want, st):
		return fmt.Errorf("status %d %q, want one of %v", st, body, want)
	case st == 200 && body != br.body:
		return fmt.Errorf("%w: body %q, want %q", errDesync, body, br.body)
	default:
		if d := time.Since(start); st >= 500 && d > 3*time.Second {
			slow = fmt.Errorf("%w: %d after %v, more than timeouts.response_header (1s) allows", errSlow, st, d.Round(time.Millisecond))
		}
		open = !resp.Close
	}
	// The whole script has been sent (a late part lands while the backend
	// connection is idle in the proxy's pool), and the proxy had a moment to
	// see it.
	for end := time.Now().Add(5 * time.Second); sb.ran.Load() == ran && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)

	// The same connection, if it is open, then fresh ones: each request gets
	// its own answer.
	if open {
		if err := getGood(rc, "/good-same"); err != nil {
			return fmt.Errorf("same connection: %w", err)
		}
	}
	for i := range 3 {
		if err := getGood(dialRaw(t, addr), fmt.Sprintf("/good-%d", i)); err != nil {
			return fmt.Errorf("fresh connection %d: %w", i, err)
		}
	}
	return slow
}

func getGood(rc *rawClient, path string) error {
	io.WriteString(rc.c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
	st, body, _, err := rc.response("GET")
	if err != nil {
		return fmt.Errorf("GET %s: %v", path, err)
	}
	if want := tapEcho("GET", path, ""); st != 200 || body != want {
		return fmt.Errorf("%w: GET %s got %d %q, want 200 %q", errDesync, path, st, body, want)
	}
	return nil
}
