// Package queue is a pool's waiting room: requests that found every backend at
// its max_conns wait here, first come first served, until a slot frees, their
// wait times out, or the queue is full.
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

	n  atomic.Int64 // waiters, readable without the lock
	mu sync.Mutex
	// head and tail of the waiters in arrival order; guarded by mu.
	head, tail *waiter[T]
}

type waiter[T any] struct {
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

// Wait gets a T through try, in turn: if nobody is waiting it calls try at
// once; otherwise, or when try fails, it queues and try is called again, in
// arrival order, each time Signal reports a freed slot. It returns the T and
// how long it waited; ErrFull when the queue is full, ErrTimeout after the
// queue's timeout, or ctx's error when ctx ends first. try must not block; it
// is called with the queue's lock held.
func (q *Queue[T]) Wait(ctx context.Context, try func() (T, bool)) (T, time.Duration, error) {
	var zero T
	q.mu.Lock()
	if q.head == nil {
		if v, ok := try(); ok {
			q.mu.Unlock()
			return v, 0, nil
		}
	}
	if q.n.Load() >= q.max.Load() {
		q.mu.Unlock()
		return zero, 0, ErrFull
	}
	w := &waiter[T]{try: try, grant: make(chan T, 1)}
	q.push(w)
	q.mu.Unlock()

	start := time.Now()
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
// up or was added): the oldest waiters get it while their try succeeds.
func (q *Queue[T]) Signal() {
	if q.n.Load() == 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for w := q.head; w != nil; w = q.head {
		v, ok := w.try()
		if !ok {
			return
		}
		q.remove(w)
		w.grant <- v
	}
}

func (q *Queue[T]) push(w *waiter[T]) {
	w.queued = true
	w.prev = q.tail
	if q.tail != nil {
		q.tail.next = w
	} else {
		q.head = w
	}
	q.tail = w
	q.n.Add(1)
}

func (q *Queue[T]) remove(w *waiter[T]) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		q.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		q.tail = w.prev
	}
	w.prev, w.next, w.queued = nil, nil, false
	q.n.Add(-1)
}
