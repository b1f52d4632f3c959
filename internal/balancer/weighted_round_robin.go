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
// so the remaining backends keep their relative shares. A ramping backend (slow
// start) takes each of its entries with probability ramp/1000 and is otherwise
// passed over the same way, so it counts with weight × ramp/1000.
type WeightedRoundRobin struct {
	bs       []*backend.Backend
	schedule []*backend.Backend
	pos      rotor
	rampGate
}

var _ Balancer = (*WeightedRoundRobin)(nil)

// NewWeightedRoundRobin builds the smooth schedule for bs. Ramps are read
// against the system clock and admissions drawn from the runtime generator;
// New takes both from its Options.
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

// maxScheduleWalk bounds how many unusable schedule entries a pick inspects
// before it falls back to a plain scan of the backends, so a pick stays cheap
// even when most of a long schedule belongs to unusable backends.
const maxScheduleWalk = 16

// maxRampWalk bounds the entries a pick inspects in all, counting those of
// ramping backends that lost their draw. A backend at the 10% floor that owns
// a long run of the schedule is passed over 64 times in a row with
// probability 0.9⁶⁴ ≈ 0.1%, so the fallback scan, which ignores ramps, hardly
// ever distorts its share.
const maxRampWalk = 64

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
			if b.Ramping() {
				return w.walkRamping(start, j, k)
			}
			if k > 0 {
				w.pos.skip(k)
			}
			return b
		}
		if j++; j == n {
			j = 0
		}
	}
	return w.fallback(start)
}

// walkRamping goes on with Pick's walk at schedule entry j, the k-th since
// start, whose backend is usable and ramping: from here an entry of a ramping
// backend is taken with probability ramp/1000 and otherwise passed over, and
// the walk may go on for up to maxRampWalk entries in all.
func (w *WeightedRoundRobin) walkRamping(start, j, k int) *backend.Backend {
	n := len(w.schedule)
	unusable := k // every entry before j was unusable
	for ; k < min(n, maxRampWalk); k++ {
		if b := w.schedule[j]; b.Usable() {
			if w.admit(b) {
				if k > 0 {
					w.pos.skip(k)
				}
				return b
			}
		} else if unusable++; unusable == maxScheduleWalk {
			break
		}
		if j++; j == n {
			j = 0
		}
	}
	return w.fallback(start)
}

// fallback is the plain scan of the backends after a walk found nothing. It
// ignores ramps: a ramp never makes a pick fail.
func (w *WeightedRoundRobin) fallback(start int) *backend.Backend {
	if i := scanUsable(w.bs, start%len(w.bs)); i >= 0 {
		return w.bs[i]
	}
	return nil
}
