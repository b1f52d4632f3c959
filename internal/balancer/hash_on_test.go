package balancer

import (
	"hash/fnv"
	"net/netip"
	"strings"
	"testing"
)

func TestParseHashOn(t *testing.T) {
	tests := []struct {
		in      string
		want    string // String() of the result; "" for an error
		wantErr string
	}{
		{in: "source_ip", want: "source_ip"},
		{in: "path", want: "path"},
		{in: "uri", want: "uri"},
		{in: "header:x-user", want: "header:X-User"},
		{in: "header:X-USER-ID", want: "header:X-User-Id"},
		{in: "cookie:Session", want: "cookie:Session"},
		{in: "query:user_id", want: "query:user_id"},
		{in: "", wantErr: "invalid hash_on"},
		{in: "host", wantErr: "invalid hash_on"},
		{in: "header:", wantErr: "needs a name"},
		{in: "cookie:", wantErr: "needs a name"},
		{in: "query:", wantErr: "needs a name"},
		{in: "header:X User", wantErr: "invalid header name"},
		{in: "cookie:a;b", wantErr: "invalid cookie name"},
		{in: "query:a&b", wantErr: "invalid query parameter name"},
		{in: "param:x", wantErr: "invalid hash_on"},
		{in: "Path", wantErr: "invalid hash_on"},
		{in: "source_ip:x", wantErr: "takes no name"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			h, err := ParseHashOn(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseHashOn(%q) = %v, %v; want error containing %q", tt.in, h, err, tt.wantErr)
				}
				if h.Valid() {
					t.Errorf("failed parse returned a valid HashOn")
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseHashOn(%q): %v", tt.in, err)
			}
			if !h.Valid() || h.String() != tt.want {
				t.Errorf("ParseHashOn(%q) = %q (valid %v), want %q", tt.in, h.String(), h.Valid(), tt.want)
			}
		})
	}
	if (HashOn{}).Valid() {
		t.Error("zero HashOn is valid")
	}
}

