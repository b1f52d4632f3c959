package balancer

import "ballast/internal/backend"

// LeastConn is the least_conn algorithm: the usable backend with the fewest
// requests in flight. Cost per pick: O(n).
//
// The scan starts at a rotating offset and keeps the first backend it meets
// among equals, so ties — every backend idle, say — are spread evenly instead
// of all going to the first backend of the list.
type LeastConn struct {
	bs    []*backend.Backend
	start rotor
}

var _ Balancer = (*LeastConn)(nil)

// NewLeastConn returns a least-connections balancer over bs.
func NewLeastConn(bs []*backend.Backend) *LeastConn {
	return &LeastConn{bs: bs}
}

// Pick returns the usable backend with the fewest requests in flight, or nil.
func (lc *LeastConn) Pick(_ *Request) *backend.Backend {
	n := len(lc.bs)
	if n == 0 {
		return nil
	}
	var best *backend.Backend
	var bestLoad int64
	j := lc.start.next(n)
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
	return best
}
