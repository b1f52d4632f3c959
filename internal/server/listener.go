package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"ballast/internal/config"
	"ballast/internal/proxy"
)

// Client-side limits of the admin listener (HTTP listeners have their own,
// limits in the config: clientLimits).
const (
	// readHeaderTimeout bounds how long a client may take to send a request
	// header (slow-header attacks).
	readHeaderTimeout = 10 * time.Second
	// clientIdleTimeout closes a client's keep-alive connection after this
	// long without a request.
	clientIdleTimeout = 120 * time.Second
	// maxHeaderBytes caps a request's header block.
	maxHeaderBytes = 64 << 10
)

// listener is one bound socket and the engine serving it.
type listener struct {
	cfg    config.Listener
	ln     net.Listener
	accept net.Listener // what the engine accepts on: ln, capped at limits.max_conns

	// http: the native engine, or net/http (tls, h2c, redirect_https, or engine: net_http)
	disp    *proxy.Dispatcher
	native  *proxy.Native
	handler *proxy.Handler
	srv     *http.Server
	tlsConf *tls.Config  // what srv serves TLS with: it asks certs for each handshake
	certs   *listenerTLS // TLS listeners: the certificates, swapped on reload

	// tcp
	tcp *proxy.TCPProxy
}

// newListener binds lc's address and prepares its engine. It serves nothing
// until setUpstreams and serve are called.
func (s *Server) newListener(lc *config.Listener) (*listener, error) {
	l := &listener{cfg: *lc}
	if lc.TLS != nil {
		certs, err := newListenerTLS(lc)
		if err != nil {
			return nil, err
		}
		l.certs, l.tlsConf = certs, certs.serverConfig()
	}
	ln, err := s.listen(lc.Name, lc.Listen)
	if err != nil {
		return nil, bindError(lc, err)
	}
	l.ln = ln
	l.accept = limitConns(ln, lc.Limits.MaxConns)
	log := s.log.With("listener", lc.Name)
	switch {
	case lc.Protocol == config.ProtocolTCP:
		l.tcp = proxy.NewTCPProxy(log)
		l.tcp.SetIdleTimeout(lc.Limits.IdleTimeout.D())
	case !lc.NetHTTP():
		l.disp = proxy.NewDispatcher(nil)
		l.native = proxy.NewNative(l.disp, log, clientLimits(lc))
	default:
		l.disp = proxy.NewDispatcher(nil)
		lim := clientLimits(lc)
		l.handler = proxy.NewHandler(l.disp, log, lc.TLS != nil, lim)
		var h http.Handler = l.handler
		if lc.RedirectHTTPS {
			// Every request is redirected, even on a listener with routes;
			// the handler stays for the shutdown path, and gets no request.
			h = redirectHTTPS{}
		}
		l.srv = &http.Server{
			Handler:           h,
			ReadHeaderTimeout: lim.ReadHeaderTimeout,
			IdleTimeout:       lim.IdleTimeout,
			MaxHeaderBytes:    lim.MaxHeaderBytes,
			WriteTimeout:      lim.WriteTimeout, // the handler moves it on per write
			TLSConfig:         l.tlsConf,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
		if lc.H2C {
			// HTTP/2 with prior knowledge next to HTTP/1.1 (no "Upgrade: h2c").
			var p http.Protocols
			p.SetHTTP1(true)
			p.SetUnencryptedHTTP2(true)
			l.srv.Protocols = &p
		}
		if lc.TLS != nil || lc.H2C {
			l.srv.HTTP2 = http2Server()
		}
	}
	return l, nil
}

// sameSocket reports whether lc can keep l's socket across a reload.
func (l *listener) sameSocket(lc *config.Listener) bool {
	return l.cfg.Listen == lc.Listen && l.cfg.Protocol == lc.Protocol && l.cfg.Engine == lc.Engine &&
		(l.cfg.TLS == nil) == (lc.TLS == nil) && // the certificates are swapped in place (Reload)
		l.cfg.H2C == lc.H2C && l.cfg.RedirectHTTPS == lc.RedirectHTTPS && l.cfg.Limits == lc.Limits
}

// setUpstreams points the listener at the pools of a (new) config.
func (l *listener) setUpstreams(ups upstreams) error {
	if l.tcp != nil {
		up, ok := ups[l.cfg.Pool]
		if !ok {
			return fmt.Errorf("listener %q: undefined pool %q", l.cfg.Name, l.cfg.Pool)
		}
		l.tcp.SetUpstream(up)
		return nil
	}
	t, err := routeTable(&l.cfg, ups)
	if err != nil {
		return err
	}
	l.disp.SetTable(t)
	return nil
}

// serve runs the accept loop until shutdown. Every engine accepts on
// l.accept, so that max_conns holds for all of them in one place.
func (l *listener) serve() error {
	var err error
	switch {
	case l.tcp != nil:
		err = l.tcp.Serve(l.accept)
	case l.native != nil:
		err = l.native.Serve(l.accept)
	case l.tlsConf != nil:
		err = l.srv.ServeTLS(l.accept, "", "")
	default:
		err = l.srv.Serve(l.accept)
	}
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// shutdown stops accepting, waits up to timeout for in-flight requests and
// tunnels to finish, then closes what is left.
func (l *listener) shutdown(timeout time.Duration, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var forced bool
	switch {
	case l.tcp != nil:
		l.ln.Close()
		forced = l.tcp.Shutdown(ctx)
	case l.native != nil:
		l.ln.Close()
		forced = l.native.Shutdown(ctx)
	default:
		done := make(chan bool)
		go func() { done <- l.handler.Shutdown(ctx) }()
		if err := l.srv.Shutdown(ctx); err != nil {
			forced = true
			l.srv.Close()
		}
		forced = <-done || forced
	}
	if forced {
		log.Warn("shutdown timeout: closed connections still open", "listener", l.cfg.Name)
	}
}
