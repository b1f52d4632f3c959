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
	"context"
	"errors"
	"sync/atomic"
	"time"

	"ballast/internal/admission"
	"ballast/internal/backend"
	"ballast/internal/balancer"
	"ballast/internal/config"
	"ballast/internal/health"
	"ballast/internal/pool"
	"ballast/internal/queue"
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
// keep-alive connections, its queue and its retry budget.
type Upstream struct {
	Pool     *pool.Pool
	Timeouts Timeouts

	transport *transport   // net/http engine: its idle connections to the backends
	conns     backendConns // native engine: its idle connections to the backends
	outliers  atomic.Pointer[health.Outliers]
	retry     atomic.Pointer[RetryPolicy]
	refused   atomic.Pointer[func(*backend.Backend)]
	budget    *Budget
	queue     *queue.Queue[grant]
	adm       *admission.Controller
	adaptive  atomic.Bool // admission by route class (else FIFO)
}

// NewUpstream returns the data path's view of pool p, talking to its backends
// with timeouts t. Close it when it is no longer used.
func NewUpstream(p *pool.Pool, t Timeouts) *Upstream {
	u := &Upstream{Pool: p, Timeouts: t, transport: newTransport(t), budget: NewBudget(),
		queue: queue.New[grant](config.DefaultQueueMax, config.DefaultQueueTimeout), adm: admission.New()}
	u.queue.SetAging(admission.Aging)
	u.adaptive.Store(true)
	u.SetRetryPolicy(nil)
	return u
}

// Close drops the upstream's idle backend connections.
func (u *Upstream) Close() {
	u.transport.close()
	u.conns.closeAll()
}

// grant is a backend slot handed to a request, with the sticky cookie its
// response must carry.
type grant struct {
	b      *backend.Backend
	cookie string
}

// SetOutliers sets (or, with nil, removes) the pool's passive outlier detection.
func (u *Upstream) SetOutliers(o *health.Outliers) { u.outliers.Store(o) }

// Outliers returns the pool's passive outlier detection, or nil.
func (u *Upstream) Outliers() *health.Outliers { return u.outliers.Load() }

// SetRetryPolicy sets which failed requests are retried; nil means the zero
// policy (connect failures only).
func (u *Upstream) SetRetryPolicy(p *RetryPolicy) {
	if p == nil {
		p = &RetryPolicy{}
	}
	u.retry.Store(p)
}

// SetQueue sets the pool's waiting room: at most max requests wait up to
// timeout for a backend below its max_conns (max 0: none wait).
func (u *Upstream) SetQueue(max int, timeout time.Duration) { u.queue.SetLimits(max, timeout) }

// SetAdaptive chooses how waiting requests are admitted when the backends are
// at their max_conns: by route class (true: fast routes first, slow routes
// kept from holding every slot; see package admission) or first come, first
// served.
func (u *Upstream) SetAdaptive(on bool) { u.adaptive.Store(on) }

// Admission returns the pool's admission figures.
func (u *Upstream) Admission() admission.Stats { return u.adm.Stats(slots(u.Pool)) }

// KickQueue hands free slots to waiting requests: call it when a backend
// becomes usable (it came up, or was added), not only when a request ends.
func (u *Upstream) KickQueue() { u.queue.Signal() }

// QueueLenSlow returns how many of the waiting requests are of slow routes.
func (u *Upstream) QueueLenSlow() int { return u.queue.LaneLen(int(admission.Slow)) }

// QueueLen returns how many requests wait for a backend slot now.
func (u *Upstream) QueueLen() int { return u.queue.Len() }

// OnRefused sets what happens to a backend whose host refused a connection
// (nil: nothing): the health layer takes it out at once.
func (u *Upstream) OnRefused(f func(*backend.Backend)) {
	if f == nil {
		u.refused.Store(nil)
		return
	}
	u.refused.Store(&f)
}

