package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The native engine's side of a listener's limits that the server's tests
// (internal/server/limits_test.go) cannot single out.

// Regression: the header cap was checked only while a header was incomplete,
// so a header block over a cap below the 16 KiB read buffer that arrived in
// one piece went through.
func TestNativeHeaderCapBelowReadBuffer(t *testing.T) {
	b := newAdvBackend(t, nil)
	p := newAdvProxy(t, advProxyConfig{limits: ClientLimits{MaxHeaderBytes: 1024}}, b.addr)
	c := advDial(t, p.addr)
	c.send("GET / HTTP/1.1\r\nHost: a\r\nX-Fill: " + strings.Repeat("a", 2048) + "\r\n\r\n")
	if m := c.resp("GET"); m.status() != 431 {
		t.Fatalf("a 2 KiB header block, cap 1 KiB: %q, want 431", m.line)
	}
	c = advDial(t, p.addr)
	if m := c.roundTrip("GET / HTTP/1.1\r\nHost: a\r\nX-Fill: " + strings.Repeat("a", 900) + "\r\n\r\n"); m.status() != 200 {
		t.Fatalf("a header block within the cap: %q", m.line)
	}
}

// A new connection that sends nothing is closed after read_header_timeout,
// even when idle_timeout is long: opening connections and sending nothing
// holds none of them for long.
func TestNativeSilentConnectionClosedAfterReadHeaderTimeout(t *testing.T) {
	b := newAdvBackend(t, nil)
	p := newAdvProxy(t, advProxyConfig{readHeaderTimeout: 300 * time.Millisecond, idleTimeout: time.Minute}, b.addr)
	c := advDial(t, p.addr)
	start := time.Now()
	c.expectClosed(3 * time.Second)
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("closed after %v, before read_header_timeout", d)
	}
	// Once a request was served, the wait for the next one is idle_timeout's.
	c = advDial(t, p.addr)
	c.roundTrip(advGet("/", "x"))
	c.c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := c.br.ReadByte(); !isTimeout(err) {
		t.Fatalf("an idle keep-alive connection (idle_timeout 1m) ended within 1s: %v", err)
	}
}

// A chunked body whose first bytes are past max_body_bytes gets 413 even when
// they arrived after the bytes the request head came in (the first read of a
// connection takes at most 512 bytes): what the client sent counts, not what
// happened to be read.
func TestNativeChunkedCapCountsWhatArrived(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("what waits in a socket is known on Linux only (inQueue)")
	}
	b := newAdvBackend(t, nil)
	p := newAdvProxy(t, advProxyConfig{limits: ClientLimits{MaxBodyBytes: 1024}}, b.addr)
	c := advDial(t, p.addr)
	body := strings.Repeat("b", 2000)
	c.send(fmt.Sprintf("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body))
	if m := c.resp("POST"); m.status() != 413 {
		t.Fatalf("got %q, want 413", m.line)
	}
	if len(b.seen()) != 0 {
		t.Fatal("the request reached the backend")
	}
}

// With max_body_bytes, a chunked request whose client sends the head and
// waits (for an answer, or just slowly) still reaches the backend at once:
// the cap reads only what has arrived.
func TestNativeChunkedCapDoesNotWaitForBody(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	heads := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		var head strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(line)
			if line == "\r\n" {
				heads <- head.String()
				io.Copy(io.Discard, br) // until the proxy closes
				return
			}
		}
	}()
	p := newAdvProxy(t, advProxyConfig{limits: ClientLimits{MaxBodyBytes: 1024}}, ln.Addr().String())
	c := advDial(t, p.addr)
	c.send("POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
	select {
	case h := <-heads:
		if !strings.HasPrefix(h, "POST /upload HTTP/1.1\r\n") {
			t.Fatalf("backend got %q", h)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("a chunked request without body bytes yet was held back from the backend")
	}
}
