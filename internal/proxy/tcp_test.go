package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"ballast/internal/backend"
	"ballast/internal/balancer"
	"ballast/internal/pool"
	"ballast/internal/testutil"
)

// tcpBackend is a TCP server on 127.0.0.1 running serve for each connection.
type tcpBackend struct {
	name     string
	ln       net.Listener
	accepted atomic.Int64
	ended    chan struct{} // one value per connection whose serve returned
}

func newTCPBackend(t testing.TB, name string, serve func(name string, c *net.TCPConn)) *tcpBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tb := &tcpBackend{name: name, ln: ln, ended: make(chan struct{}, 64)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tb.accepted.Add(1)
			go func() {
				defer c.Close()
				serve(name, c.(*net.TCPConn))
				select {
				case tb.ended <- struct{}{}:
				default:
				}
			}()
		}
	}()
	return tb
}

func (tb *tcpBackend) Addr() string { return tb.ln.Addr().String() }

// echoServe greets with "NAME\n", echoes until the client half-closes, then
// answers "bye NAME\n" — after the EOF, which proves the half-close arrived
// and the other direction still works.
func echoServe(name string, c *net.TCPConn) {
	io.WriteString(c, name+"\n")
	io.Copy(c, c)
	io.WriteString(c, "bye "+name+"\n")
}

// tcpFixture is a TCPProxy on 127.0.0.1 in front of one pool "db".
type tcpFixture struct {
	p    *TCPProxy
	up   *Upstream
	pool *pool.Pool
	addr string
}

