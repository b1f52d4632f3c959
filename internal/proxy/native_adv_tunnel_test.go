package proxy

import (
	"io"
	"strings"
	"testing"
	"time"
)

// Upgrade (WebSocket) through the native engine: the 101 handshake, then a
// raw tunnel both ways; and a backend 101 nobody asked for.

const advWSHandshake = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// TestNativeWebSocketTunnel: after the backend's 101 the bytes flow raw both
// ways, including what the client sent right behind its handshake and what
// the backend sent right behind its 101; either side closing ends it.
func TestNativeWebSocketTunnel(t *testing.T) {
	b := newAdvRawBackend(t, func(ac *advConn) {
		if _, err := ac.next(); err != nil {
			return
		}
		ac.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nserver-first|")
		buf := make([]byte, 4096)
		for range 100 {
			k, err := ac.br.Read(buf)
			if k > 0 && ac.write("echo:"+string(buf[:k])+"|") != nil {
				return
			}
			if err != nil {
				return
			}
		}
	})
	p := newAdvProxy(t, advProxyConfig{}, b.addr)
	c := advDial(t, p.addr)
	c.send(advWSHandshake + "early-bytes")
	m := c.resp("GET")
	if m.status() != 101 {
		t.Fatalf("handshake answered %q", m.line)
	}
	if !strings.EqualFold(m.get("Upgrade"), "websocket") || !strings.EqualFold(m.get("Connection"), "Upgrade") ||
		m.get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Errorf("101 fields wrong:\n%s", m.raw)
	}
	read := func(want string) {
		t.Helper()
		got := make([]byte, len(want))
		if _, err := io.ReadFull(c.br, got); err != nil || string(got) != want {
			t.Fatalf("tunnel: read %q (%v), want %q", got, err, want)
		}
	}
	read("server-first|")
	read("echo:early-bytes|")
	for _, msg := range []string{"ping", strings.Repeat("x", 3000)} {
		c.send(msg)
		read("echo:" + msg + "|")
	}
	r := b.seen()[0]
	if r.get("Upgrade") != "websocket" || !strings.EqualFold(r.get("Connection"), "Upgrade") ||
		r.get("Sec-WebSocket-Key") != "dGhlIHNhbXBsZSBub25jZQ==" {
		t.Errorf("backend handshake:\n%s", r.raw)
	}
	// The client closing ends the tunnel: the backend side closes too.
	c.c.(interface{ CloseWrite() error }).CloseWrite()
	c.expectClosed(3 * time.Second)
}

// TestNativeUpgradeDeclined: a backend that answers an Upgrade request with
// an ordinary response leaves an ordinary keep-alive connection.
func TestNativeUpgradeDeclined(t *testing.T) {
	b := newAdvBackend(t, nil)
	p := newAdvProxy(t, advProxyConfig{}, b.addr)
	c := advDial(t, p.addr)
	if m := c.roundTrip(advWSHandshake); m.status() != 200 {
		t.Fatalf("declined upgrade: %q", m.line)
	}
	if m := c.roundTrip(advGet("/next", "n")); !advEchoMatch(string(m.body), advEchoOf("GET", "/next", "n", nil)) {
		t.Fatalf("after a declined upgrade: %q %q", m.line, m.body)
	}
}

// TestNativeUnsolicited101: a 101 to a request that asked for no upgrade
// (or for another protocol) is a broken backend: 502, no tunnel.
func TestNativeUnsolicited101(t *testing.T) {
	for _, req := range []string{
		advGet("/plain", "p"),
		strings.Replace(advWSHandshake, "Upgrade: websocket", "Upgrade: foo", 1),
	} {
		b := newAdvRawBackend(t, func(ac *advConn) {
			ac.next()
			ac.write("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nraw-bytes")
			ac.b.sleep(time.Second)
		})
		p := newAdvProxy(t, advProxyConfig{}, b.addr)
		c := advDial(t, p.addr)
		if m := c.roundTrip(req); m.status() != 502 {
			t.Fatalf("unsolicited 101 answered %q, want 502", m.line)
		}
		c.expectClosed(3 * time.Second)
	}
}
