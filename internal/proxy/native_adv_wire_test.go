package proxy

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Wire-level semantics of the native engine: connection reuse, the header
// rewriting the contract promises, HTTP/1.0, request-target forms,
// pipelining, bodyless responses and interim (1xx) responses.

// TestNativeKeepAliveReusesOneBackendConn: many sequential requests on one
// client connection travel over one backend connection.
func TestNativeKeepAliveReusesOneBackendConn(t *testing.T) {
	b := newAdvBackend(t, nil)
	p := newAdvProxy(t, advProxyConfig{}, b.addr)
	c := advDial(t, p.addr)
	const n = 50
	for i := range n {
		tok := fmt.Sprint("t", i)
		m := c.roundTrip(advGet(fmt.Sprint("/ka/", i), tok))
		want := advEchoOf("GET", fmt.Sprint("/ka/", i), tok, nil)
		if m.status() != 200 || !advEchoMatch(string(m.body), want) {
			t.Fatalf("request %d: %s %q, want %q", i, m.line, m.body, want)
		}
		if m.has("Connection") {
			t.Fatalf("request %d: keep-alive response to HTTP/1.1 has Connection: %q", i, m.get("Connection"))
		}
	}
	if got := b.accepts.Load(); got != 1 {
		t.Fatalf("backend accepted %d connections for %d keep-alive requests, want 1", got, n)
	}
	if got := len(b.seen()); got != n {
		t.Fatalf("backend saw %d requests, want %d", got, n)
	}
}

// TestNativeForwardedAndHopByHopHeaders checks the request and response
// header rewriting of the contract, on the exact bytes the backend and the
// client receive.
func TestNativeForwardedAndHopByHopHeaders(t *testing.T) {
	b := newAdvBackend(t, func(ac *advConn, m *advMsg) bool {
		ac.body(m)
		return ac.write(advResponse(200, "Connection: X-Resp-Hop, keep-alive\r\nX-Resp-Hop: 1\r\n"+
			"Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nUpgrade: h2c\r\n"+
			"Proxy-Connection: keep-alive\r\nX-End: kept\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n", "ok")) == nil
	})
	p := newAdvProxy(t, advProxyConfig{}, b.addr)
	c := advDial(t, p.addr)
	m := c.roundTrip("GET /h?x=1&y=%20 HTTP/1.1\r\nHost: app.example\r\n" +
		"Connection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\n" +
		"Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic Zm9v\r\nTE: trailers, deflate\r\n" +
		"X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: 198.51.100.1, 192.0.2.9\r\n" +
		"X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\nX-Keep: yes\r\nx-lower: v\r\n\r\n")
	if m.status() != 200 {
		t.Fatalf("status line %q", m.line)
	}
	for _, h := range []string{"X-Resp-Hop", "Keep-Alive", "Proxy-Authenticate", "Upgrade", "Proxy-Connection", "Connection"} {
		if m.has(h) {
			t.Errorf("client got hop-by-hop response field %s: %q", h, m.get(h))
		}
	}
	if m.get("X-End") != "kept" || len(m.all("Set-Cookie")) != 2 {
		t.Errorf("end-to-end response fields lost:\n%s", m.raw)
	}

	seen := b.seen()
	if len(seen) != 1 {
		t.Fatalf("backend saw %d requests", len(seen))
	}
	r := seen[0]
	if r.line != "GET /h?x=1&y=%20 HTTP/1.1" {
		t.Errorf("request-line %q", r.line)
	}
	for _, h := range []string{"X-Hop", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Connection"} {
		if r.has(h) {
			t.Errorf("backend got hop-by-hop field %s: %q", h, r.get(h))
		}
	}
	want := map[string]string{
		"Host":              "app.example",
		"TE":                "trailers",
		"X-Forwarded-For":   "203.0.113.7, 198.51.100.1, 192.0.2.9, 127.0.0.1",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "app.example",
		"X-Keep":            "yes",
		"x-lower":           "v",
	}
	for h, v := range want {
		if got := r.all(h); len(got) != 1 || got[0] != v {
			t.Errorf("backend %s = %q, want exactly [%q]", h, got, v)
		}
	}
	if !strings.Contains(r.raw, "\r\nx-lower: v\r\n") {
		t.Errorf("field name spelling not kept:\n%s", r.raw)
	}
	id := r.all("X-Request-Id")
	if len(id) != 1 || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id[0]) {
		t.Errorf("generated X-Request-Id %q, want one value of 32 hex digits", id)
	}

	// A client's request id is kept as it is; a second one is dropped.
	c.roundTrip("GET /id HTTP/1.1\r\nHost: app.example\r\nX-Request-Id: client-id-42\r\nX-Request-Id: other\r\n\r\n")
	c.roundTrip("GET /id2 HTTP/1.1\r\nHost: app.example\r\n\r\n")
	seen = b.seen()
	if got := seen[1].all("X-Request-Id"); len(got) != 1 || got[0] != "client-id-42" {
		t.Errorf("client X-Request-Id forwarded as %q, want [client-id-42]", got)
	}
	if seen[2].get("X-Request-Id") == id[0] {
		t.Errorf("generated request id repeated: %q", id[0])
	}
}