// Table is a listener's routing table, swapped atomically on reload.
type Table = router.Table[*Upstream]

// Dispatcher is the engine-independent half of an HTTP listener's data path.
type Dispatcher struct {
	table    atomic.Pointer[Table]
	observer atomic.Pointer[Observer]
	clock    func() time.Time
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
	// Queued is how long the request waited in the pool's queue.
	Queued time.Duration
	// Retries counts the tries before this one.
	Retries   int
	start     time.Time
	responded time.Time // when the response header arrived (Responded)
	adm       admit
}

// admit is a request's standing with its pool's admission control.
type admit struct {
	route uint64 // admission.Key; 0 when the pool does not learn
	class admission.Class
	held  bool // counted in service (admission.Controller.Enter)
}

// Begin routes r, picks a backend and counts the request in flight on it.
// When every usable backend is at its max_conns the request waits its turn in
// the pool's queue (ctx ending gives up). Every successful Begin is paired
// with one Attempt.End.
func (d *Dispatcher) Begin(ctx context.Context, r *balancer.Request) (Attempt, error) {
	up, ok := d.table.Load().Match(r.Host, r.Path)
	if !ok {
		return Attempt{}, ErrNoRoute
	}
	if p := up.retry.Load(); p.afterSend() {
		up.budget.deposit(p.BudgetPercent)
	}
	g, waited, adm, err := up.take(ctx, r)
	if err != nil {
		return Attempt{}, err
	}
	return Attempt{Upstream: up, Backend: g.b, SetCookie: g.cookie, Queued: waited, start: d.clock(), adm: adm}, nil
}

// take picks a backend for r and counts the request in flight on it. When
// every usable backend is at its max_conns the request waits its turn in the
// queue; when none is up it fails at once. In a pool whose backends have
// max_conns, admission is adaptive unless turned off: the request's route
// class (fast or slow, learned) is its queue lane, and slow requests may hold
// only the slots fast ones do not need.
func (u *Upstream) take(ctx context.Context, r *balancer.Request) (grant, time.Duration, admit, error) {
	capacity := 0
	if u.adaptive.Load() {
		capacity = slots(u.Pool)
	}
	if capacity == 0 {
		g, waited, err := u.takeFIFO(ctx, r)
		return g, waited, admit{}, err
	}
	adm := admit{route: admission.Key(r.Method, r.Path)}
	adm.class = u.adm.Classify(adm.route)
	u.adm.Arrive(adm.class)
	lane := int(adm.class)
	if u.queue.LaneLen(0) == 0 && (adm.class == admission.Fast || u.queue.Len() == 0) {
		if u.adm.Enter(adm.class, capacity, false) {
			if b, cookie, ok := acquire(u.Pool, r); ok {
				adm.held = true
				return grant{b, cookie}, 0, adm, nil
			}
			u.adm.Leave(adm.class)
		}
		if !saturated(u.Pool) {
			return grant{}, 0, admit{}, ErrNoBackend
		}
	}
	start := time.Now()
	g, waited, err := u.queue.WaitLane(ctx, lane, func() (grant, bool) {
		if !u.adm.Enter(adm.class, slots(u.Pool), time.Since(start) > admission.Aging) {
			return grant{}, false
		}
		b, cookie, ok := acquire(u.Pool, r)
		if !ok {
			u.adm.Leave(adm.class)
		}
		return grant{b, cookie}, ok
	})
	if err != nil {
		return grant{}, waited, admit{}, queueError(err)
	}
	adm.held = true
	return g, waited, adm, nil
}

// takeFIFO is take with first come, first served admission.
func (u *Upstream) takeFIFO(ctx context.Context, r *balancer.Request) (grant, time.Duration, error) {
	if u.queue.Len() == 0 {
		if b, cookie, ok := acquire(u.Pool, r); ok {
			return grant{b, cookie}, 0, nil
		}
		if !saturated(u.Pool) {
			return grant{}, 0, ErrNoBackend
		}
	}
	g, waited, err := u.queue.Wait(ctx, func() (grant, bool) {
		b, cookie, ok := acquire(u.Pool, r)
		return grant{b, cookie}, ok
	})
	if err != nil {
		return grant{}, waited, queueError(err)
	}
	return g, waited, nil
}

