package etcd

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Three members; a writer node adds and removes backends in a loop while a
// reader node watches; the leader is SIGKILLed mid-run. No write fails (the
// store retries what the etcd client does not), the watch keeps delivering,
// and the reader ends with exactly the writer's set.
func TestThreeMembersSurviveLeaderKill(t *testing.T) {
	t.Parallel()
	ms := startCluster(t, 3, memberOpts{})
	cfg := Config{Endpoints: endpoints(ms...)}
	w, r := openStore(t, cfg), openStore(t, cfg)
	ctx := t.Context()
	c := collect(r.Watch(ctx))
	if _, _, ok := c.waitLast(2*time.Second, func(Snapshot) bool { return true }); !ok {
		t.Fatal("no initial snapshot")
	}

	const (
		killAt     = 1500 * time.Millisecond
		afterKill  = 3 * time.Second // keep writing at least this long after the kill
		writesKill = 30              // and at least this many writes after it
		hardStop   = 20 * time.Second
		nAddrs     = 16
	)
	var killedAt atomicTime
	var (
		mu       sync.Mutex
		want     = map[string]int{} // addr → weight, the writer's model
		writes   int
		failures []error
		slowest  time.Duration
	)
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		afterKillWrites := 0
		for i := 0; time.Since(start) < hardStop; i++ {
			if k := killedAt.get(); !k.IsZero() {
				if time.Since(k) >= afterKill && afterKillWrites >= writesKill {
					return
				}
				afterKillWrites++
			}
			addr := fmt.Sprintf("127.0.0.1:%d", 9000+i%nAddrs)
			opStart := time.Now()
			var err error
			del := i%3 == 2
			if del {
				err = w.DeleteBackend(ctx, "app", addr)
			} else {
				err = w.PutBackend(ctx, "app", Backend{Addr: addr, Weight: 1 + i%7})
			}
			d := time.Since(opStart)
			mu.Lock()
			writes++
			slowest = max(slowest, d)
			if err != nil {
				failures = append(failures, fmt.Errorf("write %d at %v: %w", i, opStart.Sub(start).Round(time.Millisecond), err))
			} else if del {
				delete(want, addr)
			} else {
				want[addr] = 1 + i%7
			}
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}()

	time.Sleep(killAt)
	leader := findLeader(t, w, ms)
	leader.kill()
	killedAt.set(time.Now())
	t.Logf("killed the leader %s at %v", leader.name, killedAt.get().Sub(start).Round(time.Millisecond))
	<-done

	mu.Lock()
	defer mu.Unlock()
	for _, err := range failures {
		t.Error(err)
	}
	final, took, ok := c.waitLast(3*time.Second, func(s Snapshot) bool { return matches(s, want) })
	if !ok {
		t.Fatalf("the reader's last snapshot %+v does not match the writer's set %v", final, want)
	}
	after := c.since(killedAt.get())
	var gap time.Duration
	prev := killedAt.get()
	c.mu.Lock()
	for _, at := range c.at {
		if at.After(killedAt.get()) {
			gap = max(gap, at.Sub(prev))
			prev = at
		}
	}
	c.mu.Unlock()
	t.Logf("%d writes, %d failed, slowest %v (retries included); reader got %d snapshots after the kill, longest gap %v; converged %v after the last write",
		writes, len(failures), slowest.Round(time.Millisecond), len(after), gap.Round(time.Millisecond), took.Round(time.Millisecond))
	if len(after) < writesKill/2 {
		t.Errorf("only %d snapshots after the kill: the watch stalled", len(after))
	}
	if !r.Healthy() || !w.Healthy() {
		t.Errorf("with 2 of 3 members up: healthy %v/%v, want true", w.Healthy(), r.Healthy())
	}
}

