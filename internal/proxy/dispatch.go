// Package proxy is ballast's data path.
//
// It is split at one seam. The engine-independent half (dispatch.go, errors.go)
// routes a request, picks and acquires a backend, and accounts for the
// outcome; it sees a request only as a balancer.Request. The engine half
// (engine.go and its helpers for net/http; tcp.go for TCP) moves the bytes.
// A different HTTP engine replaces only the engine half: routing, balancing
// and outcome accounting (and, later, health and retries) stay as they are.
package proxy

import (
	"sync/atomic"
	"time"

	"ballast/internal/backend"
	"ballast/internal/balancer"
	"ballast/internal/health"
	"ballast/internal/pool"
	"ballast/internal/router"
)

// Timeouts bound one exchange with a backend.
type Timeouts struct {
	Connect        time.Duration
	ResponseHeader time.Duration
	Idle           time.Duration
}

// Upstream is a pool as the data path uses it: the pool (backends and balancer)
// plus how to talk to its backends. An Upstream lives as long as its pool's
// config does not change the way connections are made, so reloads keep its idle
// keep-alive connections.
type Upstream struct {
	Pool     *pool.Pool
	Timeouts Timeouts

	transport *transport   // net/http engine: its idle connections to the backends
	conns     backendConns // native engine: its idle connections to the backends
	outliers  atomic.Pointer[health.Outliers]
}

// SetOutliers sets (or, with nil, removes) the pool's passive outlier detection.
func (u *Upstream) SetOutliers(o *health.Outliers) { u.outliers.Store(o) }

// Table is a listener's routing table, swapped atomically on reload.
type Table = router.Table[*Upstream]

// Dispatcher is the engine-independent half of an HTTP listener's data path.
type Dispatcher struct {
	table atomic.Pointer[Table]
	clock func() time.Time
}

// NewDispatcher returns a dispatcher serving table.
func NewDispatcher(table *Table) *Dispatcher {
	d := &Dispatcher{clock: time.Now}
	d.table.Store(table)
	return d
}

// SetTable atomically replaces the routing table; requests already routed
// finish on the old one.
func (d *Dispatcher) SetTable(t *Table) { d.table.Store(t) }

// Attempt is one try of a request on one backend. The zero Attempt is invalid.
type Attempt struct {
	Upstream *Upstream
	Backend  *backend.Backend
	// SetCookie is a Set-Cookie value the response must carry (sticky), or "".
	SetCookie string
	start     time.Time
}

// Begin routes r, picks a backend and counts the request in flight on it.
// Every successful Begin is paired with one Attempt.End.
func (d *Dispatcher) Begin(r *balancer.Request) (Attempt, error) {
	up, ok := d.table.Load().Match(r.Host, r.Path)
	if !ok {
		return Attempt{}, ErrNoRoute
	}
	b, cookie, err := acquire(up.Pool, r)
	if err != nil {
		return Attempt{}, err
	}
	return Attempt{Upstream: up, Backend: b, SetCookie: cookie, start: d.clock()}, nil
}

// pickTries bounds how often a request picks again when the backend it
// picked filled its last free slot (max_conns) in the meantime.
const pickTries = 3

// acquire picks a backend of p for r and counts the request in flight on it,
// never exceeding the backend's max_conns.
func acquire(p *pool.Pool, r *balancer.Request) (*backend.Backend, string, error) {
	for range pickTries {
		b, cookie := p.Pick(r)
		if b == nil {
			break
		}
		if b.TryAcquire() {
			return b, cookie, nil
		}
	}
	return nil, "", ErrNoBackend
}

// Responded records that the backend's response header arrived: the time since
// Begin is the backend's response time, which least_time follows.
func (d *Dispatcher) Responded(a *Attempt) {
	now := d.clock()
	a.Backend.ObserveLatency(now.Sub(a.start), now)
}

// End finishes an attempt: the request is no longer in flight on the backend.
// status is the backend's status code (0 if none arrived); err the failure, if
// any. A failure the client caused (it went away) is not held against the backend.
func (d *Dispatcher) End(a *Attempt, status int, err error) {
	failed := status >= 500 || err != nil && StatusFor(err) != StatusClientClosed
	a.Backend.Release(failed)
	if o := a.Upstream.outliers.Load(); o != nil {
		o.Report(a.Backend, failed)
	}
}

// maxConnectTries bounds how many backends one request tries when connecting
// fails. A connect failure is always safe to retry: nothing was sent.
const maxConnectTries = 3

// Tried is the set of backends a request has been sent to (or tried to be).
type Tried struct {
	n  int
	bs [maxConnectTries]*backend.Backend
}

// Add records b; it reports false when the set is full.
func (t *Tried) Add(b *backend.Backend) bool {
	if t.n == len(t.bs) {
		return false
	}
	t.bs[t.n] = b
	t.n++
	return true
}

// Has reports whether b was tried.
func (t *Tried) Has(b *backend.Backend) bool {
	for _, x := range t.bs[:t.n] {
		if x == b {
			return true
		}
	}
	return false
}

// Full reports whether the request may try no more backends.
func (t *Tried) Full() bool { return t.n == len(t.bs) }

// RetryConnect starts a new attempt for a request whose backend could not be
// reached, on a backend of the same pool that has not been tried, so that a
// refused or unreachable backend costs the client nothing while another can
// serve. It fails with ErrNoBackend when none is left. The caller ends the
// failed attempt (End) once it has the new one.
func (d *Dispatcher) RetryConnect(a *Attempt, r *balancer.Request, tried *Tried) (Attempt, error) {
	up := a.Upstream
	if tried.Full() {
		return Attempt{}, ErrNoBackend
	}
	// The balancer usually offers another backend (rotation, load); a hash
	// keeps offering the same one, so fall back to the first usable other.
	for range pickTries {
		b, cookie := up.Pool.Pick(r)
		if b == nil {
			break
		}
		if !tried.Has(b) && b.TryAcquire() {
			return Attempt{Upstream: up, Backend: b, SetCookie: cookie, start: d.clock()}, nil
		}
	}
	for _, b := range up.Pool.Snapshot().Backends {
		if !tried.Has(b) && b.Usable() && b.TryAcquire() {
			return Attempt{Upstream: up, Backend: b, start: d.clock()}, nil
		}
	}
	return Attempt{}, ErrNoBackend
}
