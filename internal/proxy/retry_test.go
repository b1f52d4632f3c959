package proxy

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"ballast/internal/backend"
)

// A request that finds every backend at max_conns waits, and the slot freed
// by End goes to the oldest waiter, not to a request arriving after it.
func TestQueueHandsFreedSlotToOldest(t *testing.T) {
	f := newDispatchFixture(t, rrSettings, 1)
	f.bs[0].SetMaxConns(1)
	f.up.SetQueue(10, 5*time.Second)
	first, err := f.d.Begin(context.Background(), apiRequest())
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		i int
		a Attempt
	}
	got := make(chan result, 3)
	for i := range 3 {
		go func() {
			a, err := f.d.Begin(context.Background(), apiRequest())
			if err != nil {
				t.Error(err)
			}
			got <- result{i, a}
		}()
		for f.up.QueueLen() != i+1 {
			time.Sleep(time.Millisecond)
		}
	}
	prev := first
	for want := range 3 {
		f.d.End(&prev, 200, nil)
		r := <-got
		if r.i != want {
			t.Fatalf("slot went to waiter %d, want %d (arrival order)", r.i, want)
		}
		if r.a.Backend.InFlight() != 1 {
			t.Fatalf("in flight %d, want 1 (max_conns)", r.a.Backend.InFlight())
		}
		if r.a.Queued <= 0 {
			t.Errorf("waiter %d: Queued = %v, want > 0", r.i, r.a.Queued)
		}
		prev = r.a
	}
	f.d.End(&prev, 200, nil)
	if n := f.bs[0].InFlight(); n != 0 {
		t.Fatalf("in flight %d after all ended", n)
	}
}

func TestQueueTimeoutAndFull(t *testing.T) {
	f := newDispatchFixture(t, rrSettings, 1)
	f.bs[0].SetMaxConns(1)
	f.up.SetQueue(1, 150*time.Millisecond)
	a, err := f.d.Begin(context.Background(), apiRequest())
	if err != nil {
		t.Fatal(err)
	}
	defer f.d.End(&a, 200, nil)
	var wg sync.WaitGroup
	wg.Go(func() {
		start := time.Now()
		_, err := f.d.Begin(context.Background(), apiRequest())
		if !errors.Is(err, ErrQueue) || StatusFor(err) != 503 {
			t.Errorf("queued: err = %v, want ErrQueue", err)
		}
		if d := time.Since(start); d < 150*time.Millisecond || d > time.Second {
			t.Errorf("queue timeout after %v, want 150ms", d)
		}
	})
	for f.up.QueueLen() != 1 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	if _, err := f.d.Begin(context.Background(), apiRequest()); !errors.Is(err, ErrQueue) {
		t.Errorf("queue full: err = %v, want ErrQueue", err)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("a full queue answered after %v, want at once", d)
	}
	wg.Wait()
}

// Every backend down: no waiting, 503 at once.
func TestQueueNotUsedWhenAllDown(t *testing.T) {
	f := newDispatchFixture(t, rrSettings, 2)
	for _, b := range f.bs {
		b.SetMaxConns(1)
		b.SetState(backend.StateDown)
	}
	start := time.Now()
	if _, err := f.d.Begin(context.Background(), apiRequest()); !errors.Is(err, ErrNoBackend) {
		t.Fatalf("err = %v, want ErrNoBackend", err)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Fatalf("answered after %v, want at once", d)
	}
}

func TestRetryPolicy(t *testing.T) {
	p := &RetryPolicy{Attempts: 2, OnTimeout: true, IdempotentOnly: true}
	p.RetryStatus(503)
	cases := []struct {
		kind   FailureKind
		status int
		want   bool
	}{
		{FailTimeout, 0, true}, {FailReset, 0, false}, {FailStatus, 503, true},
		{FailStatus, 502, false}, {FailStatus, 599, false}, {FailStatus, 404, false},
	}
	for _, c := range cases {
		if got := p.covers(c.kind, c.status); got != c.want {
			t.Errorf("covers(%d, %d) = %v, want %v", c.kind, c.status, got, c.want)
		}
	}
	for m, want := range map[string]bool{"GET": true, "HEAD": true, "PUT": true, "DELETE": true,
		"OPTIONS": true, "TRACE": true, "POST": false, "PATCH": false, "CONNECT": false} {
		if Idempotent([]byte(m)) != want {
			t.Errorf("Idempotent(%s) = %v", m, !want)
		}
	}
	if (&RetryPolicy{Attempts: 2}).afterSend() {
		t.Error("a policy without conditions retries sent requests")
	}
	if !p.afterSend() {
		t.Error("a policy with conditions does not retry sent requests")
	}
}

