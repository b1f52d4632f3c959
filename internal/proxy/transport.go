package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"ballast/internal/pool"
)

// idlePerBackend is how many idle keep-alive connections are kept per backend.
// It is sized for a busy pool: a backend serving a few hundred concurrent
// requests should not have to accept a new connection for each.
const idlePerBackend = 512

// expectContinueWait is how long a request that carries "Expect: 100-continue"
// waits for the backend's "100 Continue" before its body is sent anyway.
const expectContinueWait = time.Second

// Link is how the data path reaches a pool's backends, beyond its timeouts:
// over TLS or not, and in which HTTP version. The zero Link is plaintext
// HTTP/1.1.
type Link struct {
	// TLS, when set, wraps every backend connection in TLS with this client
	// config. An empty ServerName verifies (and sends as SNI) the host of
	// each backend's address. NextProtos is set by the transport (ALPN "h2"
	// or "http/1.1"); the config is not modified, it is cloned.
	TLS *tls.Config
	// H2 makes the net/http engine speak HTTP/2 to the backends: h2c with
	// prior knowledge in cleartext, h2 negotiated by ALPN over TLS. The
	// native engine speaks HTTP/1.1 only (config validation keeps its
	// listeners away from such pools).
	H2 bool
	// ID identifies the settings (and the CA file's contents) so that a
	// reload can tell whether the link changed and the upstream's
	// connections must be replaced.
	ID string
}

// transport holds the keep-alive connections to one pool's backends for the
// net/http engine (a pool of idle connections per backend address, or one
// multiplexed HTTP/2 connection per backend), and how both engines dial.
type transport struct {
	rt      *http.Transport
	link    Link
	scheme  string        // of the URLs sent through rt: "http" or "https"
	tls     *tls.Config   // link.TLS with the ALPN protocols set, or nil
	connect time.Duration // bound of TCP connect plus TLS handshake
}

// newTransport returns the net/http engine's connections for plaintext
// HTTP/1.1 backends reached with timeouts t.
func newTransport(t Timeouts) *transport { return newLinkTransport(t, Link{}) }

// newLinkTransport returns the connections to backends reached over l with
// timeouts t.
func newLinkTransport(t Timeouts, l Link) *transport {
	tr := &transport{link: l, scheme: "http", connect: t.Connect}
	dialer := &net.Dialer{Timeout: t.Connect, KeepAlive: 30 * time.Second}
	var protocols http.Protocols
	switch {
	case l.H2 && l.TLS != nil:
		protocols.SetHTTP2(true)
	case l.H2:
		protocols.SetUnencryptedHTTP2(true)
	default:
		protocols.SetHTTP1(true)
	}
	tr.rt = &http.Transport{
		Proxy:                  nil, // never an environment-configured proxy
		DialContext:            dialer.DialContext,
		Protocols:              &protocols,
		MaxIdleConns:           0, // no global cap; per backend below
		MaxIdleConnsPerHost:    idlePerBackend,
		IdleConnTimeout:        t.Idle,
		ResponseHeaderTimeout:  t.ResponseHeader,
		ExpectContinueTimeout:  expectContinueWait,
		DisableCompression:     true, // pass Accept-Encoding and bodies through untouched
		MaxResponseHeaderBytes: 1 << 20,
		WriteBufferSize:        32 << 10,
		ReadBufferSize:         32 << 10,
	}
	if l.TLS != nil {
		tr.scheme = "https"
		tr.tls = l.TLS.Clone()
		if l.H2 {
			tr.tls.NextProtos = []string{"h2"}
		} else {
			tr.tls.NextProtos = []string{"http/1.1"}
		}
		if tr.tls.ClientSessionCache == nil {
			// Resumed sessions make the handshakes of new connections cheap.
			tr.tls.ClientSessionCache = tls.NewLRUClientSessionCache(0)
		}
		// Both engines dial TLS the same way, bounded by timeouts.connect.
		tr.rt.DialTLSContext = func(ctx context.Context, _, addr string) (net.Conn, error) {
			return tr.dial(ctx, addr)
		}
	}
	return tr
}

// NewUpstreamLink returns the data path's view of pool p, talking to its
// backends over l with timeouts t (NewUpstream is the plaintext HTTP/1.1
// case). Close it when it is no longer used.
func NewUpstreamLink(p *pool.Pool, t Timeouts, l Link) *Upstream {
	u := NewUpstream(p, t)
	if l != (Link{}) {
		u.transport = newLinkTransport(t, l) // the plaintext one has no connection yet
	}
	return u
}

// LinkID returns the ID of the Link the upstream reaches its backends over.
func (u *Upstream) LinkID() string { return u.transport.link.ID }

// dial connects to a backend: TCP, then the TLS handshake when the link has
// TLS, the two together bounded by timeouts.connect. Every failure, the
// handshake's included, is a *net.OpError with Op "dial", so that both engines
// classify it as a connect failure (502, retried on another backend).
func (t *transport) dial(ctx context.Context, addr string) (net.Conn, error) {
	if t.tls != nil && t.connect > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.connect)
		defer cancel()
	}
	d := net.Dialer{Timeout: t.connect}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil || t.tls == nil {
		return c, err
	}
	conf := t.tls
	if conf.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			c.Close()
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: err}
		}
		conf = conf.Clone()
		conf.ServerName = host
	}
	tc := tls.Client(c, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: c.RemoteAddr(), Err: fmt.Errorf("tls handshake: %w", err)}
	}
	if t.link.H2 && tc.ConnectionState().NegotiatedProtocol != "h2" {
		c.Close()
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: c.RemoteAddr(), Err: errNoH2}
	}
	return tc, nil
}

// errNoH2 is a TLS backend of a backend_protocol h2c pool that did not agree
// to HTTP/2 by ALPN.
var errNoH2 = errors.New("tls handshake: the backend did not negotiate HTTP/2 (ALPN h2)")

// close drops the idle connections; connections in use close when their
// request ends.
func (t *transport) close() { t.rt.CloseIdleConnections() }
