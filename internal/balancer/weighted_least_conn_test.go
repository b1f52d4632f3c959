package balancer

import "testing"

// Held-open requests fill the backends in proportion to their weights.
func TestWeightedLeastConnConvergesToWeights(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		total   int
	}{
		{"3:1", []int{3, 1}, 400},
		{"3:1 small", []int{3, 1}, 8},
		{"1:3 order does not matter", []int{1, 3}, 400},
		{"5:3:2", []int{5, 3, 2}, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := newBackends(len(tt.weights), tt.weights...)
			wl := NewWeightedLeastConn(bs)
			sum := 0
			for _, w := range tt.weights {
				sum += w
			}
			for range tt.total {
				wl.Pick(nil).Acquire() // never released
			}
			for i, b := range bs {
				want := int64(tt.total * tt.weights[i] / sum)
				if d := b.InFlight() - want; d < -1 || d > 1 {
					t.Errorf("%s (weight %d) has %d in flight, want %d ± 1", b.Addr, tt.weights[i], b.InFlight(), want)
				}
			}
		})
	}
}

func TestWeightedLeastConnPrefersLeastLoadedRelativeToWeight(t *testing.T) {
	tests := []struct {
		name     string
		weights  []int
		inFlight []int
		want     string
	}{
		// (5+1)/3 = 2 < (2+1)/1 = 3: the heavier backend, though busier.
		{"heavier wins with more in flight", []int{3, 1}, []int{5, 2}, "a"},
		// (8+1)/3 = 3 > (1+1)/1 = 2.
		{"until its relative load is higher", []int{3, 1}, []int{8, 1}, "b"},
		// Idle: 1/4 < 1/1, the weight decides.
		{"idle: heaviest first", []int{1, 4, 1}, []int{0, 0, 0}, "b"},
		{"equal weights: least conn", []int{2, 2, 2}, []int{4, 3, 6}, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := newBackends(len(tt.weights), tt.weights...)
			for i, n := range tt.inFlight {
				for range n {
					bs[i].Acquire()
				}
			}
			wl := NewWeightedLeastConn(bs)
			for range len(bs) {
				if got := pickSeq(wl, nil, 1); got != tt.want {
					t.Fatalf("pick = %s, want %s", got, tt.want)
				}
			}
		})
	}
}

func TestWeightedLeastConnTiesRotate(t *testing.T) {
	bs := newBackends(3, 2, 2, 2)
	got := tally(NewWeightedLeastConn(bs), nil, 300)
	for _, a := range []string{"a", "b", "c"} {
		if got[a] != 100 {
			t.Errorf("%s picked %d times, want 100 (all: %v)", a, got[a], got)
		}
	}
}

func TestWeightedLeastConnSkipsUnusable(t *testing.T) {
	bs := newBackends(3, 10, 1, 1)
	down(bs, "a")
	got := tally(NewWeightedLeastConn(bs), nil, 100)
	if got["a"] != 0 || got["b"]+got["c"] != 100 {
		t.Errorf("picks = %v, want none on a", got)
	}
}

func BenchmarkWeightedLeastConnPick(b *testing.B) {
	benchPick(b, NewWeightedLeastConn(benchBackends()))
}
