// Package admission decides which waiting request gets a pool's next free
// backend slot when the backends are at their max_conns.
//
// A FIFO queue lets slow requests (a report that takes 300 ms) fill every
// slot, and then a 5 ms API call waits behind them; priority alone does not
// help when every slot already holds a slow request. The Controller learns,
// per route (method and path, with ids folded), how long requests take; it
// lets requests of fast routes go first, and it keeps requests of slow routes
// from holding every slot: they may use all but a reserve sized from the fast
// routes' measured demand (arrival rate × service time, at least one slot).
// So that slow requests cannot starve, one that has waited longer than the
// aging bound may take the reserve too, and goes before fast ones.
//
// Everything on the request path is atomic: no lock, no allocation.
package admission

import (
	"math"
	"sync/atomic"
	"time"
)

// Class is a request's admission class; it doubles as its queue lane.
type Class int

// Classes, in priority order.
const (
	Fast Class = 0
	Slow Class = 1
)

// Tuning. A route is slow when its typical service time is at least
// slowFactor times the pool's typical request's and at least slowFloor (both
// geometric means over recent requests): a route merely a little slower than
// the rest stays fast.
const (
	slowFactor = 4
	slowFloor  = 20 * time.Millisecond
	// alpha is the weight of one sample in a route's moving average.
	alpha = 0.1
	// baseAlpha is its weight in the pool's typical request time: small, so
	// that the baseline spans many requests of every route.
	baseAlpha = 0.01
	// minSamples: a route is classified from this many samples on; before,
	// it is fast (optimistic: a new route is not held back).
	minSamples = 5
	// window is the period over which the fast routes' arrival rate is counted.
	window = time.Second
	// idleAfter: with no fast request for this long, no slot is reserved.
	idleAfter = 10 * time.Second
	// tableBits sizes the route table (1 << tableBits routes per pool); a
	// route that finds no room is treated as fast.
	tableBits = 10
	probes    = 8
)

// Aging is how long a slow request may wait before it goes ahead of fast
// ones and may take the reserved slots.
const Aging = time.Second

// route is one learned route.
type route struct {
	key     atomic.Uint64 // 0: free
	logAvg  atomic.Uint64 // float64 bits: moving average of ln(service time in seconds)
	samples atomic.Uint64
}

// Controller is one pool's admission state.
type Controller struct {
	routes [1 << tableBits]route

	fastEWMA atomic.Uint64 // float64 bits: service time of fast requests, seconds
	baseLog  atomic.Uint64 // float64 bits: moving average of ln(service time in seconds), every request
	baseN    atomic.Uint64

	slowIn atomic.Int64 // slow requests in service
	fastIn atomic.Int64 // fast requests in service

	slowEWMA atomic.Uint64 // float64 bits: service time of slow requests, seconds
	fast     rateWindow    // fast arrivals
	slow     rateWindow    // slow arrivals

	now func() time.Time
}

// New returns a controller that knows no route yet.
func New() *Controller { return &Controller{now: time.Now} }

// Key identifies the route of a request: its method and path, without the
// query, with segments that look like ids (numbers, long hex strings, UUIDs)
// folded, so that /users/17 and /users/42 are one route. Never 0.
func Key(method, path string) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(method); i++ {
		h = (h ^ uint64(method[i])) * prime
	}
	h = (h ^ ' ') * prime
	for i := 0; i < len(path); {
		if path[i] == '?' {
			break
		}
		if path[i] != '/' {
			h = (h ^ uint64(path[i])) * prime
			i++
			continue
		}
		h = (h ^ '/') * prime
		i++
		j := i
		for j < len(path) && path[j] != '/' && path[j] != '?' {
			j++
		}
		if isID(path[i:j]) {
			h = (h ^ 0xff) * prime // one marker for every id
			i = j
		}
	}
	if h == 0 {
		h = 1
	}
	return h
}

// isID reports whether a path segment looks like an identifier: all digits,
// or 16 or more hex digits and dashes (hashes, UUIDs).
func isID(s string) bool {
	if s == "" {
		return false
	}
	digits, hex := true, len(s) >= 16
	for i := 0; i < len(s); i++ {
		c := s[i]
		isDigit := c >= '0' && c <= '9'
		if !isDigit {
			digits = false
		}
		if !isDigit && !(c >= 'a' && c <= 'f') && !(c >= 'A' && c <= 'F') && c != '-' {
			hex = false
		}
	}
	return digits || hex
}

// lookup returns the route for key, adding it if there is room; nil when the
// table has no room near its slot.
func (c *Controller) lookup(key uint64, add bool) *route {
	mask := uint64(len(c.routes) - 1)
	for i := range uint64(probes) {
		r := &c.routes[(key+i)&mask]
		switch k := r.key.Load(); {
		case k == key:
			return r
		case k == 0:
			if !add {
				return nil
			}
			if r.key.CompareAndSwap(0, key) || r.key.Load() == key {
				return r
			}
		}
	}
	return nil
}

// Classify returns the class of the route with key.
func (c *Controller) Classify(key uint64) Class {
	r := c.lookup(key, false)
	if r == nil || r.samples.Load() < minSamples {
		return Fast
	}
	// Both in the log domain: a route's typical time, like the pool's, is a
	// geometric mean, which its occasional outliers barely move; a route
	// with a few slow requests among many fast ones stays fast.
	lat := math.Float64frombits(r.logAvg.Load())
	typical := math.Float64frombits(c.baseLog.Load())
	if lat >= math.Log(slowFloor.Seconds()) && lat >= math.Log(slowFactor)+typical {
		return Slow
	}
	return Fast
}