// Retry never goes back to a backend already tried, stops at the attempts,
// and refuses what is not replayable.
func TestDispatcherRetry(t *testing.T) {
	f := newDispatchFixture(t, rrSettings, 4)
	p := &RetryPolicy{Attempts: 2, OnReset: true, IdempotentOnly: true, BudgetPercent: 20}
	f.up.SetRetryPolicy(p)
	a, err := f.d.Begin(context.Background(), apiRequest())
	if err != nil {
		t.Fatal(err)
	}
	var tried Tried
	tried.Add(a.Backend)
	if _, err := f.d.Retry(&a, apiRequest(), &tried, Failure{Kind: FailReset}); err == nil {
		t.Fatal("a request that is not replayable was retried")
	}
	if _, err := f.d.Retry(&a, apiRequest(), &tried, Failure{Kind: FailTimeout, Replayable: true}); err == nil {
		t.Fatal("a failure the policy does not name was retried")
	}
	seen := map[*backend.Backend]bool{a.Backend: true}
	for i := range 2 {
		next, err := f.d.Retry(&a, apiRequest(), &tried, Failure{Kind: FailReset, Replayable: true})
		if err != nil {
			t.Fatalf("retry %d: %v", i+1, err)
		}
		if seen[next.Backend] {
			t.Fatalf("retry %d went to %s again", i+1, next.Backend.Addr)
		}
		if next.Retries != i+1 {
			t.Errorf("retry %d: Retries = %d", i+1, next.Retries)
		}
		seen[next.Backend] = true
		f.d.End(&a, 0, ErrBadResponse)
		a = next
	}
	if _, err := f.d.Retry(&a, apiRequest(), &tried, Failure{Kind: FailReset, Replayable: true}); err == nil {
		t.Fatal("retried beyond attempts")
	}
	// A connect failure may still try another backend (minConnectRetries
	// is 2, already used up here, so not this time either).
	if _, err := f.d.Retry(&a, apiRequest(), &tried, Failure{Kind: FailConnect}); err == nil {
		t.Fatal("connect retries beyond their bound")
	}
	f.d.End(&a, 200, nil)
	if in, _, _ := f.totals(); in != 0 {
		t.Fatalf("in flight %d after End", in)
	}
}

// Connect failures are retried even with a policy of no attempts.
func TestDispatcherRetryConnectAlways(t *testing.T) {
	f := newDispatchFixture(t, rrSettings, 3)
	f.up.SetRetryPolicy(&RetryPolicy{Attempts: 0})
	a, _ := f.d.Begin(context.Background(), apiRequest())
	var tried Tried
	tried.Add(a.Backend)
	for i := range minConnectRetries {
		next, err := f.d.Retry(&a, apiRequest(), &tried, Failure{Kind: FailConnect})
		if err != nil {
			t.Fatalf("connect retry %d: %v", i+1, err)
		}
		f.d.End(&a, 0, ErrConnect)
		a = next
	}
	f.d.End(&a, 200, nil)
}

// The budget lets about its percentage of requests be retried once the saved
// tokens are spent, plus the reserve's trickle.
func TestBudget(t *testing.T) {
	b := NewBudget()
	now := time.Unix(1000, 0)
	// Spend the start-up tokens.
	for b.withdraw(now) {
	}
	got := 0
	for i := range 1000 {
		b.deposit(20)
		if i%2 == 0 && b.withdraw(now) { // half the requests want a retry
			got++
		}
	}
	if got < 190 || got > 210 {
		t.Fatalf("%d retries for 1000 requests at 20%%, want ~200", got)
	}
	// Nothing saved: the reserve grants one retry per 200 ms.
	b.milli.Store(0)
	if !b.withdraw(now.Add(time.Second)) {
		t.Fatal("reserve did not grant a retry")
	}
	if b.withdraw(now.Add(time.Second + 100*time.Millisecond)) {
		t.Fatal("reserve granted two retries within 200 ms")
	}
	// The savings are capped.
	for range 100000 {
		b.deposit(100)
	}
	n := 0
	for b.withdraw(now.Add(time.Second + 150*time.Millisecond)) {
		n++
	}
	if n != budgetCap/1000 {
		t.Fatalf("%d retries saved up, want the cap %d", n, budgetCap/1000)
	}
}
