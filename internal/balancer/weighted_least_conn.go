package balancer

import "ballast/internal/backend"

// WeightedLeastConn is the weighted_least_conn algorithm: the usable backend
// with the lowest (in-flight + 1) / weight, that is the lowest load relative to
// its capacity once this request is added. Counting the new request makes the
// weights matter even when every backend is idle (3:1 weights fill up 3:1
// from the start). Cost per pick: O(n).
//
// A ramping backend (slow start) counts with weight × ramp/1000. Scores are
// compared by cross-multiplication in integers, without floats. As in
// least_conn, the scan starts at a rotating offset so ties are spread evenly.
type WeightedLeastConn struct {
	bs    []*backend.Backend
	ws    []int64 // weights, read at build time
	start rotor
	rampGate
}

var _ Balancer = (*WeightedLeastConn)(nil)

// NewWeightedLeastConn returns a weighted least-connections balancer over bs.
// Weights are read now; a weight change takes effect with the next balancer.
// Ramps are read against the system clock; New takes the clock from its
// Options.
func NewWeightedLeastConn(bs []*backend.Backend) *WeightedLeastConn {
	ws := make([]int64, len(bs))
	for i, b := range bs {
		ws[i] = int64(b.Weight())
	}
	return &WeightedLeastConn{bs: bs, ws: ws}
}

// Pick returns the usable backend with the lowest (in-flight+1)/weight, or nil.
func (wl *WeightedLeastConn) Pick(_ *Request) *backend.Backend {
	n := len(wl.bs)
	if n == 0 {
		return nil
	}
	var best *backend.Backend
	var bestLoad, bestWeight int64
	start := wl.start.next(n)
	j := start
	for range n {
		b, weight := wl.bs[j], wl.ws[j]
		if j++; j == n {
			j = 0
		}
		if !b.Usable() {
			continue
		}
		load := b.InFlight() + 1
		// load/weight < bestLoad/bestWeight, both weights positive.
		if best == nil || load*bestWeight < bestLoad*weight {
			best, bestLoad, bestWeight = b, load, weight
		}
	}
	if best != nil && best.Ramping() {
		return wl.leastLoaded(wl.bs, wl.ws, start)
	}
	return best
}
