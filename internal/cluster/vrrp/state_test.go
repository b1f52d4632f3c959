package vrrp

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// recorder is an Actions that logs every call with the fake time.
type recorder struct {
	node  *node
	calls []string
}

func (r *recorder) log(s string) { r.calls = append(r.calls, s) }
func (r *recorder) SendAdvert(priority uint8) {
	r.log(fmt.Sprintf("advert %d", priority))
	r.node.sent(priority)
}
func (r *recorder) AddVIPs()       { r.log("add"); r.node.vips = true }
func (r *recorder) RemoveVIPs()    { r.log("remove"); r.node.vips = false }
func (r *recorder) GratuitousARP() { r.log("garp"); r.node.garps++ }

// take returns the calls so far and forgets them.
func (r *recorder) take() []string { c := r.calls; r.calls = nil; return c }

// node is one Machine on a simulated link.
type node struct {
	name  string
	m     *Machine
	rec   *recorder
	lan   *lan
	addr  netip.Addr
	vips  bool
	garps int
}

func (n *node) sent(priority uint8) {
	if n.lan != nil {
		n.lan.queue = append(n.lan.queue, pending{from: n, a: Advert{Src: n.addr, Priority: priority, Interval: n.m.cfg.AdvertInterval}})
	}
}

type pending struct {
	from *node
	a    Advert
}

// lan is a fake clock and a loss-free link between machines: adverts are
// delivered to every other node at the instant they are sent.
type lan struct {
	t     *testing.T
	now   time.Time
	nodes []*node
	queue []pending
	down  map[*node]bool // nodes that crashed: they neither send nor receive
}

func newLAN(t *testing.T) *lan {
	return &lan{t: t, now: time.Unix(1_000_000, 0), down: map[*node]bool{}}
}

func (l *lan) add(name string, cfg MachineConfig) *node {
	n := &node{name: name, lan: l, addr: cfg.Primary}
	n.rec = &recorder{node: n}
	n.m = NewMachine(cfg, n.rec)
	l.nodes = append(l.nodes, n)
	return n
}

// deliver hands queued adverts to the other live nodes; bounded because
// a handful of adverts can answer each other at most a few times.
func (l *lan) deliver() {
	for i := 0; len(l.queue) > 0; i++ {
		if i > 1000 {
			l.t.Fatal("adverts keep answering each other")
		}
		p := l.queue[0]
		l.queue = l.queue[1:]
		if l.down[p.from] {
			continue
		}
		for _, n := range l.nodes {
			if n != p.from && !l.down[n] {
				n.m.Receive(l.now, p.a)
			}
		}
	}
}

// advance moves the fake clock forward by d, firing every timer in order.
func (l *lan) advance(d time.Duration) {
	end := l.now.Add(d)
	for i := 0; ; i++ {
		if i > 1_000_000 {
			l.t.Fatal("timers never settle")
		}
		var next *node
		var at time.Time
		for _, n := range l.nodes {
			if dl := n.m.Deadline(); !l.down[n] && !dl.IsZero() && (at.IsZero() || dl.Before(at)) {
				next, at = n, dl
			}
		}
		if next == nil || at.After(end) {
			break
		}
		l.now = at
		next.m.Tick(l.now)
		l.deliver()
	}
	l.now = end
}

// until advances in 1 ms steps until cond holds and returns the time it took.
func (l *lan) until(limit time.Duration, what string, cond func() bool) time.Duration {
	start := l.now
	for !cond() {
		if l.now.Sub(start) > limit {
			l.t.Fatalf("%s: not within %v", what, limit)
		}
		l.advance(time.Millisecond)
	}
	return l.now.Sub(start)
}

func (l *lan) start(n *node, healthy bool) {
	n.m.Start(l.now, healthy)
	l.deliver()
}

const adv = 100 * time.Millisecond

func cfg(prio uint8, primary string) MachineConfig {
	return MachineConfig{Priority: prio, AdvertInterval: adv, Preempt: true, Primary: netip.MustParseAddr(primary)}
}

