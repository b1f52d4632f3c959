package backend

import (
	"math"
	"math/bits"
	"time"
)

// Slow start: a backend that comes back up (or joins a pool at run time)
// gets a share of the traffic that ramps up linearly from RampFloor to
// RampFull permille of its normal share over the pool's slow_start, so a
// cold cache or a JIT that is still warming up is not hit with its full
// load at once. Balancers read the share with Ramp (or Ramping and RampAt)
// on every pick, so a backend that is not ramping must cost one atomic load.

// Ramp values, in permille of a backend's normal share.
const (
	// RampFull is the share of a backend that is not ramping.
	RampFull = 1000
	// RampFloor is the share at the start of a ramp: not zero, so the
	// backend gets some traffic at once and its health and latency are
	// measured from the start.
	RampFloor = 100
)

// SlowStart returns the length of the ramp a backend gets when it comes back
// up, 0 when slow start is off.
func (b *Backend) SlowStart() time.Duration { return time.Duration(b.slowStart.Load()) }

// SetSlowStart sets the length of the ramp; 0 (or less) turns slow start off
// and ends a ramp in progress at once. A ramp in progress keeps its window
// when the length changes to another non-zero value; the new length applies
// from the next ramp. Pools set it on every backend when they publish a
// snapshot.
func (b *Backend) SetSlowStart(d time.Duration) {
	if d <= 0 {
		b.slowStart.Store(0)
		b.rampEnd.Store(0)
		return
	}
	b.slowStart.Store(int64(d))
}

// StartRamp starts a ramp now, when slow start is on: what a pool does for a
// backend added at run time. SetState and CompareAndSwapState call it when the
// state changes to up.
func (b *Backend) StartRamp() {
	if b.slowStart.Load() > 0 {
		b.StartRampAt(time.Now())
	}
}

// StartRampAt starts a ramp at now, when slow start is on (StartRamp with the
// clock passed in). A ramp already in progress starts again.
func (b *Backend) StartRampAt(now time.Time) {
	d := b.slowStart.Load()
	if d <= 0 {
		return
	}
	start := now.UnixNano()
	// Start before end: a reader that sees the new end also sees the new
	// start. One that still sees the old end with the new start gets some
	// share in [RampFloor, RampFull), as RampAt computes it.
	end := start + d
	if end < start { // a slow start of centuries
		end = math.MaxInt64
	}
	b.rampStart.Store(start)
	b.rampEnd.Store(end)
}

// Ramping reports whether a ramp may be in progress: one atomic load, what a
// balancer checks before it reads the clock for RampAt. It stays true after
// the window has passed until the first Ramp or RampAt call notices.
func (b *Backend) Ramping() bool { return b.rampEnd.Load() != 0 }

// Ramp returns the backend's current share in permille of its normal share:
// RampFull when it is not ramping, otherwise rising linearly from RampFloor
// at the start of the ramp to RampFull at its end. The clock is read only
// while a ramp is in progress.
func (b *Backend) Ramp() int32 {
	if b.rampEnd.Load() == 0 {
		return RampFull
	}
	return b.RampAt(time.Now())
}

// RampAt is Ramp at the time now. Once now has reached the end of the ramp,
// the ramp is over for good (Ramping reports false until the next one).
func (b *Backend) RampAt(now time.Time) int32 {
	end := b.rampEnd.Load()
	if end == 0 {
		return RampFull
	}
	ns := now.UnixNano()
	if ns >= end {
		b.rampEnd.CompareAndSwap(end, 0) // a new ramp started meanwhile wins
		return RampFull
	}
	start := b.rampStart.Load()
	if ns <= start || end <= start {
		return RampFloor
	}
	// (ns-start)·900/(end-start) in 128 bits: the product would overflow an
	// int64 for a ramp longer than about 118 days. The quotient is below 900.
	hi, lo := bits.Mul64(uint64(ns-start), RampFull-RampFloor)
	q, _ := bits.Div64(hi, lo, uint64(end-start))
	return RampFloor + int32(q)
}