// TestNativeHTTP10Client: an HTTP/1.0 client without keep-alive gets its
// response and a closed connection; with keep-alive the connection serves
// several requests. Backends always get HTTP/1.1 with a Host.
func TestNativeHTTP10Client(t *testing.T) {
	b := newAdvBackend(t, nil)
	p := newAdvProxy(t, advProxyConfig{}, b.addr)

	t.Run("close", func(t *testing.T) {
		c := advDial(t, p.addr)
		m := c.roundTrip("GET /ten HTTP/1.0\r\nX-Token: a\r\n\r\n")
		if m.status() != 200 || !advEchoMatch(string(m.body), advEchoOf("GET", "/ten", "a", nil)) {
			t.Fatalf("%s %q", m.line, m.body)
		}
		if !strings.EqualFold(m.get("Connection"), "close") {
			t.Errorf("HTTP/1.0 response without keep-alive lacks Connection: close:\n%s", m.raw)
		}
		c.expectClosed(2 * time.Second)
		last := b.seen()[len(b.seen())-1]
		if last.line != "GET /ten HTTP/1.1" || last.get("Host") != b.addr {
			t.Errorf("backend got %q with Host %q, want HTTP/1.1 and Host %s", last.line, last.get("Host"), b.addr)
		}
		if last.has("X-Forwarded-Host") {
			t.Errorf("X-Forwarded-Host %q for a request without a host", last.get("X-Forwarded-Host"))
		}
	})
	t.Run("keep-alive", func(t *testing.T) {
		c := advDial(t, p.addr)
		for i := range 3 {
			m := c.roundTrip(fmt.Sprintf("GET /k%d HTTP/1.0\r\nHost: old.example\r\nConnection: keep-alive\r\n\r\n", i))
			if m.status() != 200 || !m.has("Content-Length") {
				t.Fatalf("request %d: %s without a length:\n%s", i, m.line, m.raw)
			}
			if !strings.EqualFold(m.get("Connection"), "keep-alive") {
				t.Fatalf("request %d: HTTP/1.0 keep-alive response has Connection %q", i, m.get("Connection"))
			}
		}
	})
}

