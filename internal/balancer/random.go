package balancer

import (
	"slices"

	"ballast/internal/backend"
)

// Random is the random algorithm: each pick draws a backend at random with
// probability proportional to its weight, from cumulative weights built when
// the balancer is built. Cost per pick: O(log n) (a binary search), plus a scan
// when the drawn backend is unusable.
//
// When the drawn backend is unusable the pick takes the next usable one in list
// order, so its share goes to its neighbour; that keeps a pick to one draw.
//
// A ramping backend (slow start) that is drawn is kept with probability
// ramp/1000; otherwise the pick draws once more over the usable backends with
// weights weight × ramp/1000 (O(n), only while a ramp runs). Together the two
// draws pick every backend with probability proportional to weight × ramp.
type Random struct {
	bs    []*backend.Backend
	cum   []uint64 // cum[i] = weight of bs[0..i]
	total uint64
	rnd   Rand
	rampGate
}

var _ Balancer = (*Random)(nil)

// NewRandom returns a weighted random balancer over bs drawing from rnd, which
// must be safe for concurrent use when Pick is called concurrently. Ramps are
// read against the system clock; New takes the clock from its Options.
func NewRandom(bs []*backend.Backend, rnd Rand) *Random {
	cum := make([]uint64, len(bs))
	var total uint64
	for i, b := range bs {
		total += uint64(b.Weight())
		cum[i] = total
	}
	return &Random{bs: bs, cum: cum, total: total, rnd: rnd, rampGate: rampGate{rnd: rnd}}
}

// Pick returns a weighted random usable backend, or nil when none is usable.
func (r *Random) Pick(_ *Request) *backend.Backend {
	if len(r.bs) == 0 {
		return nil
	}
	x := uint64(reduce(r.rnd.Uint64(), int(r.total)))
	// The first i with cum[i] > x, that is cum[i] >= x+1.
	i, _ := slices.BinarySearch(r.cum, x+1)
	if !r.bs[i].Usable() {
		if i = scanUsable(r.bs, i); i < 0 {
			return nil
		}
	}
	if b := r.bs[i]; r.admit(b) {
		return b
	}
	return r.rampDraw(i)
}

// rampDraw picks after the backend at drawn, which is ramping, lost its draw:
// one draw over the usable backends weighted by weight × ramp. When a drawn
// backend is admitted with probability ramp/1000 and this draw follows every
// refusal, backend k is picked with probability exactly w_k·r_k / Σ w·r.
func (r *Random) rampDraw(drawn int) *backend.Backend {
	now := r.now() // one reading, so both passes see the same ramps
	var sum uint64
	for i, b := range r.bs {
		if b.Usable() {
			sum += r.weight(i) * uint64(b.RampAt(now))
		}
	}
	if sum > 0 {
		x := uint64(reduce(r.rnd.Uint64(), int(sum)))
		for i, b := range r.bs {
			if !b.Usable() {
				continue
			}
			w := r.weight(i) * uint64(b.RampAt(now))
			if x < w {
				return b
			}
			x -= w
		}
	}
	// States changed between the passes: a ramp never makes a pick fail.
	return r.bs[drawn]
}

// weight returns the weight of bs[i] as the balancer was built with it.
func (r *Random) weight(i int) uint64 {
	if i == 0 {
		return r.cum[0]
	}
	return r.cum[i] - r.cum[i-1]
}