// findLeader asks each member who leads.
func findLeader(t *testing.T, s *Store, ms []*member) *member {
	t.Helper()
	for _, m := range ms {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		st, err := s.cli.Status(ctx, m.clientURL)
		cancel()
		if err != nil {
			t.Fatalf("status of %s: %v", m.name, err)
		}
		if st.Leader == st.Header.MemberId {
			return m
		}
	}
	t.Fatal("no leader")
	return nil
}

// matches reports whether pool app of s is exactly want (addr → weight).
func matches(s Snapshot, want map[string]int) bool {
	got := map[string]int{}
	for _, b := range s.Pools["app"] {
		got[b.Addr] = b.Weight
	}
	return maps.Equal(got, want) && slices.IsSortedFunc(s.Pools["app"], func(a, b Backend) int {
		return strings.Compare(a.Addr, b.Addr)
	})
}

// atomicTime is a time.Time shared between goroutines.
type atomicTime struct {
	mu sync.Mutex
	t  time.Time
}

func (a *atomicTime) set(t time.Time) { a.mu.Lock(); a.t = t; a.mu.Unlock() }

func (a *atomicTime) get() time.Time { a.mu.Lock(); defer a.mu.Unlock(); return a.t }

// A node connected to one member only, while that member is down: what the
// others write meanwhile arrives once it is back, by resuming the watch at
// the next revision; and when that revision was compacted away meanwhile, by
// reading everything again. Either way, no snapshot misses or invents a
// backend.
func TestWatchResumesAfterMemberRestart(t *testing.T) {
	t.Parallel()
	ms := startCluster(t, 3, memberOpts{})
	a := ms[0]
	node := openStore(t, Config{Endpoints: endpoints(a)})
	others := openStore(t, Config{Endpoints: endpoints(ms[1], ms[2])})
	ctx := t.Context()
	c := collect(node.Watch(ctx))
	if err := others.PutBackend(ctx, "app", Backend{Addr: "127.0.0.1:8001"}); err != nil {
		t.Fatal(err)
	}
	first, _, ok := c.waitLast(time.Second, func(s Snapshot) bool { return sameAddrs(s, "app", "127.0.0.1:8001") })
	if !ok {
		t.Fatalf("first write: %+v", first)
	}

	outage := func(name string, during func(), want ...string) {
		t.Helper()
		a.kill()
		killedAt := time.Now()
		during()
		if got := c.since(killedAt); len(got) > 0 {
			t.Fatalf("%s: %d snapshot(s) delivered by a node whose member is down", name, len(got))
		}
		if err := a.start(); err != nil {
			t.Fatal(err)
		}
		if err := a.waitHealthy(20 * time.Second); err != nil {
			t.Fatal(err)
		}
		restarted := time.Now()
		s, _, ok := c.waitLast(10*time.Second, func(s Snapshot) bool { return sameAddrs(s, "app", want...) })
		if !ok {
			t.Fatalf("%s: last snapshot %+v, want app = %v", name, s, want)
		}
		t.Logf("%s: the node had the changes made while its member was down %v after the member came back (rev %d)",
			name, time.Since(restarted).Round(time.Millisecond), s.Revision)
	}

	outage("resume", func() {
		if err := others.PutBackend(ctx, "app", Backend{Addr: "127.0.0.1:8002"}); err != nil {
			t.Fatal(err)
		}
	}, "127.0.0.1:8001", "127.0.0.1:8002")

	outage("compacted", func() {
		if err := others.DeleteBackend(ctx, "app", "127.0.0.1:8001"); err != nil {
			t.Fatal(err)
		}
		if err := others.PutBackend(ctx, "app", Backend{Addr: "127.0.0.1:8003"}); err != nil {
			t.Fatal(err)
		}
		resp, err := others.cli.Get(ctx, "x")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := others.cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
			t.Fatal(err)
		}
	}, "127.0.0.1:8002", "127.0.0.1:8003")

	for i, s := range c.all() {
		if s.Revision >= first.Revision && len(s.Pools["app"]) == 0 {
			t.Errorf("snapshot %d has no backends: %+v", i, s)
		}
	}
}