func TestSkewAndMasterDownInterval(t *testing.T) {
	tests := []struct {
		prio       uint8
		interval   time.Duration
		skew, down time.Duration
	}{
		{100, adv, 60_937_500, 360_937_500}, // (156 × 100ms)/256
		{200, adv, 21_875_000, 321_875_000},
		{254, time.Second, 7_812_500, 3_007_812_500},
		{1, time.Second, 996_093_750, 3_996_093_750},
	}
	for _, tt := range tests {
		m := NewMachine(MachineConfig{Priority: tt.prio, AdvertInterval: tt.interval}, &recorder{node: &node{}})
		if m.SkewTime() != tt.skew || m.MasterDownInterval() != tt.down {
			t.Errorf("priority %d interval %v: skew %v down %v, want %v %v",
				tt.prio, tt.interval, m.SkewTime(), m.MasterDownInterval(), tt.skew, tt.down)
		}
	}
}

func TestStartRemovesLeftoverVIPsAndWaitsMasterDown(t *testing.T) {
	l := newLAN(t)
	a := l.add("a", cfg(100, "10.0.0.1"))
	l.start(a, true)
	if got := a.rec.take(); !slices.Equal(got, []string{"remove"}) {
		t.Fatalf("start: calls %v, want [remove] (clean up after a crash)", got)
	}
	if a.m.State() != Backup {
		t.Fatalf("state %v, want backup", a.m.State())
	}
	// No master on the link: master after exactly Master_Down_Interval.
	l.advance(a.m.MasterDownInterval() - time.Nanosecond)
	if a.m.State() != Backup {
		t.Fatal("became master before Master_Down_Interval")
	}
	l.advance(time.Nanosecond)
	if a.m.State() != Master {
		t.Fatal("not master at Master_Down_Interval")
	}
	want := []string{"add", "advert 100", "garp", "garp", "garp", "garp", "garp"}
	if got := a.rec.take(); !slices.Equal(got, want) {
		t.Fatalf("becoming master: %v, want %v", got, want)
	}
	// Adverts every interval; 5 more gratuitous ARPs 5 s after taking over.
	l.advance(garpDelay)
	calls := a.rec.take()
	if n := count(calls, "advert 100"); n != 50 {
		t.Fatalf("%d adverts in 5 s, want 50", n)
	}
	if n := count(calls, "garp"); n != 5 || a.garps != 10 {
		t.Fatalf("garp refresh: %d at 5 s, %d in all; want 5 and 10", n, a.garps)
	}
	l.advance(10 * time.Second)
	if a.garps != 10 {
		t.Fatalf("%d gratuitous ARPs after 15 s, want 10", a.garps)
	}
}

func TestOwnerBecomesMasterAtOnce(t *testing.T) {
	l := newLAN(t)
	a := l.add("a", cfg(255, "10.0.0.1"))
	l.start(a, true)
	if a.m.State() != Master || !a.vips {
		t.Fatalf("priority 255: state %v vips %v, want master holding the VIPs", a.m.State(), a.vips)
	}
	if got := a.rec.take(); !slices.Equal(got[:3], []string{"remove", "add", "advert 255"}) {
		t.Fatalf("calls %v", got)
	}
}

func TestHigherPriorityWinsAndBackupFollows(t *testing.T) {
	l := newLAN(t)
	a := l.add("a", cfg(200, "10.0.0.1"))
	b := l.add("b", cfg(100, "10.0.0.2"))
	l.start(a, true)
	l.start(b, true)
	l.advance(2 * time.Second)
	if a.m.State() != Master || b.m.State() != Backup || !a.vips || b.vips {
		t.Fatalf("a %v (vips %v), b %v (vips %v); want a master alone", a.m.State(), a.vips, b.m.State(), b.vips)
	}
}

