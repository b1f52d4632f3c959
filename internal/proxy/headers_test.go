package proxy

import (
	"net/http"
	"net/netip"
	"net/textproto"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"
)

// hdr builds a header from name/value pairs (Add, so names repeat).
func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// endToEnd are fields a proxy must forward untouched.
var endToEnd = []string{"Content-Type", "Cache-Control", "Set-Cookie", "Authorization", "X-Custom", "Accept-Encoding"}

func withEndToEnd(h http.Header) http.Header {
	for _, k := range endToEnd {
		h.Add(k, "e2e-"+k)
	}
	return h
}

func TestRemoveHopHeaders(t *testing.T) {
	tests := []struct {
		name string
		in   http.Header
		gone []string // fields that must be removed besides the standard ones
		kept []string // fields that must survive besides the end-to-end ones
	}{
		{
			name: "standard hop-by-hop fields",
			in: hdr("Connection", "close", "Proxy-Connection", "keep-alive", "Keep-Alive", "timeout=5",
				"Proxy-Authenticate", "Basic", "Proxy-Authorization", "Basic eA==", "Te", "trailers",
				"Trailer", "X-Checksum", "Transfer-Encoding", "chunked", "Upgrade", "websocket"),
		},
		{
			name: "one Connection naming two fields",
			in:   hdr("Connection", "X-Foo, X-Bar", "X-Foo", "1", "X-Bar", "2", "X-Baz", "3"),
			gone: []string{"X-Foo", "X-Bar"},
			kept: []string{"X-Baz"},
		},
		{
			name: "several Connection headers",
			in:   hdr("Connection", "x-a", "Connection", "X-B, x-c", "X-A", "1", "X-B", "2", "X-C", "3", "X-D", "4"),
			gone: []string{"X-A", "X-B", "X-C"},
			kept: []string{"X-D"},
		},
		{
			name: "oddly spaced and empty elements",
			in:   hdr("Connection", " ,, \tx-a\t ,   X-B ,,\t", "X-A", "1", "X-B", "2", "X-C", "3"),
			gone: []string{"X-A", "X-B"},
			kept: []string{"X-C"},
		},
		{
			name: "case-insensitive names",
			in:   hdr("Connection", "X-LOUD, x-quiet", "X-Loud", "1", "X-Quiet", "2"),
			gone: []string{"X-Loud", "X-Quiet"},
		},
		{
			name: "fields with several values",
			in:   hdr("Connection", "X-Multi", "X-Multi", "1", "X-Multi", "2"),
			gone: []string{"X-Multi"},
		},
		{
			name: "Connection naming an absent field",
			in:   hdr("Connection", "X-Absent, keep-alive"),
		},
		{
			name: "Connection naming an end-to-end field removes it",
			in:   hdr("Connection", "X-Custom"),
			gone: []string{"X-Custom"},
		},
		{
			name: "no hop-by-hop fields at all",
			in:   hdr("X-Other", "1"),
			kept: []string{"X-Other"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := withEndToEnd(tt.in)
			want := h.Clone()
			removeHopHeaders(h)
			for _, k := range append(hopHeaders[:], tt.gone...) {
				if v, ok := h[textproto.CanonicalMIMEHeaderKey(k)]; ok {
					t.Errorf("%s left in: %q", k, v)
				}
			}
			keep := slices.Clone(tt.kept)
			for _, k := range endToEnd {
				if !slices.Contains(tt.gone, k) {
					keep = append(keep, k)
				}
			}
			for _, k := range keep {
				if !slices.Equal(h[k], want[k]) {
					t.Errorf("%s = %q, want %q", k, h[k], want[k])
				}
			}
			if len(h) != len(keep) {
				t.Errorf("header has %d fields, want %d: %v", len(h), len(keep), h)
			}
		})
	}
}

