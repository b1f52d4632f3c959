package proxy

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// Backend failure modes through the native engine: what the client gets
// when a backend refuses, hangs up, breaks off, lies about framing or is too
// slow, and how stale keep-alive connections are handled.

// TestNativeBackendErrors: each broken backend behaviour gets its status.
func TestNativeBackendErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		serve func(ac *advConn)
		want  int
	}{
		{"closes without response", func(ac *advConn) { ac.next() }, 502},
		{"garbage", func(ac *advConn) { ac.next(); ac.write("SSH-2.0-OpenSSH_9.6\r\n\r\n") }, 502},
		{"bad status code", func(ac *advConn) { ac.next(); ac.write("HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n") }, 502},
		{"partial head then close", func(ac *advConn) { ac.next(); ac.write("HTTP/1.1 200 OK\r\nContent-Len") }, 502},
		{"both length and chunked", func(ac *advConn) {
			ac.next()
			ac.write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
			ac.b.sleep(time.Second)
		}, 502},
		{"two lengths", func(ac *advConn) {
			ac.next()
			ac.write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
			ac.b.sleep(time.Second)
		}, 502},
		{"101 not asked for", func(ac *advConn) {
			ac.next()
			ac.write("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
			ac.b.sleep(time.Second)
		}, 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newAdvRawBackend(t, tc.serve)
			p := newAdvProxy(t, advProxyConfig{}, b.addr)
			c := advDial(t, p.addr)
			m := c.roundTrip(advGet("/", "x"))
			if m.status() != tc.want {
				t.Fatalf("client got %q, want %d", m.line, tc.want)
			}
			if !strings.EqualFold(m.get("Connection"), "close") {
				t.Errorf("error response keeps the connection:\n%s", m.raw)
			}
			c.expectClosed(3 * time.Second) // and nothing else follows the error
		})
	}
}

// TestNativeBackendRefused: a backend that is not listening gives 502, fast.
func TestNativeBackendRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	p := newAdvProxy(t, advProxyConfig{}, dead)
	c := advDial(t, p.addr)
	start := time.Now()
	if m := c.roundTrip(advGet("/", "x")); m.status() != 502 {
		t.Fatalf("refused backend: %q, want 502", m.line)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("refusal took %v", d)
	}
}

// TestNativeBackendBreaksOffMidBody: a backend that dies after the header
// makes the proxy abort the client connection, so a truncated body is never
// taken for a whole one, whatever the framing.
func TestNativeBackendBreaksOffMidBody(t *testing.T) {
	for _, tc := range []struct{ name, resp string }{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + strings.Repeat("a", 100)},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + strings.Repeat("a", 100) + "\r\n64\r\nabc"},
		{"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newAdvRawBackend(t, func(ac *advConn) {
				ac.next()
				ac.write(tc.resp)
				ac.b.sleep(50 * time.Millisecond)
			})
			p := newAdvProxy(t, advProxyConfig{}, b.addr)
			c := advDial(t, p.addr)
			c.send(advGet("/", "x"))
			m, err := advReadResponse(c.br, "GET")
			if err == nil {
				t.Fatalf("client got a complete response from a broken one: %q, %d body bytes", m.line, len(m.body))
			}
			c.expectClosed(3 * time.Second)
		})
	}
}

// TestNativeResponseHeaderTimeout: no response header within
// Timeouts.ResponseHeader gives 504.
func TestNativeResponseHeaderTimeout(t *testing.T) {
	b := newAdvBackend(t, func(ac *advConn, m *advMsg) bool {
		ac.b.sleep(advDeadline)
		return false
	})
	p := newAdvProxy(t, advProxyConfig{timeouts: Timeouts{
		Connect: time.Second, ResponseHeader: 300 * time.Millisecond, Idle: time.Minute,
	}}, b.addr)
	c := advDial(t, p.addr)
	start := time.Now()
	if m := c.roundTrip(advGet("/slow", "x")); m.status() != 504 {
		t.Fatalf("got %q, want 504", m.line)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
		t.Errorf("504 after %v, want about 300ms", d)
	}
}

// advStaleBackend answers each request with a keep-alive response, then
// closes the connection shortly after, as gunicorn does when its keep-alive
// timeout passes while the proxy keeps the connection idle.
func advStaleBackend(t *testing.T, before func(ac *advConn, m *advMsg)) *advBackend {
	return newAdvBackend(t, func(ac *advConn, m *advMsg) bool {
		ac.body(m)
		if before != nil {
			before(ac, m)
		}
		ac.echo(m)
		ac.b.sleep(20 * time.Millisecond)
		return false
	})
}

// advWaitStale waits until the backend has closed n connections, and a
// moment more for the FINs to reach the proxy's sockets.
func advWaitStale(t *testing.T, b *advBackend, n int64) {
	t.Helper()
	if !advWaitFor(5*time.Second, func() bool { return b.closes.Load() >= n }) {
		t.Fatalf("backend closed %d connections, want %d", b.closes.Load(), n)
	}
	time.Sleep(30 * time.Millisecond)
}

// TestNativeStaleKeepAliveGETRetried: a GET that meets a pooled connection
// the backend already closed is retried on a fresh one, transparently.
func TestNativeStaleKeepAliveGETRetried(t *testing.T) {
	b := advStaleBackend(t, nil)
	p := newAdvProxy(t, advProxyConfig{}, b.addr)
	c := advDial(t, p.addr)
	const n = 5
	for i := range n {
		tok := fmt.Sprint("g", i)
		m := c.roundTrip(advGet("/stale", tok))
		if m.status() != 200 || !advEchoMatch(string(m.body), advEchoOf("GET", "/stale", tok, nil)) {
			t.Fatalf("GET %d: %q %q", i, m.line, m.body)
		}
		advWaitStale(t, b, int64(i+1))
	}
	if got := len(b.seen()); got != n {
		t.Errorf("backend saw %d requests, want %d (each once)", got, n)
	}
}

