package balancer

import (
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"ballast/internal/backend"
)

// FuzzParseHashOn: any hash_on text either fails to parse, leaving the zero
// HashOn, or gives a valid one that prints back to itself; and the key it
// picks from any request — hostile paths, queries, headers, cookies and
// addresses included — hashes the same every time and sends the request to
// a backend of the pool, the same one each time, with either hash algorithm.
func FuzzParseHashOn(f *testing.F) {
	f.Add("source_ip", "/a", "x=1", "v", "sid=1", []byte{192, 0, 2, 1})
	f.Add("path", "", "", "", "", []byte(nil))
	f.Add("uri", "/a?b", "c=d&e", "", "", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1})
	f.Add("header:x-user", "/", "", "alice", "", []byte{10, 0, 0, 1})
	f.Add("header:X-User\x00", "/", "", "\r\n", "", []byte{})
	f.Add("cookie:sid", "/", "", "", `sid="quoted"; sid=2`, []byte{})
	f.Add("cookie:", "/", "", "", ";;=;", []byte{1})
	f.Add("query:user", "/", "user=%00&user=bob", "", "", []byte{})
	f.Add("query:a b", "/", "a b=1", "", "", []byte{})
	f.Add("source_ip:x", "/", "", "", "", []byte{})
	f.Add("header:a:b", "/", "", "v", "", []byte{})
	f.Add(":", "\xff\xfe", "\xff=\xff", "\xff", "\xff=\xff", []byte{0xff})
	f.Fuzz(func(t *testing.T, spec, path, query, value, cookie string, ip []byte) {
		on, err := ParseHashOn(spec)
		if err != nil {
			if on != (HashOn{}) || on.Valid() {
				t.Fatalf("ParseHashOn(%q) failed (%v) but returned %+v", spec, err, on)
			}
			return
		}
		if !on.Valid() {
			t.Fatalf("ParseHashOn(%q) succeeded with an invalid HashOn", spec)
		}
		again, err := ParseHashOn(on.String())
		if err != nil || again != on {
			t.Fatalf("ParseHashOn(%q).String() = %q parses to %+v, %v", spec, on.String(), again, err)
		}

		h := http.Header{"Cookie": {cookie}}
		if on.src == hashHeader {
			h[on.name] = []string{value}
		}
		addr, _ := netip.AddrFromSlice(ip)
		r := &Request{ClientIP: addr, Path: path, RawQuery: query, Header: h}
		sum, ok := on.Hash(r)
		if sum2, ok2 := on.Hash(r); sum2 != sum || ok2 != ok {
			t.Fatalf("%s: Hash differs between calls: %x %v, %x %v", on, sum, ok, sum2, ok2)
		}
		if !ok && sum != 0 {
			t.Fatalf("%s: no key, yet hash %x", on, sum)
		}
		switch on.src {
		case hashSourceIP:
			if ok != addr.IsValid() {
				t.Fatalf("source_ip of %v: ok %v", addr, ok)
			}
			if addr.Is4() {
				// An IPv4 client and the same one mapped into IPv6 are one key.
				mapped := *r
				mapped.ClientIP = netip.AddrFrom16(addr.As16())
				if s, _ := on.Hash(&mapped); s != sum {
					t.Fatalf("%v and %v hash differently", addr, mapped.ClientIP)
				}
			}
		case hashPath, hashURI:
			if !ok {
				t.Fatalf("%s: no key for path %q", on, path)
			}
		case hashHeader:
			if ok != (value != "") {
				t.Fatalf("header %s = %q: ok %v", on.name, value, ok)
			}
		case hashCookie:
			v, want := cookieValue(cookie, on.name)
			if ok != want || ok && sum != hashString(v) {
				t.Fatalf("cookie %s in %q: hash %x %v, want the hash of %q", on.name, cookie, sum, ok, v)
			}
		}
		if _, ok := on.Hash(nil); ok {
			t.Fatal("Hash(nil) found a key")
		}

		// Both hash algorithms fall back to round robin without a key
		// (consistent_hash tries the client address first).
		bs := newAddrBackends("app", 5)
		for _, tc := range []struct {
			bal   Balancer
			keyed bool
		}{
			{NewConsistentHash(bs, on), ok || addr.IsValid()},
			{mustNew(t, AlgIPHash, bs), addr.IsValid()},
		} {
			b := tc.bal.Pick(r)
			if b == nil || !slices.Contains(bs, b) {
				t.Fatalf("%T picked %v, not a backend of the pool", tc.bal, b)
			}
			if tc.keyed && tc.bal.Pick(r) != b {
				t.Fatalf("%T picks differently for the same key", tc.bal)
			}
		}
	})
}

func mustNew(t *testing.T, alg string, bs []*backend.Backend) Balancer {
	b, err := New(alg, bs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzStickyCookie: whatever the Cookie header, Sticky picks a usable backend
// of its pool; it keeps the client on the backend the cookie names when that
// is one of the pool's and usable (and sets no new cookie), and otherwise
// sets a cookie for the inner balancer's pick. The cookie it sets, sent
// back, names the backend it was set for.
func FuzzStickyCookie(f *testing.F) {
	ids := newAddrBackends("app", 3)
	f.Add("ballast_app="+ids[0].ID, uint8(0))
	f.Add("theme=dark; ballast_app="+ids[1].ID+"; x=y", uint8(2))
	f.Add(`ballast_app="`+ids[2].ID+`"`, uint8(3))
	f.Add("ballast_app="+ids[0].ID+"; ballast_app="+ids[1].ID, uint8(1))
	f.Add("ballast_app=", uint8(0))
	f.Add("ballast_app=0000000000000000", uint8(0))
	f.Add(" \tballast_app = "+ids[0].ID, uint8(0))
	f.Add("ballast_app="+strings.ToUpper(ids[0].ID), uint8(0))
	f.Add("ballast_app=\x00\r\n;;;==", uint8(7))
	f.Fuzz(func(t *testing.T, cookie string, downMask uint8) {
		bs := newAddrBackends("app", 3)
		for i, b := range bs {
			if downMask&(1<<i) != 0 && i < 2 { // keep one backend usable
				b.SetState(backend.StateDown)
			}
		}
		s := NewSticky("ballast_app", time.Hour, mustNew(t, AlgRoundRobin, bs), bs)
		r := &Request{Header: http.Header{"Cookie": {cookie}}}
		b, set := s.Pick(r)
		if b == nil || !slices.Contains(bs, b) || !b.Usable() {
			t.Fatalf("Cookie %q: picked %v, not a usable backend of the pool", cookie, b)
		}
		var named *backend.Backend
		if id, ok := cookieValue(cookie, "ballast_app"); ok {
			for _, x := range bs {
				if x.ID == id {
					named = x
				}
			}
		}
		switch {
		case named != nil && named.Usable() && (b != named || set):
			t.Fatalf("Cookie %q names usable %s: picked %s, setCookie %v", cookie, named.Addr, b.Addr, set)
		case (named == nil || !named.Usable()) && !set:
			t.Fatalf("Cookie %q names no usable backend: picked %s without setting a cookie", cookie, b.Addr)
		}

		// The cookie set for b, sent back first, brings the client back to b.
		pair, _, _ := strings.Cut(s.SetCookieValue(b), ";")
		back, set := s.Pick(&Request{Header: http.Header{"Cookie": {pair + "; " + cookie}}})
		if back != b || set {
			t.Fatalf("Cookie %q; %s: picked %v, setCookie %v; want %s", cookie, pair, back, set, b.Addr)
		}
	})
}
