package etcd

import (
	"context"
	"sync"
	"testing"
	"time"
)

// collector reads a watch channel in the background and keeps every
// Snapshot, so a test can check what was delivered during a period.
type collector struct {
	mu    sync.Mutex
	snaps []Snapshot
	at    []time.Time
	done  chan struct{}
}

func collect(ch <-chan Snapshot) *collector {
	c := &collector{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for s := range ch {
			c.mu.Lock()
			c.snaps = append(c.snaps, s)
			c.at = append(c.at, time.Now())
			c.mu.Unlock()
		}
	}()
	return c
}

// since returns the snapshots delivered after t0.
func (c *collector) since(t0 time.Time) []Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Snapshot
	for i, at := range c.at {
		if at.After(t0) {
			out = append(out, c.snaps[i])
		}
	}
	return out
}

// last returns the latest snapshot and when it came.
func (c *collector) last() (Snapshot, time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.snaps) == 0 {
		return Snapshot{}, time.Time{}, false
	}
	return c.snaps[len(c.snaps)-1], c.at[len(c.at)-1], true
}

// all returns every snapshot so far.
func (c *collector) all() []Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Snapshot(nil), c.snaps...)
}

// waitLast waits until the latest snapshot satisfies ok.
func (c *collector) waitLast(limit time.Duration, ok func(Snapshot) bool) (Snapshot, time.Duration, bool) {
	var snap Snapshot
	took, held := waitFor(limit, func() bool {
		s, _, have := c.last()
		snap = s
		return have && ok(s)
	})
	return snap, took, held
}

func addrs(s Snapshot, pool string) []string {
	var out []string
	for _, b := range s.Pools[pool] {
		out = append(out, b.Addr)
	}
	return out
}

