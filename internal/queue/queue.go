// Package queue is a pool's waiting room: requests that found every backend at
// its max_conns wait here until a slot frees, their wait times out, or the
// queue is full. Waiters are in lanes: a freed slot goes to the oldest waiter
// of lane 0, then of lane 1 — unless lane 1's oldest has waited longer than
// the queue's aging bound, which puts it first. With one lane in use it is
// first come, first served.
//
// The request path touches it only through Len (one atomic load) while nobody
// waits; the mutex is taken only by requests that must wait and by the release
// of a slot while someone waits.
package queue

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Errors of Wait.
var (
	// ErrFull: the queue already holds its maximum.
	ErrFull = errors.New("queue full")
	// ErrTimeout: no slot freed within the queue's timeout.
	ErrTimeout = errors.New("queue timeout")
)

// Queue is a FIFO of waiters for a resource of type T (a backend slot).
type Queue[T any] struct {
	max     atomic.Int64
	timeout atomic.Int64 // nanoseconds

	aging atomic.Int64 // nanoseconds; 0: lanes in strict order

	n  atomic.Int64 // waiters, readable without the lock
	ln [Lanes]atomic.Int64
	mu sync.Mutex
	// head and tail of each lane's waiters in arrival order; guarded by mu.
	head, tail [Lanes]*waiter[T]
}

// Lanes is the number of lanes; lane 0 goes first.
const Lanes = 2

type waiter[T any] struct {
	lane       int
	since      time.Time
	try        func() (T, bool)
	grant      chan T // buffered 1: a grant is sent under mu and never blocks
	prev, next *waiter[T]
	queued     bool // still in the list; guarded by mu
}

// New returns a queue holding at most max waiters (0: none may wait), each for
// at most timeout.
func New[T any](max int, timeout time.Duration) *Queue[T] {
	q := &Queue[T]{}
	q.SetLimits(max, timeout)
	return q
}

// SetLimits changes the capacity and the wait limit (a reload); requests
// already waiting keep the timeout they started with.
func (q *Queue[T]) SetLimits(max int, timeout time.Duration) {
	q.max.Store(int64(max))
	q.timeout.Store(int64(timeout))
}

// Max returns the queue's capacity.
func (q *Queue[T]) Max() int { return int(q.max.Load()) }

// Timeout returns how long a request may wait.
func (q *Queue[T]) Timeout() time.Duration { return time.Duration(q.timeout.Load()) }

// Len returns how many requests are waiting now.
func (q *Queue[T]) Len() int { return int(q.n.Load()) }

// LaneLen returns how many requests are waiting in lane now.
func (q *Queue[T]) LaneLen(lane int) int { return int(q.ln[lane].Load()) }

// SetAging sets how long the oldest waiter of lane 1 may wait before it goes
// ahead of lane 0 (0: never).
func (q *Queue[T]) SetAging(d time.Duration) { q.aging.Store(int64(d)) }

// Wait is WaitLane in lane 0.
func (q *Queue[T]) Wait(ctx context.Context, try func() (T, bool)) (T, time.Duration, error) {
	return q.WaitLane(ctx, 0, try)
}

// WaitLane gets a T through try, in turn: if nobody waits ahead of it (in
// its lane or a lane before it) it calls try at once; otherwise, or when try
// fails, it queues in lane and try is called again, in turn, each time
// Signal reports a freed slot. It returns the T and how long it waited;
// ErrFull when the queue is full, ErrTimeout after the queue's timeout, or
// ctx's error when ctx ends first. try must not block; it is called with the
// queue's lock held.
func (q *Queue[T]) WaitLane(ctx context.Context, lane int, try func() (T, bool)) (T, time.Duration, error) {
	var zero T
	q.mu.Lock()
	ahead := false
	for l := 0; l <= lane; l++ {
		ahead = ahead || q.head[l] != nil
	}
	if !ahead {
		if v, ok := try(); ok {
			q.mu.Unlock()
			return v, 0, nil
		}
	}
	if q.n.Load() >= q.max.Load() {
		q.mu.Unlock()
		return zero, 0, ErrFull
	}
	start := time.Now()
	w := &waiter[T]{lane: lane, since: start, try: try, grant: make(chan T, 1)}
	q.push(w)
	q.mu.Unlock()

	timer := time.NewTimer(q.Timeout())
	defer timer.Stop()
	var err error
	select {
	case v := <-w.grant:
		return v, time.Since(start), nil
	case <-timer.C:
		err = ErrTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	q.mu.Lock()
	if w.queued {
		q.remove(w)
		q.mu.Unlock()
		return zero, time.Since(start), err
	}
	q.mu.Unlock()
	// Granted while giving up: the grant was sent under the lock, so it is
	// there; take it rather than lose the slot.
	return <-w.grant, time.Since(start), nil
}

// Signal reports that a slot may have freed (a request ended, a backend came
// up or was added): waiters get it, in turn, while their try succeeds. A
// waiter whose try fails (its lane is at a limit of its own) does not hold
// up the other lane.
func (q *Queue[T]) Signal() {
	if q.n.Load() == 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		granted := false
		for _, l := range q.order() {
			w := q.head[l]
			if w == nil {
				continue
			}
			if v, ok := w.try(); ok {
				q.remove(w)
				w.grant <- v
				granted = true
				break
			}
		}
		if !granted {
			return
		}
	}
}

// order is the order in which the lanes' oldest waiters are offered a slot.
func (q *Queue[T]) order() [Lanes]int {
	if a := q.aging.Load(); a > 0 && q.head[1] != nil && time.Since(q.head[1].since) > time.Duration(a) {
		return [Lanes]int{1, 0}
	}
	return [Lanes]int{0, 1}
}

func (q *Queue[T]) push(w *waiter[T]) {
	l := w.lane
	w.queued = true
	w.prev = q.tail[l]
	if q.tail[l] != nil {
		q.tail[l].next = w
	} else {
		q.head[l] = w
	}
	q.tail[l] = w
	q.n.Add(1)
	q.ln[l].Add(1)
}

func (q *Queue[T]) remove(w *waiter[T]) {
	l := w.lane
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		q.head[l] = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		q.tail[l] = w.prev
	}
	w.prev, w.next, w.queued = nil, nil, false
	q.n.Add(-1)
	q.ln[l].Add(-1)
}
