package pool

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"ballast/internal/backend"
	"ballast/internal/balancer"
)

// A drained backend gets no new request from any algorithm, sticky or not.
func TestDrainNoNewRequests(t *testing.T) {
	path, err := balancer.ParseHashOn("path")
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range balancer.Algorithms {
		for _, sticky := range []string{"", "srv"} {
			t.Run(alg+"/sticky="+sticky, func(t *testing.T) {
				s := Settings{Algorithm: alg, HashOn: path, StickyCookie: sticky}
				bs := mkBackends("10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80")
				p := newPool(t, s, bs)
				seen := func() map[string]int {
					got := map[string]int{}
					for i := range 300 {
						r := &balancer.Request{Header: http.Header{}}
						if i%10 != 0 { // some without a key or address
							r.Path = fmt.Sprintf("/p%d", i)
							r.ClientIP = netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)})
						}
						b, _ := p.Pick(r)
						if b == nil {
							t.Fatal("nil pick with two backends up")
						}
						got[b.Addr]++
					}
					return got
				}
				if got := seen(); got[bs[1].Addr] == 0 {
					t.Fatalf("before the drain %s got nothing (%v): the test would prove nothing", bs[1].Addr, got)
				}
				d, err := p.Drain(bs[1].Addr)
				if err != nil || d != bs[1] {
					t.Fatalf("Drain = %v, %v; want %s, nil", d, err, bs[1].Addr)
				}
				if d.State() != backend.StateDraining {
					t.Errorf("state after Drain = %v, want draining", d.State())
				}
				if got := seen(); got[bs[1].Addr] != 0 {
					t.Errorf("draining %s picked %d times (%v)", bs[1].Addr, got[bs[1].Addr], got)
				}
				if b := p.Backend(bs[1].Addr); b != bs[1] {
					t.Error("a drained backend must stay in the pool, listed as draining")
				}
			})
		}
	}
}

// A sticky client bound to a drained backend moves to another one and is
// told so with a new cookie, which is then honoured.
func TestDrainMovesStickyClient(t *testing.T) {
	bs := mkBackends("a", "b", "c")
	p := newPool(t, Settings{Algorithm: balancer.AlgLeastConn, StickyCookie: "srv"}, bs)
	req := func(cookie string) *balancer.Request {
		h := http.Header{}
		h.Set("Cookie", cookie)
		return &balancer.Request{Header: h}
	}
	if b, cookie := p.Pick(req("srv=" + bs[1].ID)); b != bs[1] || cookie != "" {
		t.Fatalf("before the drain: %v, cookie %q; want b and none", b, cookie)
	}
	if _, err := p.Drain("b"); err != nil {
		t.Fatal(err)
	}
	b, cookie := p.Pick(req("srv=" + bs[1].ID))
	if b == nil || b == bs[1] {
		t.Fatalf("after the drain: picked %v, want another backend", b)
	}
	if !strings.HasPrefix(cookie, "srv="+b.ID+";") {
		t.Fatalf("after the drain: cookie %q, want one binding the client to %s", cookie, b.Addr)
	}
	pair, _, _ := strings.Cut(cookie, ";")
	if b2, c2 := p.Pick(req(pair)); b2 != b || c2 != "" {
		t.Errorf("with the new cookie: %v, cookie %q; want %s and none", b2, c2, b.Addr)
	}
}

// Requests in flight on a drained backend finish and are counted; WaitIdle
// reports when the last one is done.
func TestDrainInFlight(t *testing.T) {
	bs := mkBackends("a", "b")
	p := newPool(t, rr, bs)
	bs[1].Acquire()
	bs[1].Acquire()
	b, err := p.Drain("b")
	if err != nil {
		t.Fatal(err)
	}
	if b.InFlight() != 2 {
		t.Fatalf("in flight after Drain = %d, want 2", b.InFlight())
	}
	b.Release(false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := b.WaitIdle(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitIdle with one request in flight = %v, want a deadline error", err)
	}
	b.Release(true)
	if err := b.WaitIdle(context.Background()); err != nil {
		t.Fatalf("WaitIdle after the last Release = %v", err)
	}
	if b.InFlight() != 0 || b.Requests() != 2 || b.Failures() != 1 {
		t.Errorf("in flight %d, requests %d, failures %d; want 0, 2, 1", b.InFlight(), b.Requests(), b.Failures())
	}
}

func TestDrainNotFound(t *testing.T) {
	p := newPool(t, rr, mkBackends("a"))
	b, err := p.Drain("z")
	if !errors.Is(err, ErrNotFound) || b != nil {
		t.Fatalf("Drain of a missing backend = %v, %v; want nil, ErrNotFound", b, err)
	}
	if !strings.Contains(err.Error(), `pool "app"`) || !strings.Contains(err.Error(), "z") {
		t.Errorf("error %q does not name pool and backend", err)
	}
}

// Setting a drained backend up again puts it back in rotation, ramping.
func TestUndrainRamps(t *testing.T) {
	bs := mkBackends("a", "b")
	p := newPool(t, Settings{Algorithm: balancer.AlgRoundRobin, SlowStart: time.Hour}, bs)
	if _, err := p.Drain("b"); err != nil {
		t.Fatal(err)
	}
	bs[1].SetState(backend.StateUp)
	if !bs[1].Ramping() {
		t.Error("b not ramping after its drain ended")
	}
	if got := picks(p, nil, 200); !strings.Contains(got, "b") {
		t.Errorf("b never picked after its drain ended: %q", got)
	}
}
