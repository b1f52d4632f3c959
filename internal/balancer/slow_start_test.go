package balancer

import (
	"fmt"
	"testing"
	"time"

	"ballast/internal/backend"
)

// fakeClock is a Clock that stands still until the test moves it.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

// rampWindow is the slow start of the ramp tests: 9s, so that the share at
// start + (p-100)·10ms is exactly p permille.
const rampWindow = 9 * time.Second

// startRamp makes b ramp from t0 and returns a clock at which its share is
// exactly share permille; moving the clock with rampTo changes the share.
func startRamp(b *backend.Backend, share int32) *fakeClock {
	b.SetSlowStart(rampWindow)
	b.StartRampAt(t0)
	c := &fakeClock{}
	rampTo(c, share)
	return c
}

func rampTo(c *fakeClock, share int32) {
	c.t = t0.Add(time.Duration(share-backend.RampFloor) * 10 * time.Millisecond)
}

// rampedAlgorithms are the algorithms that honour slow start.
var rampedAlgorithms = []string{
	AlgRoundRobin, AlgWeightedRoundRobin, AlgRandom,
	AlgLeastConn, AlgWeightedLeastConn, AlgP2C, AlgLeastTime,
}

func TestHonoursSlowStart(t *testing.T) {
	for _, name := range Algorithms {
		want := name != AlgIPHash && name != AlgConsistentHash
		if got := HonoursSlowStart(name); got != want {
			t.Errorf("HonoursSlowStart(%q) = %v, want %v", name, got, want)
		}
	}
	for _, name := range rampedAlgorithms {
		if !HonoursSlowStart(name) {
			t.Errorf("%s is tested for slow start but HonoursSlowStart says no", name)
		}
	}
}

func TestStartRampClock(t *testing.T) {
	b := newBackends(1)[0]
	c := startRamp(b, 300)
	for _, share := range []int32{backend.RampFloor, 300, 550, 999} {
		rampTo(c, share)
		if got := b.RampAt(c.Now()); got != share {
			t.Errorf("rampTo(%d): RampAt = %d", share, got)
		}
	}
}

// The picking algorithms give a ramping backend ramp/1000 of the picks it
// would get relative to each of the others: picks(b)/picks(a) ≈ ramp × w_b/w_a.
func TestRampSharesPicks(t *testing.T) {
	tests := []struct {
		alg     string
		weights []int
	}{
		{AlgRoundRobin, []int{1, 1, 1}},
		{AlgWeightedRoundRobin, []int{1, 1, 1}},
		{AlgWeightedRoundRobin, []int{4, 3, 2}},
		{AlgWeightedRoundRobin, []int{1, 5, 1}}, // b owns runs of the schedule
		{AlgRandom, []int{1, 1, 1}},
		{AlgRandom, []int{4, 3, 2}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%v", tt.alg, tt.weights), func(t *testing.T) {
			bs := newBackends(3, tt.weights...)
			clk := startRamp(bs[1], 300)
			bal, err := New(tt.alg, bs, Options{Clock: clk, Rand: seeded()})
			if err != nil {
				t.Fatal(err)
			}
			const picks = 60_000
			prev := 0.0
			for _, share := range []int32{300, 600, 900} {
				rampTo(clk, share)
				got := tally(bal, nil, picks)
				want := float64(share) / 1000 * float64(tt.weights[1]) / float64(tt.weights[0])
				ratio := float64(got["b"]) / float64(got["a"])
				within(t, fmt.Sprintf("ramp %d: picks b/a", share), ratio, want, 0.06*want)
				if ratio <= prev {
					t.Errorf("ramp %d: picks b/a = %.3f, not above %.3f at the lower ramp", share, ratio, prev)
				}
				prev = ratio
				// c is untouched by b's ramp: a and c keep their ratio.
				within(t, fmt.Sprintf("ramp %d: picks c/a", share), float64(got["c"])/float64(got["a"]),
					float64(tt.weights[2])/float64(tt.weights[0]), 0.06)
			}
		})
	}
}