func TestBackupAdoptsMasterInterval(t *testing.T) {
	l := newLAN(t)
	a := l.add("a", MachineConfig{Priority: 200, AdvertInterval: time.Second, Preempt: true, Primary: netip.MustParseAddr("10.0.0.1")})
	b := l.add("b", cfg(100, "10.0.0.2")) // configured 100ms
	l.start(a, true)
	l.start(b, true)
	l.advance(5 * time.Second)
	if b.m.State() != Backup || b.m.MasterAdverInterval() != time.Second {
		t.Fatalf("b %v with master interval %v; want backup following a's 1s", b.m.State(), b.m.MasterAdverInterval())
	}
}

func TestMasterDownDetectionTiming(t *testing.T) {
	l := newLAN(t)
	a := l.add("a", cfg(200, "10.0.0.1"))
	b := l.add("b", cfg(100, "10.0.0.2"))
	l.start(a, true)
	l.start(b, true)
	l.advance(time.Second)
	// The master crashes right after an advert: b waits 3 × 100ms + skew.
	l.advance(a.m.Deadline().Sub(l.now)) // to a's next advert, which b hears
	l.down[a] = true
	took := l.until(time.Second, "b master", func() bool { return b.m.State() == Master })
	// 3 × 100ms + (156 × 100ms)/256 = 360.9375ms, seen in 1 ms steps.
	if want := 3*adv + b.m.SkewTime(); took < want || took > want+time.Millisecond {
		t.Fatalf("b took over after %v, want Master_Down_Interval %v", took, want)
	}
}

func TestPriorityZeroHandoverAfterSkew(t *testing.T) {
	l := newLAN(t)
	a := l.add("a", cfg(200, "10.0.0.1"))
	b := l.add("b", cfg(100, "10.0.0.2"))
	l.start(a, true)
	l.start(b, true)
	l.advance(time.Second)
	a.rec.take()
	a.m.Stop(l.now)
	if got := a.rec.take(); !slices.Equal(got, []string{"advert 0", "remove"}) {
		t.Fatalf("stop: %v, want [advert 0 remove]", got)
	}
	if a.m.State() != Initialize || !a.m.Deadline().IsZero() {
		t.Fatalf("after stop: %v with a timer at %v", a.m.State(), a.m.Deadline())
	}
	l.deliver()
	took := l.until(time.Second, "b master", func() bool { return b.m.State() == Master })
	if skew := b.m.SkewTime(); took < skew || took > skew+time.Millisecond {
		t.Fatalf("b took over %v after the priority-0 advert, want Skew_Time %v", took, skew)
	}
}

func TestMasterAnswersPriorityZeroAtOnce(t *testing.T) {
	l := newLAN(t)
	a := l.add("a", cfg(200, "10.0.0.1"))
	l.start(a, true)
	l.advance(time.Second)
	a.rec.take()
	a.m.Receive(l.now, Advert{Src: netip.MustParseAddr("10.0.0.9"), Priority: 0, Interval: adv})
	if got := a.rec.take(); !slices.Equal(got, []string{"advert 200"}) || a.m.State() != Master {
		t.Fatalf("master hearing priority 0: %v, state %v", got, a.m.State())
	}
}

