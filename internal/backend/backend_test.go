package backend

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestStateString(t *testing.T) {
	tests := []struct {
		s    State
		want string
	}{
		{StateUp, "up"},
		{StateDown, "down"},
		{StateEjected, "ejected"},
		{StateDraining, "draining"},
		{StateStarting, "starting"},
		{State(-1), "unknown"},
		{State(len(stateNames)), "unknown"},
		{State(1 << 30), "unknown"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d_%s", int32(tt.s), tt.want), func(t *testing.T) {
			if got := tt.s.String(); got != tt.want {
				t.Errorf("State(%d).String() = %q, want %q", int32(tt.s), got, tt.want)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	b := New("app", "10.0.0.1:80", 0)
	if b.State() != StateUp {
		t.Errorf("new backend state = %v, want up", b.State())
	}
	if b.Weight() != 1 {
		t.Errorf("New with weight 0: Weight() = %d, want 1", b.Weight())
	}
	if b.ID != StickyID("app", "10.0.0.1:80") {
		t.Errorf("ID = %q, want StickyID(pool, addr)", b.ID)
	}
	if b.Latency() != 0 || b.InFlight() != 0 || b.Requests() != 0 || b.Failures() != 0 {
		t.Errorf("new backend has non-zero counters: latency %v in-flight %d requests %d failures %d",
			b.Latency(), b.InFlight(), b.Requests(), b.Failures())
	}
}

func TestSetters(t *testing.T) {
	tests := []struct {
		name         string
		weight, max  int
		wantW, wantM int
	}{
		{"plain", 5, 10, 5, 10},
		{"weight below 1 counts as 1", -3, 0, 1, 0},
		{"negative max_conns means unlimited", 1, -7, 1, 0},
		{"upper config bound", 1000, 1 << 20, 1000, 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New("p", "a", 1)
			b.SetWeight(tt.weight)
			b.SetMaxConns(tt.max)
			if b.Weight() != tt.wantW {
				t.Errorf("Weight() = %d, want %d", b.Weight(), tt.wantW)
			}
			if b.MaxConns() != tt.wantM {
				t.Errorf("MaxConns() = %d, want %d", b.MaxConns(), tt.wantM)
			}
		})
	}
	b := New("p", "a", 1)
	b.SetBackup(true)
	if !b.Backup() {
		t.Error("SetBackup(true) not reported by Backup()")
	}
	b.SetBackup(false)
	if b.Backup() {
		t.Error("SetBackup(false) not reported by Backup()")
	}
	if prev := b.SetState(StateDraining); prev != StateUp {
		t.Errorf("SetState returned previous %v, want up", prev)
	}
	if prev := b.SetState(StateDown); prev != StateDraining {
		t.Errorf("SetState returned previous %v, want draining", prev)
	}
}

func TestUsable(t *testing.T) {
	tests := []struct {
		name     string
		state    State
		maxConns int
		inFlight int
		want     bool
	}{
		{"up idle", StateUp, 0, 0, true},
		{"up unlimited busy", StateUp, 0, 1000, true},
		{"up below limit", StateUp, 3, 2, true},
		{"up at limit", StateUp, 3, 3, false},
		{"up limit 1 idle", StateUp, 1, 0, true},
		{"up limit 1 busy", StateUp, 1, 1, false},
		{"down", StateDown, 0, 0, false},
		{"ejected", StateEjected, 0, 0, false},
		{"draining", StateDraining, 0, 0, false},
		{"starting", StateStarting, 0, 0, false},
		{"unknown state", State(42), 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New("p", "a", 1)
			b.SetState(tt.state)
			b.SetMaxConns(tt.maxConns)
			for range tt.inFlight {
				b.Acquire()
			}
			if got := b.Usable(); got != tt.want {
				t.Errorf("Usable() = %v, want %v", got, tt.want)
			}
		})
	}
}

// A backend at its limit becomes usable again as soon as one request ends.
func TestUsableAfterRelease(t *testing.T) {
	b := New("p", "a", 1)
	b.SetMaxConns(2)
	b.Acquire()
	b.Acquire()
	if b.Usable() {
		t.Fatal("usable at max_conns")
	}
	b.Release(false)
	if !b.Usable() {
		t.Fatal("not usable after a release brought it below max_conns")
	}
	// Raising the limit at run time takes effect at once.
	b.Acquire()
	b.SetMaxConns(3)
	if !b.Usable() {
		t.Fatal("not usable after max_conns was raised above in-flight")
	}
}

func TestAcquireRelease(t *testing.T) {
	b := New("p", "a", 1)
	steps := []struct {
		acquire bool
		failed  bool
		// expected counters after the step
		inFlight int64
		requests uint64
		failures uint64
	}{
		{acquire: true, inFlight: 1, requests: 1},
		{acquire: true, inFlight: 2, requests: 2},
		{acquire: false, failed: false, inFlight: 1, requests: 2},
		{acquire: true, inFlight: 2, requests: 3},
		{acquire: false, failed: true, inFlight: 1, requests: 3, failures: 1},
		{acquire: false, failed: true, inFlight: 0, requests: 3, failures: 2},
	}
	for i, s := range steps {
		if s.acquire {
			b.Acquire()
		} else {
			b.Release(s.failed)
		}
		if b.InFlight() != s.inFlight || b.Requests() != s.requests || b.Failures() != s.failures {
			t.Fatalf("step %d: in-flight %d requests %d failures %d, want %d %d %d",
				i, b.InFlight(), b.Requests(), b.Failures(), s.inFlight, s.requests, s.failures)
		}
	}
}

func TestAcquireReleaseConcurrent(t *testing.T) {
	b := New("p", "a", 1)
	const workers, per = 16, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				b.Acquire()
				b.Release((w+i)%4 == 0)
			}
		})
	}
	wg.Wait()
	if b.InFlight() != 0 {
		t.Errorf("in-flight = %d after balanced Acquire/Release, want 0", b.InFlight())
	}
	if b.Requests() != workers*per {
		t.Errorf("requests = %d, want %d", b.Requests(), workers*per)
	}
	if want := uint64(workers * per / 4); b.Failures() != want {
		t.Errorf("failures = %d, want %d", b.Failures(), want)
	}
}

