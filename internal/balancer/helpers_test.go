package balancer

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"ballast/internal/backend"
)

// newBackends returns n up backends named a, b, c... in pool "test", with the
// given weights (missing ones are 1).
func newBackends(n int, weights ...int) []*backend.Backend {
	bs := make([]*backend.Backend, n)
	for i := range bs {
		w := 1
		if i < len(weights) {
			w = weights[i]
		}
		bs[i] = backend.New("test", string(rune('a'+i)), w)
	}
	return bs
}

// newAddrBackends returns n up backends with realistic addresses 10.0.0.i:8080.
func newAddrBackends(pool string, n int) []*backend.Backend {
	bs := make([]*backend.Backend, n)
	for i := range bs {
		bs[i] = backend.New(pool, fmt.Sprintf("10.0.0.%d:8080", i+1), 1)
	}
	return bs
}

// pickSeq returns the addresses of k successive picks ("-" for nil), joined.
func pickSeq(b Balancer, r *Request, k int) string {
	out := make([]string, k)
	for i := range out {
		out[i] = "-"
		if p := b.Pick(r); p != nil {
			out[i] = p.Addr
		}
	}
	return strings.Join(out, "")
}

// tally counts k picks per backend address ("" for nil).
func tally(b Balancer, r *Request, k int) map[string]int {
	c := map[string]int{}
	for range k {
		if p := b.Pick(r); p != nil {
			c[p.Addr]++
		} else {
			c[""]++
		}
	}
	return c
}

// down marks the backends with the given addresses down.
func down(bs []*backend.Backend, addrs ...string) {
	for _, b := range bs {
		for _, a := range addrs {
			if b.Addr == a {
				b.SetState(backend.StateDown)
			}
		}
	}
}

// within fails t unless got is within ±tol of want.
func within(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if got < want-tol || got > want+tol {
		t.Errorf("%s = %.4f, want %.4f ± %.4f", what, got, want, tol)
	}
}

// randomIPs returns k distinct client addresses from a seeded generator, one in
// four of them IPv6.
func randomIPs(k int) []netip.Addr {
	rnd := rand.New(rand.NewPCG(7, 11))
	seen := make(map[netip.Addr]bool, k)
	ips := make([]netip.Addr, 0, k)
	for len(ips) < k {
		var ip netip.Addr
		if rnd.IntN(4) == 0 {
			var a [16]byte
			binary.BigEndian.PutUint64(a[:8], 0x20010db8<<32|rnd.Uint64()&0xffff_ffff)
			binary.BigEndian.PutUint64(a[8:], rnd.Uint64())
			ip = netip.AddrFrom16(a)
		} else {
			var a [4]byte
			binary.BigEndian.PutUint32(a[:], rnd.Uint32())
			ip = netip.AddrFrom4(a)
		}
		if !seen[ip] {
			seen[ip] = true
			ips = append(ips, ip)
		}
	}
	return ips
}

// header builds a Header with the given name/value pairs.
func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// benchBackends is the 10-backend pool every benchmark uses.
func benchBackends() []*backend.Backend {
	bs := newAddrBackends("bench", 10)
	for i, b := range bs {
		b.SetWeight(1 + i%3)
	}
	return bs
}

// benchRequest is a request carrying every kind of key.
func benchRequest() *Request {
	return &Request{
		ClientIP: netip.MustParseAddr("192.0.2.44"),
		Host:     "example.com",
		Path:     "/api/v1/users/42",
		RawQuery: "page=2&user=alice&sort=asc",
		Header:   header("Cookie", "theme=dark; session=abc123; ballast=0011223344556677", "X-User", "alice"),
	}
}

func benchPick(b *testing.B, bal Balancer) {
	r := benchRequest()
	b.ReportAllocs()
	for b.Loop() {
		if bal.Pick(r) == nil {
			b.Fatal("nil pick")
		}
	}
}