func TestPreemption(t *testing.T) {
	t.Run("higher node joining takes over", func(t *testing.T) {
		l := newLAN(t)
		b := l.add("b", cfg(100, "10.0.0.2"))
		l.start(b, true)
		l.advance(time.Second)
		a := l.add("a", cfg(200, "10.0.0.1"))
		l.start(a, true)
		// a ignores b's lower adverts and takes over after its own
		// Master_Down_Interval; b steps down on a's first advert.
		l.advance(a.m.MasterDownInterval())
		if a.m.State() != Master || b.m.State() != Backup || b.vips {
			t.Fatalf("a %v, b %v (vips %v); want a master, b backup", a.m.State(), b.m.State(), b.vips)
		}
	})
	t.Run("no preempt keeps the lower master", func(t *testing.T) {
		l := newLAN(t)
		b := l.add("b", cfg(100, "10.0.0.2"))
		l.start(b, true)
		l.advance(time.Second)
		c := cfg(200, "10.0.0.1")
		c.Preempt = false
		a := l.add("a", c)
		l.start(a, true)
		l.advance(5 * time.Second)
		if a.m.State() != Backup || b.m.State() != Master {
			t.Fatalf("a %v, b %v; want b to stay master", a.m.State(), b.m.State())
		}
	})
	t.Run("preempt delay", func(t *testing.T) {
		l := newLAN(t)
		b := l.add("b", cfg(100, "10.0.0.2"))
		l.start(b, true)
		l.advance(time.Second)
		c := cfg(200, "10.0.0.1")
		c.PreemptDelay = 2 * time.Second
		a := l.add("a", c)
		l.start(a, true)
		l.advance(2*time.Second - time.Millisecond)
		if a.m.State() != Backup {
			t.Fatal("a preempted during its preempt delay")
		}
		took := l.until(time.Second, "a master", func() bool { return a.m.State() == Master })
		if took > a.m.MasterDownInterval()+adv {
			t.Fatalf("a took %v after the delay, want about Master_Down_Interval", took)
		}
		if b.m.State() != Backup {
			t.Fatalf("b %v", b.m.State())
		}
	})
}

func TestTieBrokenByHigherPrimaryAddress(t *testing.T) {
	l := newLAN(t)
	lo := l.add("lo", cfg(100, "10.0.0.1"))
	hi := l.add("hi", cfg(100, "10.0.0.2"))
	// Both become master before hearing each other (a partition healing).
	lo.m.Start(l.now, true)
	hi.m.Start(l.now, true)
	l.queue = nil
	l.down[hi], l.down[lo] = true, false
	l.advance(lo.m.MasterDownInterval())
	l.down[hi], l.down[lo] = false, true
	l.advance(hi.m.MasterDownInterval() - lo.m.MasterDownInterval())
	l.down[lo] = false
	if lo.m.State() != Master || hi.m.State() != Master {
		t.Fatalf("setup: lo %v hi %v", lo.m.State(), hi.m.State())
	}
	l.advance(time.Second)
	if hi.m.State() != Master || lo.m.State() != Backup || lo.vips {
		t.Fatalf("equal priorities: lo %v hi %v; want the higher address (10.0.0.2) master", lo.m.State(), hi.m.State())
	}
	// And an equal-priority backup does not preempt: the tie only matters
	// between two masters.
	l.advance(5 * time.Second)
	if hi.m.State() != Master {
		t.Fatal("flapped")
	}
}

func TestLowerMasterStepsDownForHigher(t *testing.T) {
	l := newLAN(t)
	lo := l.add("lo", cfg(100, "10.0.0.9"))
	l.start(lo, true)
	l.advance(time.Second)
	lo.rec.take()
	lo.m.Receive(l.now, Advert{Src: netip.MustParseAddr("10.0.0.1"), Priority: 150, Interval: 2 * adv})
	if lo.m.State() != Backup || lo.vips || lo.m.MasterAdverInterval() != 2*adv {
		t.Fatalf("lo %v vips %v interval %v", lo.m.State(), lo.vips, lo.m.MasterAdverInterval())
	}
	// A lower advert does not unseat a master.
	l2 := newLAN(t)
	hi := l2.add("hi", cfg(200, "10.0.0.1"))
	l2.start(hi, true)
	l2.advance(time.Second)
	hi.m.Receive(l2.now, Advert{Src: netip.MustParseAddr("10.0.0.9"), Priority: 100, Interval: adv})
	if hi.m.State() != Master {
		t.Fatal("master stepped down for a lower priority")
	}
}