// holdRequests sends picks requests through bal, each held open until window
// newer ones have started (first in, first out), so every backend's in-flight
// count is what the algorithm made of it. It returns the picks per backend
// and releases everything.
func holdRequests(t *testing.T, bal Balancer, picks, window int) map[string]int {
	t.Helper()
	got := map[string]int{}
	var open []*backend.Backend
	for range picks {
		b := bal.Pick(nil)
		if b == nil {
			t.Fatal("nil pick")
		}
		b.Acquire()
		got[b.Addr]++
		if open = append(open, b); len(open) > window {
			open[0].Release(false)
			open = open[1:]
		}
	}
	for _, b := range open {
		b.Release(false)
	}
	return got
}

// The load-based algorithms count a ramping backend's load divided by
// ramp/1000: with requests held open it takes about ramp/1000 of the requests
// another backend of its weight takes.
func TestRampSharesLoad(t *testing.T) {
	for _, alg := range []string{AlgLeastConn, AlgWeightedLeastConn, AlgP2C, AlgLeastTime} {
		t.Run(alg, func(t *testing.T) {
			bs := newBackends(3)
			clk := startRamp(bs[1], 300)
			withLatency(bs, 10, 10, 10)
			bal, err := New(alg, bs, Options{Clock: clk, Rand: seeded()})
			if err != nil {
				t.Fatal(err)
			}
			prev := 0.0
			for _, share := range []int32{300, 600} {
				rampTo(clk, share)
				got := holdRequests(t, bal, 30_000, 100)
				ratio := float64(got["b"]) / float64(got["a"])
				// (in_b+1)/r = in_a+1 puts in_b a little below r·in_a; least_time's
				// trickle adds 1/32 of the picks spread evenly.
				within(t, fmt.Sprintf("ramp %d: picks b/a", share), ratio, float64(share)/1000, 0.06)
				if got["b"] >= got["a"] || got["b"] >= got["c"] {
					t.Errorf("ramp %d: ramping b got %d picks, a %d, c %d: want fewer than each", share, got["b"], got["a"], got["c"])
				}
				if ratio <= prev {
					t.Errorf("ramp %d: picks b/a = %.3f, not above %.3f at the lower ramp", share, ratio, prev)
				}
				prev = ratio
			}
		})
	}
}

// weighted_least_conn and p2c multiply the weight by the ramp: a ramping
// backend of weight 4 at 50% holds as much as an idle one of weight 2.
func TestRampMultipliesWeight(t *testing.T) {
	for _, alg := range []string{AlgWeightedLeastConn, AlgP2C} {
		t.Run(alg, func(t *testing.T) {
			bs := newBackends(2, 2, 4)
			clk := startRamp(bs[1], 500)
			bal, err := New(alg, bs, Options{Clock: clk, Rand: seeded()})
			if err != nil {
				t.Fatal(err)
			}
			for range 400 {
				bal.Pick(nil).Acquire()
			}
			if a, b := bs[0].InFlight(), bs[1].InFlight(); a < 195 || a > 205 {
				t.Errorf("in flight a:b = %d:%d, want 200:200 ± 5", a, b)
			}
		})
	}
}

// Ramping never makes a pick fail: a pool whose only usable backend ramps
// gets it every time, even at the floor.
func TestRampNeverStarves(t *testing.T) {
	for _, alg := range rampedAlgorithms {
		t.Run(alg, func(t *testing.T) {
			t.Run("single backend", func(t *testing.T) {
				bs := newBackends(1)
				clk := startRamp(bs[0], backend.RampFloor)
				bal, err := New(alg, bs, Options{Clock: clk, Rand: seeded()})
				if err != nil {
					t.Fatal(err)
				}
				if got := tally(bal, nil, 1000); got["a"] != 1000 {
					t.Errorf("picks = %v, want all 1000 on a", got)
				}
			})
			t.Run("the others down", func(t *testing.T) {
				bs := newBackends(4, 1, 1, 50, 1)
				clk := startRamp(bs[2], backend.RampFloor)
				down(bs, "a", "b", "d")
				bal, err := New(alg, bs, Options{Clock: clk, Rand: seeded()})
				if err != nil {
					t.Fatal(err)
				}
				if got := tally(bal, nil, 1000); got["c"] != 1000 {
					t.Errorf("picks = %v, want all 1000 on c", got)
				}
			})
			t.Run("every backend ramping", func(t *testing.T) {
				bs := newBackends(3, 1, 2, 3)
				clk := startRamp(bs[0], backend.RampFloor)
				for _, b := range bs[1:] {
					b.SetSlowStart(rampWindow)
					b.StartRampAt(t0)
				}
				bal, err := New(alg, bs, Options{Clock: clk, Rand: seeded()})
				if err != nil {
					t.Fatal(err)
				}
				if got := tally(bal, nil, 1000); got[""] != 0 {
					t.Errorf("picks = %v, want none nil", got)
				}
			})
		})
	}
}

