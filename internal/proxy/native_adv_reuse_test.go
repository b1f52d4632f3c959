package proxy

import (
	"testing"
	"time"
)

// When a backend connection may go back to the idle set: only when the
// exchange on it ended exactly at a message boundary, on both sides.

// TestNativeBackendConnNotReusedWhenClosing: a backend that says it will
// close (Connection: close, or HTTP/1.0 without keep-alive) gets a new
// connection for the next request, and nothing fails.
func TestNativeBackendConnNotReusedWhenClosing(t *testing.T) {
	b := newAdvBackend(t, func(ac *advConn, m *advMsg) bool {
		ac.body(m)
		switch m.target() {
		case "/close":
			ac.write(advResponse(200, "Connection: close\r\n", "bye"))
			return false
		case "/ten":
			ac.write("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold")
			return false
		case "/ten-ka":
			return ac.write("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nka") == nil
		}
		return ac.echo(m)
	})
	p := newAdvProxy(t, advProxyConfig{}, b.addr)
	c := advDial(t, p.addr)
	for i, step := range []struct {
		path    string
		accepts int64 // backend connections after this request
	}{
		{"/close", 1}, {"/a", 2}, {"/ten", 2}, {"/b", 3}, {"/ten-ka", 3}, {"/c", 3},
	} {
		m := c.roundTrip(advGet(step.path, "x"))
		if m.status() != 200 || m.has("Connection") {
			t.Fatalf("step %d %s: %q, Connection %q: the client connection must stay", i, step.path, m.line, m.get("Connection"))
		}
		if got := b.accepts.Load(); got != step.accepts {
			t.Fatalf("step %d %s: %d backend connections, want %d", i, step.path, got, step.accepts)
		}
	}
}

// TestNativeExtraBytesAfterResponse pins a bug.
//
// Regression (fixed): relayParsed (native_response.go:124-125) parks the backend connection
// in the idle set without checking that its read buffer is empty. Bytes a
// backend sent beyond the end of its response — a body on a HEAD response
// (a common framework bug), or more data than its Content-Length — are then
// read as the head of the NEXT request's response, possibly another
// client's: the victim gets a 502 for a good request, or a response crafted
// by whoever controlled those bytes (response queue poisoning), and the
// connection stays desynchronised. nginx and HAProxy drop such a connection
// ("upstream sent more data than specified"). Fix: park only when
// bc.br.Buffered() == 0 (and close otherwise).
func TestNativeExtraBytesAfterResponse(t *testing.T) {
	b := newAdvBackend(t, func(ac *advConn, m *advMsg) bool {
		ac.body(m)
		switch m.target() {
		case "/head":
			// A buggy framework: a body on a HEAD response.
			return ac.write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello") == nil
		case "/poison":
			return ac.write(advResponse(200, "", "ok")+advResponse(200, "", "POISONED")) == nil
		}
		return ac.echo(m)
	})
	p := newAdvProxy(t, advProxyConfig{}, b.addr)

	t.Run("body on HEAD", func(t *testing.T) {
		c := advDial(t, p.addr)
		c.roundTrip("HEAD /head HTTP/1.1\r\nHost: a\r\n\r\n")
		m := c.roundTrip(advGet("/after-head", "h"))
		if !advEchoMatch(string(m.body), advEchoOf("GET", "/after-head", "h", nil)) {
			t.Fatalf("the request after a HEAD whose response carried a body got %q %q", m.line, m.body)
		}
	})
	t.Run("extra response reaches another client", func(t *testing.T) {
		attacker := advDial(t, p.addr)
		attacker.roundTrip(advGet("/poison", "p"))
		// The proxy parks the backend connection just after the attacker's
		// response is flushed: give it that moment.
		time.Sleep(100 * time.Millisecond)
		victim := advDial(t, p.addr)
		m := victim.roundTrip(advGet("/victim", "v"))
		if !advEchoMatch(string(m.body), advEchoOf("GET", "/victim", "v", nil)) {
			t.Fatalf("another client's request got %q %q: a backend's extra bytes answered it", m.line, m.body)
		}
	})
}

// TestNativeIdleBackendConnExpires: a pooled connection idle longer than
// Timeouts.Idle is not reused but closed, and the request goes on a new one.
func TestNativeIdleBackendConnExpires(t *testing.T) {
	b := newAdvBackend(t, nil)
	p := newAdvProxy(t, advProxyConfig{timeouts: Timeouts{
		Connect: time.Second, ResponseHeader: 5 * time.Second, Idle: 200 * time.Millisecond,
	}}, b.addr)
	c := advDial(t, p.addr)
	c.roundTrip(advGet("/1", "a"))
	c.roundTrip(advGet("/2", "b")) // within Idle: reused
	if got := b.accepts.Load(); got != 1 {
		t.Fatalf("%d backend connections for two quick requests, want 1", got)
	}
	time.Sleep(350 * time.Millisecond)
	if m := c.roundTrip(advGet("/3", "c")); !advEchoMatch(string(m.body), advEchoOf("GET", "/3", "c", nil)) {
		t.Fatalf("after the idle timeout: %q %q", m.line, m.body)
	}
	if got := b.accepts.Load(); got != 2 {
		t.Errorf("%d backend connections, want 2: the expired one must not be reused", got)
	}
	if !advWaitFor(2*time.Second, func() bool { return b.closes.Load() >= 1 }) {
		t.Errorf("the expired backend connection was not closed")
	}
}
