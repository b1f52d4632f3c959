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
// Ties rotate as in least_conn.
type LeastTime struct {
	bs    []*backend.Backend
	picks atomic.Uint64
}

var _ Balancer = (*LeastTime)(nil)

// leastTimeTrickle is the period of the round-robin picks (see LeastTime).
const leastTimeTrickle = 32

// NewLeastTime returns a least-time balancer over bs.
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
	j := int(c % uint64(n))
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
	return best
}
