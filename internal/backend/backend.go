// Package backend holds one upstream server's identity and its live counters.
//
// A *Backend is shared by every snapshot that names it: the pool registry keeps the
// same pointer across reloads and run-time changes, so health state, in-flight counts
// and latency history survive them. Every mutable field is an atomic; the request
// path reads and updates a Backend without taking a lock.
package backend

import (
	"context"
	"math"
	"sync/atomic"
	"time"
)

// State is a backend's administrative and health state (see CONTRACT.md).
type State int32

// Backend states. Only StateUp receives new requests.
const (
	StateUp       State = iota // healthy and in rotation
	StateDown                  // failed active health checks
	StateEjected               // ejected by passive outlier detection
	StateDraining              // no new requests; in-flight ones finish
	StateStarting              // launched by ballast, not yet healthy
)

var stateNames = [...]string{"up", "down", "ejected", "draining", "starting"}

// String returns the contract's lower-case name of s.
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// Backend is one upstream server (an address) inside one pool.
type Backend struct {
	// Addr is the backend's host:port. Immutable.
	Addr string
	// ID is a short stable identifier derived from the pool name and Addr; sticky
	// cookies carry it. Immutable.
	ID string

	weight   atomic.Int32
	maxConns atomic.Int32
	state    atomic.Int32
	backup   atomic.Bool

	inFlight  atomic.Int64
	rampEnd   atomic.Int64 // slow-start ramp's end, Unix ns, 0 = none; read on every pick
	requests  atomic.Uint64
	failures  atomic.Uint64
	streak    atomic.Int32 // failed exchanges in a row
	ejections atomic.Int32 // passive ejections so far

	// latency EWMA in nanoseconds (float64 bits) and the time of its last update
	// (Unix nanoseconds); see ObserveLatency.
	ewmaBits   atomic.Uint64
	ewmaUpdate atomic.Int64

	// slow start: the ramp's length (nanoseconds, 0 = off) and the start of
	// the current ramp (Unix nanoseconds); see Ramp and rampEnd.
	slowStart atomic.Int64
	rampStart atomic.Int64

	// responses counts exchanges by outcome: [0] no response (connect error,
	// reset, timeout), [1]..[5] by status class 1xx..5xx; see CountResponse.
	responses [6]atomic.Uint64
}

// New returns a backend in state up with the given weight (values below 1 count as 1).
func New(pool, addr string, weight int) *Backend {
	b := &Backend{Addr: addr, ID: StickyID(pool, addr)}
	b.SetWeight(weight)
	return b
}

// Weight returns the backend's configured weight (>= 1).
func (b *Backend) Weight() int { return int(b.weight.Load()) }

// SetWeight changes the weight; values below 1 count as 1. Balancers read weights
// when they are built, so a change takes effect with the next snapshot.
func (b *Backend) SetWeight(w int) {
	b.weight.Store(int32(min(max(w, 1), math.MaxInt32)))
}

// Backup reports whether the backend is a backup: it gets traffic only while no
// primary backend of its pool is usable.
func (b *Backend) Backup() bool { return b.backup.Load() }

// SetBackup marks the backend as a backup (or a primary). Pools read the mark
// when they build a snapshot.
func (b *Backend) SetBackup(v bool) { b.backup.Store(v) }

// MaxConns returns the per-backend concurrency limit, 0 meaning unlimited.
func (b *Backend) MaxConns() int { return int(b.maxConns.Load()) }

// SetMaxConns sets the per-backend concurrency limit (0 = unlimited; values
// beyond MaxInt32 are clamped to it).
func (b *Backend) SetMaxConns(n int) { b.maxConns.Store(int32(min(max(n, 0), math.MaxInt32))) }

// State returns the current state.
func (b *Backend) State() State { return State(b.state.Load()) }

// SetState changes the state and reports the previous one. A change to up
// from any other state starts a slow-start ramp (see Ramp).
func (b *Backend) SetState(s State) State {
	prev := State(b.state.Swap(int32(s)))
	if s == StateUp && prev != StateUp {
		b.StartRamp()
	}
	return prev
}

// CompareAndSwapState changes the state to to only if it is from, and
// reports whether it did: what a health check uses, so that it never
// overrides a drain or an ejection made at the same moment. A change to up
// from any other state starts a slow-start ramp (see Ramp).
func (b *Backend) CompareAndSwapState(from, to State) bool {
	if !b.state.CompareAndSwap(int32(from), int32(to)) {
		return false
	}
	if to == StateUp && from != StateUp {
		b.StartRamp()
	}
	return true
}