// t0 is an arbitrary fixed instant for the latency tests.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// closeTo fails t unless got is within tol of want.
func closeTo(t *testing.T, what string, got, want, tol time.Duration) {
	t.Helper()
	if d := got - want; d < -tol || d > tol {
		t.Errorf("%s = %v, want %v ± %v", what, got, want, tol)
	}
}

func TestObserveLatency(t *testing.T) {
	t.Run("zero before any sample", func(t *testing.T) {
		if got := New("p", "a", 1).Latency(); got != 0 {
			t.Errorf("Latency() = %v before any sample, want 0", got)
		}
	})

	t.Run("first sample taken as is", func(t *testing.T) {
		for _, d := range []time.Duration{time.Microsecond, 37 * time.Millisecond, 3 * time.Second} {
			b := New("p", "a", 1)
			b.ObserveLatency(d, t0)
			if got := b.Latency(); got != d {
				t.Errorf("first sample %v: Latency() = %v", d, got)
			}
		}
	})

	t.Run("same instant still moves", func(t *testing.T) {
		b := New("p", "a", 1)
		b.ObserveLatency(100*time.Millisecond, t0)
		prev := b.Latency()
		for i := range 5 {
			b.ObserveLatency(200*time.Millisecond, t0)
			got := b.Latency()
			if got <= prev {
				t.Fatalf("sample %d at the same instant: average %v did not move up from %v", i, got, prev)
			}
			if got >= 200*time.Millisecond {
				t.Fatalf("sample %d at the same instant: average %v jumped to the sample", i, got)
			}
			prev = got
		}
		// The old average keeps at most 90% each time: 200 - 100·0.9^5.
		closeTo(t, "after 5 same-instant samples", prev, 200*time.Millisecond-time.Duration(100e6*math.Pow(0.9, 5)), time.Microsecond)
	})

	t.Run("clock going backwards counts as same instant", func(t *testing.T) {
		b := New("p", "a", 1)
		b.ObserveLatency(100*time.Millisecond, t0)
		b.ObserveLatency(200*time.Millisecond, t0.Add(-time.Hour))
		closeTo(t, "average", b.Latency(), 110*time.Millisecond, time.Microsecond)
	})

	t.Run("long gap: new sample dominates", func(t *testing.T) {
		b := New("p", "a", 1)
		old, fresh := 2*time.Second, 10*time.Millisecond
		b.ObserveLatency(old, t0)
		b.ObserveLatency(fresh, t0.Add(6*latencyTau))
		got := b.Latency()
		// Weight of the new sample = (old - got) / (old - fresh).
		w := float64(old-got) / float64(old-fresh)
		if w <= 0.99 {
			t.Errorf("after 6τ the new sample has weight %.5f (average %v), want > 0.99", w, got)
		}
		closeTo(t, "average", got, fresh+time.Duration(float64(old-fresh)*math.Exp(-6)), time.Microsecond)
	})

	t.Run("one τ leaves 1/e of the old average", func(t *testing.T) {
		b := New("p", "a", 1)
		b.ObserveLatency(time.Second, t0)
		b.ObserveLatency(0, t0.Add(latencyTau))
		closeTo(t, "average", b.Latency(), time.Duration(float64(time.Second)*math.Exp(-1)), time.Microsecond)
	})

	t.Run("decay follows time not sample count", func(t *testing.T) {
		// One backend gets one fast sample after 20s, the other ten fast
		// samples spread over the same 20s: the old value must have decayed
		// equally in both (each step is 2s, so no step hits the 0.9 floor).
		one, many := New("p", "a", 1), New("p", "b", 1)
		one.ObserveLatency(time.Second, t0)
		many.ObserveLatency(time.Second, t0)
		one.ObserveLatency(10*time.Millisecond, t0.Add(20*time.Second))
		for i := 1; i <= 10; i++ {
			many.ObserveLatency(10*time.Millisecond, t0.Add(time.Duration(i)*2*time.Second))
		}
		closeTo(t, "ten samples vs one", many.Latency(), one.Latency(), time.Microsecond)
	})

	t.Run("slow to fast converges within a few τ", func(t *testing.T) {
		slow, fast := 500*time.Millisecond, 10*time.Millisecond
		b := New("p", "a", 1)
		now := t0
		for range 30 { // a minute of slow answers, one every 2s
			b.ObserveLatency(slow, now)
			now = now.Add(2 * time.Second)
		}
		closeTo(t, "steady slow average", b.Latency(), slow, time.Microsecond)
		start := now.Add(-2 * time.Second)
		for _, taus := range []int{1, 3, 5} {
			for now.Sub(start) <= time.Duration(taus)*latencyTau {
				b.ObserveLatency(fast, now)
				now = now.Add(2 * time.Second)
			}
			elapsed := now.Add(-2 * time.Second).Sub(start)
			want := fast + time.Duration(float64(slow-fast)*math.Exp(-float64(elapsed)/float64(latencyTau)))
			closeTo(t, "average after "+elapsed.String(), b.Latency(), want, time.Microsecond)
		}
		// After 5τ the average is within 1% of the slow-fast gap from fast.
		if got, lim := b.Latency(), fast+(slow-fast)/100; got > lim {
			t.Errorf("after 5τ average %v, want ≤ %v", got, lim)
		}
	})
}

