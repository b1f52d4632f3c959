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
type Random struct {
	bs    []*backend.Backend
	cum   []uint64 // cum[i] = weight of bs[0..i]
	total uint64
	rnd   Rand
}

var _ Balancer = (*Random)(nil)

// NewRandom returns a weighted random balancer over bs drawing from rnd, which
// must be safe for concurrent use when Pick is called concurrently.
func NewRandom(bs []*backend.Backend, rnd Rand) *Random {
	cum := make([]uint64, len(bs))
	var total uint64
	for i, b := range bs {
		total += uint64(b.Weight())
		cum[i] = total
	}
	return &Random{bs: bs, cum: cum, total: total, rnd: rnd}
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
	return r.bs[i]
}