// Observe records that a request of route key, admitted as class, took d
// (from being sent to the backend to its response header).
func (c *Controller) Observe(key uint64, class Class, d time.Duration) {
	sec := d.Seconds()
	if r := c.lookup(key, true); r != nil {
		first := r.samples.Add(1) == 1
		ewmaAdd(&r.logAvg, math.Log(max(sec, 1e-6)), first, alpha)
	}
	if class == Fast {
		ewmaAdd(&c.fastEWMA, sec, c.fastEWMA.Load() == 0, alpha)
	} else {
		ewmaAdd(&c.slowEWMA, sec, c.slowEWMA.Load() == 0, alpha)
	}
	ewmaAdd(&c.baseLog, math.Log(max(sec, 1e-6)), c.baseN.Add(1) == 1, baseAlpha)
}

// ewmaAdd folds x into the moving average stored (as float64 bits) in v.
func ewmaAdd(v *atomic.Uint64, x float64, first bool, alpha float64) {
	for {
		old := v.Load()
		next := x
		if !first {
			next = math.Float64frombits(old)*(1-alpha) + x*alpha
		}
		if v.CompareAndSwap(old, math.Float64bits(next)) {
			return
		}
	}
}

// slowUtilization is the busiest the slots left to slow requests should be:
// the reserve never grows so large that slow requests, at their measured
// rate and service time, would keep more than this share of their slots
// busy (beyond it their wait grows without bound).
const slowUtilization = 0.75

// reserve is how many of capacity slots are kept from slow requests: what
// fast requests need, as measured (their arrival rate times their service
// time, rounded up), but never so many that the slow requests' own need (the
// same product, at slowUtilization) does not fit in the rest; at least 1 while
// fast requests come, 0 when none came for idleAfter.
func (c *Controller) reserve(now int64, capacity int) int {
	if now-c.fast.last.Load() > int64(idleAfter) {
		return 0
	}
	fastNeed := int(math.Ceil(c.fast.rate(now) * math.Float64frombits(c.fastEWMA.Load())))
	slowNeed := int(math.Ceil(c.slow.rate(now) * math.Float64frombits(c.slowEWMA.Load()) / slowUtilization))
	return max(1, min(fastNeed, capacity-slowNeed))
}

// rateWindow counts arrivals per window; the rate is the busier of the last
// full window and the current one.
type rateWindow struct {
	start atomic.Int64 // unix nanoseconds
	count atomic.Int64
	prev  atomic.Int64 // arrivals in the previous window
	last  atomic.Int64 // unix nanoseconds of the last arrival
}

func (w *rateWindow) add(now int64) {
	w.last.Store(now)
	start := w.start.Load()
	if now-start >= int64(window) && w.start.CompareAndSwap(start, now) {
		n := w.count.Swap(0)
		if now-start >= 2*int64(window) {
			n = 0 // a whole window without arrivals
		}
		w.prev.Store(n)
	}
	w.count.Add(1)
}

// rate is arrivals per second.
func (w *rateWindow) rate(now int64) float64 {
	if now-w.last.Load() > 2*int64(window) {
		return 0
	}
	return float64(max(w.prev.Load(), w.count.Load())) / window.Seconds()
}

// Arrive counts a request of class arriving at the pool (once per request):
// the arrival rates size the reserve.
func (c *Controller) Arrive(class Class) {
	now := c.now().UnixNano()
	if class == Fast {
		c.fast.add(now)
	} else {
		c.slow.add(now)
	}
}

// Enter admits a request of class into service in a pool whose usable
// backends have capacity slots in all: a fast one always (the backend slot
// itself is the limit), a slow one only while slow requests hold fewer than
// capacity minus the fast routes' reserve, or all of capacity once aged (it
// waited Aging). Every Enter that returns true is paired with one Leave.
func (c *Controller) Enter(class Class, capacity int, aged bool) bool {
	if class == Fast {
		c.fastIn.Add(1)
		return true
	}
	limit := capacity
	if !aged {
		limit = capacity - c.reserve(c.now().UnixNano(), capacity)
	}
	limit = max(limit, 1) // a slow request can always run somewhere
	for {
		n := c.slowIn.Load()
		if n >= int64(limit) {
			return false
		}
		if c.slowIn.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Leave ends a request admitted with Enter.
func (c *Controller) Leave(class Class) {
	if class == Slow {
		c.slowIn.Add(-1)
	} else {
		c.fastIn.Add(-1)
	}
}

// Stats are a controller's figures, for the admin API and tests.
type Stats struct {
	SlowInService, FastInService int
	// Reserve is the slots kept from slow requests now (of capacity).
	Reserve int
	// FastLatency is the fast routes' recent service time.
	FastLatency time.Duration
}

// Stats returns the controller's figures now, for a pool of capacity slots.
func (c *Controller) Stats(capacity int) Stats {
	return Stats{
		SlowInService: int(c.slowIn.Load()), FastInService: int(c.fastIn.Load()),
		Reserve:     c.reserve(c.now().UnixNano(), capacity),
		FastLatency: time.Duration(math.Float64frombits(c.fastEWMA.Load()) * float64(time.Second)),
	}
}