func TestUpgradeType(t *testing.T) {
	tests := []struct {
		name string
		h    http.Header
		want string
	}{
		{"websocket", hdr("Connection", "Upgrade", "Upgrade", "websocket"), "websocket"},
		{"lower-case token", hdr("Connection", "upgrade", "Upgrade", "websocket"), "websocket"},
		{"among other tokens", hdr("Connection", "keep-alive, Upgrade", "Upgrade", "websocket"), "websocket"},
		{"second Connection header", hdr("Connection", "keep-alive", "Connection", " Upgrade ", "Upgrade", "h2c"), "h2c"},
		{"no Connection", hdr("Upgrade", "websocket"), ""},
		{"Connection without Upgrade token", hdr("Connection", "keep-alive", "Upgrade", "websocket"), ""},
		{"token is a prefix only", hdr("Connection", "Upgraded", "Upgrade", "websocket"), ""},
		{"no Upgrade field", hdr("Connection", "Upgrade"), ""},
		{"empty", http.Header{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := upgradeType(tt.h); got != tt.want {
				t.Errorf("upgradeType(%v) = %q, want %q", tt.h, got, tt.want)
			}
		})
	}
}

func TestPrepareRequestHeaderForwarded(t *testing.T) {
	tests := []struct {
		name      string
		in        http.Header
		clientIP  string
		host      string
		tls       bool
		wantXFF   []string
		wantProto string
		wantHost  []string
	}{
		{
			name: "first hop", in: hdr(), clientIP: "192.0.2.1", host: "example.com",
			wantXFF: []string{"192.0.2.1"}, wantProto: "http", wantHost: []string{"example.com"},
		},
		{
			name: "one prior value", in: hdr("X-Forwarded-For", "203.0.113.9"), clientIP: "192.0.2.1", host: "example.com", tls: true,
			wantXFF: []string{"203.0.113.9, 192.0.2.1"}, wantProto: "https", wantHost: []string{"example.com"},
		},
		{
			name:     "several prior values and fields",
			in:       hdr("X-Forwarded-For", "203.0.113.9, 198.51.100.7", "X-Forwarded-For", "10.1.1.1"),
			clientIP: "2001:db8::1", host: "a.test:8443", tls: true,
			wantXFF: []string{"203.0.113.9, 198.51.100.7, 10.1.1.1, 2001:db8::1"}, wantProto: "https", wantHost: []string{"a.test:8443"},
		},
		{
			name:     "client-supplied proto and host are replaced",
			in:       hdr("X-Forwarded-Proto", "https", "X-Forwarded-Host", "evil.test"),
			clientIP: "192.0.2.1", host: "example.com",
			wantXFF: []string{"192.0.2.1"}, wantProto: "http", wantHost: []string{"example.com"},
		},
		{
			name: "unknown client address adds nothing", in: hdr("X-Forwarded-For", "203.0.113.9"), host: "example.com",
			wantXFF: []string{"203.0.113.9"}, wantProto: "http", wantHost: []string{"example.com"},
		},
		{
			name: "no host keeps no X-Forwarded-Host", in: hdr(), clientIP: "192.0.2.1",
			wantXFF: []string{"192.0.2.1"}, wantProto: "http", wantHost: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.in
			prepareRequestHeader(h, tt.clientIP, tt.host, tt.tls)
			if got := h["X-Forwarded-For"]; !slices.Equal(got, tt.wantXFF) {
				t.Errorf("X-Forwarded-For = %q, want %q", got, tt.wantXFF)
			}
			if got := h["X-Forwarded-Proto"]; !slices.Equal(got, []string{tt.wantProto}) {
				t.Errorf("X-Forwarded-Proto = %q, want [%q]", got, tt.wantProto)
			}
			if got := h["X-Forwarded-Host"]; !slices.Equal(got, tt.wantHost) {
				t.Errorf("X-Forwarded-Host = %q, want %q", got, tt.wantHost)
			}
		})
	}
}

// isRequestID reports whether s is 32 lower-case hex digits.
func isRequestID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func TestPrepareRequestHeaderRequestID(t *testing.T) {
	atLimit := strings.Repeat("a", maxRequestIDLen)
	tests := []struct {
		name string
		in   string // "" = absent
		keep bool
	}{
		{"absent", "", false},
		{"short", "abc-123", true},
		{"uuid", "7c9e6679-7425-40de-944b-e07fc1f90ae7", true},
		{"exactly the limit", atLimit, true},
		{"one over the limit", atLimit + "b", false},
		{"far over the limit", strings.Repeat("x", 10000), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.in != "" {
				h.Set("X-Request-Id", tt.in)
			}
			id := prepareRequestHeader(h, "192.0.2.1", "example.com", false)
			if got := h["X-Request-Id"]; len(got) != 1 || got[0] != id {
				t.Fatalf("X-Request-Id = %q, returned id %q", got, id)
			}
			if tt.keep {
				if id != tt.in {
					t.Errorf("id = %q, want the client's %q kept", id, tt.in)
				}
				return
			}
			if !isRequestID(id) {
				t.Errorf("generated id %q is not 32 lower-case hex digits", id)
			}
		})
	}
	// Two ids from the client: the first goes on, alone.
	h := http.Header{"X-Request-Id": {"first", "second"}}
	if id := prepareRequestHeader(h, "192.0.2.1", "example.com", false); id != "first" || len(h["X-Request-Id"]) != 1 {
		t.Errorf("two client ids: forwarded %q, returned %q; want [first]", h["X-Request-Id"], id)
	}
}