func sameAddrs(s Snapshot, pool string, want ...string) bool {
	got := addrs(s, pool)
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// The single etcd member is SIGKILLed: the node keeps its last snapshot (no
// emptied set is ever delivered), turns unhealthy within seconds, writes fail
// within their bounds instead of hanging; etcd restarts on the same data and
// ports: the node reconnects by itself, counts it, and receives the changes
// another node made after the restart.
func TestOutageKeepsLastSnapshotAndRecovers(t *testing.T) {
	t.Parallel()
	ms := startCluster(t, 1, memberOpts{})
	m := ms[0]
	cfg := Config{Endpoints: endpoints(m)}
	a := openStore(t, cfg)
	ctx := t.Context()
	c := collect(a.Watch(ctx))
	for _, addr := range []string{"127.0.0.1:8001", "127.0.0.1:8002"} {
		if err := a.PutBackend(ctx, "app", Backend{Addr: addr}); err != nil {
			t.Fatal(err)
		}
	}
	before, _, ok := c.waitLast(time.Second, func(s Snapshot) bool { return sameAddrs(s, "app", "127.0.0.1:8001", "127.0.0.1:8002") })
	if !ok {
		t.Fatalf("before the outage: %+v", before)
	}

	killedAt := time.Now()
	m.kill()
	took, ok := waitFor(10*time.Second, func() bool { return !a.Healthy() })
	if !ok {
		t.Fatal("Healthy() still true 10s after etcd was killed")
	}
	t.Logf("Healthy() false %v after SIGKILL; LastError: %v", took.Round(time.Millisecond), a.LastError())
	if a.LastError() == nil {
		t.Error("LastError() nil while unhealthy")
	}

	wctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	start := time.Now()
	err := a.PutBackend(wctx, "app", Backend{Addr: "127.0.0.1:8009"})
	cancel()
	if err == nil {
		t.Error("PutBackend succeeded with etcd down")
	}
	t.Logf("PutBackend during the outage failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	time.Sleep(time.Second) // let the outage last several probes

	if got := c.since(killedAt); len(got) > 0 {
		t.Errorf("the outage delivered %d snapshot(s), first %+v; want none", len(got), got[0])
	}
	if s, _, _ := c.last(); !sameAddrs(s, "app", "127.0.0.1:8001", "127.0.0.1:8002") {
		t.Errorf("last snapshot during the outage: %+v", s)
	}
	outage := time.Since(killedAt)

	// A member killed a moment ago may fail its first start (its ports
	// still held); an operator would start it again, and so does the test.
	err = nil
	for try := 1; try <= 3; try++ {
		if err = m.start(); err == nil {
			if err = m.waitHealthy(20 * time.Second); err == nil {
				break
			}
		}
		t.Logf("restart %d of etcd: %v; member log:\n%s", try, err, m.logTail())
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	restartedAt := time.Now()
	t.Logf("etcd restarted on the same data dir and ports after a %v outage", outage.Round(time.Millisecond))

	// Another node, connected after the restart, changes the set while this
	// one may still be reconnecting.
	b := openStore(t, cfg)
	if err := b.PutBackend(ctx, "app", Backend{Addr: "127.0.0.1:8003", Weight: 2}); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteBackend(ctx, "app", "127.0.0.1:8001"); err != nil {
		t.Fatal(err)
	}
	after, took, ok := c.waitLast(10*time.Second, func(s Snapshot) bool { return sameAddrs(s, "app", "127.0.0.1:8002", "127.0.0.1:8003") })
	if !ok {
		t.Fatalf("changes made after the restart did not arrive; last: %+v", after)
	}
	t.Logf("changes made after the restart arrived %v after it (rev %d → %d)", took.Round(time.Millisecond), before.Revision, after.Revision)
	_, ok = waitFor(10*time.Second, a.Healthy)
	if !ok {
		t.Fatal("Healthy() still false 10s after etcd came back")
	}
	t.Logf("Healthy() true again %v after the restart; Reconnects() = %d", time.Since(restartedAt).Round(time.Millisecond), a.Reconnects())
	if n := a.Reconnects(); n != 1 {
		t.Errorf("Reconnects() = %d, want 1", n)
	}
	for i, s := range c.all() {
		if s.Revision >= before.Revision && len(s.Pools["app"]) == 0 {
			t.Errorf("snapshot %d has no backends: %+v", i, s)
		}
	}
	if err := a.PutBackend(ctx, "app", Backend{Addr: "127.0.0.1:8004"}); err != nil {
		t.Errorf("write after recovery: %v", err)
	}
}

// A node that starts while etcd is down starts anyway (unhealthy), delivers
// nothing, and catches up by itself once etcd is there.
func TestOpenWhileEtcdIsDown(t *testing.T) {
	t.Parallel()
	bin := etcdBinary(t)
	port := freePorts(t, 1)[0]
	ms := newMembers(t, bin, 1, memberOpts{clientPort: port})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	s, err := Open(ctx, Config{Endpoints: endpoints(ms...), DialTimeout: 500 * time.Millisecond}, testLogger(t))
	if err != nil {
		t.Fatalf("Open with etcd down: %v (want a store that retries)", err)
	}
	t.Cleanup(func() { s.Close() })
	t.Logf("Open returned after %v; Healthy %v; LastError %v", time.Since(start).Round(time.Millisecond), s.Healthy(), s.LastError())
	if s.Healthy() || s.LastError() == nil {
		t.Fatalf("Healthy %v, LastError %v: want false, an error", s.Healthy(), s.LastError())
	}
	c := collect(s.Watch(t.Context()))
	time.Sleep(500 * time.Millisecond)
	if n := len(c.all()); n != 0 {
		t.Fatalf("%d snapshots delivered with etcd down", n)
	}
	if err := ms[0].start(); err != nil {
		t.Fatal(err)
	}
	if err := ms[0].waitHealthy(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	other := openStore(t, Config{Endpoints: endpoints(ms...)})
	if err := other.PutBackend(t.Context(), "app", Backend{Addr: "127.0.0.1:8001"}); err != nil {
		t.Fatal(err)
	}
	snap, _, ok := c.waitLast(10*time.Second, func(s Snapshot) bool { return sameAddrs(s, "app", "127.0.0.1:8001") })
	if !ok {
		t.Fatalf("no snapshot after etcd came up; last %+v", snap)
	}
	if _, ok := waitFor(5*time.Second, s.Healthy); !ok {
		t.Fatal("not healthy after etcd came up")
	}
	t.Logf("caught up %v after etcd came up; Reconnects() = %d (first connection is not a reconnect)", time.Since(up).Round(time.Millisecond), s.Reconnects())
	if s.Reconnects() != 0 {
		t.Errorf("Reconnects() = %d, want 0", s.Reconnects())
	}
}