// queueError words a failed wait in the queue.
func queueError(err error) error {
	if errors.Is(err, queue.ErrFull) || errors.Is(err, queue.ErrTimeout) {
		return errors.Join(ErrQueue, err)
	}
	return errors.Join(ErrClientGone, err)
}

// slots is how many requests p's usable backends take at once, when every
// one of them has a max_conns; 0 when one has none (nothing is ever queued
// for long, so admission has nothing to decide) or none is up.
func slots(p *pool.Pool) int {
	n := 0
	for _, b := range p.Snapshot().Backends {
		if b.State() != backend.StateUp || b.Backup() {
			continue
		}
		m := b.MaxConns()
		if m == 0 {
			return 0
		}
		n += m
	}
	return n
}

// pickTries bounds how often a request picks again when the backend it
// picked filled its last free slot (max_conns) in the meantime.
const pickTries = 3

// acquire picks a backend of p for r and counts the request in flight on it,
// never exceeding the backend's max_conns.
func acquire(p *pool.Pool, r *balancer.Request) (*backend.Backend, string, bool) {
	for range pickTries {
		b, cookie := p.Pick(r)
		if b == nil {
			break
		}
		if b.TryAcquire() {
			return b, cookie, true
		}
	}
	return nil, "", false
}

// saturated reports whether p has a backend that is up but at its max_conns,
// or one that is starting (a launched process, or an added backend, about to
// pass its health check): a request that found no usable backend then waits
// for a slot, rather than failing as it does when every backend is down.
func saturated(p *pool.Pool) bool {
	for _, b := range p.Snapshot().Backends {
		switch b.State() {
		case backend.StateUp:
			if b.MaxConns() > 0 {
				return true
			}
		case backend.StateStarting:
			return true
		}
	}
	return false
}

// Responded records that the backend's response header arrived: the time since
// Begin is the backend's response time, which least_time follows.
func (d *Dispatcher) Responded(a *Attempt) {
	now := d.clock()
	a.responded = now
	a.Backend.ObserveLatency(now.Sub(a.start), now)
	if a.adm.route != 0 {
		a.Upstream.adm.Observe(a.adm.route, a.adm.class, now.Sub(a.start))
	}
}

// End finishes an attempt: the request is no longer in flight on the backend,
// and its slot goes to the oldest request waiting in the queue. status is the
// backend's status code (0 if none arrived); err the failure, if any. A failure
// the client caused (it went away, sent a malformed or too large body: a
// status below 500) is not held against the backend; a refused connection
// takes the backend out at once.
func (d *Dispatcher) End(a *Attempt, status int, err error) {
	failed := status >= 500 || err != nil && StatusFor(err) >= 500
	a.Backend.CountResponse(status)
	if a.adm.held {
		a.adm.held = false
		a.Upstream.adm.Leave(a.adm.class) // before release hands the slot on
	}
	a.Upstream.release(a.Backend, failed, err)
}

// release ends a request (or TCP connection) on b: its slot goes to the oldest
// waiter, and the health layer hears of the outcome.
func (u *Upstream) release(b *backend.Backend, failed bool, err error) {
	b.Release(failed)
	u.queue.Signal()
	if err != nil && isRefused(err) {
		if f := u.refused.Load(); f != nil {
			(*f)(b)
		}
	}
	if o := u.outliers.Load(); o != nil {
		o.Report(b, failed)
	}
}

// maxTries bounds how many backends one request tries.
const maxTries = 1 + max(config.MaxRetryAttempts, minConnectRetries)