// TestNativeAbsoluteFormTarget: the backend gets origin-form and the
// authority of the target as Host (RFC 9112 §3.2.2), whatever Host said.
func TestNativeAbsoluteFormTarget(t *testing.T) {
	b := newAdvBackend(t, nil)
	p := newAdvProxy(t, advProxyConfig{}, b.addr)
	c := advDial(t, p.addr)
	for _, tc := range []struct{ target, line, host string }{
		{"http://abs.example:8080/p/q?z=9", "GET /p/q?z=9 HTTP/1.1", "abs.example:8080"},
		{"http://abs.example", "GET / HTTP/1.1", "abs.example"},
		{"HTTP://abs.example?q", "GET /?q HTTP/1.1", "abs.example"},
	} {
		m := c.roundTrip("GET " + tc.target + " HTTP/1.1\r\nHost: other.example\r\n\r\n")
		if m.status() != 200 {
			t.Fatalf("%s: %s", tc.target, m.line)
		}
		seen := b.seen()
		r := seen[len(seen)-1]
		if r.line != tc.line || len(r.all("Host")) != 1 || r.get("Host") != tc.host || r.get("X-Forwarded-Host") != tc.host {
			t.Errorf("%s: backend got %q Host %q X-Forwarded-Host %q, want %q Host %q",
				tc.target, r.line, r.all("Host"), r.get("X-Forwarded-Host"), tc.line, tc.host)
		}
	}
}

// TestNativePipelinedRequests: three requests in one write, one with a body,
// are answered in order and each reaches the backend exactly once.
func TestNativePipelinedRequests(t *testing.T) {
	b := newAdvBackend(t, func(ac *advConn, m *advMsg) bool {
		if m.target() == "/1" {
			ac.b.sleep(50 * time.Millisecond) // the first answer is the slowest
		}
		return ac.body(m) && ac.echo(m)
	})
	p := newAdvProxy(t, advProxyConfig{}, b.addr)
	c := advDial(t, p.addr)
	c.send(advGet("/1", "one") +
		"POST /2 HTTP/1.1\r\nHost: app.test\r\nX-Token: two\r\nContent-Length: 3\r\n\r\nTWO" +
		advGet("/3", "three"))
	for _, w := range []struct {
		method, path, tok, body string
	}{{"GET", "/1", "one", ""}, {"POST", "/2", "two", "TWO"}, {"GET", "/3", "three", ""}} {
		m := c.resp(w.method)
		if want := advEchoOf(w.method, w.path, w.tok, []byte(w.body)); !advEchoMatch(string(m.body), want) {
			t.Fatalf("out of order or wrong: got %q, want %q", m.body, want)
		}
	}
	if got := len(b.seen()); got != 3 {
		t.Fatalf("backend saw %d requests, want 3", got)
	}
}

// TestNativePipelinedBurst: hundreds of pipelined requests, mixed with
// bodies, sent in one go (far more than one read buffer) are all answered,
// in order, over one backend connection.
func TestNativePipelinedBurst(t *testing.T) {
	b := newAdvBackend(t, nil)
	p := newAdvProxy(t, advProxyConfig{}, b.addr)
	c := advDial(t, p.addr)
	const n = 400
	var burst strings.Builder
	for i := range n {
		if i%4 == 3 {
			body := strings.Repeat("b", i)
			fmt.Fprintf(&burst, "POST /p/%d HTTP/1.1\r\nHost: a\r\nX-Token: %d\r\nContent-Length: %d\r\n\r\n%s", i, i, len(body), body)
		} else {
			burst.WriteString(advGet(fmt.Sprint("/p/", i), fmt.Sprint(i)))
		}
	}
	go c.c.Write([]byte(burst.String())) // read responses meanwhile: no deadlock on full buffers
	for i := range n {
		method, body := "GET", ""
		if i%4 == 3 {
			method, body = "POST", strings.Repeat("b", i)
		}
		m := c.resp(method)
		if want := advEchoOf(method, fmt.Sprint("/p/", i), fmt.Sprint(i), []byte(body)); !advEchoMatch(string(m.body), want) {
			t.Fatalf("response %d: %q, want %q", i, m.body, want)
		}
	}
	if got := b.accepts.Load(); got != 1 {
		t.Errorf("%d backend connections, want 1", got)
	}
}