// Concurrent updates never leave the average outside the range of the
// samples, whatever the interleaving (run with -race).
func TestObserveLatencyConcurrent(t *testing.T) {
	const (
		workers = 32
		per     = 2000
		lo      = 5 * time.Millisecond
		hi      = 80 * time.Millisecond
	)
	b := New("p", "a", 1)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []time.Duration
	for w := range workers {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(w), 99))
			for i := range per {
				d := lo + time.Duration(rnd.Int64N(int64(hi-lo)+1))
				// Times jitter back and forth around a slowly advancing clock,
				// so some updates see a negative Δt.
				now := t0.Add(time.Duration(i)*time.Millisecond + time.Duration(rnd.IntN(50))*time.Millisecond)
				b.ObserveLatency(d, now)
				if got := b.Latency(); got != 0 && (got < lo || got > hi) {
					mu.Lock()
					bad = append(bad, got)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Errorf("%d reads outside [%v, %v], e.g. %v", len(bad), lo, hi, bad[0])
	}
	if got := b.Latency(); got < lo || got > hi {
		t.Errorf("final average %v outside [%v, %v]", got, lo, hi)
	}
}

func TestStickyID(t *testing.T) {
	isHex16 := func(s string) bool {
		if len(s) != 16 {
			return false
		}
		for _, c := range s {
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
		return true
	}
	tests := []struct {
		pool, addr string
	}{
		{"app", "10.0.0.1:8080"},
		{"app", "10.0.0.2:8080"},
		{"api", "10.0.0.1:8080"},
		{"", ""},
		{"a", "bc"},
		{"ab", "c"},
		{"app", "[::1]:8080"},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		id := StickyID(tt.pool, tt.addr)
		name := tt.pool + "/" + tt.addr
		if !isHex16(id) {
			t.Errorf("StickyID(%q, %q) = %q, want 16 lower-case hex digits", tt.pool, tt.addr, id)
		}
		if again := StickyID(tt.pool, tt.addr); again != id {
			t.Errorf("StickyID(%q, %q) not deterministic: %q then %q", tt.pool, tt.addr, id, again)
		}
		if prev, dup := seen[id]; dup {
			t.Errorf("StickyID collision: %s and %s both give %q", prev, name, id)
		}
		seen[id] = name
	}
	// Pinned value: every ballast node (and every release) must derive the
	// same ID, or existing sticky cookies stop being honoured.
	if got, want := StickyID("app", "10.0.0.1:8080"), pinnedStickyID; got != want {
		t.Errorf("StickyID(app, 10.0.0.1:8080) = %q, want the pinned %q", got, want)
	}
}

// pinnedStickyID is StickyID("app", "10.0.0.1:8080") computed outside Go:
//
//	printf 'ballast-sticky\0app\00010.0.0.1:8080' | sha256sum | cut -c1-16
const pinnedStickyID = "7212ac622ae416d6"

// Regression: max_conns was checked by the balancer and counted afterwards, so
// two requests could take the last free slot together. TryAcquire holds the
// limit under any concurrency.
func TestTryAcquireHoldsMaxConns(t *testing.T) {
	b := New("p", "127.0.0.1:1", 1)
	b.SetMaxConns(2)
	var peak atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 5000 {
				if !b.TryAcquire() {
					continue
				}
				n := b.InFlight()
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				b.Release(false)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > 2 {
		t.Fatalf("in flight reached %d with max_conns 2", p)
	}
	if b.InFlight() != 0 {
		t.Fatalf("in flight %d after all released", b.InFlight())
	}
	b.SetMaxConns(0)
	for range 10 {
		if !b.TryAcquire() {
			t.Fatal("TryAcquire refused without a limit")
		}
	}
}

func TestWaitIdle(t *testing.T) {
	t.Run("idle: at once", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // even a done context: idle wins
		if err := New("p", "a", 1).WaitIdle(ctx); err != nil {
			t.Errorf("WaitIdle on an idle backend = %v, want nil", err)
		}
	})
	t.Run("returns when the last request ends", func(t *testing.T) {
		b := New("p", "a", 1)
		b.Acquire()
		b.Acquire()
		done := make(chan error, 1)
		go func() { done <- b.WaitIdle(context.Background()) }()
		b.Release(false)
		select {
		case err := <-done:
			t.Fatalf("WaitIdle returned %v with a request still in flight", err)
		case <-time.After(50 * time.Millisecond):
		}
		b.Release(true)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("WaitIdle = %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("WaitIdle did not return after the last Release")
		}
	})
	t.Run("context ends first", func(t *testing.T) {
		b := New("p", "a", 1)
		b.Acquire()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		if err := b.WaitIdle(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("WaitIdle = %v, want context.DeadlineExceeded", err)
		}
	})
}