func TestRequestIDUnique(t *testing.T) {
	const n = 10000
	// Both 64-bit halves must be random on their own too: a duplicate half
	// among 10k ids has probability ~3e-12 for 64 random bits.
	seen := make(map[string]bool, 2*n)
	for i := range n {
		id := prepareRequestHeader(http.Header{}, "", "", false)
		if !isRequestID(id) {
			t.Fatalf("id %q is not 32 lower-case hex digits", id)
		}
		for _, half := range []string{"hi" + id[:16], "lo" + id[16:]} {
			if seen[half] {
				t.Fatalf("id %q repeats a half seen before, after %d ids", id, i)
			}
			seen[half] = true
		}
	}
}

func TestPrepareRequestHeaderHopByHop(t *testing.T) {
	tests := []struct {
		name  string
		in    http.Header
		want  map[string][]string // fields that must have exactly these values (nil = absent)
		clean []string            // fields that must be absent
	}{
		{
			name: "TE trailers kept",
			in:   hdr("Te", "trailers"),
			want: map[string][]string{"Te": {"trailers"}},
		},
		{
			name: "TE trailers among codings",
			in:   hdr("Te", "gzip;q=0.5, Trailers"),
			want: map[string][]string{"Te": {"trailers"}},
		},
		{
			name: "TE gzip dropped",
			in:   hdr("Te", "gzip"),
			want: map[string][]string{"Te": nil},
		},
		{
			name: "TE named in Connection still keeps trailers",
			in:   hdr("Connection", "TE", "Te", "trailers"),
			want: map[string][]string{"Te": {"trailers"}, "Connection": nil},
		},
		{
			name: "websocket upgrade",
			in: hdr("Connection", "keep-alive, Upgrade, X-Hop", "Upgrade", "websocket", "Keep-Alive", "timeout=5",
				"X-Hop", "1", "Sec-Websocket-Key", "dGhlIHNhbXBsZSBub25jZQ==", "Sec-Websocket-Version", "13"),
			want: map[string][]string{
				"Connection":            {"Upgrade"},
				"Upgrade":               {"websocket"},
				"Keep-Alive":            nil,
				"X-Hop":                 nil,
				"Sec-Websocket-Key":     {"dGhlIHNhbXBsZSBub25jZQ=="},
				"Sec-Websocket-Version": {"13"},
			},
		},
		{
			name: "Upgrade without Connection: Upgrade is dropped",
			in:   hdr("Connection", "keep-alive", "Upgrade", "websocket"),
			want: map[string][]string{"Connection": nil, "Upgrade": nil},
		},
		{
			name: "plain request loses every hop-by-hop field",
			in: hdr("Connection", "close, X-Private", "X-Private", "secret", "Proxy-Authorization", "Basic eA==",
				"Transfer-Encoding", "chunked", "Trailer", "X-Sum", "Proxy-Connection", "keep-alive"),
			want: map[string][]string{"Connection": nil, "X-Private": nil, "Proxy-Authorization": nil,
				"Transfer-Encoding": nil, "Trailer": nil, "Proxy-Connection": nil, "Upgrade": nil, "Te": nil},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := withEndToEnd(tt.in)
			prepareRequestHeader(h, "192.0.2.1", "example.com", false)
			for k, v := range tt.want {
				if got := h[k]; !slices.Equal(got, v) {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			for _, k := range endToEnd {
				if got := h[k]; !slices.Equal(got, []string{"e2e-" + k}) {
					t.Errorf("end-to-end %s = %q, want it untouched", k, got)
				}
			}
		})
	}
}

func TestCopyHeader(t *testing.T) {
	dst := hdr("Set-Cookie", "a=1", "X-Only-Dst", "d")
	src := hdr("Set-Cookie", "b=2", "Set-Cookie", "c=3", "X-Only-Src", "s")
	copyHeader(dst, src)
	want := map[string][]string{
		"Set-Cookie": {"a=1", "b=2", "c=3"},
		"X-Only-Dst": {"d"},
		"X-Only-Src": {"s"},
	}
	for k, v := range want {
		if !slices.Equal(dst[k], v) {
			t.Errorf("%s = %q, want %q", k, dst[k], v)
		}
	}
	// dst does not share backing arrays with src.
	dst["X-Only-Src"][0] = "changed"
	if src.Get("X-Only-Src") != "s" {
		t.Error("copyHeader aliased src's value slice")
	}
}

func TestClientAddr(t *testing.T) {
	tests := []struct {
		remote string
		want   string // "" = invalid
	}{
		{"192.0.2.1:5555", "192.0.2.1"},
		{"127.0.0.1:80", "127.0.0.1"},
		{"[::1]:80", "::1"},
		{"[2001:db8::17]:443", "2001:db8::17"},
		{"[::ffff:192.0.2.1]:80", "192.0.2.1"},
		{"[::ffff:c000:201]:80", "192.0.2.1"},
		{"[fe80::1%eth0]:80", "fe80::1%eth0"},
		{"192.0.2.1", ""},
		{"::1", ""},
		{"[::1]", ""},
		{"localhost:80", ""},
		{"@", ""},
		{"", ""},
		{"garbage", ""},
		{"999.0.0.1:80", ""},
	}
	for _, tt := range tests {
		t.Run(tt.remote, func(t *testing.T) {
			got := clientAddr(tt.remote)
			if tt.want == "" {
				if got.IsValid() {
					t.Errorf("clientAddr(%q) = %v, want invalid", tt.remote, got)
				}
				return
			}
			want := netip.MustParseAddr(tt.want)
			if got != want {
				t.Errorf("clientAddr(%q) = %v, want %v", tt.remote, got, want)
			}
			if got.Is4In6() {
				t.Errorf("clientAddr(%q) = %v still v4-mapped", tt.remote, got)
			}
		})
	}
}

// connectionTokens returns the field names listed in Connection values: the
// comma-separated elements with optional whitespace (SP, HTAB) trimmed.
func connectionTokens(values []string) []string {
	var names []string
	for _, v := range values {
		for _, e := range strings.Split(v, ",") {
			if e = strings.Trim(e, " \t"); e != "" {
				names = append(names, e)
			}
		}
	}
	return names
}

func FuzzRemoveHopHeaders(f *testing.F) {
	f.Add("close", "")
	f.Add("X-Foo, X-Bar", "keep-alive")
	f.Add(" ,, \tx-a\t ,   X-B ,,\t", "Upgrade")
	f.Add("Connection, Content-Type", "te")
	f.Add("X-Custom,X-Custom", "\t")
	f.Add("a b, ü, \x00", ",,,")
	f.Fuzz(func(t *testing.T, c1, c2 string) {
		conn := []string{c1, c2}
		names := connectionTokens(conn)
		h := withEndToEnd(http.Header{})
		for _, n := range names {
			h.Add(n, "named")
			if httpguts.ValidHeaderFieldName(n) {
				// A field a client really sends under another spelling.
				h.Add(strings.ToLower(n), "lower")
				h.Add(strings.ToUpper(n), "upper")
			}
		}
		h["Connection"] = conn
		for _, k := range hopHeaders {
			if k != "Connection" {
				h.Add(k, "hop")
			}
		}

		removeHopHeaders(h)

		for _, n := range names {
			if v := h.Values(n); len(v) > 0 {
				t.Errorf("field %q named in Connection %q left in: %q", n, conn, v)
			}
		}
		for _, k := range hopHeaders {
			if _, ok := h[k]; ok {
				t.Errorf("hop-by-hop %s left in", k)
			}
		}
		for _, k := range endToEnd {
			namedHere := slices.ContainsFunc(names, func(n string) bool {
				return textproto.CanonicalMIMEHeaderKey(n) == k
			})
			if !namedHere && !slices.Equal(h[k], []string{"e2e-" + k}) {
				t.Errorf("end-to-end %s = %q, want it kept (Connection %q)", k, h[k], conn)
			}
		}
	})
}