// TestNativeBodylessResponses: HEAD keeps the Content-Length and sends no
// body; 204 and 304 carry none either; the client and the backend connection
// stay in step afterwards (one backend connection throughout).
func TestNativeBodylessResponses(t *testing.T) {
	b := newAdvBackend(t, func(ac *advConn, m *advMsg) bool {
		ac.body(m)
		switch m.target() {
		case "/head":
			return ac.write("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nETag: \"h\"\r\n\r\n") == nil
		case "/204":
			return ac.write("HTTP/1.1 204 No Content\r\nX-Kind: 204\r\n\r\n") == nil
		case "/304":
			return ac.write("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 42\r\n\r\n") == nil
		case "/head-chunked":
			return ac.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") == nil
		}
		return ac.echo(m)
	})
	p := newAdvProxy(t, advProxyConfig{}, b.addr)
	c := advDial(t, p.addr)
	check := func(req, method string, status int, f func(m *advMsg)) {
		t.Helper()
		c.send(req)
		m := c.resp(method)
		if m.status() != status {
			t.Fatalf("%q: status line %q", req, m.line)
		}
		if f != nil {
			f(m)
		}
		// The next response must be the next request's: nothing was left over.
		n := c.roundTrip(advGet("/after", "after"))
		if !advEchoMatch(string(n.body), advEchoOf("GET", "/after", "after", nil)) {
			t.Fatalf("after %q: next response %q %q", req, n.line, n.body)
		}
	}
	check("HEAD /head HTTP/1.1\r\nHost: a\r\n\r\n", "HEAD", 200, func(m *advMsg) {
		if m.get("Content-Length") != "1234" {
			t.Errorf("HEAD response Content-Length %q, want 1234:\n%s", m.get("Content-Length"), m.raw)
		}
	})
	check("HEAD /head-chunked HTTP/1.1\r\nHost: a\r\n\r\n", "HEAD", 200, nil)
	check("GET /204 HTTP/1.1\r\nHost: a\r\n\r\n", "GET", 204, func(m *advMsg) {
		if m.has("Transfer-Encoding") || m.has("Content-Length") || m.get("X-Kind") != "204" {
			t.Errorf("204 framing wrong:\n%s", m.raw)
		}
	})
	check("GET /304 HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"v1\"\r\n\r\n", "GET", 304, func(m *advMsg) {
		if m.has("Transfer-Encoding") || m.get("ETag") != "\"v1\"" {
			t.Errorf("304 fields wrong:\n%s", m.raw)
		}
	})
	if got := b.accepts.Load(); got != 1 {
		t.Errorf("backend accepted %d connections, want 1: bodyless responses must not break reuse", got)
	}
}

// TestNativeInterimResponses: 103 Early Hints reaches an HTTP/1.1 client
// before the final response, not an HTTP/1.0 one; a 100 the client did not
// ask for is dropped.
func TestNativeInterimResponses(t *testing.T) {
	b := newAdvBackend(t, func(ac *advConn, m *advMsg) bool {
		ac.body(m)
		switch m.target() {
		case "/hints":
			ac.write("HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n")
			ac.b.sleep(30 * time.Millisecond)
		case "/stray":
			ac.write("HTTP/1.1 100 Continue\r\n\r\n")
		}
		return ac.echo(m)
	})
	p := newAdvProxy(t, advProxyConfig{}, b.addr)

	c := advDial(t, p.addr)
	c.send(advGet("/hints", "h"))
	m := c.resp("GET")
	if m.status() != 103 || m.get("Link") != "</s.css>; rel=preload" {
		t.Fatalf("HTTP/1.1 client: first response %q, want 103 with its Link:\n%s", m.line, m.raw)
	}
	if m = c.resp("GET"); m.status() != 200 || !advEchoMatch(string(m.body), advEchoOf("GET", "/hints", "h", nil)) {
		t.Fatalf("final response after 103: %q %q", m.line, m.body)
	}
	c.send(advGet("/stray", "s"))
	if m = c.resp("GET"); m.status() != 200 {
		t.Fatalf("stray 100 reached the client: %q", m.line)
	}

	c10 := advDial(t, p.addr)
	c10.send("GET /hints HTTP/1.0\r\nHost: a\r\n\r\n")
	if m = c10.resp("GET"); m.status() != 200 {
		t.Fatalf("HTTP/1.0 client got %q, want the final 200 only", m.line)
	}
}
