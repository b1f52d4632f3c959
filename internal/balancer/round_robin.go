package balancer

import "ballast/internal/backend"

// RoundRobin is the round_robin algorithm: each usable backend in turn, in
// list order. Cost per pick: O(1), O(n) in the worst case when backends must
// be skipped.
//
// An unusable backend is skipped and the rotation moves on past the one picked
// instead, so the backend after a down one does not get a double share: with
// b down, a b c rotates as a c a c, not a c c a c c. A ramping backend (slow
// start) takes its turn with probability ramp/1000 and is otherwise skipped the
// same way, so it gets that fraction of the picks each of the others gets.
type RoundRobin struct {
	bs  []*backend.Backend
	pos rotor
	rampGate
}

var _ Balancer = (*RoundRobin)(nil)

// NewRoundRobin returns a round robin over bs. Ramps are read against the
// system clock and admissions drawn from the runtime generator; New takes
// both from its Options.
func NewRoundRobin(bs []*backend.Backend) *RoundRobin {
	return &RoundRobin{bs: bs}
}

// Pick returns the next usable backend in rotation, or nil when none is usable.
func (rr *RoundRobin) Pick(_ *Request) *backend.Backend {
	n := len(rr.bs)
	if n == 0 {
		return nil
	}
	start := rr.pos.next(n)
	turnedAway := -1 // the first usable backend that lost its slow-start draw
	j := start
	for k := range n {
		if b := rr.bs[j]; b.Usable() {
			if rr.admit(b) {
				if k > 0 {
					// Concurrent picks may interleave here; the rotation
					// stays roughly fair and every pick is still a usable
					// backend.
					rr.pos.skip(k)
				}
				return b
			}
			if turnedAway < 0 {
				turnedAway = j
			}
		}
		if j++; j == n {
			j = 0
		}
	}
	if turnedAway < 0 {
		return nil
	}
	// Every usable backend is ramping and lost its draw: a ramp never makes
	// a pick fail.
	return rr.bs[turnedAway]
}
