package balancer

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"ballast/internal/backend"
)

// cookieFrom returns a request carrying the cookie named name that the
// Set-Cookie value set (plus an unrelated one).
func cookieFrom(setCookie string) *Request {
	pair, _, _ := strings.Cut(setCookie, ";")
	return &Request{Header: header("Cookie", "theme=dark; "+pair)}
}

func TestStickyHonoursCookieFromAnotherNode(t *testing.T) {
	for _, alg := range []string{AlgRoundRobin, AlgConsistentHash} {
		t.Run(alg, func(t *testing.T) {
			opts := Options{HashOn: mustHashOn(t, "path")}
			// Node 1 and node 2 each build the pool from config: separate
			// Backend values, no shared state.
			nodeBackends := func() []*backend.Backend { return newAddrBackends("app", 5) }
			bs1, bs2 := nodeBackends(), nodeBackends()
			inner1, err1 := New(alg, bs1, opts)
			inner2, err2 := New(alg, bs2, opts)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			node1 := NewSticky("ballast_app", time.Hour, inner1, bs1)
			node2 := NewSticky("ballast_app", time.Hour, inner2, bs2)
			for i := range 20 {
				first := &Request{Path: fmt.Sprintf("/p%d", i)}
				b1, set := node1.Pick(first)
				if b1 == nil || !set {
					t.Fatalf("first visit: got %v, setCookie %v; want a backend and a new cookie", b1, set)
				}
				// Every later request, on either node and whatever the path
				// (which would steer consistent_hash elsewhere), stays on it.
				again := cookieFrom(node1.SetCookieValue(b1))
				for j := range 10 {
					again.Path = fmt.Sprintf("/q%d", j)
					for _, node := range []*Sticky{node1, node2} {
						b, set := node.Pick(again)
						if b == nil || b.Addr != b1.Addr || set {
							t.Fatalf("return visit: got %v (setCookie %v), want %s without a new cookie", b, set, b1.Addr)
						}
					}
				}
			}
		})
	}
}

func TestStickyForgedCookieNeverLeavesThePool(t *testing.T) {
	bs := newAddrBackends("app", 3)
	other := newAddrBackends("admin", 3) // another pool, same addresses
	s := NewSticky("ballast_app", 0, NewRoundRobin(bs), bs)
	inPool := map[*backend.Backend]bool{}
	for _, b := range bs {
		inPool[b] = true
	}
	rnd := rand.New(rand.NewPCG(5, 6))
	forged := []string{"", "0", "not-hex", other[0].ID, other[1].ID, other[2].ID, strings.ToUpper(bs[0].ID), bs[0].ID + "0", bs[0].Addr}
	for range 100 {
		forged = append(forged, fmt.Sprintf("%016x", rnd.Uint64()))
	}
	for _, v := range forged {
		b, set := s.Pick(&Request{Header: header("Cookie", "ballast_app="+v)})
		if !inPool[b] || !set {
			t.Fatalf("cookie %q: got %v, setCookie %v; want a fresh pick inside the pool and a new cookie", v, b, set)
		}
	}
}

func TestStickyMovesClientOffUnusableBackend(t *testing.T) {
	tests := []struct {
		name  string
		spoil func(b *backend.Backend)
	}{
		{"down", func(b *backend.Backend) { b.SetState(backend.StateDown) }},
		{"draining", func(b *backend.Backend) { b.SetState(backend.StateDraining) }},
		{"at max_conns", func(b *backend.Backend) { b.SetMaxConns(1); b.Acquire() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := newAddrBackends("app", 3)
			s := NewSticky("sid", 0, NewRoundRobin(bs), bs)
			r := cookieFrom(s.SetCookieValue(bs[1]))
			if b, set := s.Pick(r); b != bs[1] || set {
				t.Fatalf("before: got %s, setCookie %v; want %s, false", b.Addr, set, bs[1].Addr)
			}
			tt.spoil(bs[1])
			b, set := s.Pick(r)
			if b == nil || b == bs[1] || !set {
				t.Fatalf("after: got %v, setCookie %v; want another backend and a new cookie", b, set)
			}
			// The new cookie holds.
			if b2, set := s.Pick(cookieFrom(s.SetCookieValue(b))); b2 != b || set {
				t.Errorf("with the new cookie: got %s, setCookie %v; want %s, false", b2.Addr, set, b.Addr)
			}
		})
	}
}

func TestStickyNoCookie(t *testing.T) {
	bs := newBackends(3)
	s := NewSticky("sid", 0, NewRoundRobin(bs), bs)
	for _, r := range []*Request{{}, {Header: header("Cookie", "other=1")}, {Header: header("Cookie", "sid=")}} {
		if b, set := s.Pick(r); b == nil || !set {
			t.Errorf("%v: got %v, setCookie %v; want a pick and a new cookie", r.Header, b, set)
		}
	}
	down(bs, "a", "b", "c")
	if b, set := s.Pick(&Request{Header: header("Cookie", "sid="+bs[0].ID)}); b != nil || set {
		t.Errorf("all down: got %v, setCookie %v; want nil, false", b, set)
	}
}

func TestStickySetCookieValue(t *testing.T) {
	b := backend.New("app", "10.0.0.1:8080", 1)
	tests := []struct {
		ttl  time.Duration
		want string
	}{
		{0, "ballast_app=" + b.ID + "; Path=/; HttpOnly; SameSite=Lax"},
		{time.Hour, "ballast_app=" + b.ID + "; Path=/; HttpOnly; SameSite=Lax; Max-Age=3600"},
		{1500 * time.Millisecond, "ballast_app=" + b.ID + "; Path=/; HttpOnly; SameSite=Lax; Max-Age=2"},
	}
	for _, tt := range tests {
		t.Run(tt.ttl.String(), func(t *testing.T) {
			s := NewSticky("ballast_app", tt.ttl, NewRoundRobin(nil), nil)
			if s.CookieName() != "ballast_app" || s.TTL() != tt.ttl {
				t.Errorf("CookieName, TTL = %q, %v", s.CookieName(), s.TTL())
			}
			got := s.SetCookieValue(b)
			if got != tt.want {
				t.Errorf("SetCookieValue = %q, want %q", got, tt.want)
			}
			// A browser (net/http's parser) reads it back as intended.
			c, err := http.ParseSetCookie(got)
			if err != nil {
				t.Fatal(err)
			}
			if c.Name != "ballast_app" || c.Value != b.ID || !c.HttpOnly || c.Path != "/" || c.SameSite != http.SameSiteLaxMode {
				t.Errorf("parsed back as %+v", c)
			}
		})
	}
}

func BenchmarkStickyPick(b *testing.B) {
	bs := benchBackends()
	s := NewSticky("ballast", time.Hour, NewRoundRobin(bs), bs)
	r := benchRequest()
	r.Header = header("Cookie", "theme=dark; session=abc123; ballast="+bs[4].ID)
	b.ReportAllocs()
	for b.Loop() {
		if p, set := s.Pick(r); p != bs[4] || set {
			b.Fatal("cookie not honoured")
		}
	}
}
