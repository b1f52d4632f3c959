package balancer

import (
	"strings"
	"testing"
)

func TestWeightedRoundRobinSchedule(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		want    string // one cycle
	}{
		{"5:1:1 smooth, as nginx", []int{5, 1, 1}, "aabacaa"},
		{"divided by the gcd first", []int{50, 10, 10}, "aabacaa"},
		{"1:1:1 is round robin", []int{1, 1, 1}, "abc"},
		{"2:1", []int{2, 1}, "aba"},
		{"4:3:2 interleaved", []int{4, 3, 2}, "abcabacba"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wrr := NewWeightedRoundRobin(newBackends(len(tt.weights), tt.weights...))
			// The same cycle, repeated exactly.
			if got, want := pickSeq(wrr, nil, 4*len(tt.want)), strings.Repeat(tt.want, 4); got != want {
				t.Errorf("picks = %s, want %s", got, want)
			}
		})
	}
}

func TestWeightedRoundRobinRatiosAndNoBursts(t *testing.T) {
	wrr := NewWeightedRoundRobin(newBackends(3, 5, 1, 1))
	const cycles = 1000
	seq := pickSeq(wrr, nil, 7*cycles)
	for c := range cycles {
		cycle := seq[7*c : 7*c+7]
		if a, b, cc := strings.Count(cycle, "a"), strings.Count(cycle, "b"), strings.Count(cycle, "c"); a != 5 || b != 1 || cc != 1 {
			t.Fatalf("cycle %d = %s: a,b,c = %d,%d,%d, want 5,1,1", c, cycle, a, b, cc)
		}
	}
	// Across cycle boundaries too: the heavy backend never gets more than
	// its weight in a row (a plain weighted round robin would send aaaaabc).
	run, longest := 0, 0
	for _, p := range seq {
		if p == 'a' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	if longest > 5 {
		t.Errorf("longest run of the heavy backend = %d, want <= 5", longest)
	}
}

func TestWeightedRoundRobinSkipsUnusable(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		down    []string
		picks   int
		want    map[string]int
	}{
		// b's slot goes to the next usable entry and the schedule moves on
		// past it, so a and c keep their 5:1 ratio.
		{"5:1:1 without b", []int{5, 1, 1}, []string{"b"}, 6000, map[string]int{"a": 5000, "c": 1000}},
		{"5:1:1 without a", []int{5, 1, 1}, []string{"a"}, 6000, map[string]int{"b": 3000, "c": 3000}},
		{"1:1:1 without c", []int{1, 1, 1}, []string{"c"}, 6000, map[string]int{"a": 3000, "b": 3000}},
		{"all down", []int{5, 1, 1}, []string{"a", "b", "c"}, 70, map[string]int{"": 70}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := newBackends(len(tt.weights), tt.weights...)
			down(bs, tt.down...)
			got := tally(NewWeightedRoundRobin(bs), nil, tt.picks)
			for addr, want := range tt.want {
				if g := got[addr]; g != want {
					t.Errorf("%q picked %d times, want %d (all: %v)", addr, g, want, got)
				}
			}
			for _, d := range tt.down {
				if got[d] > 0 {
					t.Errorf("down backend %s picked %d times", d, got[d])
				}
			}
		})
	}
}

// A schedule longer than maxScheduleWalk whose only usable backend is rare
// still finds it.
func TestWeightedRoundRobinLongScheduleFallback(t *testing.T) {
	bs := newBackends(2, 100, 1)
	down(bs, "a")
	if got := tally(NewWeightedRoundRobin(bs), nil, 500); got["b"] != 500 {
		t.Errorf("picks = %v, want all 500 on b", got)
	}
}

func BenchmarkWeightedRoundRobinPick(b *testing.B) {
	benchPick(b, NewWeightedRoundRobin(benchBackends()))
}