func newTCPFixture(t testing.TB, s pool.Settings, addrs ...string) *tcpFixture {
	t.Helper()
	bs := make([]*backend.Backend, len(addrs))
	for i, a := range addrs {
		bs[i] = backend.New("db", a, 1)
	}
	p, err := pool.New("db", s, bs)
	if err != nil {
		t.Fatal(err)
	}
	up := NewUpstream(p, Timeouts{Connect: time.Second})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if tt, ok := t.(*testing.T); ok {
		log = slog.New(slog.NewTextHandler(tLogWriter{tt}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	px := NewTCPProxy(log)
	px.SetUpstream(up)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { px.Serve(ln); close(served) }()
	t.Cleanup(func() {
		ln.Close()
		<-served
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		px.Shutdown(ctx)
		up.Close()
	})
	return &tcpFixture{p: px, up: up, pool: p, addr: ln.Addr().String()}
}

type tLogWriter struct{ t *testing.T }

func (w tLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// tcpClient is a client connection through the proxy.
type tcpClient struct {
	t testing.TB
	*net.TCPConn
	br *bufio.Reader
}

func (f *tcpFixture) dial(t testing.TB) *tcpClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", f.addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &tcpClient{t: t, TCPConn: c.(*net.TCPConn), br: bufio.NewReader(c)}
}

// line reads one line, failing the test on an error.
func (c *tcpClient) line() string {
	c.t.Helper()
	s, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %q, %v", s, err)
	}
	return strings.TrimSuffix(s, "\n")
}

// send writes s, failing the test on an error.
func (c *tcpClient) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// roundTrip sends msg+"\n" and expects it echoed.
func (c *tcpClient) roundTrip(msg string) {
	c.t.Helper()
	c.send(msg + "\n")
	if got := c.line(); got != msg {
		c.t.Fatalf("echo: got %q, want %q", got, msg)
	}
}

// closed waits up to d for the proxy to close the connection and reports
// whether it did (end of stream or reset, with no byte before it).
func (c *tcpClient) closed(d time.Duration) bool {
	c.t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	n, err := c.br.Read(make([]byte, 1))
	if n > 0 {
		c.t.Fatalf("unexpected byte while waiting for the close")
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

func TestTCPProxyEchoAndLargeTransfer(t *testing.T) {
	be := newTCPBackend(t, "b0", echoServe)
	f := newTCPFixture(t, pool.Settings{Algorithm: balancer.AlgRoundRobin}, be.Addr())

	c := f.dial(t)
	if got := c.line(); got != "b0" {
		t.Fatalf("greeting %q", got)
	}
	for i := range 5 {
		c.roundTrip(fmt.Sprintf("ping %d", i))
	}

	// 16 MiB both ways at once: what splice carries must arrive intact and in
	// order.
	data := make([]byte, 16<<20)
	rng := rand.NewChaCha8([32]byte{7})
	rng.Read(data)
	go func() {
		c.Write(data)
		c.CloseWrite()
	}()
	got, err := io.ReadAll(c.br)
	if err != nil {
		t.Fatal(err)
	}
	want := append(data, "bye b0\n"...)
	if len(got) != len(want) || sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("got %d bytes (sha %x), want %d (sha %x)", len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
	}
}

func TestTCPProxyHalfClose(t *testing.T) {
	t.Run("client closes first", func(t *testing.T) {
		be := newTCPBackend(t, "b0", echoServe)
		f := newTCPFixture(t, pool.Settings{Algorithm: balancer.AlgRoundRobin}, be.Addr())
		c := f.dial(t)
		c.line()
		c.send("last words\n")
		c.CloseWrite()
		// The backend saw EOF (its io.Copy returned) and could still answer.
		rest, err := io.ReadAll(c.br)
		if err != nil || string(rest) != "last words\nbye b0\n" {
			t.Fatalf("after CloseWrite: %q, %v", rest, err)
		}
	})
	t.Run("backend closes first", func(t *testing.T) {
		got := make(chan string, 1)
		be := newTCPBackend(t, "b0", func(_ string, c *net.TCPConn) {
			io.WriteString(c, "server done\n")
			c.CloseWrite()
			b, _ := io.ReadAll(c) // the client can still send
			got <- string(b)
		})
		f := newTCPFixture(t, pool.Settings{Algorithm: balancer.AlgRoundRobin}, be.Addr())
		c := f.dial(t)
		all, err := io.ReadAll(c.br)
		if err != nil || string(all) != "server done\n" {
			t.Fatalf("client read %q, %v; want the greeting, then EOF", all, err)
		}
		c.send("client still talking\n")
		c.CloseWrite()
		select {
		case s := <-got:
			if s != "client still talking\n" {
				t.Fatalf("backend got %q after its CloseWrite", s)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the backend never got the client's bytes and EOF")
		}
	})
}

// A backend that refuses the connection is skipped: the next one is tried,
// and the refusal is counted against the refusing backend only.
func TestTCPProxyConnectFailover(t *testing.T) {
	dead := testutil.FreeAddr(t)
	live := newTCPBackend(t, "live", echoServe)
	f := newTCPFixture(t, pool.Settings{Algorithm: balancer.AlgRoundRobin}, dead, live.Addr())
	for i := range 4 {
		c := f.dial(t)
		if got := c.line(); got != "live" {
			t.Fatalf("connection %d reached %q", i, got)
		}
		c.roundTrip("hello")
		c.Close()
	}
	d, l := f.pool.Backend(dead), f.pool.Backend(live.Addr())
	testutil.WaitFor(t, 5*time.Second, "connections released", func() bool { return l.InFlight() == 0 && d.InFlight() == 0 })
	if d.Failures() == 0 || l.Failures() != 0 || l.Requests() != 4 {
		t.Fatalf("dead: %d failures; live: %d failures, %d connections", d.Failures(), l.Failures(), l.Requests())
	}

	t.Run("every backend refuses", func(t *testing.T) {
		f := newTCPFixture(t, pool.Settings{Algorithm: balancer.AlgRoundRobin}, testutil.FreeAddr(t), testutil.FreeAddr(t))
		c := f.dial(t)
		if !c.closed(5 * time.Second) {
			t.Fatal("connection kept open with no backend to go to")
		}
	})
}

// ip_hash and consistent_hash on source_ip send every connection of a client
// address to the backend the balancer maps that address to. (Without the
// address both fall back to round robin, which would spread them.)
func TestTCPProxyHashKeepsClient(t *testing.T) {
	hashOn, err := balancer.ParseHashOn("source_ip")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []pool.Settings{
		{Algorithm: balancer.AlgIPHash},
		{Algorithm: balancer.AlgConsistentHash, HashOn: hashOn},
	} {
		t.Run(s.Algorithm, func(t *testing.T) {
			var addrs []string
			for i := range 4 {
				addrs = append(addrs, newTCPBackend(t, fmt.Sprintf("b%d", i), echoServe).Addr())
			}
			f := newTCPFixture(t, s, addrs...)
			want, _ := f.pool.Pick(&balancer.Request{ClientIP: netip.MustParseAddr("127.0.0.1")})
			wantName := fmt.Sprintf("b%d", indexOf(addrs, want.Addr))
			for i := range 8 {
				c := f.dial(t)
				if got := c.line(); got != wantName {
					t.Fatalf("connection %d reached %s, want %s (the hash of 127.0.0.1)", i, got, wantName)
				}
				c.Close()
			}
		})
	}
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

// A connection beyond a backend's max_conns waits in the pool's queue and gets
// the slot the moment a connection ends; bytes it sent meanwhile are kept.
// Waiting longer than the queue's timeout closes it.
func TestTCPProxyMaxConnsQueue(t *testing.T) {
	be := newTCPBackend(t, "b0", echoServe)
	f := newTCPFixture(t, pool.Settings{Algorithm: balancer.AlgRoundRobin}, be.Addr())
	b := f.pool.Backend(be.Addr())
	b.SetMaxConns(1)
	f.up.SetQueue(10, 5*time.Second)

	first := f.dial(t)
	first.line()
	second := f.dial(t)
	second.send("queued\n")
	testutil.WaitFor(t, 5*time.Second, "second connection queued", func() bool { return f.up.QueueLen() == 1 })
	second.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, _ := second.br.Read(make([]byte, 1)); n != 0 {
		t.Fatal("queued connection reached the backend beyond max_conns")
	}
	if be.accepted.Load() != 1 || b.InFlight() != 1 {
		t.Fatalf("backend accepted %d, in flight %d; want 1, 1", be.accepted.Load(), b.InFlight())
	}

	first.Close()
	second.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got := second.line(); got != "b0" {
		t.Fatalf("greeting %q", got)
	}
	if got := second.line(); got != "queued" {
		t.Fatalf("bytes sent while queued: got %q", got)
	}
	if f.up.QueueLen() != 0 || b.InFlight() != 1 {
		t.Fatalf("queue %d, in flight %d", f.up.QueueLen(), b.InFlight())
	}

	t.Run("queue timeout", func(t *testing.T) {
		f.up.SetQueue(10, 200*time.Millisecond)
		start := time.Now()
		third := f.dial(t)
		if !third.closed(5 * time.Second) {
			t.Fatal("still open after the queue timeout")
		}
		if d := time.Since(start); d < 150*time.Millisecond {
			t.Fatalf("closed after %v, before the queue timeout", d)
		}
		if be.accepted.Load() != 2 {
			t.Fatalf("backend accepted %d connections, want 2", be.accepted.Load())
		}
	})
}

// Draining a backend sends new connections elsewhere; a connection already on
// it continues until it ends.
func TestTCPProxyDrain(t *testing.T) {
	b0 := newTCPBackend(t, "b0", echoServe)
	b1 := newTCPBackend(t, "b1", echoServe)
	f := newTCPFixture(t, pool.Settings{Algorithm: balancer.AlgRoundRobin}, b0.Addr(), b1.Addr())

	old := f.dial(t)
	name := old.line()
	addr := map[string]string{"b0": b0.Addr(), "b1": b1.Addr()}[name]
	drained, err := f.pool.Drain(addr)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		c := f.dial(t)
		if got := c.line(); got == name {
			t.Fatalf("connection %d went to draining %s", i, name)
		}
		c.Close()
	}
	old.roundTrip("still here")
	if drained.InFlight() != 1 || drained.State() != backend.StateDraining {
		t.Fatalf("draining backend: in flight %d, state %v", drained.InFlight(), drained.State())
	}
	old.Close()
	testutil.WaitFor(t, 5*time.Second, "drained backend idle", func() bool { return drained.InFlight() == 0 })
}

// The backend's in-flight count is its open connections.
func TestTCPProxyInFlightCountsConnections(t *testing.T) {
	be := newTCPBackend(t, "b0", echoServe)
	f := newTCPFixture(t, pool.Settings{Algorithm: balancer.AlgRoundRobin}, be.Addr())
	b := f.pool.Backend(be.Addr())
	var cs []*tcpClient
	for range 3 {
		c := f.dial(t)
		c.line()
		cs = append(cs, c)
	}
	if b.InFlight() != 3 {
		t.Fatalf("in flight %d with 3 open connections", b.InFlight())
	}
	cs[0].Close()
	testutil.WaitFor(t, 5*time.Second, "in flight 2", func() bool { return b.InFlight() == 2 })
	for _, c := range cs[1:] {
		c.Close()
	}
	testutil.WaitFor(t, 5*time.Second, "in flight 0", func() bool { return b.InFlight() == 0 })
	if b.Requests() != 3 || b.Failures() != 0 {
		t.Fatalf("requests %d, failures %d", b.Requests(), b.Failures())
	}
}

// The idle timeout closes a connection on which no byte moved either way for
// limits.idle_timeout (both sides: the backend sees the close too), never
// sooner, and leaves alone a connection busy in either direction.
func TestTCPProxyIdleTimeout(t *testing.T) {
	// Busy connections move a byte every tick, for ticks × tick = two idle
	// periods: only a stall of three ticks (600 ms) could make them idle, which
	// keeps the test steady under -race on a loaded 2-core machine.
	const (
		idle  = 800 * time.Millisecond
		tick  = idle / 4
		ticks = 8
		slack = 1500 * time.Millisecond
	)

	t.Run("quiet connection closed on both sides", func(t *testing.T) {
		t.Parallel()
		be := newTCPBackend(t, "b0", echoServe)
		f := newTCPFixture(t, pool.Settings{Algorithm: balancer.AlgRoundRobin}, be.Addr())
		f.p.SetIdleTimeout(idle)
		c := f.dial(t)
		c.line()
		c.roundTrip("one")
		last := time.Now()
		if !c.closed(idle + slack) {
			t.Fatalf("still open %v after the last byte", time.Since(last))
		}
		d := time.Since(last)
		t.Logf("closed %v after the last byte (idle_timeout %v)", d.Round(time.Millisecond), idle)
		if d < idle-20*time.Millisecond { // TCP_INFO counts from the segment's arrival, a little before the read
			t.Fatalf("closed after %v, before idle_timeout %v", d, idle)
		}
		select {
		case <-be.ended:
		case <-time.After(5 * time.Second):
			t.Fatal("the backend's side of the idle connection stayed open")
		}
		testutil.WaitFor(t, 5*time.Second, "slot released", func() bool { return f.pool.Backend(be.Addr()).InFlight() == 0 })
	})

	t.Run("client talking is not idle", func(t *testing.T) {
		t.Parallel()
		be := newTCPBackend(t, "b0", echoServe)
		f := newTCPFixture(t, pool.Settings{Algorithm: balancer.AlgRoundRobin}, be.Addr())
		f.p.SetIdleTimeout(idle)
		c := f.dial(t)
		c.line()
		for i := range ticks {
			c.roundTrip(fmt.Sprint("tick ", i))
			time.Sleep(tick)
		}
		if !c.closed(idle + slack) {
			t.Fatal("not closed once it went quiet")
		}
	})

	t.Run("one direction only: backend streaming", func(t *testing.T) {
		t.Parallel()
		be := newTCPBackend(t, "stream", func(_ string, c *net.TCPConn) {
			for i := range ticks {
				if _, err := fmt.Fprintf(c, "chunk %d\n", i); err != nil {
					return
				}
				time.Sleep(tick)
			}
			io.WriteString(c, "end\n")
			io.Copy(io.Discard, c)
		})
		f := newTCPFixture(t, pool.Settings{Algorithm: balancer.AlgRoundRobin}, be.Addr())
		f.p.SetIdleTimeout(idle)
		c := f.dial(t)
		for i := range ticks {
			if got, want := c.line(), fmt.Sprint("chunk ", i); got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		}
		if got := c.line(); got != "end" {
			t.Fatalf("got %q, want end", got)
		}
	})

	t.Run("one direction only: client uploading", func(t *testing.T) {
		t.Parallel()
		be := newTCPBackend(t, "sink", func(_ string, c *net.TCPConn) {
			n, _ := io.Copy(io.Discard, c)
			fmt.Fprintf(c, "got %d\n", n)
		})
		f := newTCPFixture(t, pool.Settings{Algorithm: balancer.AlgRoundRobin}, be.Addr())
		f.p.SetIdleTimeout(idle)
		c := f.dial(t)
		for range ticks {
			c.send("0123456789")
			time.Sleep(tick)
		}
		c.CloseWrite()
		if got, want := c.line(), fmt.Sprint("got ", 10*ticks); got != want {
			t.Fatalf("sink answered %q, want %q", got, want)
		}
	})

	t.Run("no timeout", func(t *testing.T) {
		t.Parallel()
		be := newTCPBackend(t, "b0", echoServe)
		f := newTCPFixture(t, pool.Settings{Algorithm: balancer.AlgRoundRobin}, be.Addr())
		c := f.dial(t)
		c.line()
		if c.closed(2 * idle) {
			t.Fatal("closed without an idle timeout")
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		c.roundTrip("still open")
	})
}

// Regression guard for measuring idleness by the kernel's data timestamps:
// TCP keepalive probes (empty segments) are not traffic. The client probes
// every second (the kernel's smallest keepalive unit); the connection is
// still closed at the 2.5 s idle timeout.
func TestTCPProxyIdleTimeoutIgnoresKeepalive(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 3 s")
	}
	const idle = 2500 * time.Millisecond
	be := newTCPBackend(t, "b0", echoServe)
	f := newTCPFixture(t, pool.Settings{Algorithm: balancer.AlgRoundRobin}, be.Addr())
	f.p.SetIdleTimeout(idle)
	d := net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: time.Second, Count: 10}}
	nc, err := d.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := &tcpClient{t: t, TCPConn: nc.(*net.TCPConn), br: bufio.NewReader(nc)}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.line()
	last := time.Now()
	if !c.closed(idle + 2*time.Second) {
		t.Fatal("keepalive probes kept an idle connection open")
	}
	if d := time.Since(last); d < idle-20*time.Millisecond {
		t.Fatalf("closed after %v, before idle_timeout %v", d, idle)
	}
}

// BenchmarkTCPProxyThroughput pushes 1 MiB per op through the proxy and back
// (an echo backend): without the idle watch, with one that never fires during
// the run, and with one that fires every 10 ms. The watch must cost nothing
// per byte, and never stop the kernel splicing.
func BenchmarkTCPProxyThroughput(b *testing.B) {
	for _, idle := range []time.Duration{0, time.Hour, 10 * time.Millisecond} {
		b.Run(fmt.Sprint("idle=", idle), func(b *testing.B) {
			be := newTCPBackend(b, "b0", func(_ string, c *net.TCPConn) { io.Copy(c, c) })
			f := newTCPFixture(b, pool.Settings{Algorithm: balancer.AlgRoundRobin}, be.Addr())
			f.p.SetIdleTimeout(idle)
			nc, err := net.Dial("tcp", f.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			chunk := bytes.Repeat([]byte("x"), 1<<20)
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				go nc.Write(chunk)
				if _, err := io.ReadFull(nc, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
