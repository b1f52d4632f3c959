package balancer

import "ballast/internal/backend"

// WeightedRoundRobin is the weighted_round_robin algorithm: nginx's smooth
// weighted round robin, made lock-free by computing the whole schedule when the
// balancer is built. Cost per pick: O(1), more only while skipping unusable
// backends.
//
// Weights are first divided by their greatest common divisor, so the schedule
// is one cycle of length sum(weights): 5:1:1 gives a a b a c a a, each backend
// exactly its weight times per cycle and the heaviest never in a long burst.
// Picks walk the schedule with an atomic counter. When the scheduled backend is
// unusable, the pick takes the next usable entry and the counter moves past it,
// so the remaining backends keep their relative shares.
type WeightedRoundRobin struct {
	bs       []*backend.Backend
	schedule []*backend.Backend
	pos      rotor
}

var _ Balancer = (*WeightedRoundRobin)(nil)

// NewWeightedRoundRobin builds the smooth schedule for bs.
func NewWeightedRoundRobin(bs []*backend.Backend) *WeightedRoundRobin {
	return &WeightedRoundRobin{bs: bs, schedule: smoothSchedule(bs)}
}

// smoothSchedule runs nginx's smooth weighted selection for one full cycle:
// every step adds each backend's weight to its current score, picks the highest
// score (the first one on ties) and subtracts the total from it. O(sum × n).
func smoothSchedule(bs []*backend.Backend) []*backend.Backend {
	ws, total := reducedWeights(bs, maxWeightSum)
	cur := make([]int, len(bs))
	schedule := make([]*backend.Backend, 0, total)
	for range total {
		best := -1
		for i, w := range ws {
			cur[i] += w
			if best < 0 || cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		schedule = append(schedule, bs[best])
	}
	return schedule
}

// maxScheduleWalk bounds how many schedule entries a pick inspects before it
// falls back to a plain scan of the backends, so a pick stays cheap even when
// most of a long schedule belongs to unusable backends.
const maxScheduleWalk = 16

// Pick returns the next usable backend of the schedule, or nil when none is usable.
func (w *WeightedRoundRobin) Pick(_ *Request) *backend.Backend {
	n := len(w.schedule)
	if n == 0 {
		return nil
	}
	start := w.pos.next(n)
	j := start
	for k := range min(n, maxScheduleWalk) {
		if b := w.schedule[j]; b.Usable() {
			if k > 0 {
				w.pos.skip(k)
			}
			return b
		}
		if j++; j == n {
			j = 0
		}
	}
	if i := scanUsable(w.bs, start%len(w.bs)); i >= 0 {
		return w.bs[i]
	}
	return nil
}