// The end of the ramp restores the algorithm exactly: round robin is back to
// equal turns.
func TestRampEnds(t *testing.T) {
	bs := newBackends(3)
	clk := startRamp(bs[1], 300)
	rr, err := New(AlgRoundRobin, bs, Options{Clock: clk, Rand: seeded()})
	if err != nil {
		t.Fatal(err)
	}
	if got := tally(rr, nil, 3000); got["b"] > 600 {
		t.Fatalf("b ramping at 30%%: picks %v", got)
	}
	clk.t = t0.Add(rampWindow)
	if got := tally(rr, nil, 3000); got["a"] != 1000 || got["b"] != 1000 || got["c"] != 1000 {
		t.Errorf("after the ramp: picks %v, want 1000 each", got)
	}
	if bs[1].Ramping() {
		t.Error("b still ramping after its window")
	}
}

// ip_hash and consistent_hash ignore ramps: every key stays where it was.
func TestRampLeavesHashAlone(t *testing.T) {
	for _, alg := range []string{AlgIPHash, AlgConsistentHash} {
		t.Run(alg, func(t *testing.T) {
			plain := newAddrBackends("test", 3)
			ramped := newAddrBackends("test", 3)
			clk := startRamp(ramped[1], backend.RampFloor)
			opts := Options{HashOn: mustHashOn(t, "source_ip"), Rand: seeded()}
			want, err := New(alg, plain, opts)
			if err != nil {
				t.Fatal(err)
			}
			opts.Clock = clk
			got, err := New(alg, ramped, opts)
			if err != nil {
				t.Fatal(err)
			}
			onB := 0
			for _, ip := range randomIPs(3000) {
				r := &Request{ClientIP: ip}
				w, g := want.Pick(r), got.Pick(r)
				if w.Addr != g.Addr {
					t.Fatalf("client %v: %s with b ramping, %s without", ip, g.Addr, w.Addr)
				}
				if g == ramped[1] {
					onB++
				}
			}
			if onB < 800 {
				t.Errorf("ramping b got %d of 3000 clients, want its full third", onB)
			}
		})
	}
}

// A sticky cookie naming a ramping backend is honoured every time.
func TestRampKeepsStickyClients(t *testing.T) {
	bs := newAddrBackends("app", 3)
	clk := startRamp(bs[1], backend.RampFloor)
	inner, err := New(AlgRoundRobin, bs, Options{Clock: clk, Rand: seeded()})
	if err != nil {
		t.Fatal(err)
	}
	s := NewSticky("sid", 0, inner, bs)
	r := cookieFrom(s.SetCookieValue(bs[1]))
	for range 1000 {
		if b, set := s.Pick(r); b != bs[1] || set {
			t.Fatalf("got %s (setCookie %v), want the ramping %s without a new cookie", b.Addr, set, bs[1].Addr)
		}
	}
}

// BenchmarkPickRamping measures picks while one of the ten backends ramps
// (the system clock is read on every pick that meets it).
func BenchmarkPickRamping(b *testing.B) {
	for _, alg := range rampedAlgorithms {
		b.Run(alg, func(b *testing.B) {
			bs := benchBackends()
			bs[4].SetSlowStart(time.Hour)
			bs[4].StartRamp()
			for i, be := range bs {
				be.ObserveLatency(time.Duration(10+i)*time.Millisecond, t0)
			}
			bal, err := New(alg, bs, Options{})
			if err != nil {
				b.Fatal(err)
			}
			benchPick(b, bal)
		})
	}
}
