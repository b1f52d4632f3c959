package balancer

import "ballast/internal/backend"

// P2C is the p2c algorithm, the power of two random choices: draw two distinct
// usable backends uniformly at random and take the less loaded one, load being
// (in-flight + 1) / weight compared by cross-multiplication. It avoids the herd
// behaviour of a global least-loaded choice (every balancer node sending the
// next burst to the same idle backend) while staying close to least_conn in
// balance. Counting the new request (+1) makes the weights matter when both
// are idle. Cost per pick: O(1), more only while drawing around unusable
// backends.
//
// A ramping backend (slow start) counts with weight × ramp/1000; it is drawn
// as often as any other, and loses more of the comparisons.
type P2C struct {
	bs  []*backend.Backend
	ws  []int64 // weights, read at build time
	rnd Rand
	rampGate
}

var _ Balancer = (*P2C)(nil)

// p2cDraws is how many random draws a pick makes for each choice before it
// falls back to choosing among the usable backends counted one by one.
const p2cDraws = 4

// NewP2C returns a power-of-two-choices balancer over bs drawing from rnd,
// which must be safe for concurrent use when Pick is called concurrently.
// Ramps are read against the system clock; New takes the clock from its
// Options.
func NewP2C(bs []*backend.Backend, rnd Rand) *P2C {
	ws := make([]int64, len(bs))
	for i, b := range bs {
		ws[i] = int64(b.Weight())
	}
	return &P2C{bs: bs, ws: ws, rnd: rnd}
}

// Pick returns the less loaded of two random usable backends, the only usable
// one when there is one, or nil when there is none.
func (p *P2C) Pick(_ *Request) *backend.Backend {
	n := len(p.bs)
	if n == 0 {
		return nil
	}
	if n == 1 {
		if p.bs[0].Usable() {
			return p.bs[0]
		}
		return nil
	}
	// One 64-bit draw gives both indices in the common case: the low half
	// picks one of n, the high half one of the n-1 others.
	r := p.rnd.Uint64()
	i := int(uint64(uint32(r)) * uint64(n) >> 32)
	j := int((r >> 32) * uint64(n-1) >> 32)
	if j >= i {
		j++
	}
	if !p.bs[i].Usable() {
		if i = p.drawUsable(-1); i < 0 {
			return nil
		}
	}
	if j == i || !p.bs[j].Usable() {
		if j = p.drawUsable(i); j < 0 {
			return p.bs[i]
		}
	}
	// (in_i+1)/w_i <= (in_j+1)/w_j; i was drawn first, so ties are random too.
	best := p.bs[j]
	if (p.bs[i].InFlight()+1)*p.ws[j] <= (p.bs[j].InFlight()+1)*p.ws[i] {
		best = p.bs[i]
	}
	if best.Ramping() {
		return p.lighterRamping(i, j)
	}
	return best
}

// lighterRamping is Pick's comparison again when its winner is ramping:
// (in_i+1)/(w_i·r_i) <= (in_j+1)/(w_j·r_j), ties to i as in Pick.
func (p *P2C) lighterRamping(i, j int) *backend.Backend {
	now := p.now()
	bi, bj := p.bs[i], p.bs[j]
	ci := uint64(p.ws[i]) * uint64(bi.RampAt(now))
	cj := uint64(p.ws[j]) * uint64(bj.RampAt(now))
	if lessLoaded(newLoad(bj), cj, newLoad(bi), ci) {
		return bj
	}
	return bi
}

// drawUsable returns a random usable backend other than skip, or -1. After
// p2cDraws misses (most backends unusable) it counts the usable ones and takes
// one of them uniformly, in two passes: a scan from a random start would favour
// the backend just after a run of unusable ones.
func (p *P2C) drawUsable(skip int) int {
	n := len(p.bs)
	for range p2cDraws {
		k := reduce(p.rnd.Uint64(), n)
		if k != skip && p.bs[k].Usable() {
			return k
		}
	}
	m := 0
	for k, b := range p.bs {
		if k != skip && b.Usable() {
			m++
		}
	}
	if m == 0 {
		return -1
	}
	want, last := reduce(p.rnd.Uint64(), m), -1
	for k, b := range p.bs {
		if k != skip && b.Usable() {
			if last = k; want == 0 {
				return k
			}
			want--
		}
	}
	return last // states changed between the passes
}
