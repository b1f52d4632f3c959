package vrrp

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeLink is an in-memory link: the test injects received packets and
// inspects what the speaker sent and configured.
type fakeLink struct {
	primary netip.Addr
	in      chan fakePkt
	closed  chan struct{}
	once    sync.Once

	mu    sync.Mutex
	sent  []*Packet
	addrs map[netip.Prefix]bool
	garps int
}

type fakePkt struct {
	ttl      int
	src, dst netip.Addr
	msg      []byte
}

func newFakeLink(primary string) *fakeLink {
	return &fakeLink{
		primary: netip.MustParseAddr(primary),
		in:      make(chan fakePkt, 8),
		closed:  make(chan struct{}),
		addrs:   map[netip.Prefix]bool{},
	}
}

func (f *fakeLink) Primary() netip.Addr { return f.primary }

func (f *fakeLink) ReadAdvert(b []byte) (int, netip.Addr, netip.Addr, []byte, error) {
	select {
	case p := <-f.in:
		n := copy(b, p.msg)
		return p.ttl, p.src, p.dst, b[:n], nil
	case <-f.closed:
		return 0, netip.Addr{}, netip.Addr{}, nil, net.ErrClosed
	}
}

func (f *fakeLink) WriteAdvert(dst netip.Addr, msg []byte) error {
	p, err := Decode(msg, f.primary, dst)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, p)
	return nil
}

func (f *fakeLink) AddAddr(p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addrs[p] = true
	return nil
}

func (f *fakeLink) DelAddr(p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.addrs, p)
	return nil
}

func (f *fakeLink) GratuitousARP(netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.garps++
	return nil
}

func (f *fakeLink) Close() error { f.once.Do(func() { close(f.closed) }); return nil }

func (f *fakeLink) hasVIP() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.addrs) > 0
}

func (f *fakeLink) lastSent() *Packet {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.sent) == 0 {
		return nil
	}
	return f.sent[len(f.sent)-1]
}

var testVIP = netip.MustParsePrefix("10.0.0.100/24")

func startFake(t *testing.T, cfg Config) (*Speaker, *fakeLink, func() error) {
	t.Helper()
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	fl := newFakeLink("10.0.0.2")
	fl.addrs[testVIP] = true // left behind by a crash
	s.open = func(Config) (link, error) { return fl, nil }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() { runErr = s.Run(ctx); close(done) }()
	stop := func() error {
		cancel()
		select {
		case <-done:
			return runErr
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after cancel")
			return nil
		}
	}
	t.Cleanup(func() { cancel(); <-done })
	return s, fl, stop
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(limit); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v", what, limit)
		}
	}
}

func TestSpeakerLifecycle(t *testing.T) {
	cfg := Config{Interface: "fake0", VRID: 7, Priority: 100, AdvertInterval: 20 * time.Millisecond,
		VirtualIPs: []netip.Prefix{testVIP}, Preempt: true}
	var states []State
	var mu sync.Mutex
	cfg.OnStateChange = func(s State) { mu.Lock(); states = append(states, s); mu.Unlock() }
	s, fl, stop := startFake(t, cfg)

	waitFor(t, time.Second, "master", s.IsMaster)
	if !fl.hasVIP() {
		t.Fatal("master without its VIP")
	}
	if p := fl.lastSent(); p == nil || p.VRID != 7 || p.Priority != 100 || p.IntervalCS != 2 || p.Addrs[0] != testVIP.Addr() {
		t.Fatalf("advert sent: %+v", p)
	}

	higher := func(ttl int) fakePkt {
		msg, err := (&Packet{VRID: 7, Priority: 200, IntervalCS: 2, Addrs: []netip.Addr{testVIP.Addr()}}).
			Encode(netip.MustParseAddr("10.0.0.1"), MulticastGroup)
		if err != nil {
			t.Fatal(err)
		}
		return fakePkt{ttl: ttl, src: netip.MustParseAddr("10.0.0.1"), dst: MulticastGroup, msg: msg}
	}
	fl.in <- higher(64) // crossed a router: dropped
	time.Sleep(50 * time.Millisecond)
	if !s.IsMaster() {
		t.Fatal("a higher advert with TTL 64 unseated the master")
	}
	fl.in <- higher(255)
	waitFor(t, time.Second, "backup after a higher advert", func() bool { return s.State() == "backup" && !fl.hasVIP() })
	// Master again once the higher node goes silent.
	waitFor(t, time.Second, "master again", s.IsMaster)

	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if p := fl.lastSent(); p == nil || p.Priority != 0 {
		t.Fatalf("last advert %+v, want priority 0 on release", p)
	}
	if fl.hasVIP() || s.State() != "initialize" {
		t.Fatalf("after release: vip %v state %s", fl.hasVIP(), s.State())
	}
	mu.Lock()
	defer mu.Unlock()
	want := "backup master backup master initialize"
	if got := strings.TrimSpace(stateNames(states)); got != want {
		t.Fatalf("OnStateChange saw %q, want %q", got, want)
	}
}

func stateNames(ss []State) string {
	var b strings.Builder
	for _, s := range ss {
		b.WriteString(s.String() + " ")
	}
	return b.String()
}

func TestSpeakerUnhealthyReleases(t *testing.T) {
	cfg := Config{Interface: "fake0", VRID: 7, Priority: 100, AdvertInterval: 20 * time.Millisecond,
		VirtualIPs: []netip.Prefix{testVIP}, Preempt: true}
	s, fl, _ := startFake(t, cfg)
	waitFor(t, time.Second, "master", s.IsMaster)
	s.SetHealthy(false)
	waitFor(t, time.Second, "released", func() bool { return s.State() == "backup" && !fl.hasVIP() })
	if p := fl.lastSent(); p.Priority != 0 {
		t.Fatalf("last advert priority %d, want 0", p.Priority)
	}
	time.Sleep(200 * time.Millisecond) // > Master_Down_Interval (~70ms)
	if s.IsMaster() || fl.hasVIP() {
		t.Fatal("unhealthy speaker took the VIP back")
	}
	s.SetHealthy(true)
	waitFor(t, time.Second, "master when healthy", s.IsMaster)
}

func TestNewValidates(t *testing.T) {
	_, err := New(Config{
		VRID: 0, Priority: 256, AdvertInterval: 15 * time.Millisecond,
		VirtualIPs:   []netip.Prefix{netip.MustParsePrefix("2001:db8::1/64"), testVIP, testVIP},
		UnicastPeers: []netip.Addr{netip.MustParseAddr("2001:db8::2")},
		PreemptDelay: -time.Second,
	}, nil)
	if err == nil {
		t.Fatal("New accepted an invalid config")
	}
	for _, want := range []string{"interface", "virtual_router_id", "priority", "advert_interval",
		"virtual_ips[0]", "virtual_ips[2]", "unicast_peers[0]", "preempt_delay"} {
		if !strings.Contains(err.Error(), want+":") {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}
	s, err := New(Config{Interface: "eth0", VRID: 1, Priority: 1, VirtualIPs: []netip.Prefix{testVIP}}, nil)
	if err != nil {
		t.Fatalf("minimal config: %v", err)
	}
	if s.cfg.AdvertInterval != time.Second || s.State() != "initialize" {
		t.Fatalf("defaults: interval %v state %s", s.cfg.AdvertInterval, s.State())
	}
}
