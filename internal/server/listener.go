package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"time"

	"ballast/internal/config"
	"ballast/internal/proxy"
)

// Client-side limits of HTTP listeners. They protect a small server out of the
// box; see the README's config reference.
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
	cfg config.Listener
	ln  net.Listener

	// http: the native engine, or net/http (TLS, or engine: net_http)
	disp    *proxy.Dispatcher
	native  *proxy.Native
	handler *proxy.Handler
	srv     *http.Server
	tlsConf *tls.Config

	// tcp
	tcp *proxy.TCPProxy
}

// newListener binds lc's address and prepares its engine. It serves nothing
// until setUpstreams and serve are called.
func (s *Server) newListener(lc *config.Listener) (*listener, error) {
	l := &listener{cfg: *lc}
	if lc.TLS != nil {
		cert, err := tls.LoadX509KeyPair(lc.TLS.Cert, lc.TLS.Key)
		if err != nil {
			return nil, fmt.Errorf("listener %q: tls: %w", lc.Name, err)
		}
		l.tlsConf = &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
		}
	}
	ln, err := s.listen(lc.Name, lc.Listen)
	if err != nil {
		return nil, bindError(lc, err)
	}
	l.ln = ln
	log := s.log.With("listener", lc.Name)
	switch {
	case lc.Protocol == config.ProtocolTCP:
		l.tcp = proxy.NewTCPProxy(log)
	case lc.TLS == nil && lc.Engine == config.EngineNative:
		l.disp = proxy.NewDispatcher(nil)
		l.native = proxy.NewNative(l.disp, log, readHeaderTimeout, clientIdleTimeout)
	default:
		l.disp = proxy.NewDispatcher(nil)
		l.handler = proxy.NewHandler(l.disp, log, lc.TLS != nil)
		l.srv = &http.Server{
			Handler:           l.handler,
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       clientIdleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			TLSConfig:         l.tlsConf,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
	}
	return l, nil
}

// sameSocket reports whether lc can keep l's socket across a reload.
func (l *listener) sameSocket(lc *config.Listener) bool {
	return l.cfg.Listen == lc.Listen && l.cfg.Protocol == lc.Protocol && l.cfg.Engine == lc.Engine &&
		(l.cfg.TLS == nil) == (lc.TLS == nil) &&
		(l.cfg.TLS == nil || reflect.DeepEqual(*l.cfg.TLS, *lc.TLS)) &&
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

// serve runs the accept loop until shutdown.
func (l *listener) serve() error {
	var err error
	switch {
	case l.tcp != nil:
		err = l.tcp.Serve(l.ln)
	case l.native != nil:
		err = l.native.Serve(l.ln)
	case l.tlsConf != nil:
		err = l.srv.ServeTLS(l.ln, "", "")
	default:
		err = l.srv.Serve(l.ln)
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
