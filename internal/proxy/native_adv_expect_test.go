package proxy

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Expect: 100-continue through the native engine (RFC 9110 §10.1.1): the
// backend decides whether the body is wanted, and a backend that ignores the
// expectation does not stall the upload for long.

const advExpectHead = "POST /exp HTTP/1.1\r\nHost: a\r\nX-Token: e\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n"

// TestNativeExpectContinue: the backend's 100 reaches the client, which only
// then sends its body, and the final answer follows.
func TestNativeExpectContinue(t *testing.T) {
	b := newAdvBackend(t, func(ac *advConn, m *advMsg) bool {
		if m.get("Expect") == "100-continue" {
			ac.write("HTTP/1.1 100 Continue\r\n\r\n")
		}
		return ac.body(m) && ac.echo(m)
	})
	p := newAdvProxy(t, advProxyConfig{}, b.addr)
	c := advDial(t, p.addr)
	for i := range 2 { // twice: the connection stays usable after the 100 dance
		c.send(advExpectHead)
		m := c.resp("POST")
		if m.status() != 100 {
			t.Fatalf("round %d: first response %q, want 100 Continue before the body", i, m.line)
		}
		c.send("hello world")
		m = c.resp("POST")
		if !advEchoMatch(string(m.body), advEchoOf("POST", "/exp", "e", []byte("hello world"))) {
			t.Fatalf("round %d: final response %q %q", i, m.line, m.body)
		}
	}
	if got := b.accepts.Load(); got != 1 {
		t.Errorf("backend accepted %d connections, want 1", got)
	}
}

// TestNativeExpectRejected: a backend that answers a final status without
// reading the body has that answer relayed at once; the client, which never
// sent its body, gets "Connection: close" and a closed connection, and the
// backend never gets a body.
func TestNativeExpectRejected(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		close  bool // the backend closes after answering
	}{
		{"417 kept open", 417, false},
		{"413 then close", 413, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newAdvBackend(t, func(ac *advConn, m *advMsg) bool {
				ac.write(advResponse(tc.status, "", "no"))
				if tc.close {
					return false
				}
				ac.b.sleep(2 * time.Second) // no body must come
				ac.body(m)
				return false
			})
			p := newAdvProxy(t, advProxyConfig{}, b.addr)
			c := advDial(t, p.addr)
			c.send(advExpectHead)
			// The client never sends its body: a proxy that waited for it
			// instead of relaying the verdict would hang here.
			c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			m := c.resp("POST")
			if m.status() != tc.status || string(m.body) != "no" {
				t.Fatalf("client got %q %q, want %d", m.line, m.body, tc.status)
			}
			if !strings.EqualFold(m.get("Connection"), "close") {
				t.Errorf("unread body but no Connection: close:\n%s", m.raw)
			}
			c.expectClosed(3 * time.Second)
			if s := b.seen(); len(s) != 1 || len(s[0].body) != 0 {
				t.Errorf("backend got a body after rejecting it: %+v", s)
			}
		})
	}
}

// TestNativeExpectIgnoredByBackend: with a backend that never sends 100, the
// body still goes once the proxy stops waiting (about a second), whether the
// client sends it at once or itself waits for a 100 first.
func TestNativeExpectIgnoredByBackend(t *testing.T) {
	b := newAdvBackend(t, nil) // reads the body, never sends 100
	p := newAdvProxy(t, advProxyConfig{}, b.addr)
	for _, clientWaits := range []bool{false, true} {
		c := advDial(t, p.addr)
		start := time.Now()
		c.send(advExpectHead)
		if clientWaits { // like curl: wait a while for a 100, then send anyway
			c.c.SetReadDeadline(time.Now().Add(1200 * time.Millisecond))
			if _, err := c.br.Peek(1); err == nil || !isTimeout(err) {
				m, _ := advReadHead(c.br)
				t.Fatalf("proxy answered before the body: %+v (%v)", m, err)
			}
			c.c.SetReadDeadline(time.Now().Add(advDeadline))
		}
		c.send("hello world")
		m := c.resp("POST")
		if !advEchoMatch(string(m.body), advEchoOf("POST", "/exp", "e", []byte("hello world"))) {
			t.Fatalf("client waits %v: %q %q", clientWaits, m.line, m.body)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("client waits %v: took %v", clientWaits, d)
		}
	}
}

