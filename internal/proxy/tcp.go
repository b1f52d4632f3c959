package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"sync/atomic"
	"time"

	"ballast/internal/backend"
	"ballast/internal/balancer"
)

// TCPProxy is the TCP engine: every accepted connection goes to one backend of
// the listener's pool, and bytes are copied both ways (by splice(2) where the
// kernel allows) until both sides have closed, or until no byte has moved
// either way for the idle timeout.
type TCPProxy struct {
	log  *slog.Logger
	up   atomic.Pointer[Upstream]
	idle atomic.Int64 // time.Duration; 0: connections may stay idle forever

	conns connSet[struct{}]
}

// NewTCPProxy returns a TCP engine; SetUpstream must be called before Serve.
// Its connections have no idle timeout until SetIdleTimeout sets one.
func NewTCPProxy(log *slog.Logger) *TCPProxy {
	return &TCPProxy{log: log}
}

// SetUpstream atomically sets the pool new connections go to.
func (p *TCPProxy) SetUpstream(u *Upstream) { p.up.Store(u) }

// SetIdleTimeout sets the listener's limits.idle_timeout: a connection on
// which no byte has moved in either direction (client to backend, backend to
// client) for d is closed on both sides. 0 turns the timeout off. It applies
// to connections accepted from now on.
func (p *TCPProxy) SetIdleTimeout(d time.Duration) { p.idle.Store(int64(max(d, 0))) }

// Serve accepts connections on ln until it is closed.
func (p *TCPProxy) Serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		if !p.conns.add(c, struct{}{}) {
			c.Close()
			continue
		}
		go func() {
			defer p.conns.done(c)
			p.handle(c)
		}()
	}
}

// Shutdown waits for open connections to end until ctx is done, then closes
// them, and reports whether it had to. The caller closes the listener first.
func (p *TCPProxy) Shutdown(ctx context.Context) bool { return p.conns.shutdown(ctx, nil) }

// handle serves one client connection: it takes a backend slot (waiting in
// the pool's queue when every backend is at max_conns), connects, trying
// another backend when the connect fails, and pipes until the end.
func (p *TCPProxy) handle(client net.Conn) {
	defer client.Close()
	up := p.up.Load()
	req := balancer.Request{ClientIP: clientAddr(client.RemoteAddr().String())}
	g, _, err := up.takeFIFO(context.Background(), &req) // connections have no route to learn
	if err != nil {
		p.log.Warn("tcp connection refused by the pool", "client", client.RemoteAddr(), "err", err)
		return
	}
	b := g.b
	var tried Tried
	tried.Add(b)
	for {
		back, err := net.DialTimeout("tcp", b.Addr, up.Timeouts.Connect)
		if err == nil {
			if idle := time.Duration(p.idle.Load()); pipe(client, back, idle) {
				p.log.Debug("tcp connection closed: idle", "client", client.RemoteAddr(), "backend", b.Addr, "idle_timeout", idle)
			}
			up.release(b, false, nil)
			return
		}
		p.log.Warn("tcp connect failed", "backend", b.Addr, "err", err)
		next := (*backend.Backend)(nil)
		if tried.Retries() < minConnectRetries {
			next, _ = pickUntried(up.Pool, &req, &tried)
		}
		up.release(b, true, err)
		if next == nil {
			return
		}
		tried.Add(next)
		b = next
	}
}

// pipe copies both ways until both directions are done, passing a half-close
// (one side's FIN) on to the other side. An error in either direction (a
// reset, or a connection closed by shutdown or by the idle timeout) ends both.
// With idle > 0 it closes both connections once no byte has moved either way
// for idle, and then reports true.
//
// Each direction is one io.Copy between the two *net.TCPConn, which Go turns
// into splice(2) on Linux (socket to pipe to socket, no copy through user
// space). So that it stays one uninterrupted call, the idle timeout sets no
// deadline and sees no bytes: an idleWatch asks the kernel instead.
func pipe(a, b net.Conn, idle time.Duration) bool {
	defer b.Close()
	var w *idleWatch
	if idle > 0 {
		w = watchIdle(a, b, idle)
	}
	done := make(chan struct{})
	go func() {
		if _, err := io.Copy(b, w.source(a)); err != nil {
			a.Close()
			b.Close()
		}
		closeWrite(b)
		close(done)
	}()
	if _, err := io.Copy(a, w.source(b)); err != nil {
		a.Close()
		b.Close()
	}
	closeWrite(a)
	<-done
	return w != nil && w.stop()
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

// idleWatch closes a client and backend connection pair once no byte has
// moved on either for idle. It is one runtime timer per connection that fires
// about once per idle period, never per byte: when it fires it asks how long
// the pair has been quiet (quiet; on Linux the kernel's TCP_INFO, which keeps
// the time of the last data sent and received on each socket, keepalive
// probes not included) and either closes both connections or sleeps until the
// quiet time could first reach idle. The copies are never interrupted, so the
// kernel keeps splicing; a connection is closed between idle and idle plus a
// few milliseconds after its last byte.
type idleWatch struct {
	a, b    net.Conn
	idle    time.Duration
	timer   *time.Timer
	stopped atomic.Bool
	fired   atomic.Bool
	traffic traffic // how quiet is measured, per platform
}

// watchIdle starts watching a and b; stop ends the watch.
func watchIdle(a, b net.Conn, idle time.Duration) *idleWatch {
	w := &idleWatch{a: a, b: b, idle: idle}
	w.traffic.start()
	// Armed only once w.timer is set, so that check never sees it unset.
	w.timer = time.AfterFunc(math.MaxInt64, w.check)
	w.timer.Reset(idle)
	return w
}

// check runs when the timer fires.
func (w *idleWatch) check() {
	if w.stopped.Load() {
		return
	}
	if q := w.quiet(); q < w.idle {
		w.timer.Reset(w.idle - q)
		return
	}
	w.fired.Store(true)
	w.a.Close()
	w.b.Close()
}

// stop ends the watch and reports whether the watch closed the connections.
func (w *idleWatch) stop() bool {
	w.stopped.Store(true)
	w.timer.Stop()
	return w.fired.Load()
}