func mustHashOn(t testing.TB, s string) HashOn {
	t.Helper()
	h, err := ParseHashOn(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestHashOnSources checks, for every source, which part of the request is the
// key: requests with the same key hash alike, a different key hashes
// differently, and an absent key reports ok=false.
func TestHashOnSources(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.7")
	base := func() *Request {
		return &Request{
			ClientIP: ip, Host: "example.com", Path: "/cart", RawQuery: "user=alice&x=1",
			Header: header("X-User", "alice", "Cookie", "theme=dark; sid=abc123"),
		}
	}
	with := func(f func(r *Request)) *Request { r := base(); f(r); return r }
	tests := []struct {
		on       string
		key      string     // the key the base request hashes to
		same     []*Request // other requests with the same key
		differ   []*Request // requests with another key
		absent   []*Request // requests without the key
		wantHash func() uint64
	}{
		{
			on:     "source_ip",
			same:   []*Request{with(func(r *Request) { r.Path = "/other"; r.Header = nil }), with(func(r *Request) { r.ClientIP = netip.AddrFrom16(ip.As16()) })},
			differ: []*Request{with(func(r *Request) { r.ClientIP = netip.MustParseAddr("192.0.2.8") })},
			absent: []*Request{with(func(r *Request) { r.ClientIP = netip.Addr{} }), nil},
		},
		{
			on: "path", key: "/cart",
			same:   []*Request{with(func(r *Request) { r.RawQuery = "" }), with(func(r *Request) { r.ClientIP = netip.MustParseAddr("::1") })},
			differ: []*Request{with(func(r *Request) { r.Path = "/cart/" })},
		},
		{
			on: "uri", key: "/cart?user=alice&x=1",
			same:   []*Request{with(func(r *Request) { r.Header = nil })},
			differ: []*Request{with(func(r *Request) { r.RawQuery = "user=bob&x=1" }), with(func(r *Request) { r.RawQuery = "" })},
		},
		{
			on: "header:x-user", key: "alice",
			same:   []*Request{with(func(r *Request) { r.Path = "/"; r.Header = header("x-user", "alice") })},
			differ: []*Request{with(func(r *Request) { r.Header = header("X-User", "bob") })},
			absent: []*Request{with(func(r *Request) { r.Header = header("X-Other", "alice") }), with(func(r *Request) { r.Header = header("X-User", "") }), with(func(r *Request) { r.Header = nil })},
		},
		{
			on: "cookie:sid", key: "abc123",
			same: []*Request{
				with(func(r *Request) { r.Header = header("Cookie", "sid=abc123") }),
				with(func(r *Request) { r.Header = header("Cookie", `a=1;sid="abc123"; b=2`) }),
			},
			differ: []*Request{with(func(r *Request) { r.Header = header("Cookie", "sid=abc124") })},
			absent: []*Request{
				with(func(r *Request) { r.Header = header("Cookie", "xsid=abc123; sidx=1") }),
				with(func(r *Request) { r.Header = header("Cookie", "SID=abc123") }),
				with(func(r *Request) { r.Header = header("Cookie", "sid=") }),
				with(func(r *Request) { r.Header = header("X-Sid", "abc123") }),
				with(func(r *Request) { r.Header = nil }),
			},
		},
		{
			on: "query:user", key: "alice",
			same:   []*Request{with(func(r *Request) { r.RawQuery = "user=alice" }), with(func(r *Request) { r.RawQuery = "a&user=alice&user=bob" })},
			differ: []*Request{with(func(r *Request) { r.RawQuery = "user=Alice" }), with(func(r *Request) { r.RawQuery = "user=al%69ce" })},
			absent: []*Request{
				with(func(r *Request) { r.RawQuery = "" }),
				with(func(r *Request) { r.RawQuery = "users=alice&xuser=alice" }),
				with(func(r *Request) { r.RawQuery = "user=&a=1" }),
				with(func(r *Request) { r.RawQuery = "user" }),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.on, func(t *testing.T) {
			on := mustHashOn(t, tt.on)
			h0, ok := on.Hash(base())
			if !ok {
				t.Fatal("base request: key absent")
			}
			if tt.key != "" && h0 != hashString(tt.key) {
				t.Errorf("base request hashes to %x, want the hash of %q", h0, tt.key)
			}
			for i, r := range tt.same {
				if h, ok := on.Hash(r); !ok || h != h0 {
					t.Errorf("same[%d]: Hash = %x, %v; want %x, true", i, h, ok, h0)
				}
			}
			for i, r := range tt.differ {
				if h, ok := on.Hash(r); !ok || h == h0 {
					t.Errorf("differ[%d]: Hash = %x, %v; want another hash, true", i, h, ok)
				}
			}
			for i, r := range tt.absent {
				if h, ok := on.Hash(r); ok {
					t.Errorf("absent[%d]: Hash = %x, true; want ok=false", i, h)
				}
			}
		})
	}
}

func TestHashOnEmptyPathIsSlash(t *testing.T) {
	for _, on := range []string{"path", "uri"} {
		h := mustHashOn(t, on)
		a, okA := h.Hash(&Request{Path: ""})
		b, okB := h.Hash(&Request{Path: "/"})
		if !okA || !okB || a != b {
			t.Errorf("%s: empty path = %x,%v; \"/\" = %x,%v; want equal", on, a, okA, b, okB)
		}
	}
}

// The hash is FNV-1a, then splitmix64: pinned so that every ballast version and
// node maps keys alike. A change here would remap every client in a cluster
// being upgraded one node at a time.
func TestHashIsStable(t *testing.T) {
	for _, s := range []string{"", "a", "/cart", "alice", strings.Repeat("x", 1000)} {
		f := fnv.New64a()
		f.Write([]byte(s))
		if got, want := fnvAdd(fnvOffset64, s), f.Sum64(); got != want {
			t.Errorf("fnvAdd(%q) = %x, want FNV-1a %x", s, got, want)
		}
	}
	// Computed independently (Python).
	if got, want := hashString("alice"), uint64(0xc5d1556d66774a5c); got != want {
		t.Errorf("hashString(alice) = %#x, want %#x", got, want)
	}
	// Incremental feeding equals hashing the concatenation.
	uri, _ := mustHashOn(t, "uri").Hash(&Request{Path: "/a/b", RawQuery: "x=1"})
	if want := hashString("/a/b?x=1"); uri != want {
		t.Errorf("uri hash = %x, want hash of the concatenation %x", uri, want)
	}
}

func TestHashOnDoesNotAllocate(t *testing.T) {
	r := benchRequest()
	for _, on := range []string{"source_ip", "path", "uri", "header:X-User", "cookie:session", "query:user"} {
		h := mustHashOn(t, on)
		if _, ok := h.Hash(r); !ok {
			t.Fatalf("%s: key absent from the bench request", on)
		}
		if n := testing.AllocsPerRun(100, func() { h.Hash(r) }); n != 0 {
			t.Errorf("%s: %v allocations per Hash, want 0", on, n)
		}
	}
}

// Reference implementations: simple, allocating, obviously right.
func refCookie(header, name string) (string, bool) {
	for _, pair := range strings.Split(header, ";") {
		pair = strings.Trim(pair, " \t")
		k, v, found := strings.Cut(pair, "=")
		if !found || k != name {
			continue
		}
		if len(v) >= 2 && strings.HasPrefix(v, `"`) && strings.HasSuffix(v, `"`) {
			v = v[1 : len(v)-1]
		}
		return v, v != ""
	}
	return "", false
}

func refQuery(query, name string) (string, bool) {
	if query == "" {
		return "", false
	}
	for _, pair := range strings.Split(query, "&") {
		k, v, _ := strings.Cut(pair, "=")
		if k == name {
			return v, v != ""
		}
	}
	return "", false
}

func FuzzHashOn(f *testing.F) {
	f.Add("a=1; sid=abc; b=2", "sid", "user=alice&x=1", "user")
	f.Add(`sid="quoted"`, "sid", "a&user&user=bob", "user")
	f.Add(";;=;sid=;sid=x", "sid", "&&=&user=&user=1", "user")
	f.Add("\tsid = x", "sid", "%75ser=1", "%75ser")
	f.Add(`sid="`, "sid", "=", "")
	f.Fuzz(func(t *testing.T, cookieHeader, cookieName, query, queryName string) {
		gotV, gotOK := cookieValue(cookieHeader, cookieName)
		wantV, wantOK := refCookie(cookieHeader, cookieName)
		if gotV != wantV || gotOK != wantOK {
			t.Fatalf("cookieValue(%q, %q) = %q, %v; want %q, %v", cookieHeader, cookieName, gotV, gotOK, wantV, wantOK)
		}
		gotV, gotOK = queryValue(query, queryName)
		wantV, wantOK = refQuery(query, queryName)
		if gotV != wantV || gotOK != wantOK {
			t.Fatalf("queryValue(%q, %q) = %q, %v; want %q, %v", query, queryName, gotV, gotOK, wantV, wantOK)
		}
		// Through the parser and Hash, for names the config would accept.
		r := &Request{RawQuery: query, Header: header("Cookie", cookieHeader)}
		if on, err := ParseHashOn("cookie:" + cookieName); err == nil {
			h, ok := on.Hash(r)
			v, refOK := refCookie(r.Header.Get("Cookie"), cookieName)
			if ok != refOK || ok && h != hashString(v) {
				t.Fatalf("cookie:%s Hash = %x, %v; want hash of %q, %v", cookieName, h, ok, v, refOK)
			}
		}
		if on, err := ParseHashOn("query:" + queryName); err == nil {
			h, ok := on.Hash(r)
			if ok != wantOK || ok && h != hashString(wantV) {
				t.Fatalf("query:%s Hash = %x, %v; want hash of %q, %v", queryName, h, ok, wantV, wantOK)
			}
		}
	})
}
