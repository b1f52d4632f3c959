package balancer

import (
	"math/bits"
	"sync/atomic"

	"ballast/internal/backend"
)

// LeastTime is the least_time algorithm: the usable backend with the lowest
// recent response time multiplied by its requests in flight plus one, so a fast
// backend that is already busy loses to a slightly slower idle one. The response
// time is the backend's time-decaying average (backend.ObserveLatency). Cost per
// pick: O(n).
//
// A backend without a latency sample yet scores 0 and is tried first (among
// those, the one with fewer in flight), so a new or restarted backend is
// measured at once.
//
// Trickle: the average only moves when a backend answers requests, so a backend
// that was slow and then never picked again could never show that it recovered.
// Every 32nd pick is therefore a plain round-robin pick over the usable
// backends, which sends each backend at least about 1/(32·n) of the traffic and
// keeps its average current.
//
// A ramping backend (slow start) has its score divided by ramp/1000, as if
// it had that fraction of the capacity. A ramping backend without a sample
// still scores 0: it must be measured before its score means anything. The
// trickle picks ignore ramps.
//
// Ties rotate as in least_conn.
type LeastTime struct {
	bs    []*backend.Backend
	picks atomic.Uint64
	rampGate
}

var _ Balancer = (*LeastTime)(nil)

// leastTimeTrickle is the period of the round-robin picks (see LeastTime).
const leastTimeTrickle = 32

// NewLeastTime returns a least-time balancer over bs. Ramps are read against
// the system clock; New takes the clock from its Options.
func NewLeastTime(bs []*backend.Backend) *LeastTime {
	return &LeastTime{bs: bs}
}

// Pick returns the usable backend with the lowest latency × (in-flight+1), or
// every 32nd time the next one in rotation; nil when none is usable.
func (lt *LeastTime) Pick(_ *Request) *backend.Backend {
	n := len(lt.bs)
	if n == 0 {
		return nil
	}
	c := lt.picks.Add(1) - 1
	if c%leastTimeTrickle == leastTimeTrickle-1 {
		if i := scanUsable(lt.bs, int(c/leastTimeTrickle%uint64(n))); i >= 0 {
			return lt.bs[i]
		}
		return nil
	}
	var best *backend.Backend
	var bestHi, bestLo uint64
	var bestLoad int64
	start := int(c % uint64(n))
	j := start
	for range n {
		b := lt.bs[j]
		if j++; j == n {
			j = 0
		}
		if !b.Usable() {
			continue
		}
		load := b.InFlight()
		// A 128-bit product cannot overflow, whatever the latency and load.
		hi, lo := bits.Mul64(uint64(max(b.Latency(), 0)), uint64(max(load, 0))+1)
		if best == nil || hi < bestHi || hi == bestHi && (lo < bestLo || lo == bestLo && load < bestLoad) {
			best, bestHi, bestLo, bestLoad = b, hi, lo, load
		}
	}
	if best != nil && best.Ramping() {
		return lt.pickRamping(start)
	}
	return best
}

// pickRamping is Pick's scan again when its winner is ramping: each score is
// divided by the backend's ramp/1000. Without ramps it picks what Pick picks.
func (lt *LeastTime) pickRamping(start int) *backend.Backend {
	now := lt.now()
	var best *backend.Backend
	var bestScore timeScore
	n, j := len(lt.bs), start
	for range n {
		b := lt.bs[j]
		if j++; j == n {
			j = 0
		}
		if !b.Usable() {
			continue
		}
		sc := timeScore{load: newLoad(b), share: uint64(b.RampAt(now))}
		sc.hi, sc.lo = bits.Mul64(uint64(max(b.Latency(), 0)), sc.load)
		if best == nil || sc.less(bestScore) {
			best, bestScore = b, sc
		}
	}
	return best
}

// timeScore is a backend's latency × (in-flight + 1) as a 128-bit number
// (hi, lo), to be divided by share, its ramp in permille.
type timeScore struct {
	hi, lo      uint64
	load, share uint64 // in-flight + 1; ramp
}

// less reports whether s/s.share is below t/t.share, and on a tie whether s
// has the lower load/share (fewer in flight, relative to its ramp). The cross
// products take 192 bits.
func (s timeScore) less(t timeScore) bool {
	a2, a1, a0 := mul128x64(s.hi, s.lo, t.share)
	b2, b1, b0 := mul128x64(t.hi, t.lo, s.share)
	switch {
	case a2 != b2:
		return a2 < b2
	case a1 != b1:
		return a1 < b1
	case a0 != b0:
		return a0 < b0
	}
	return lessLoaded(s.load, s.share, t.load, t.share)
}

// mul128x64 returns the 192-bit product (w2, w1, w0) of the 128-bit (hi, lo)
// and m.
func mul128x64(hi, lo, m uint64) (w2, w1, w0 uint64) {
	c0, w0 := bits.Mul64(lo, m)
	w2, l1 := bits.Mul64(hi, m)
	w1, carry := bits.Add64(l1, c0, 0)
	return w2 + carry, w1, w0
}
