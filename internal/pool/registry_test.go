package pool

import (
	"sync"
	"testing"
	"time"

	"ballast/internal/backend"
	"ballast/internal/balancer"
)

func TestRegistryKeepsBackendAcrossCalls(t *testing.T) {
	r := NewRegistry()
	b1 := r.Backend("app", Spec{Addr: "10.0.0.1:80", Weight: 2})
	// Live state the registry must carry over.
	b1.SetState(backend.StateDown)
	b1.Acquire()
	b1.ObserveLatency(40*time.Millisecond, time.Unix(1000, 0))

	b2 := r.Backend("app", Spec{Addr: "10.0.0.1:80", Weight: 2})
	if b2 != b1 {
		t.Fatal("same (pool, addr) gave a different *Backend")
	}
	if b2.State() != backend.StateDown || b2.InFlight() != 1 || b2.Requests() != 1 || b2.Latency() != 40*time.Millisecond {
		t.Errorf("state lost: %v in-flight %d requests %d latency %v", b2.State(), b2.InFlight(), b2.Requests(), b2.Latency())
	}

	tests := []struct {
		name string
		pool string
		addr string
		same bool
	}{
		{"same pool and addr", "app", "10.0.0.1:80", true},
		{"other pool, same addr", "api", "10.0.0.1:80", false},
		{"same pool, other addr", "app", "10.0.0.2:80", false},
		{"pool and addr concatenations collide", "app10", ".0.0.1:80", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.Backend(tt.pool, Spec{Addr: tt.addr, Weight: 1})
			if (got == b1) != tt.same {
				t.Errorf("Backend(%q, %q) == first backend: %v, want %v", tt.pool, tt.addr, got == b1, tt.same)
			}
			if got.Addr != tt.addr {
				t.Errorf("Addr = %q, want %q", got.Addr, tt.addr)
			}
			if got.ID != backend.StickyID(tt.pool, tt.addr) {
				t.Errorf("ID = %q, want StickyID(%q, %q)", got.ID, tt.pool, tt.addr)
			}
			if !tt.same && (got.State() != backend.StateUp || got.InFlight() != 0) {
				t.Errorf("new backend not fresh: %v in-flight %d", got.State(), got.InFlight())
			}
		})
	}
}

func TestRegistryUpdatesSpec(t *testing.T) {
	r := NewRegistry()
	specs := []Spec{
		{Addr: "a", Weight: 3, MaxConns: 10, Backup: false},
		{Addr: "a", Weight: 7, MaxConns: 0, Backup: true},
		{Addr: "a", Weight: 0, MaxConns: 5, Backup: false}, // weight 0 counts as 1
		{Addr: "a", Weight: 1000, MaxConns: 1, Backup: true},
	}
	first := r.Backend("app", specs[0])
	for i, s := range specs {
		b := r.Backend("app", s)
		if b != first {
			t.Fatalf("spec %d: a different backend", i)
		}
		if want := max(s.Weight, 1); b.Weight() != want {
			t.Errorf("spec %d: weight %d, want %d", i, b.Weight(), want)
		}
		if b.MaxConns() != s.MaxConns {
			t.Errorf("spec %d: max_conns %d, want %d", i, b.MaxConns(), s.MaxConns)
		}
		if b.Backup() != s.Backup {
			t.Errorf("spec %d: backup %v, want %v", i, b.Backup(), s.Backup)
		}
	}
}

func TestRegistryRetain(t *testing.T) {
	r := NewRegistry()
	keepA := r.Backend("app", Spec{Addr: "a", Weight: 1})
	dropB := r.Backend("app", Spec{Addr: "b", Weight: 1})
	otherA := r.Backend("api", Spec{Addr: "a", Weight: 1})
	for _, b := range []*backend.Backend{keepA, dropB, otherA} {
		b.SetState(backend.StateEjected)
		b.Acquire()
	}

	// "a" is kept in pool app only; pool api keeps nothing named "a".
	r.Retain(map[string][]string{"app": {"a"}, "api": {"z"}})

	if got := r.Backend("app", Spec{Addr: "a", Weight: 1}); got != keepA {
		t.Error("retained backend replaced")
	} else if got.State() != backend.StateEjected || got.InFlight() != 1 {
		t.Errorf("retained backend lost its state: %v in-flight %d", got.State(), got.InFlight())
	}
	for _, tt := range []struct {
		pool, addr string
		old        *backend.Backend
	}{
		{"app", "b", dropB},
		{"api", "a", otherA},
	} {
		got := r.Backend(tt.pool, Spec{Addr: tt.addr, Weight: 1})
		if got == tt.old {
			t.Errorf("%s/%s: Retain did not forget it", tt.pool, tt.addr)
		}
		if got.State() != backend.StateUp || got.InFlight() != 0 || got.Requests() != 0 {
			t.Errorf("%s/%s re-added: not fresh: %v in-flight %d requests %d", tt.pool, tt.addr, got.State(), got.InFlight(), got.Requests())
		}
	}

	// Retain with nothing forgets everything.
	r.Retain(nil)
	if r.Backend("app", Spec{Addr: "a", Weight: 1}) == keepA {
		t.Error("Retain(nil) kept a backend")
	}
}

// The registry feeds pools across a reload: a pool rebuilt from the registry
// shares its backends (and their health) with the old snapshot.
func TestRegistryReload(t *testing.T) {
	r := NewRegistry()
	build := func(specs ...Spec) []*backend.Backend {
		bs := make([]*backend.Backend, len(specs))
		for i, s := range specs {
			bs[i] = r.Backend("app", s)
		}
		return bs
	}
	p := newPool(t, Settings{Algorithm: balancer.AlgRoundRobin}, build(Spec{Addr: "a"}, Spec{Addr: "b"}))
	p.Backend("a").SetState(backend.StateDown)

	if err := p.Update(Settings{Algorithm: balancer.AlgRoundRobin}, build(Spec{Addr: "a"}, Spec{Addr: "b"}, Spec{Addr: "c"})); err != nil {
		t.Fatal(err)
	}
	if got := picks(p, nil, 6); got != "b c b c b c" {
		t.Errorf("after reload picks %q: the down mark on a did not survive", got)
	}
}

func TestRegistryConcurrent(t *testing.T) {
	r := NewRegistry()
	const workers = 16
	got := make([]*backend.Backend, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			for range 100 {
				got[i] = r.Backend("app", Spec{Addr: "a", Weight: 1 + i})
				r.Backend("app", Spec{Addr: "tmp", Weight: 1})
				r.Retain(map[string][]string{"app": {"a"}})
			}
		})
	}
	wg.Wait()
	for i, b := range got {
		if b != got[0] {
			t.Fatalf("worker %d got a different backend for the same (pool, addr)", i)
		}
	}
}
