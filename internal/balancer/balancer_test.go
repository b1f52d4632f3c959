package balancer

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"ballast/internal/backend"
)

func allOptions(t testing.TB) Options {
	on, err := ParseHashOn("header:X-User")
	if err != nil {
		t.Fatal(err)
	}
	return Options{HashOn: on}
}

func TestNewBuildsEveryAlgorithm(t *testing.T) {
	// The contract's table, in its order.
	want := []string{"round_robin", "weighted_round_robin", "least_conn", "weighted_least_conn",
		"least_time", "p2c", "random", "ip_hash", "consistent_hash"}
	if !slices.Equal(Algorithms, want) {
		t.Fatalf("Algorithms = %v, want %v", Algorithms, want)
	}
	wantType := map[string]string{
		AlgRoundRobin: "*balancer.RoundRobin", AlgWeightedRoundRobin: "*balancer.WeightedRoundRobin",
		AlgLeastConn: "*balancer.LeastConn", AlgWeightedLeastConn: "*balancer.WeightedLeastConn",
		AlgLeastTime: "*balancer.LeastTime", AlgP2C: "*balancer.P2C", AlgRandom: "*balancer.Random",
		AlgIPHash: "*balancer.IPHash", AlgConsistentHash: "*balancer.ConsistentHash",
	}
	for _, name := range Algorithms {
		t.Run(name, func(t *testing.T) {
			bs := newAddrBackends("test", 3)
			b, err := New(name, bs, allOptions(t))
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%T", b); got != wantType[name] {
				t.Errorf("New(%q) built a %s, want %s", name, got, wantType[name])
			}
			if b.Pick(benchRequest()) == nil {
				t.Error("Pick over 3 up backends returned nil")
			}
			if p, err := New(name, nil, allOptions(t)); err != nil || p.Pick(benchRequest()) != nil {
				t.Errorf("over no backends: err %v, want a balancer that picks nil", err)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	bs := newBackends(2)
	for _, name := range []string{"", "roundrobin", "ROUND_ROBIN", "least_connections", "hash"} {
		if b, err := New(name, bs, allOptions(t)); err == nil {
			t.Errorf("New(%q) = %T, want an error", name, b)
		}
	}
	if _, err := New(AlgConsistentHash, bs, Options{}); err == nil {
		t.Error("consistent_hash without hash_on: no error")
	}
	for _, name := range Algorithms {
		if got := NeedsHashOn(name); got != (name == AlgConsistentHash) {
			t.Errorf("NeedsHashOn(%q) = %v", name, got)
		}
	}
}

var allStates = []backend.State{backend.StateUp, backend.StateDown, backend.StateEjected, backend.StateDraining, backend.StateStarting}

// TestNeverPicksUnusable is a property test over random pools: whatever the
// mix of states, weights, full and ramping backends, every algorithm returns
// a usable backend when there is one and nil when there is none.
func TestNeverPicksUnusable(t *testing.T) {
	rnd := rand.New(rand.NewPCG(42, 43))
	for trial := range 300 {
		n := 1 + rnd.IntN(12)
		bs := make([]*backend.Backend, n)
		usable := 0
		for i := range bs {
			bs[i] = backend.New("prop", fmt.Sprintf("10.1.0.%d:80", i), 1+rnd.IntN(5))
			if rnd.IntN(3) > 0 {
				bs[i].SetState(allStates[rnd.IntN(len(allStates))])
			}
			if rnd.IntN(4) == 0 { // a full backend
				bs[i].SetMaxConns(1)
				bs[i].Acquire()
			}
			if rnd.IntN(3) == 0 { // ramping, anywhere from its start to past its end
				bs[i].SetSlowStart(time.Minute)
				bs[i].StartRampAt(t0.Add(-time.Duration(rnd.IntN(70)) * time.Second))
			}
			if bs[i].Usable() {
				usable++
			}
		}
		opts := allOptions(t)
		opts.Rand = rand.New(rand.NewPCG(uint64(trial), 1))
		opts.Clock = &fakeClock{t0}
		for _, name := range Algorithms {
			bal, err := New(name, bs, opts)
			if err != nil {
				t.Fatal(err)
			}
			for k := range 40 {
				r := &Request{ClientIP: randomIPs(k + 1)[k], Path: fmt.Sprintf("/%d", k), Header: header("X-User", fmt.Sprint(k%7))}
				if k%5 == 0 {
					r = &Request{} // no key, no address
				}
				b := bal.Pick(r)
				switch {
				case usable == 0 && b != nil:
					t.Fatalf("trial %d %s: all unusable, picked %s (%v)", trial, name, b.Addr, b.State())
				case usable > 0 && b == nil:
					t.Fatalf("trial %d %s: %d usable, picked nil", trial, name, usable)
				case b != nil && !b.Usable():
					t.Fatalf("trial %d %s: picked unusable %s (%v, %d/%d in flight)", trial, name, b.Addr, b.State(), b.InFlight(), b.MaxConns())
				}
			}
		}
	}
}

// TestPickConcurrent runs picks in parallel with state changes, for the race
// detector, and checks that a backend that stays usable throughout is always
// found.
func TestPickConcurrent(t *testing.T) {
	for _, name := range Algorithms {
		t.Run(name, func(t *testing.T) {
			bs := newAddrBackends("test", 10)
			for _, b := range bs { // every flap back up starts a ramp
				b.SetSlowStart(time.Minute)
			}
			bal, err := New(name, bs, allOptions(t)) // default, concurrency-safe Rand
			if err != nil {
				t.Fatal(err)
			}
			sticky := NewSticky("sid", 0, bal, bs)
			stop := make(chan struct{})
			var flipper sync.WaitGroup
			flipper.Go(func() { // bs[0] stays up; the others flap
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					b := bs[1+i%9]
					b.SetState(allStates[i%len(allStates)])
				}
			})
			var pickers sync.WaitGroup
			for g := range 8 {
				pickers.Go(func() {
					for k := range 2000 {
						r := &Request{ClientIP: randomIPs(1)[0], Header: header("X-User", fmt.Sprint(k), "Cookie", "sid="+bs[k%10].ID)}
						b := bal.Pick(r)
						if b == nil {
							t.Errorf("goroutine %d: nil pick while %s is up", g, bs[0].Addr)
							return
						}
						b.Acquire()
						b.ObserveLatency(1000, t0)
						b.Release(false)
						if s, _ := sticky.Pick(r); s == nil {
							t.Errorf("goroutine %d: sticky: nil pick", g)
							return
						}
					}
				})
			}
			pickers.Wait()
			close(stop)
			flipper.Wait()
		})
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	r := benchRequest()
	for _, name := range Algorithms {
		for _, ramp := range []bool{false, true} {
			bs := benchBackends()
			// Exercise the skip paths too, and the slow-start ones.
			bs[3].SetState(backend.StateDown)
			if ramp {
				bs[5].SetSlowStart(time.Hour)
				bs[5].StartRamp()
			}
			bal, err := New(name, bs, allOptions(t))
			if err != nil {
				t.Fatal(err)
			}
			if n := testing.AllocsPerRun(200, func() { bal.Pick(r) }); n != 0 {
				t.Errorf("%s (ramping %v): %v allocations per Pick, want 0", name, ramp, n)
			}
		}
	}
	bs := benchBackends()
	s := NewSticky("ballast", 0, NewRoundRobin(bs), bs)
	if n := testing.AllocsPerRun(200, func() { s.Pick(r) }); n != 0 {
		t.Errorf("sticky: %v allocations per Pick, want 0", n)
	}
}
