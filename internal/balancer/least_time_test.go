package balancer

import (
	"testing"
	"time"

	"ballast/internal/backend"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// withLatency gives each backend one latency sample (0 = none).
func withLatency(bs []*backend.Backend, ms ...int) {
	for i, m := range ms {
		if m > 0 {
			bs[i].ObserveLatency(time.Duration(m)*time.Millisecond, t0)
		}
	}
}

func TestLeastTimeFollowsFastBackend(t *testing.T) {
	tests := []struct {
		name    string
		latency []int // ms
		slow    string
	}{
		{"10ms vs 100ms", []int{10, 100}, "b"},
		{"100ms vs 10ms", []int{100, 10}, "a"},
		{"three fast, one slow", []int{10, 12, 100, 11}, "c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := newBackends(len(tt.latency))
			withLatency(bs, tt.latency...)
			const picks = 32 * 1000
			got := tally(NewLeastTime(bs), nil, picks)
			// The slow backend gets only the trickle: every 32nd pick is round
			// robin, so 1/32 × 1/n of the picks.
			trickle := picks / leastTimeTrickle / len(bs)
			if s := got[tt.slow]; s == 0 || s < trickle-1 || s > trickle+1 {
				t.Errorf("slow backend %s picked %d times, want the trickle %d ± 1 (all: %v)", tt.slow, s, trickle, got)
			}
		})
	}
}

func TestLeastTimeFastGetsMajority(t *testing.T) {
	bs := newBackends(2)
	withLatency(bs, 10, 100)
	got := tally(NewLeastTime(bs), nil, 10000)
	if got["a"] < 9800 {
		t.Errorf("fast backend picked %d of 10000 times, want >= 9800 (all: %v)", got["a"], got)
	}
}

func TestLeastTimeCombinesInFlight(t *testing.T) {
	tests := []struct {
		name     string
		latency  []int // ms; 0 = no sample yet
		inFlight []int
		want     string
	}{
		{"idle: faster wins", []int{10, 15}, []int{0, 0}, "a"},
		// 10ms × (5+1) = 60ms > 15ms × 1.
		{"busy fast loses to idle slightly slower", []int{10, 15}, []int{5, 0}, "b"},
		// 10 × 2 = 20 > 15 × 1.
		{"one in flight is enough here", []int{10, 15}, []int{1, 0}, "b"},
		// 10 × 2 = 20 < 50 × 1.
		{"but not against a much slower one", []int{10, 50}, []int{1, 0}, "a"},
		{"no sample yet: tried first", []int{10, 0}, []int{0, 0}, "b"},
		{"no sample yet, even when busy", []int{10, 0}, []int{0, 3}, "b"},
		{"among unsampled, fewer in flight", []int{0, 0}, []int{2, 1}, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := newBackends(len(tt.latency))
			withLatency(bs, tt.latency...)
			for i, n := range tt.inFlight {
				for range n {
					bs[i].Acquire()
				}
			}
			lt := NewLeastTime(bs)
			for k := range leastTimeTrickle - 1 { // stay clear of the trickle pick
				if got := pickSeq(lt, nil, 1); got != tt.want {
					t.Fatalf("pick %d = %s, want %s", k, got, tt.want)
				}
			}
		})
	}
}

// The directly observed recovery: new, fast samples at a later time pull the
// decaying average down and the backend is preferred again.
func TestLeastTimeRecoveredBackendRegainsTraffic(t *testing.T) {
	bs := newBackends(2)
	withLatency(bs, 10, 100)
	lt := NewLeastTime(bs)
	if got := tally(lt, nil, 320); got["b"] > 10 {
		t.Fatalf("while slow, b picked %d of 320 times", got["b"])
	}
	bs[1].ObserveLatency(2*time.Millisecond, t0.Add(time.Minute))
	if got := tally(lt, nil, 320); got["b"] < 300 {
		t.Errorf("after recovering, b picked %d of 320 times, want >= 300 (all: %v)", got["b"], got)
	}
}

// The trickle is what lets that happen on its own: a simulated run where b
// answers slowly, then quickly, and only ever reports latency when picked.
func TestLeastTimeTrickleLetsSlowBackendRecover(t *testing.T) {
	bs := newBackends(2)
	lt := NewLeastTime(bs)
	now := t0
	trueLatency := map[string]time.Duration{"a": 10 * time.Millisecond, "b": 100 * time.Millisecond}
	run := func(picks int) map[string]int {
		got := map[string]int{}
		for range picks {
			b := lt.Pick(nil)
			now = now.Add(10 * time.Millisecond)
			b.ObserveLatency(trueLatency[b.Addr], now)
			got[b.Addr]++
		}
		return got
	}
	if got := run(3000); got["b"] > 3000/leastTimeTrickle {
		t.Fatalf("while slow, b picked %d of 3000 times", got["b"])
	}
	trueLatency["b"] = 5 * time.Millisecond
	run(6000) // 60 simulated seconds
	if got := run(1000); got["b"] < 900 {
		t.Errorf("after recovering, b picked %d of 1000 times, want >= 900 (all: %v)", got["b"], got)
	}
}

func TestLeastTimeSkipsUnusable(t *testing.T) {
	bs := newBackends(3)
	withLatency(bs, 10, 20, 30)
	down(bs, "a")
	got := tally(NewLeastTime(bs), nil, 320)
	if got["a"] != 0 || got["b"]+got["c"] != 320 {
		t.Errorf("picks = %v, want none on a", got)
	}
	down(bs, "b", "c")
	if got := tally(NewLeastTime(bs), nil, 64); got[""] != 64 {
		t.Errorf("all down: picks = %v, want all nil", got)
	}
}

func BenchmarkLeastTimePick(b *testing.B) {
	bs := benchBackends()
	for i, be := range bs {
		be.ObserveLatency(time.Duration(10+i)*time.Millisecond, t0)
	}
	benchPick(b, NewLeastTime(bs))
}