// Usable reports whether the backend may receive a new request now: it is up
// and, if it has a concurrency limit, below it.
func (b *Backend) Usable() bool {
	if State(b.state.Load()) != StateUp {
		return false
	}
	if m := b.maxConns.Load(); m > 0 && b.inFlight.Load() >= int64(m) {
		return false
	}
	return true
}

// InFlight returns the number of requests (or TCP connections) being served now.
func (b *Backend) InFlight() int64 { return b.inFlight.Load() }

// idlePoll is how often WaitIdle looks at the in-flight count.
const idlePoll = 10 * time.Millisecond

// WaitIdle returns nil once no request is in flight on the backend, or
// ctx.Err() when ctx is done first. It polls every 10 ms: it is meant for a
// drain, off the request path, where a wake-up per Release would cost every
// request for the benefit of a rare caller.
func (b *Backend) WaitIdle(ctx context.Context) error {
	if b.InFlight() <= 0 {
		return nil
	}
	t := time.NewTicker(idlePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if b.InFlight() <= 0 {
				return nil
			}
		}
	}
}

// Requests returns the total number of requests sent to the backend.
func (b *Backend) Requests() uint64 { return b.requests.Load() }

// Failures returns the total number of failed exchanges with the backend.
func (b *Backend) Failures() uint64 { return b.failures.Load() }

// Acquire counts a new request in flight, whatever the backend's limit. Every
// Acquire is paired with one Release.
func (b *Backend) Acquire() {
	b.inFlight.Add(1)
	b.requests.Add(1)
}

// TryAcquire counts a new request in flight unless that would exceed
// max_conns; it reports whether it did. Balancers pick only backends below
// their limit, but two requests can pick the same last free slot at once:
// this compare-and-swap is what actually holds the limit. A successful
// TryAcquire is paired with one Release.
func (b *Backend) TryAcquire() bool {
	m := int64(b.maxConns.Load())
	if m <= 0 {
		b.Acquire()
		return true
	}
	for {
		cur := b.inFlight.Load()
		if cur >= m {
			return false
		}
		if b.inFlight.CompareAndSwap(cur, cur+1) {
			b.requests.Add(1)
			return true
		}
	}
}

// Release ends a request begun with Acquire. failed reports a failed exchange
// (connect error, reset, timeout, 5xx from the backend).
func (b *Backend) Release(failed bool) {
	b.inFlight.Add(-1)
	if failed {
		b.failures.Add(1)
		b.streak.Add(1)
	} else if b.streak.Load() != 0 {
		b.streak.Store(0)
	}
}

// FailureStreak returns how many exchanges in a row have failed.
func (b *Backend) FailureStreak() int { return int(b.streak.Load()) }

// ResetFailureStreak starts the count of failures in a row again.
func (b *Backend) ResetFailureStreak() { b.streak.Store(0) }

// CountEjection records a passive ejection and returns how many there have been.
func (b *Backend) CountEjection() int { return int(b.ejections.Add(1)) }

// latencyTau is the time constant of the latency average: a sample's influence
// falls to 1/e after this long, so the average follows a backend that slows down
// or recovers within seconds, whatever the request rate.
const latencyTau = 10 * time.Second

// ObserveLatency folds one response time into the time-decaying average.
// The weight of the old average is exp(-Δt/τ) with τ = 10s, so it decays by
// elapsed time rather than by sample count.
func (b *Backend) ObserveLatency(d time.Duration, now time.Time) {
	ns := now.UnixNano()
	sample := float64(d)
	for {
		oldBits := b.ewmaBits.Load()
		last := b.ewmaUpdate.Load()
		var next float64
		if last == 0 {
			next = sample
		} else {
			dt := float64(ns - last)
			if dt < 0 {
				dt = 0
			}
			w := math.Exp(-dt / float64(latencyTau))
			// Keep at least a little of each new sample even when many arrive
			// in the same instant, so bursts still move the average.
			w = min(w, 0.9)
			next = math.Float64frombits(oldBits)*w + sample*(1-w)
		}
		if b.ewmaBits.CompareAndSwap(oldBits, math.Float64bits(next)) {
			b.ewmaUpdate.Store(ns)
			return
		}
	}
}

// Latency returns the decaying average response time, or 0 before any sample.
func (b *Backend) Latency() time.Duration {
	if b.ewmaUpdate.Load() == 0 {
		return 0
	}
	return time.Duration(math.Float64frombits(b.ewmaBits.Load()))
}
