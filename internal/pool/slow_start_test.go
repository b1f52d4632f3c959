package pool

import (
	"math/rand/v2"
	"testing"
	"time"

	"ballast/internal/backend"
	"ballast/internal/balancer"
)

func TestSlowStartSetOnPublish(t *testing.T) {
	sourceIP, err := balancer.ParseHashOn("source_ip")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		s    Settings
		want time.Duration
	}{
		{"round_robin", Settings{Algorithm: balancer.AlgRoundRobin, SlowStart: 30 * time.Second}, 30 * time.Second},
		{"least_conn", Settings{Algorithm: balancer.AlgLeastConn, SlowStart: time.Minute}, time.Minute},
		{"off", Settings{Algorithm: balancer.AlgRandom}, 0},
		{"ip_hash ignores it", Settings{Algorithm: balancer.AlgIPHash, SlowStart: time.Minute}, 0},
		{"consistent_hash ignores it", Settings{Algorithm: balancer.AlgConsistentHash, HashOn: sourceIP, SlowStart: time.Minute}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := mkBackends("a", "b", "c")
			bs[2].SetBackup(true)
			for _, b := range bs { // a ramp in progress from an earlier snapshot
				b.SetSlowStart(time.Hour)
				b.StartRamp()
			}
			newPool(t, tt.s, bs)
			for _, b := range bs {
				if got := b.SlowStart(); got != tt.want {
					t.Errorf("%s: SlowStart() = %v, want %v", b.Addr, got, tt.want)
				}
				if b.Ramping() != (tt.want != 0) {
					t.Errorf("%s: Ramping() = %v with slow start %v: an earlier ramp should end exactly when slow start is off",
						b.Addr, b.Ramping(), tt.want)
				}
			}
		})
	}
}

// A failed Update changes no backend's slow start.
func TestSlowStartFailedUpdate(t *testing.T) {
	bs := mkBackends("a", "b")
	p := newPool(t, Settings{Algorithm: balancer.AlgRoundRobin, SlowStart: time.Minute}, bs)
	if err := p.Update(Settings{Algorithm: "nope"}, bs); err == nil {
		t.Fatal("Update with an unknown algorithm succeeded")
	}
	for _, b := range bs {
		if b.SlowStart() != time.Minute {
			t.Errorf("%s: SlowStart() = %v after a failed Update, want 1m0s", b.Addr, b.SlowStart())
		}
	}
}

// A backend added at run time ramps: it starts at about 10% of the picks
// each of the others gets. Without slow start it gets its full share at once.
func TestAddStartsRamp(t *testing.T) {
	for _, slow := range []time.Duration{time.Hour, 0} {
		t.Run(slow.String(), func(t *testing.T) {
			s := Settings{Algorithm: balancer.AlgRoundRobin, SlowStart: slow, Rand: rand.New(rand.NewPCG(3, 4))}
			p := newPool(t, s, mkBackends("a", "b"))
			for _, b := range p.Snapshot().Backends {
				if b.Ramping() {
					t.Fatalf("%s ramps although it was there from the start", b.Addr)
				}
			}
			c := backend.New("app", "c", 1)
			if err := p.Add(c); err != nil {
				t.Fatal(err)
			}
			if c.Ramping() != (slow != 0) {
				t.Fatalf("added backend: Ramping() = %v with slow start %v", c.Ramping(), slow)
			}
			got := map[string]int{}
			for range 30_000 {
				b, _ := p.Pick(nil)
				got[b.Addr]++
			}
			ratio := float64(got["c"]) / float64(got["a"])
			want := 1.0
			if slow != 0 {
				want = float64(backend.RampFloor) / backend.RampFull // an hour's ramp has just begun
			}
			if ratio < want-0.02 || ratio > want+0.02 {
				t.Errorf("picks c/a = %.3f (%v), want %.2f ± 0.02", ratio, got, want)
			}
		})
	}
}

// A backend that comes back up ramps, and the pool's balancer applies it
// against the pool's clock.
func TestComingBackRamps(t *testing.T) {
	clk := &fakeClock{}
	s := Settings{Algorithm: balancer.AlgWeightedRoundRobin, SlowStart: 9 * time.Second, Rand: rand.New(rand.NewPCG(5, 6)), Clock: clk}
	bs := mkBackends("a", "b", "c")
	p := newPool(t, s, bs)
	bs[1].SetState(backend.StateDown)
	bs[1].SetState(backend.StateUp)
	if !bs[1].Ramping() {
		t.Fatal("b not ramping after coming back up")
	}
	bs[1].StartRampAt(t0) // pin the ramp to the fake clock's origin
	for _, share := range []int{300, 600} {
		clk.t = t0.Add(time.Duration(share-backend.RampFloor) * 10 * time.Millisecond)
		got := map[string]int{}
		for range 30_000 {
			b, _ := p.Pick(nil)
			got[b.Addr]++
		}
		ratio := float64(got["b"]) / float64(got["a"])
		if want := float64(share) / 1000; ratio < want-0.03 || ratio > want+0.03 {
			t.Errorf("ramp %d‰: picks b/a = %.3f (%v), want %.2f ± 0.03", share, ratio, got, want)
		}
	}
}

// t0 is an arbitrary fixed instant for the fake clock.
var t0 = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

// fakeClock is a balancer.Clock that stands still until the test moves it.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }
