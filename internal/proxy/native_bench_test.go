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

	"ballast/internal/accesslog"
	"ballast/internal/backend"
	"ballast/internal/metrics"
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

// observedListener serves a native engine over backends on 127.0.0.1, telling
// obs (nil: nobody) of every request.
func observedListener(tb testing.TB, obs Observer, addrs ...string) string {
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
	d := NewDispatcher(tab)
	d.SetObserver(obs)
	// The defaults of a listener's limits: every deadline is kept up to date.
	n := NewNative(d, slog.New(slog.NewTextHandler(io.Discard, nil)), ClientLimits{
		MaxHeaderBytes: DefaultMaxHeaderBytes, ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout: 2 * time.Minute, WriteTimeout: time.Minute,
	})
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
	benchKeepAlive(b, nil)
}

// BenchmarkNativeKeepAliveObserved is BenchmarkNativeKeepAlive with what a
// running server adds to every request: the metrics and an access log
// (writing to io.Discard).
func BenchmarkNativeKeepAliveObserved(b *testing.B) {
	m := metrics.New("bench", func() []metrics.Pool { return nil })
	m.SetPools([]string{"app"})
	al := accesslog.New(io.Discard, 8192)
	defer al.Close()
	benchKeepAlive(b, both{m, al})
}

// both sends each entry to the metrics and the access log, as the server does.
type both struct {
	m  *metrics.Metrics
	al *accesslog.Logger
}

func (o both) Observe(e *accesslog.Entry) {
	o.m.Observe(e)
	o.al.Log(e)
}

func benchKeepAlive(b *testing.B, obs Observer) {
	addr := observedListener(b, obs, cannedBackend(b))
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
