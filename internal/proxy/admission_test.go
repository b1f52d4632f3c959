package proxy

import (
	"context"
	"errors"
	"testing"
	"time"

	"ballast/internal/backend"
	"ballast/internal/balancer"
	"ballast/internal/pool"
)

// admissionFixture is a pool of two backends with two slots each, whose
// dispatcher has learned that /api/report is slow and /api/users fast.
func admissionFixture(t *testing.T) *dispatchFixture {
	f := newDispatchFixture(t, pool.Settings{Algorithm: balancer.AlgLeastConn}, 2)
	for _, b := range f.bs {
		b.SetMaxConns(2)
	}
	f.up.SetQueue(100, 10*time.Second)
	serve := func(path string, d time.Duration) {
		a, err := f.d.Begin(context.Background(), route(path))
		if err != nil {
			t.Fatal(err)
		}
		f.now = f.now.Add(d)
		f.d.Responded(&a)
		f.d.End(&a, 200, nil)
	}
	for range 20 {
		serve("/api/report", 300*time.Millisecond)
		for range 9 {
			serve("/api/users", 5*time.Millisecond)
		}
	}
	return f
}

func route(path string) *balancer.Request {
	return &balancer.Request{Host: "app.test", Method: "GET", Path: path}
}

// begin starts Begin in the background; the attempt arrives on the channel.
func (f *dispatchFixture) begin(t *testing.T, path string) <-chan Attempt {
	ch := make(chan Attempt, 1)
	go func() {
		a, err := f.d.Begin(context.Background(), route(path))
		if err != nil {
			t.Error(err)
			close(ch)
			return
		}
		ch <- a
	}()
	return ch
}

func (f *dispatchFixture) waitQueued(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f.up.QueueLen() != n {
		if time.Now().After(deadline) {
			t.Fatalf("queue length %d, want %d", f.up.QueueLen(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAdaptiveAdmissionKeepsASlotForFastRoutes(t *testing.T) {
	f := admissionFixture(t)
	var slow []Attempt
	for range 3 {
		a, err := f.d.Begin(context.Background(), route("/api/report"))
		if err != nil || a.Queued != 0 {
			t.Fatalf("slow request below its limit: queued %v, %v", a.Queued, err)
		}
		slow = append(slow, a)
	}
	// Three slow requests hold 3 of 4 slots: a fourth waits, though a slot is free.
	slow4 := f.begin(t, "/api/report")
	f.waitQueued(t, 1)
	// ... which a fast request takes at once.
	fast, err := f.d.Begin(context.Background(), route("/api/users"))
	if err != nil || fast.Queued != 0 {
		t.Fatalf("fast request with a reserved slot free: queued %v, %v", fast.Queued, err)
	}
	// Every slot busy; a fast request queues behind the waiting slow one ...
	fast2 := f.begin(t, "/api/users")
	f.waitQueued(t, 2)
	// ... and gets the next slot first.
	f.d.End(&fast, 200, nil)
	a := <-fast2
	if a.Backend == nil {
		t.Fatal("the fast waiter got nothing")
	}
	select {
	case <-slow4:
		t.Fatal("a slow request went ahead of a fast one, or beyond its limit")
	case <-time.After(50 * time.Millisecond):
	}
	// A slow request ending lets the waiting slow one in.
	f.d.End(&slow[0], 200, nil)
	s4 := <-slow4
	if s4.Backend == nil {
		t.Fatal("the slow waiter got nothing")
	}
	for _, x := range []*Attempt{&a, &s4, &slow[1], &slow[2]} {
		f.d.End(x, 200, nil)
	}
	if in, _, _ := f.totals(); in != 0 {
		t.Fatalf("%d in flight after every End", in)
	}
	if st := f.up.Admission(); st.SlowInService != 0 || st.FastInService != 0 {
		t.Fatalf("admission still counts requests in service: %+v", st)
	}
}

func TestAdaptiveAdmissionAgedSlowGoesFirst(t *testing.T) {
	f := admissionFixture(t)
	var held []Attempt
	for _, p := range []string{"/api/report", "/api/report", "/api/report", "/api/users"} {
		a, err := f.d.Begin(context.Background(), route(p))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, a)
	}
	slow := f.begin(t, "/api/report")
	f.waitQueued(t, 1)
	time.Sleep(1100 * time.Millisecond) // past the aging bound
	fast := f.begin(t, "/api/users")
	f.waitQueued(t, 2)
	f.d.End(&held[3], 200, nil) // the fast slot frees: the aged slow request takes it
	s := <-slow
	if s.Backend == nil {
		t.Fatal("the aged slow waiter got nothing")
	}
	f.d.End(&held[0], 200, nil)
	a := <-fast
	for _, x := range []*Attempt{&s, &a, &held[1], &held[2]} {
		f.d.End(x, 200, nil)
	}
}

func TestFIFOAdmission(t *testing.T) {
	f := admissionFixture(t)
	f.up.SetAdaptive(false)
	var held []Attempt
	for range 4 {
		a, err := f.d.Begin(context.Background(), route("/api/report"))
		if err != nil || a.Queued != 0 {
			t.Fatalf("fifo: a slow request with a free slot waited %v (%v)", a.Queued, err)
		}
		held = append(held, a)
	}
	slow := f.begin(t, "/api/report")
	f.waitQueued(t, 1)
	fast := f.begin(t, "/api/users")
	f.waitQueued(t, 2)
	f.d.End(&held[0], 200, nil)
	s := <-slow // first come, first served
	f.d.End(&held[1], 200, nil)
	a := <-fast
	for _, x := range []*Attempt{&s, &a, &held[2], &held[3]} {
		f.d.End(x, 200, nil)
	}
}

// A request that finds no usable backend waits while one is starting (a
// launched process about to pass its health check), and gets it once up.
func TestWaitForStartingBackend(t *testing.T) {
	f := newDispatchFixture(t, rrSettings, 1)
	f.bs[0].SetState(backend.StateStarting)
	f.up.SetQueue(10, 5*time.Second)
	got := f.begin(t, "/api/users")
	f.waitQueued(t, 1)
	f.bs[0].SetState(backend.StateUp)
	f.up.KickQueue()
	a := <-got
	if a.Backend != f.bs[0] {
		t.Fatalf("got %v, want the backend that came up", a.Backend)
	}
	f.d.End(&a, 200, nil)
	// Down, not starting: no wait.
	f.bs[0].SetState(backend.StateDown)
	if _, err := f.d.Begin(context.Background(), route("/api/users")); !errors.Is(err, ErrNoBackend) {
		t.Fatalf("every backend down: %v, want ErrNoBackend at once", err)
	}
}
