package balancer

import "ballast/internal/backend"

// IPHash is the ip_hash algorithm: the client address, hashed, indexes a table
// in which each backend fills as many slots as its weight, so a client keeps
// its backend while the backend list stays the same. Cost per pick: O(1).
//
// When a client's backend is unusable the pick probes the table again with a
// deterministic sequence of further hashes of the same address, so that
// client's new backend is stable too, its displaced clients spread over the
// others by weight, and no other client moves. After ipHashProbes misses it
// falls back to the next usable backend in list order. A request without a
// client address (the zero netip.Addr) is sent round robin.
//
// Adding or removing a backend remaps most clients; consistent_hash with
// hash_on: source_ip moves only about 1/n of them.
//
// Slow start does not apply: a share that grows over time would move
// clients onto the ramping backend and back (pools turn it off).
type IPHash struct {
	bs    []*backend.Backend
	table []int32 // slot → index into bs
	rr    RoundRobin
}

var _ Balancer = (*IPHash)(nil)

// ipHashProbes is how many table slots a pick tries before scanning.
const ipHashProbes = 8

// NewIPHash builds the weighted table for bs.
func NewIPHash(bs []*backend.Backend) *IPHash {
	ws, total := reducedWeights(bs, maxWeightSum)
	table := make([]int32, 0, total)
	for i, w := range ws {
		for range w {
			table = append(table, int32(i))
		}
	}
	return &IPHash{bs: bs, table: table, rr: RoundRobin{bs: bs}}
}

// Pick returns the client's backend, or another usable one chosen
// deterministically when it is unusable; nil when none is usable.
func (ih *IPHash) Pick(r *Request) *backend.Backend {
	if len(ih.bs) == 0 {
		return nil
	}
	h, ok := hashIP(r)
	if !ok {
		return ih.rr.Pick(r)
	}
	return probeTable(ih.bs, ih.table, h)
}

// probeTable returns the backend at slot h of table, or when it is unusable,
// the first usable one along a probe sequence determined by h alone.
func probeTable(bs []*backend.Backend, table []int32, h uint64) *backend.Backend {
	first := int(table[reduce(h, len(table))])
	if bs[first].Usable() {
		return bs[first]
	}
	for k := uint64(1); k < ipHashProbes; k++ {
		// Each probe is an independent-looking hash of (h, k).
		i := table[reduce(mix64(h+k*0x9e3779b97f4a7c15), len(table))]
		if bs[i].Usable() {
			return bs[i]
		}
	}
	if i := scanUsable(bs, first); i >= 0 {
		return bs[i]
	}
	return nil
}