// Tried is the set of backends a request has been sent to (or tried to be).
type Tried struct {
	n  int
	bs [maxTries]*backend.Backend
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

// Retries returns how many backends were tried after the first.
func (t *Tried) Retries() int { return max(t.n-1, 0) }

// Failure describes why an attempt failed, for the retry decision.
type Failure struct {
	Kind FailureKind
	// Status is the backend's status code for FailStatus.
	Status int
	// Replayable reports that the request can be sent again exactly: its
	// method is allowed by the policy and its body (if any) was kept.
	Replayable bool
	// Err is the failure itself, for the log.
	Err error
}

// RetryAllowed reports whether the policy lets a sent request be retried
// after failing with kind (status for FailStatus), given its method. It does
// not look at the budget or at the other backends: Retry does.
func (u *Upstream) RetryAllowed(kind FailureKind, status int, method []byte) bool {
	p := u.retry.Load()
	if p == nil || !p.covers(kind, status) {
		return false
	}
	return !p.IdempotentOnly || Idempotent(method)
}

// mayRetrySent reports whether a sent request with method could ever be
// retried: only then is its body worth keeping.
func (u *Upstream) mayRetrySent(method string) bool {
	p := u.retry.Load()
	return p != nil && p.afterSend() && (!p.IdempotentOnly || Idempotent([]byte(method)))
}

// Retry starts a new attempt for a request whose attempt a failed, on a backend
// of the same pool that it has not tried yet: a connect failure always (nothing
// was sent), a sent request only when f is replayable, the policy covers the
// failure, attempts remain and the retry budget has a token. It returns
// ErrNoBackend when the request must not or cannot be retried; the caller then
// answers with the original failure. The caller ends a (End) once it has the
// new attempt.
func (d *Dispatcher) Retry(a *Attempt, r *balancer.Request, tried *Tried, f Failure) (Attempt, error) {
	up := a.Upstream
	p := up.retry.Load()
	if p == nil {
		p = &RetryPolicy{}
	}
	limit := max(p.Attempts, minConnectRetries)
	budgeted := f.Kind != FailConnect
	if budgeted {
		if !f.Replayable || !p.covers(f.Kind, f.Status) {
			return Attempt{}, ErrNoBackend
		}
		limit = p.Attempts
	}
	if tried.Retries() >= limit || tried.n == len(tried.bs) {
		return Attempt{}, ErrNoBackend
	}
	if budgeted && (p.BudgetPercent == 0 || !up.budget.withdraw(d.clock())) {
		return Attempt{}, errors.Join(ErrNoBackend, errBudget)
	}
	b, cookie := pickUntried(up.Pool, r, tried)
	if b == nil {
		if budgeted {
			up.budget.refund()
		}
		return Attempt{}, ErrNoBackend
	}
	tried.Add(b)
	adm := a.adm // the request keeps its admission; a's End must not give it back
	a.adm.held = false
	return Attempt{Upstream: up, Backend: b, SetCookie: cookie, Retries: tried.Retries(), start: d.clock(), adm: adm}, nil
}

// errBudget: the retry budget is spent.
var errBudget = errors.New("retry budget exhausted")

// pickUntried picks and acquires a usable backend of p that tried does not
// hold. The balancer usually offers another backend (rotation, load); a hash
// keeps offering the same one, so it falls back to the first usable other
// primary, then backup.
func pickUntried(p *pool.Pool, r *balancer.Request, tried *Tried) (*backend.Backend, string) {
	for range pickTries {
		b, cookie := p.Pick(r)
		if b == nil {
			break
		}
		if !tried.Has(b) && b.TryAcquire() {
			return b, cookie
		}
	}
	bs := p.Snapshot().Backends
	for _, backup := range [2]bool{false, true} {
		for _, b := range bs {
			if b.Backup() == backup && !tried.Has(b) && b.Usable() && b.TryAcquire() {
				return b, ""
			}
		}
	}
	return nil, ""
}
