package balancer

import (
	"math/bits"
	"math/rand/v2"
	"time"

	"ballast/internal/backend"
)

// Slow start (backend.Backend.Ramp) is applied here, once for every algorithm
// that honours it: a ramping backend counts with its weight × ramp/1000.
//
//   - round_robin and weighted_round_robin give a ramping backend its turn
//     with probability ramp/1000 and otherwise pass it over like an unusable
//     one; random keeps a drawn ramping backend with that probability and
//     otherwise draws again by weight × ramp. Either way it gets ramp/1000 of
//     the picks it would get relative to the others.
//   - least_conn, weighted_least_conn, p2c and least_time divide its load by
//     ramp/1000 (multiply its weight), so it holds that fraction of the
//     requests in flight that it would hold otherwise.
//   - ip_hash, consistent_hash and sticky cookies ignore it: a share that
//     changes over time would move keys and clients between backends twice.
//
// A ramp never makes a pick fail: a pool whose only usable backends are
// ramping still gets one of them.

// HonoursSlowStart reports whether the algorithm applies slow start; pools
// turn it off for the others.
func HonoursSlowStart(algorithm string) bool {
	return algorithm != AlgIPHash && algorithm != AlgConsistentHash
}

// rampGate reads ramps against a balancer's clock and draws admissions from
// its random source; the zero rampGate uses the system clock and the runtime
// generator. The algorithms ask backend.Backend.Ramping of the backend they
// are about to return, so a pick that returns a backend that is not ramping
// costs one atomic load more: no clock reading, no draw.
//
// For the load-based algorithms that is enough because a ramp only ever
// makes a backend look busier: (in-flight + 1)/(weight × ramp/1000) is at
// least (in-flight + 1)/weight. The winner of their plain comparison, when
// it is not ramping, is therefore the winner with ramps too, ties included;
// only when it is ramping do they compare again with ramps.
type rampGate struct {
	clock Clock // nil: time.Now
	rnd   Rand  // nil: math/rand/v2
}

// setGate makes the gate use o's clock and random source (see New).
func (g *rampGate) setGate(o Options) { g.clock, g.rnd = o.Clock, o.Rand }

// gated sets the gate of a freshly built balancer from o and returns it.
func gated[B interface{ setGate(Options) }](b B, o Options) B {
	b.setGate(o)
	return b
}

func (g *rampGate) now() time.Time {
	if g.clock == nil {
		return time.Now()
	}
	return g.clock.Now()
}

func (g *rampGate) uint64() uint64 {
	if g.rnd == nil {
		return rand.Uint64()
	}
	return g.rnd.Uint64()
}

// admit reports whether b may take this pick: always when it is not ramping,
// with probability ramp/1000 while it is.
func (g *rampGate) admit(b *backend.Backend) bool {
	return !b.Ramping() || g.draw(b)
}

func (g *rampGate) draw(b *backend.Backend) bool {
	r := b.RampAt(g.now())
	return r >= backend.RampFull || reduce(g.uint64(), backend.RampFull) < int(r)
}

// leastLoaded is the scan of least_conn (ws nil: every weight 1) and
// weighted_least_conn again when their plain winner is ramping: the usable
// backend of bs with the lowest (in-flight + 1) / (weight × ramp), scanning
// from start and keeping the first among equals as they do. Without ramps it
// picks what their own scans pick.
func (g *rampGate) leastLoaded(bs []*backend.Backend, ws []int64, start int) *backend.Backend {
	now := g.now()
	var best *backend.Backend
	var bestLoad, bestCap uint64
	n, j := len(bs), start
	for range n {
		b, weight := bs[j], uint64(1)
		if ws != nil {
			weight = uint64(ws[j])
		}
		if j++; j == n {
			j = 0
		}
		if !b.Usable() {
			continue
		}
		load, capacity := newLoad(b), weight*uint64(b.RampAt(now))
		if best == nil || lessLoaded(load, capacity, bestLoad, bestCap) {
			best, bestLoad, bestCap = b, load, capacity
		}
	}
	return best
}

// lessLoaded reports whether loadA/capA < loadB/capB, capacities positive,
// comparing the cross products in 128 bits so that none can overflow.
func lessLoaded(loadA, capA, loadB, capB uint64) bool {
	h1, l1 := bits.Mul64(loadA, capB)
	h2, l2 := bits.Mul64(loadB, capA)
	return h1 < h2 || h1 == h2 && l1 < l2
}

// newLoad is a backend's in-flight count plus the request being placed, the
// load that the weighted comparisons divide by capacity.
func newLoad(b *backend.Backend) uint64 { return uint64(max(b.InFlight(), 0)) + 1 }
