package accesslog

import "sync/atomic"

// cacheLine separates fields written by different cores so that one core's
// writes do not invalidate the line another core keeps reading.
const cacheLine = 64

// closedBit is set in ring.tail by close; no position ever reaches it.
const closedBit = 1 << 63

// ring is Dmitry Vyukov's bounded MPMC array queue ("Bounded MPMC queue",
// 1024cores.net) specialised to one consumer. Each slot carries a sequence
// number that says whose turn it is: a producer may fill the slot of
// position pos when seq == pos, the consumer may take it when seq == pos+1,
// and hands it back for the next lap by storing pos+len(slots).
//
// push costs one CAS on tail plus two atomic loads and one store, never
// waits for another goroutine and fails at once when the ring is full; pop
// is two plain operations and two atomics. Neither side takes a lock or
// allocates. A producer that stops between its CAS and its publishing store
// delays the consumer (not other producers) until it resumes; the window is
// a pointer swap wide.
type ring struct {
	// tail is the next position producers claim; bit 63 is closedBit.
	// Every push CASes it, so it has a cache line to itself.
	tail atomic.Uint64
	_    [cacheLine - 8]byte

	// mask and slots never change after init; every push and pop reads
	// them, so they share a line with nothing that is written.
	mask  uint64
	slots []slot
	_     [cacheLine - 32]byte

	// head is the next position the consumer takes. Only the consumer
	// goroutine touches it, once per line.
	head uint64
	_    [cacheLine - 8]byte
}

// slot holds one line. ln is handed over by the seq store and load (a
// release/acquire pair), so it needs no atomics of its own.
type slot struct {
	seq atomic.Uint64
	ln  *line
}

// line is a pooled encode buffer; a pointer so the pool and the ring pass
// it around without allocating.
type line struct{ b []byte }

// init sizes r to capacity rounded up to a power of two, so a position
// maps to its slot with a mask instead of a division.
func (r *ring) init(capacity int) {
	n := uint64(2)
	for n < uint64(capacity) {
		n <<= 1
	}
	r.slots = make([]slot, n)
	for i := range r.slots {
		r.slots[i].seq.Store(uint64(i))
	}
	r.mask = n - 1
}

// full reports, without claiming anything, whether push would fail now:
// the ring is closed or the slot at tail still holds an unconsumed line. It
// lets Log skip encoding a line it would drop; the answer may be stale by the
// time push runs, which push checks again.
func (r *ring) full() bool {
	pos := r.tail.Load()
	if pos&closedBit != 0 {
		return true
	}
	return int64(r.slots[pos&r.mask].seq.Load()-pos) < 0
}

// push puts ln at the tail and returns the line the slot held before (one
// the consumer has finished with, or nil) for reuse. It returns ok false,
// keeping nothing, when the ring is full or closed.
func (r *ring) push(ln *line) (old *line, ok bool) {
	pos := r.tail.Load()
	for {
		if pos&closedBit != 0 {
			return nil, false
		}
		s := &r.slots[pos&r.mask]
		switch d := int64(s.seq.Load() - pos); {
		case d == 0:
			if r.tail.CompareAndSwap(pos, pos+1) {
				old, s.ln = s.ln, ln
				s.seq.Store(pos + 1)
				return old, true
			}
		case d < 0:
			return nil, false // the consumer is a whole lap behind
		}
		// Another producer took pos; try the new tail.
		pos = r.tail.Load()
	}
}

// peek returns the slot at head if its line is published, else nil.
// Consumer only.
func (r *ring) peek() *slot {
	s := &r.slots[r.head&r.mask]
	if s.seq.Load() != r.head+1 {
		return nil
	}
	return s
}

// release hands the slot peek returned back to producers for the next lap.
// Consumer only.
func (r *ring) release(s *slot) {
	s.seq.Store(r.head + r.mask + 1)
	r.head++
}

// close makes every later push fail and returns the end position: every
// position before it was claimed and will be published.
func (r *ring) close() uint64 {
	return r.tail.Or(closedBit) &^ closedBit
}
