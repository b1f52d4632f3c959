package balancer

import "testing"

func TestRandomFollowsWeights(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
	}{
		{"1:2:7", []int{1, 2, 7}},
		{"equal", []int{1, 1, 1, 1}},
		{"heavy last", []int{1, 1, 1, 1, 96}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := newBackends(len(tt.weights), tt.weights...)
			sum := 0
			for _, w := range tt.weights {
				sum += w
			}
			const picks = 100_000
			got := tally(NewRandom(bs, seeded()), nil, picks)
			for i, b := range bs {
				within(t, b.Addr+" share", float64(got[b.Addr])/picks, float64(tt.weights[i])/float64(sum), 0.02)
			}
		})
	}
}

func TestRandomSkipsUnusable(t *testing.T) {
	bs := newBackends(3, 1, 2, 7)
	down(bs, "c")
	const picks = 10_000
	got := tally(NewRandom(bs, seeded()), nil, picks)
	if got["c"] != 0 || got["a"]+got["b"] != picks {
		t.Errorf("picks = %v, want none on c", got)
	}
	down(bs, "a", "b")
	if got := tally(NewRandom(bs, seeded()), nil, 100); got[""] != 100 {
		t.Errorf("all down: picks = %v, want all nil", got)
	}
}

func BenchmarkRandomPick(b *testing.B) { benchPick(b, NewRandom(benchBackends(), seeded())) }
