package balancer

import (
	"math/rand/v2"
	"testing"
)

func seeded() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

func TestP2CUniformWithEqualLoad(t *testing.T) {
	for _, n := range []int{2, 3, 5, 10} {
		bs := newAddrBackends("test", n)
		const picks = 100_000
		got := tally(NewP2C(bs, seeded()), nil, picks)
		for _, b := range bs {
			within(t, b.Addr+" share", float64(got[b.Addr])/picks, 1/float64(n), 0.05/float64(n))
		}
	}
}

func TestP2CAvoidsLoadedBackend(t *testing.T) {
	const picks = 100_000
	t.Run("heavily loaded backend is never picked", func(t *testing.T) {
		bs := newAddrBackends("test", 5)
		for range 50 {
			bs[0].Acquire()
		}
		// It loses every comparison and is never drawn twice.
		got := tally(NewP2C(bs, seeded()), nil, picks)
		if got[bs[0].Addr] != 0 {
			t.Errorf("loaded backend picked %d times, want 0 (all: %v)", got[bs[0].Addr], got)
		}
	})
	t.Run("share falls with rank", func(t *testing.T) {
		// In-flight 0,1,2,3,4: the backend of rank i (0 = lightest) wins
		// exactly the pairs drawn with a busier one, (n-1-i) of the C(n,2)
		// equally likely pairs: shares 4/10, 3/10, 2/10, 1/10, 0.
		bs := newAddrBackends("test", 5)
		for i, b := range bs {
			for range i {
				b.Acquire()
			}
		}
		got := tally(NewP2C(bs, seeded()), nil, picks)
		for i, b := range bs {
			within(t, b.Addr+" share", float64(got[b.Addr])/picks, float64(4-i)/10, 0.01)
		}
	})
}

func TestP2CTwoBackendsAlwaysLessLoaded(t *testing.T) {
	tests := []struct {
		name     string
		inFlight [2]int
		want     string
	}{
		{"a lighter", [2]int{1, 2}, "a"},
		{"b lighter", [2]int{7, 3}, "b"},
		{"b idle", [2]int{1, 0}, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := newBackends(2)
			for i, n := range tt.inFlight {
				for range n {
					bs[i].Acquire()
				}
			}
			got := tally(NewP2C(bs, seeded()), nil, 1000)
			if got[tt.want] != 1000 {
				t.Errorf("picks = %v, want all on %s", got, tt.want)
			}
		})
	}
}

func TestP2CWeights(t *testing.T) {
	// Held-open requests: (in+1)/w keeps a 3:1 weight pair near 3:1 in flight.
	bs := newBackends(2, 3, 1)
	p := NewP2C(bs, seeded())
	for range 400 {
		p.Pick(nil).Acquire()
	}
	if a, b := bs[0].InFlight(), bs[1].InFlight(); a < 297 || a > 303 {
		t.Errorf("in flight a:b = %d:%d, want 300:100 ± 3", a, b)
	}
}

func TestP2CSkipsUnusable(t *testing.T) {
	bs := newAddrBackends("test", 10)
	for i := range 7 {
		down(bs, bs[i].Addr)
	}
	const picks = 30_000
	got := tally(NewP2C(bs, seeded()), nil, picks)
	for i, b := range bs {
		if i < 7 && got[b.Addr] != 0 {
			t.Errorf("down backend %s picked %d times", b.Addr, got[b.Addr])
		}
		if i >= 7 {
			within(t, b.Addr+" share", float64(got[b.Addr])/picks, 1.0/3, 0.02)
		}
	}
	for i := 7; i < 9; i++ {
		down(bs, bs[i].Addr)
	}
	if got := tally(NewP2C(bs, seeded()), nil, 100); got[bs[9].Addr] != 100 {
		t.Errorf("one usable: picks = %v, want all on %s", got, bs[9].Addr)
	}
	down(bs, bs[9].Addr)
	if got := tally(NewP2C(bs, seeded()), nil, 100); got[""] != 100 {
		t.Errorf("none usable: picks = %v, want all nil", got)
	}
}

func BenchmarkP2CPick(b *testing.B) {
	benchPick(b, NewP2C(benchBackends(), seeded()))
}
