package balancer

import (
	"slices"
	"strconv"
	"strings"

	"ballast/internal/backend"
)

// ConsistentHash is the consistent_hash algorithm: a hash ring on which every
// backend owns virtual nodes in proportion to its weight, each placed at the
// hash of "addr#i". A request goes to the owner of the first virtual node at or
// after the hash of its key (see HashOn), so adding or removing one of n
// backends moves only about 1/n of the keys, and a backend's position does not
// depend on the others. Cost per pick: O(log v) for v virtual nodes (a binary
// search), plus the key's hash.
//
// When the owner is unusable the pick walks clockwise to the next usable
// backend, so only that owner's keys move, each to a stable new home. A request
// without the key falls back to its client address on the same ring, and one
// without a client address either is sent round robin.
//
// Slow start does not apply: a share that grows over time would move keys
// onto the ramping backend and back (pools turn it off).
type ConsistentHash struct {
	bs     []*backend.Backend
	on     HashOn
	points []uint64 // sorted virtual node positions
	owners []int32  // owners[i] is the index in bs of the node at points[i]
	rr     RoundRobin
}

var _ Balancer = (*ConsistentHash)(nil)

const (
	// vnodesPerWeight is the number of virtual nodes per unit of weight. The
	// spread of a backend's share of the ring shrinks as 1/sqrt(vnodes): with
	// 512, each of 10 equal backends owns within about 8% of 1/10 (160, as
	// in ketama, leaves some 20% off).
	vnodesPerWeight = 512
	// maxVnodes caps the ring (12 bytes per node). A pool whose weights add up
	// to more than maxVnodes/vnodesPerWeight gets proportionally fewer virtual
	// nodes per backend; since nodes are numbered, that drops each backend's
	// last nodes, which moves few keys.
	maxVnodes = 1 << 16
)

// NewConsistentHash builds the hash ring for bs, keyed on on.
func NewConsistentHash(bs []*backend.Backend, on HashOn) *ConsistentHash {
	// Raw weights, not divided by their GCD: a backend's node count must not
	// change when another backend joins or leaves.
	sum := 0
	for _, b := range bs {
		sum += b.Weight()
	}
	total := min(vnodesPerWeight*sum, maxVnodes)
	type vnode struct {
		pos   uint64
		owner int32
	}
	ring := make([]vnode, 0, total+len(bs))
	var num []byte
	for i, b := range bs {
		prefix := fnvAdd(fnvAdd(fnvOffset64, b.Addr), "#")
		for k := range max(1, b.Weight()*total/sum) {
			num = strconv.AppendInt(num[:0], int64(k), 10)
			ring = append(ring, vnode{mix64(fnvAdd(prefix, num)), int32(i)})
		}
	}
	// Equal positions (vanishingly rare) are ordered by address, so every node
	// builds the same ring whatever the order of the backend list.
	slices.SortFunc(ring, func(a, b vnode) int {
		if a.pos != b.pos {
			if a.pos < b.pos {
				return -1
			}
			return 1
		}
		return strings.Compare(bs[a.owner].Addr, bs[b.owner].Addr)
	})
	ch := &ConsistentHash{bs: bs, on: on, rr: RoundRobin{bs: bs}}
	ch.points = make([]uint64, len(ring))
	ch.owners = make([]int32, len(ring))
	for i, v := range ring {
		ch.points[i], ch.owners[i] = v.pos, v.owner
	}
	return ch
}

// Pick returns the owner of r's key on the ring, or the next usable backend
// clockwise; nil when none is usable.
func (ch *ConsistentHash) Pick(r *Request) *backend.Backend {
	if len(ch.points) == 0 {
		return nil
	}
	h, ok := ch.on.Hash(r)
	if !ok {
		if h, ok = hashIP(r); !ok {
			return ch.rr.Pick(r)
		}
	}
	return ch.lookup(h)
}

func (ch *ConsistentHash) lookup(h uint64) *backend.Backend {
	n := len(ch.points)
	i, _ := slices.BinarySearch(ch.points, h)
	if i == n {
		i = 0
	}
	if b := ch.bs[ch.owners[i]]; b.Usable() {
		return b
	}
	// Walking a ring with no usable backend would visit every node; one pass
	// over the backends rules that out first.
	if !anyUsable(ch.bs) {
		return nil
	}
	for range n - 1 {
		if i++; i == n {
			i = 0
		}
		if b := ch.bs[ch.owners[i]]; b.Usable() {
			return b
		}
	}
	return nil // every backend went down during the walk
}
