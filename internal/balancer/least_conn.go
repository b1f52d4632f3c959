package balancer

import "ballast/internal/backend"

// LeastConn is the least_conn algorithm: the usable backend with the fewest
// requests in flight. Cost per pick: O(n).
//
// The scan starts at a rotating offset and keeps the first backend it meets
// among equals, so ties — every backend idle, say — are spread evenly instead
// of all going to the first backend of the list.
//
// A ramping backend (slow start) counts (in-flight + 1) / (ramp/1000), so it
// holds about ramp/1000 of the requests in flight that another one holds; the
// others count (in-flight + 1), which ranks them as in-flight alone does.
type LeastConn struct {
	bs    []*backend.Backend
	start rotor
	rampGate
}

var _ Balancer = (*LeastConn)(nil)

// NewLeastConn returns a least-connections balancer over bs. Ramps are read
// against the system clock; New takes the clock from its Options.
func NewLeastConn(bs []*backend.Backend) *LeastConn {
	return &LeastConn{bs: bs}
}

// Pick returns the usable backend with the fewest requests in flight (relative
// to its ramp), or nil.
func (lc *LeastConn) Pick(_ *Request) *backend.Backend {
	n := len(lc.bs)
	if n == 0 {
		return nil
	}
	var best *backend.Backend
	var bestLoad int64
	start := lc.start.next(n)
	j := start
	for range n {
		b := lc.bs[j]
		if j++; j == n {
			j = 0
		}
		if !b.Usable() {
			continue
		}
		if load := b.InFlight(); best == nil || load < bestLoad {
			best, bestLoad = b, load
		}
	}
	if best != nil && best.Ramping() {
		return lc.leastLoaded(lc.bs, nil, start)
	}
	return best
}