// TestNativeStaleKeepAliveRetryDialsFresh pins a bug.
//
// Regression (fixed): the stale-connection retry in exchange.run (native_exchange.go:129, 141)
// takes the next connection from the idle set again (ex.connect(idle)); when
// that one is stale too — the usual case after a backend restart or its
// keep-alive timeout, which closes every idle connection — the retry fails
// with errStale and broken() has written nothing, so the client connection is
// closed without any response. Fix: retry on a freshly dialled connection
// (or drain stale idle ones), and always answer 502 when giving up.
func TestNativeStaleKeepAliveRetryDialsFresh(t *testing.T) {
	var mu sync.Mutex
	arrived := 0
	b := advStaleBackend(t, func(ac *advConn, m *advMsg) {
		// Hold the first two answers until both requests are in, so that two
		// backend connections end up idle in the pool together.
		mu.Lock()
		arrived++
		mu.Unlock()
		for range 200 {
			mu.Lock()
			n := arrived
			mu.Unlock()
			if n >= 2 {
				return
			}
			ac.b.sleep(5 * time.Millisecond)
		}
	})
	p := newAdvProxy(t, advProxyConfig{}, b.addr)
	c1, c2 := advDial(t, p.addr), advDial(t, p.addr)
	c1.send(advGet("/a", "a"))
	c2.send(advGet("/b", "b"))
	c1.resp("GET")
	c2.resp("GET")
	advWaitStale(t, b, 2) // both pooled connections are now closed by the backend
	c3 := advDial(t, p.addr)
	c3.send(advGet("/c", "c"))
	m, err := advReadResponse(c3.br, "GET")
	if err != nil {
		t.Fatalf("GET after the backend closed its idle connections: no response at all (%v)", err)
	}
	if m.status() != 200 {
		t.Fatalf("GET after the backend closed its idle connections: %q, want a transparent retry", m.line)
	}
}

// TestNativeStaleKeepAlivePOST pins a bug.
//
// Regression (fixed): a request with a body that meets a stale pooled connection is not
// retried (right: its body is gone) but the client gets no answer at all:
// broken() (native_exchange.go:319-320) returns errStale without writing a
// response, and run() (native_exchange.go:144) passes it on, so the client
// connection just closes. A client sees "connection reset/EOF" instead of a
// 502 (or a transparent retry when the body was small enough to keep: the
// inline body is still in cc.scratch). Fix: in run(), when errStale is not
// retried, answer with cc.fail(errors.Join(ErrBadResponse, err), ...);
// better, check a pooled connection for a pending EOF before using it for a
// request with a body, or dial fresh for those. The backend must never get
// the body twice, which this test also checks.
func TestNativeStaleKeepAlivePOST(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
	}{
		{"inline", "post-body-once"},
		{"streamed", strings.Repeat("s", 256<<10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := advStaleBackend(t, nil)
			p := newAdvProxy(t, advProxyConfig{}, b.addr)
			c := advDial(t, p.addr)
			c.roundTrip(advGet("/warm", "w")) // leaves a pooled connection
			advWaitStale(t, b, 1)
			c.send(fmt.Sprintf("POST /once HTTP/1.1\r\nHost: a\r\nX-Token: p\r\nContent-Length: %d\r\n\r\n%s", len(tc.body), tc.body))
			m, err := advReadResponse(c.br, "POST")
			time.Sleep(100 * time.Millisecond)
			posts := 0
			for _, r := range b.seen() {
				if r.target() == "/once" && r.bodyErr == nil {
					posts++
				}
			}
			if posts > 1 {
				t.Fatalf("backend got the POST body %d times", posts)
			}
			switch {
			case err != nil:
				t.Fatalf("POST on a stale connection: no response at all (%v); want 502 or success", err)
			case m.status() != 502 && m.status() != 200:
				t.Fatalf("POST on a stale connection: %q, want 502 or 200", m.line)
			case m.status() == 200 && posts != 1:
				t.Fatalf("200 but the backend saw the POST %d times", posts)
			}
		})
	}
}

// TestNativeBackendClosesDuringUpload pins a bug.
//
// Regression (fixed): when a fresh backend connection dies while the request body is being
// sent, bodyFailed (native_exchange.go:301-304) calls relayResponse, whose
// failure path broken() already answers the client 502 — and then calls
// broken() again, which writes a second 502. The client gets two responses
// to one request. Fix: return relayResponse's result when it fails (its
// error already went out), instead of calling broken() a second time.
func TestNativeBackendClosesDuringUpload(t *testing.T) {
	b := newAdvRawBackend(t, func(ac *advConn) {
		ac.next()
		buf := make([]byte, 1000)
		ac.br.Read(buf) // a little of the body, then hang up
	})
	p := newAdvProxy(t, advProxyConfig{}, b.addr)
	c := advDial(t, p.addr)
	const size = 16 << 20
	go func() {
		fmt.Fprintf(c.c, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", size)
		chunk := make([]byte, 64<<10)
		for off := 0; off < size; off += len(chunk) {
			if _, err := c.c.Write(chunk); err != nil {
				return
			}
		}
	}()
	var statuses []int
	for range 3 {
		c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		m, err := advReadResponse(c.br, "POST")
		if err != nil {
			break
		}
		statuses = append(statuses, m.status())
	}
	if len(statuses) != 1 || statuses[0] != 502 {
		t.Fatalf("client got responses %v to one request, want exactly [502]", statuses)
	}
}
