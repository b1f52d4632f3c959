package proxy

import (
	"net"
	"net/http"
	"time"
)

// idlePerBackend is how many idle keep-alive connections are kept per backend.
// It is sized for a busy pool: a backend serving a few hundred concurrent
// requests should not have to accept a new connection for each.
const idlePerBackend = 512

// expectContinueWait is how long a request that carries "Expect: 100-continue"
// waits for the backend's "100 Continue" before its body is sent anyway.
const expectContinueWait = time.Second

// transport holds the keep-alive connections to one pool's backends: a pool of
// idle connections per backend address, reused across requests.
type transport struct {
	rt *http.Transport
}

// newTransport returns the net/http engine's connections for backends reached
// with timeouts t.
func newTransport(t Timeouts) *transport {
	dialer := &net.Dialer{Timeout: t.Connect, KeepAlive: 30 * time.Second}
	return &transport{rt: &http.Transport{
		Proxy:                  nil, // never an environment-configured proxy
		DialContext:            dialer.DialContext,
		MaxIdleConns:           0, // no global cap; per backend below
		MaxIdleConnsPerHost:    idlePerBackend,
		IdleConnTimeout:        t.Idle,
		ResponseHeaderTimeout:  t.ResponseHeader,
		ExpectContinueTimeout:  expectContinueWait,
		DisableCompression:     true, // pass Accept-Encoding and bodies through untouched
		MaxResponseHeaderBytes: 1 << 20,
		WriteBufferSize:        32 << 10,
		ReadBufferSize:         32 << 10,
	}}
}

// close drops the idle connections; connections in use close when their
// request ends.
func (t *transport) close() { t.rt.CloseIdleConnections() }
