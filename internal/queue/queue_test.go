package queue

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slots is a counting semaphore standing in for backend slots.
type slots struct{ free atomic.Int64 }

func (s *slots) try() (int, bool) {
	for {
		f := s.free.Load()
		if f <= 0 {
			return 0, false
		}
		if s.free.CompareAndSwap(f, f-1) {
			return 1, true
		}
	}
}

func (s *slots) release(q *Queue[int]) {
	s.free.Add(1)
	q.Signal()
}

func TestImmediateWhenFree(t *testing.T) {
	var s slots
	s.free.Store(1)
	q := New[int](10, time.Second)
	v, waited, err := q.Wait(context.Background(), s.try)
	if err != nil || v != 1 || waited != 0 {
		t.Fatalf("Wait = %d, %v, %v; want 1, 0, nil", v, waited, err)
	}
	if _, _, err := New[int](0, time.Second).Wait(context.Background(), s.try); !errors.Is(err, ErrFull) {
		t.Fatalf("no slot and no queue: err = %v, want ErrFull", err)
	}
}

func TestFIFO(t *testing.T) {
	var s slots
	q := New[int](100, 5*time.Second)
	const n = 20
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// The grant is recorded where it is made, under the queue's lock.
			try := func() (int, bool) {
				v, ok := s.try()
				if ok {
					mu.Lock()
					order = append(order, i)
					mu.Unlock()
				}
				return v, ok
			}
			if _, _, err := q.Wait(context.Background(), try); err != nil {
				t.Error(err)
			}
		})
		// Arrive one after the other.
		for q.Len() != i+1 {
			time.Sleep(time.Millisecond)
		}
	}
	for range n {
		s.release(q)
	}
	wg.Wait()
	for i, v := range order {
		if v != i {
			t.Fatalf("served in order %v, want arrival order", order)
		}
	}
	if q.Len() != 0 {
		t.Fatalf("Len = %d after all served", q.Len())
	}
}

func TestFullAndTimeout(t *testing.T) {
	var s slots
	q := New[int](2, 100*time.Millisecond)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Go(func() {
			_, waited, err := q.Wait(context.Background(), s.try)
			if waited < 100*time.Millisecond {
				t.Errorf("gave up after %v, before the timeout", waited)
			}
			errs <- err
		})
	}
	for q.Len() != 2 {
		time.Sleep(time.Millisecond)
	}
	if _, _, err := q.Wait(context.Background(), s.try); !errors.Is(err, ErrFull) {
		t.Fatalf("third waiter: err = %v, want ErrFull", err)
	}
	wg.Wait()
	for range 2 {
		if err := <-errs; !errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v, want ErrTimeout", err)
		}
	}
	if q.Len() != 0 {
		t.Fatalf("Len = %d after timeouts", q.Len())
	}
}

func TestContextEnds(t *testing.T) {
	var s slots
	q := New[int](2, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, _, err := q.Wait(ctx, s.try)
		done <- err
	}()
	for q.Len() != 1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// A slot granted while its waiter gives up is taken, never lost.
func TestNoSlotLost(t *testing.T) {
	var s slots
	q := New[int](1000, time.Millisecond)
	var got atomic.Int64
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			if _, _, err := q.Wait(context.Background(), s.try); err == nil {
				got.Add(1)
			}
		})
		wg.Go(func() { s.release(q) })
	}
	wg.Wait()
	if left := s.free.Load(); got.Load()+left != 200 {
		t.Fatalf("%d granted + %d free = %d slots, want 200", got.Load(), left, got.Load()+left)
	}
}