// TestNativeExpectPartialHeadTimesOut pins a bug.
//
// Regression (fixed): while waiting for the backend's verdict on "Expect: 100-continue",
// expectContinue (native_exchange.go:203-207) sets a deadline only for the
// first byte (Peek(1)), then calls readResponseHead with no deadline at all.
// A backend that sends part of a status line and stalls holds the client
// forever: Timeouts.ResponseHeader never applies. Fix: keep a deadline
// (ResponseHeader, when set) around readResponseHead there, as
// relayResponse does, and answer 504 when it passes.
func TestNativeExpectPartialHeadTimesOut(t *testing.T) {
	b := newAdvBackend(t, func(ac *advConn, m *advMsg) bool {
		ac.write("HTTP/1.1 1")
		ac.b.sleep(advDeadline)
		return false
	})
	p := newAdvProxy(t, advProxyConfig{timeouts: Timeouts{
		Connect: time.Second, ResponseHeader: 300 * time.Millisecond, Idle: time.Minute,
	}}, b.addr)
	c := advDial(t, p.addr)
	c.send(advExpectHead)
	c.c.SetReadDeadline(time.Now().Add(4 * time.Second))
	m, err := advReadResponse(c.br, "POST")
	switch {
	case err != nil && isTimeout(err):
		t.Fatalf("no answer 4s after the backend stalled mid status-line (response_header is 300ms)")
	case err != nil:
		t.Fatalf("client read: %v", err)
	case m.status() != 504:
		t.Fatalf("got %q, want 504", m.line)
	}
}

// TestNativeExpectInterimBeforeContinue pins a bug.
//
// Regression (fixed): expectContinue (native_exchange.go:210-211) takes any first response
// other than 100 for the final one: a 103 Early Hints (or 102) sent before
// the 100 is relayed through relayParsed as if final — with
// "Connection: close" on a 1xx — and both connections are closed, so the
// client never gets its 100, cannot send its body and gets no final
// response. Fix: in expectContinue, loop over 1xx responses as
// relayResponse does (forward 103 to HTTP/1.1 clients, stop at 100 or at a
// status >= 200).
func TestNativeExpectInterimBeforeContinue(t *testing.T) {
	b := newAdvBackend(t, func(ac *advConn, m *advMsg) bool {
		ac.write("HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n")
		ac.b.sleep(20 * time.Millisecond)
		ac.write("HTTP/1.1 100 Continue\r\n\r\n")
		return ac.body(m) && ac.echo(m)
	})
	p := newAdvProxy(t, advProxyConfig{}, b.addr)
	c := advDial(t, p.addr)
	c.send(advExpectHead)
	var got []string
	for range 4 {
		c.c.SetReadDeadline(time.Now().Add(3 * time.Second))
		m, err := advReadResponse(c.br, "POST")
		if err != nil {
			t.Fatalf("after %q: %v; want 103, 100, then the final 200", got, err)
		}
		got = append(got, m.line)
		switch {
		case m.status() == 100:
			c.send("hello world")
		case m.status() >= 200:
			if !advEchoMatch(string(m.body), advEchoOf("POST", "/exp", "e", []byte("hello world"))) {
				t.Fatalf("final response %q %q", m.line, m.body)
			}
			return
		case m.has("Connection"):
			t.Errorf("interim response with Connection %q", m.get("Connection"))
		}
	}
	t.Fatalf("responses %q: no final one", got)
}

// TestNativeUploadRejectedEarly: a backend that answers an upload with an
// error and hangs up without reading it (a size limit, an auth check) has
// its answer relayed, not replaced by a 502, while the client is still
// sending — with or without Expect: 100-continue.
func TestNativeUploadRejectedEarly(t *testing.T) {
	for _, tc := range []struct {
		name, expect string
		status       int
	}{
		{"plain", "", 413},
		{"expect, client does not wait", "Expect: 100-continue\r\n", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newAdvRawBackend(t, func(ac *advConn) {
				ac.next()
				ac.write(advResponse(tc.status, "Connection: close\r\n", "rejected"))
			})
			p := newAdvProxy(t, advProxyConfig{}, b.addr)
			c := advDial(t, p.addr)
			const size = 8 << 20
			go func() {
				fmt.Fprintf(c.c, "POST /up HTTP/1.1\r\nHost: a\r\n%sContent-Length: %d\r\n\r\n", tc.expect, size)
				chunk := make([]byte, 64<<10)
				for off := 0; off < size; off += len(chunk) {
					if _, err := c.c.Write(chunk); err != nil {
						return
					}
				}
			}()
			m := c.resp("POST")
			if m.status() != tc.status || string(m.body) != "rejected" {
				t.Fatalf("got %q %q, want the backend's %d", m.line, m.body, tc.status)
			}
			if !strings.EqualFold(m.get("Connection"), "close") {
				t.Errorf("unread upload but the connection is kept:\n%s", m.raw)
			}
		})
	}
}
