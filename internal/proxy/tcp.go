package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync/atomic"

	"ballast/internal/backend"
	"ballast/internal/balancer"
)

// TCPProxy is the TCP engine: every accepted connection goes to one backend of
// the listener's pool, and bytes are copied both ways (by splice(2) where the
// kernel allows) until both sides have closed.
type TCPProxy struct {
	log *slog.Logger
	up  atomic.Pointer[Upstream]

	conns connSet[struct{}]
}

// NewTCPProxy returns a TCP engine; SetUpstream must be called before Serve.
func NewTCPProxy(log *slog.Logger) *TCPProxy {
	return &TCPProxy{log: log}
}

// SetUpstream atomically sets the pool new connections go to.
func (p *TCPProxy) SetUpstream(u *Upstream) { p.up.Store(u) }

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

// handle serves one client connection.
func (p *TCPProxy) handle(client net.Conn) {
	defer client.Close()
	up := p.up.Load()
	req := balancer.Request{ClientIP: clientAddr(client.RemoteAddr().String())}
	g, _, err := up.take(context.Background(), &req)
	if err != nil {
		p.log.Warn("tcp connection refused by the pool", "err", err)
		return
	}
	b := g.b
	var tried Tried
	tried.Add(b)
	for {
		back, err := net.DialTimeout("tcp", b.Addr, up.Timeouts.Connect)
		if err == nil {
			pipe(client, back)
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
// reset, or a connection closed by shutdown) ends both.
func pipe(a, b net.Conn) {
	defer b.Close()
	done := make(chan struct{})
	go func() {
		if _, err := io.Copy(b, a); err != nil {
			a.Close()
			b.Close()
		}
		closeWrite(b)
		close(done)
	}()
	if _, err := io.Copy(a, b); err != nil {
		a.Close()
		b.Close()
	}
	closeWrite(a)
	<-done
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
