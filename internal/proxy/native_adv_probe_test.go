package proxy

import (
	"strings"
	"testing"
	"time"
)

// Hostile and unusual requests through the native engine: every framing
// ambiguity is refused before anything reaches a backend, and the odd but
// valid forms are forwarded right.

// TestNativeHostileRequests: requests that two parsers could frame
// differently, or that are simply invalid, get their 4xx/5xx and a closed
// connection; none reaches the backend as a complete request.
func TestNativeHostileRequests(t *testing.T) {
	b := newAdvBackend(t, nil)
	p := newAdvProxy(t, advProxyConfig{}, b.addr)
	for _, tc := range []struct {
		name, req string
		want      int
	}{
		{"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"two different CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400},
		{"CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!", 400},
		{"negative CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n", 400},
		{"plus CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400},
		{"TE not chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 400},
		{"TE chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400},
		{"two TE fields", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE gzip, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400},
		{"bare LF", "GET / HTTP/1.1\nHost: a\n\n", 400},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"bad Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"fragment", "GET /#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"HTTP/2.0 line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", 400},
		{"TLS on plain port", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400},
		{"CONNECT", "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", 405},
		{"too many fields", "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-F: v\r\n", 200) + "\r\n", 431},
		{"bad chunk size", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400},
		{"chunk without CRLF", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", 400},
		{"chunk size overflow", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nx\r\n0\r\n\r\n", 400},
		{"CL in trailer", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nContent-Length: 5\r\n\r\n", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(b.seen())
			c := advDial(t, p.addr)
			c.send(tc.req + advGet("/smuggled", "s"))
			m := c.resp("GET")
			if m.status() != tc.want {
				t.Fatalf("got %q, want %d", m.line, tc.want)
			}
			if !strings.EqualFold(m.get("Connection"), "close") {
				t.Errorf("error response keeps the connection:\n%s", m.raw)
			}
			c.expectClosed(3 * time.Second)
			advWaitFor(2*time.Second, func() bool {
				for _, r := range b.seen()[before:] {
					if !r.bodyDone {
						return false
					}
				}
				return true
			})
			for _, r := range b.seen()[before:] {
				if r.target() == "/smuggled" || r.bodyErr == nil {
					t.Errorf("reached the backend complete: %q", r.line)
				}
			}
		})
	}
}

// TestNativeOddButValidRequests: valid forms that naive proxies get wrong.
func TestNativeOddButValidRequests(t *testing.T) {
	b := newAdvBackend(t, nil)
	p := newAdvProxy(t, advProxyConfig{}, b.addr)
	c := advDial(t, p.addr)

	// OPTIONS in asterisk-form stays asterisk-form.
	c.roundTrip("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
	if r := b.seen()[0]; r.line != "OPTIONS * HTTP/1.1" {
		t.Errorf("asterisk-form forwarded as %q", r.line)
	}
	// Empty lines before a request are ignored (RFC 9112 §2.2), even after a
	// body, as some clients send them.
	c.send("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok\r\n\r\n" + advGet("/after-crlf", "x"))
	c.resp("POST")
	if m := c.resp("GET"); !advEchoMatch(string(m.body), advEchoOf("GET", "/after-crlf", "x", nil)) {
		t.Fatalf("request after empty lines: %q %q", m.line, m.body)
	}
	// Case-insensitive framing fields and a zero-length chunked body.
	m := c.roundTrip("POST /z HTTP/1.1\r\nhost: a\r\ntransfer-encoding: Chunked\r\nx-token: z\r\n\r\n0\r\n\r\n")
	if !advEchoMatch(string(m.body), advEchoOf("POST", "/z", "z", nil)) {
		t.Fatalf("empty chunked body: %q %q", m.line, m.body)
	}
	// "Connection: close" from the client: answered, then closed.
	m = c.roundTrip("GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	if m.status() != 200 || !strings.EqualFold(m.get("Connection"), "close") {
		t.Fatalf("Connection: close request: %q\n%s", m.line, m.raw)
	}
	c.expectClosed(3 * time.Second)
}

// TestNativeClientHalfClose: a client that shuts down its sending side
// right after the request (nc -N, some HTTP/1.0 tools) still gets the
// response before the connection closes.
func TestNativeClientHalfClose(t *testing.T) {
	b := newAdvBackend(t, func(ac *advConn, m *advMsg) bool {
		ac.b.sleep(100 * time.Millisecond)
		return ac.body(m) && ac.echo(m)
	})
	p := newAdvProxy(t, advProxyConfig{}, b.addr)
	c := advDial(t, p.addr)
	c.send("POST /hc HTTP/1.1\r\nHost: a\r\nX-Token: hc\r\nContent-Length: 4\r\n\r\nbody")
	c.c.(interface{ CloseWrite() error }).CloseWrite()
	m := c.resp("POST")
	if !advEchoMatch(string(m.body), advEchoOf("POST", "/hc", "hc", []byte("body"))) {
		t.Fatalf("half-closed client: %q %q", m.line, m.body)
	}
	c.expectClosed(3 * time.Second)
}
