package balancer

import "ballast/internal/backend"

// RoundRobin is the round_robin algorithm: each usable backend in turn, in
// list order. Cost per pick: O(1), O(n) in the worst case when backends must
// be skipped.
//
// An unusable backend is skipped and the rotation moves on past the one picked
// instead, so the backend after a down one does not get a double share: with
// b down, a b c rotates as a c a c, not a c c a c c.
type RoundRobin struct {
	bs  []*backend.Backend
	pos rotor
}

var _ Balancer = (*RoundRobin)(nil)

// NewRoundRobin returns a round robin over bs.
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
	i := scanUsable(rr.bs, start)
	if i < 0 {
		return nil
	}
	if skipped := i - start; skipped != 0 {
		if skipped < 0 {
			skipped += n
		}
		// Concurrent picks may interleave here; the rotation stays roughly
		// fair and every pick is still a usable backend.
		rr.pos.skip(skipped)
	}
	return rr.bs[i]
}