func TestUnhealthyNodeNeverBecomesMaster(t *testing.T) {
	t.Run("alone", func(t *testing.T) {
		l := newLAN(t)
		a := l.add("a", cfg(255, "10.0.0.1")) // even the owner
		l.start(a, false)
		l.advance(10 * time.Second)
		if a.m.State() != Backup || a.vips || count(a.rec.take(), "advert 255") != 0 {
			t.Fatalf("unhealthy node: %v vips %v", a.m.State(), a.vips)
		}
		// Healthy again with no master on the link: master after Skew_Time.
		a.m.SetHealthy(l.now, true)
		took := l.until(time.Second, "a master", func() bool { return a.m.State() == Master })
		if took > a.m.SkewTime()+time.Millisecond {
			t.Fatalf("took %v, want Skew_Time %v", took, a.m.SkewTime())
		}
	})
	t.Run("higher priority but unhealthy stays backup", func(t *testing.T) {
		l := newLAN(t)
		a := l.add("a", cfg(200, "10.0.0.1"))
		b := l.add("b", cfg(100, "10.0.0.2"))
		l.start(a, false)
		l.start(b, true)
		l.advance(5 * time.Second)
		if a.m.State() != Backup || a.vips || b.m.State() != Master {
			t.Fatalf("a %v (vips %v), b %v; want b master", a.m.State(), a.vips, b.m.State())
		}
		// Healthy again: a preempts within Master_Down_Interval.
		a.m.SetHealthy(l.now, true)
		took := l.until(time.Second, "a master", func() bool { return a.m.State() == Master && b.m.State() == Backup })
		if took > a.m.MasterDownInterval()+time.Millisecond {
			t.Fatalf("a preempted after %v, want <= %v", took, a.m.MasterDownInterval())
		}
	})
	t.Run("master that turns unhealthy releases", func(t *testing.T) {
		l := newLAN(t)
		a := l.add("a", cfg(200, "10.0.0.1"))
		b := l.add("b", cfg(100, "10.0.0.2"))
		l.start(a, true)
		l.start(b, true)
		l.advance(time.Second)
		a.rec.take()
		a.m.SetHealthy(l.now, false)
		if got := a.rec.take(); !slices.Equal(got, []string{"advert 0", "remove"}) || a.m.State() != Backup {
			t.Fatalf("unhealthy master: %v, state %v", got, a.m.State())
		}
		l.deliver()
		took := l.until(time.Second, "b master", func() bool { return b.m.State() == Master })
		if took > b.m.SkewTime()+time.Millisecond {
			t.Fatalf("b took %v, want Skew_Time %v", took, b.m.SkewTime())
		}
		l.advance(10 * time.Second)
		if a.m.State() != Backup || a.vips {
			t.Fatal("unhealthy a took the VIPs back")
		}
	})
	t.Run("unhealthy without preempt-able master does not flap", func(t *testing.T) {
		l := newLAN(t)
		a := l.add("a", cfg(200, "10.0.0.1"))
		b := l.add("b", cfg(100, "10.0.0.2"))
		l.start(a, true)
		l.start(b, false)
		l.advance(time.Second)
		l.down[a] = true // master crashes; the only backup is unhealthy
		l.advance(5 * time.Second)
		if b.m.State() != Backup || b.vips {
			t.Fatalf("unhealthy b took over: %v", b.m.State())
		}
		if !b.m.Deadline().IsZero() {
			t.Fatalf("unhealthy backup keeps a timer at %v", b.m.Deadline())
		}
	})
}

func TestStopAsBackupRemovesVIPsOnly(t *testing.T) {
	l := newLAN(t)
	a := l.add("a", cfg(100, "10.0.0.1"))
	l.start(a, true)
	a.rec.take()
	a.m.Stop(l.now)
	if got := a.rec.take(); !slices.Equal(got, []string{"remove"}) {
		t.Fatalf("backup stop: %v, want [remove] and no priority-0 advert", got)
	}
	// Start again after Stop works.
	l.start(a, true)
	if a.m.State() != Backup {
		t.Fatal("restart")
	}
}

func count(calls []string, s string) int {
	n := 0
	for _, c := range calls {
		if strings.EqualFold(c, s) {
			n++
		}
	}
	return n
}
