package proxy

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"ballast/internal/backend"
	"ballast/internal/pool"
	"ballast/internal/router"
)

// cannedBackend answers every request on every connection with the same
// small keep-alive response, allocating nothing per request, so that a
// benchmark's allocations are the proxy's.
func cannedBackend(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					// Requests in this benchmark have no body: a request ends
					// at its empty line.
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) == 2 {
							break
						}
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// nativeListener serves a native engine over backends on 127.0.0.1.
func nativeListener(tb testing.TB, addrs ...string) string {
	bs := make([]*backend.Backend, len(addrs))
	for i, a := range addrs {
		bs[i] = backend.New("app", a, 1)
	}
	p, err := pool.New("app", pool.Settings{Algorithm: "round_robin"}, bs)
	if err != nil {
		tb.Fatal(err)
	}
	up := NewUpstream(p, Timeouts{Connect: time.Second, ResponseHeader: 5 * time.Second, Idle: time.Minute})
	tab, err := router.New([]router.Route[*Upstream]{{Target: up}})
	if err != nil {
		tb.Fatal(err)
	}
	n := NewNative(NewDispatcher(tab), slog.New(slog.NewTextHandler(io.Discard, nil)), 10*time.Second, time.Minute)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go n.Serve(ln)
	tb.Cleanup(func() { ln.Close(); up.Close() })
	return ln.Addr().String()
}

// BenchmarkNativeKeepAlive measures one proxied keep-alive request through the
// native engine, client and backend on loopback: its allocations are the
// engine's own (the client and backend allocate nothing per request).
func BenchmarkNativeKeepAlive(b *testing.B) {
	addr := nativeListener(b, cannedBackend(b))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	br := bufio.NewReaderSize(c, 4096)
	roundTrip := func() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		n := -1
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				b.Fatal(err)
			}
			if len(line) == 2 {
				break
			}
			if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
				n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
			}
		}
		if n < 0 {
			b.Fatal("response without Content-Length")
		}
		if _, err := br.Discard(n); err != nil {
			b.Fatal(err)
		}
	}
	roundTrip() // warm the pools and the backend connection
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		roundTrip()
	}
}
