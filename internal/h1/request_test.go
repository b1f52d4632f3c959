package h1

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// reqSummary renders a parsed Request comparably; a nil slice shows as
// "<nil>" so that "absent" and "empty" stay distinct.
type reqSummary struct {
	Method, Target, Path, Query, Host string
	Minor                             int
	ContentLength                     int64
	Chunked, KeepAlive, Expect100     bool
	Upgrade                           string
	Headers                           int
}

func str(b []byte) string {
	if b == nil {
		return "<nil>"
	}
	return string(b)
}

func summarize(r *Request) reqSummary {
	return reqSummary{
		Method: str(r.Method), Target: str(r.Target), Path: str(r.Path),
		Query: str(r.Query), Host: str(r.Host), Minor: r.Minor,
		ContentLength: r.ContentLength, Chunked: r.Chunked,
		KeepAlive: r.KeepAlive, Expect100: r.Expect100,
		Upgrade: str(r.Upgrade), Headers: len(r.Headers),
	}
}

// get is the summary of a plain "GET / HTTP/1.1" with one Host field, the
// base the valid cases modify.
func get(mod func(*reqSummary)) reqSummary {
	s := reqSummary{
		Method: "GET", Target: "/", Path: "/", Query: "<nil>", Host: "example.com",
		Minor: 1, KeepAlive: true, Upgrade: "<nil>", Headers: 1,
	}
	if mod != nil {
		mod(&s)
	}
	return s
}

func manyHeaders(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "X-H%d: v%d\r\n", i, i)
	}
	return b.String()
}

func TestParseRequestValid(t *testing.T) {
	const h = "Host: example.com\r\n"
	tests := []struct {
		name string
		in   string
		want reqSummary
	}{
		{"simple GET", "GET / HTTP/1.1\r\n" + h + "\r\n", get(nil)},
		{"query", "GET /search?q=a&b=c HTTP/1.1\r\n" + h + "\r\n", get(func(s *reqSummary) {
			s.Target, s.Path, s.Query = "/search?q=a&b=c", "/search", "q=a&b=c"
		})},
		{"empty query", "GET /p? HTTP/1.1\r\n" + h + "\r\n", get(func(s *reqSummary) {
			s.Target, s.Path, s.Query = "/p?", "/p", ""
		})},
		{"odd visible bytes in target", "GET /a|b{c}%20\"^ HTTP/1.1\r\n" + h + "\r\n", get(func(s *reqSummary) {
			s.Target, s.Path = "/a|b{c}%20\"^", "/a|b{c}%20\"^"
		})},
		{"POST with Content-Length", "POST /upload HTTP/1.1\r\n" + h + "Content-Length: 11\r\n\r\nhello world", get(func(s *reqSummary) {
			s.Method, s.Target, s.Path, s.ContentLength, s.Headers = "POST", "/upload", "/upload", 11, 2
		})},
		{"Content-Length with OWS", "POST / HTTP/1.1\r\n" + h + "Content-Length: \t 42 \t\r\n\r\n", get(func(s *reqSummary) {
			s.Method, s.ContentLength, s.Headers = "POST", 42, 2
		})},
		{"Content-Length zero", "POST / HTTP/1.1\r\n" + h + "Content-Length: 0\r\n\r\n", get(func(s *reqSummary) {
			s.Method, s.Headers = "POST", 2
		})},
		{"Content-Length max int64", "POST / HTTP/1.1\r\n" + h + "Content-Length: 9223372036854775807\r\n\r\n", get(func(s *reqSummary) {
			s.Method, s.ContentLength, s.Headers = "POST", 1<<63-1, 2
		})},
		{"Content-Length leading zeros", "POST / HTTP/1.1\r\n" + h + "Content-Length: 007\r\n\r\n", get(func(s *reqSummary) {
			s.Method, s.ContentLength, s.Headers = "POST", 7, 2
		})},
		{"identical Content-Length fields", "POST / HTTP/1.1\r\n" + h + "Content-Length: 5\r\ncontent-length: 5\r\n\r\n", get(func(s *reqSummary) {
			s.Method, s.ContentLength, s.Headers = "POST", 5, 3
		})},
		{"identical Content-Length list", "POST / HTTP/1.1\r\n" + h + "Content-Length: 5, 5 ,5\r\n\r\n", get(func(s *reqSummary) {
			s.Method, s.ContentLength, s.Headers = "POST", 5, 2
		})},
		{"chunked", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n", get(func(s *reqSummary) {
			s.Method, s.Chunked, s.ContentLength, s.Headers = "POST", true, -1, 2
		})},
		{"chunked any case with OWS", "POST / HTTP/1.1\r\n" + h + "transfer-encoding:\t CHUNKED \r\n\r\n", get(func(s *reqSummary) {
			s.Method, s.Chunked, s.ContentLength, s.Headers = "POST", true, -1, 2
		})},
		{"HTTP/1.0 without Host", "GET /x HTTP/1.0\r\n\r\n", get(func(s *reqSummary) {
			s.Target, s.Path, s.Host, s.Minor, s.KeepAlive, s.Headers = "/x", "/x", "<nil>", 0, false, 0
		})},
		{"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\n" + h + "Connection: Keep-Alive\r\n\r\n", get(func(s *reqSummary) {
			s.Minor, s.Headers = 0, 2
		})},
		{"HTTP/1.0 keep-alive and close", "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", get(func(s *reqSummary) {
			s.Minor, s.Host, s.KeepAlive = 0, "<nil>", false
		})},
		{"HTTP/1.1 close", "GET / HTTP/1.1\r\n" + h + "Connection: foo,, CLOSE\r\n\r\n", get(func(s *reqSummary) {
			s.KeepAlive, s.Headers = false, 2
		})},
		{"upgrade", "GET /ws HTTP/1.1\r\n" + h + "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n", get(func(s *reqSummary) {
			s.Target, s.Path, s.Upgrade, s.Headers = "/ws", "/ws", "websocket", 3
		})},
		{"Upgrade without Connection token", "GET / HTTP/1.1\r\n" + h + "Upgrade: websocket\r\n\r\n", get(func(s *reqSummary) {
			s.Headers = 2
		})},
		{"Upgrade ignored in HTTP/1.0", "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", get(func(s *reqSummary) {
			s.Minor, s.Host, s.KeepAlive, s.Headers = 0, "<nil>", false, 2
		})},
		{"Expect 100-continue", "PUT / HTTP/1.1\r\n" + h + "Expect: 100-Continue\r\nContent-Length: 3\r\n\r\n", get(func(s *reqSummary) {
			s.Method, s.Expect100, s.ContentLength, s.Headers = "PUT", true, 3, 3
		})},
		{"Expect ignored in HTTP/1.0", "PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", get(func(s *reqSummary) {
			s.Method, s.Minor, s.Host, s.KeepAlive, s.Headers = "PUT", 0, "<nil>", false, 1
		})},
		{"absolute-form overrides Host", "GET http://Example.ORG:8080/a/b?x=1 HTTP/1.1\r\nHost: other.example\r\n\r\n", get(func(s *reqSummary) {
			s.Target, s.Path, s.Query, s.Host = "http://Example.ORG:8080/a/b?x=1", "/a/b", "x=1", "Example.ORG:8080"
		})},
		{"absolute-form without path", "GET HTTPS://example.net HTTP/1.1\r\n" + h + "\r\n", get(func(s *reqSummary) {
			s.Target, s.Host = "HTTPS://example.net", "example.net"
		})},
		{"absolute-form query only", "GET http://example.net?x HTTP/1.1\r\n" + h + "\r\n", get(func(s *reqSummary) {
			s.Target, s.Query, s.Host = "http://example.net?x", "x", "example.net"
		})},
		{"absolute-form HTTP/1.0 without Host", "GET http://10.0.0.1/ HTTP/1.0\r\n\r\n", get(func(s *reqSummary) {
			s.Target, s.Host, s.Minor, s.KeepAlive, s.Headers = "http://10.0.0.1/", "10.0.0.1", 0, false, 0
		})},
		{"OPTIONS asterisk", "OPTIONS * HTTP/1.1\r\n" + h + "\r\n", get(func(s *reqSummary) {
			s.Method, s.Target, s.Path = "OPTIONS", "*", "*"
		})},
		{"CONNECT authority-form overrides Host", "CONNECT example.com:443 HTTP/1.1\r\nHost: other.example\r\n\r\n", get(func(s *reqSummary) {
			s.Method, s.Target, s.Path, s.Host = "CONNECT", "example.com:443", "<nil>", "example.com:443"
		})},
		{"extension method", "PURGE /x HTTP/1.1\r\n" + h + "\r\n", get(func(s *reqSummary) {
			s.Method, s.Target, s.Path = "PURGE", "/x", "/x"
		})},
		{"128 headers", "GET / HTTP/1.1\r\n" + h + manyHeaders(127) + "\r\n", get(func(s *reqSummary) {
			s.Headers = 128
		})},
		{"obs-text in value", "GET / HTTP/1.1\r\n" + h + "X-Name: caf\xc3\xa9 \xff\r\n\r\n", get(func(s *reqSummary) {
			s.Headers = 2
		})},
		{"empty values", "GET / HTTP/1.1\r\n" + h + "X-Empty:\r\nX-Blank: \t \r\n\r\n", get(func(s *reqSummary) {
			s.Headers = 3
		})},
		{"leading empty lines", "\r\n\r\nGET / HTTP/1.1\r\n" + h + "\r\n", get(nil)},
		{"IPv6 Host", "GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n", get(func(s *reqSummary) {
			s.Host = "[2001:db8::1]:8080"
		})},
		{"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", get(func(s *reqSummary) {
			s.Host = ""
		})},
		{"pct-encoded Host", "GET / HTTP/1.1\r\nHost: ex%41mple.com\r\n\r\n", get(func(s *reqSummary) {
			s.Host = "ex%41mple.com"
		})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r Request
			n, err := ParseRequest([]byte(tc.in), &r)
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			if want := strings.Index(tc.in, "\r\n\r\n") + 4; tc.in[:2] != "\r\n" && n != want {
				t.Errorf("n = %d, want %d", n, want)
			}
			if !strings.HasSuffix(tc.in[:n], "\r\n\r\n") {
				t.Errorf("n = %d does not end at CRLF CRLF", n)
			}
			if got := summarize(&r); got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseRequestHeaders(t *testing.T) {
	in := "GET / HTTP/1.1\r\nHost: a.example\r\nX-Tab:\tfoo\tbar\t\r\nAccept:  */* \r\nx-dup: 1\r\nX-Dup: 2\r\nX-Empty:\r\n\r\n"
	var r Request
	if _, err := ParseRequest([]byte(in), &r); err != nil {
		t.Fatal(err)
	}
	want := []struct{ name, value string }{
		{"Host", "a.example"}, {"X-Tab", "foo\tbar"}, {"Accept", "*/*"},
		{"x-dup", "1"}, {"X-Dup", "2"}, {"X-Empty", ""},
	}
	if len(r.Headers) != len(want) {
		t.Fatalf("got %d headers, want %d", len(r.Headers), len(want))
	}
	for i, w := range want {
		if string(r.Headers[i].Name) != w.name || string(r.Headers[i].Value) != w.value {
			t.Errorf("header %d = %q: %q, want %q: %q", i, r.Headers[i].Name, r.Headers[i].Value, w.name, w.value)
		}
	}
	lookups := []struct {
		name string
		want string // "<nil>" for absent
	}{
		{"host", "a.example"}, {"HOST", "a.example"}, {"X-DUP", "1"},
		{"x-empty", ""}, {"X-Missing", "<nil>"}, {"Hos", "<nil>"},
	}
	for _, l := range lookups {
		if got := str(r.Header(l.name)); got != l.want {
			t.Errorf("Header(%q) = %q, want %q", l.name, got, l.want)
		}
	}
}

// TestParseRequestReuse proves a reused Request carries nothing over from
// the previous parse: every field is reset, only the capacity stays.
func TestParseRequestReuse(t *testing.T) {
	var r Request
	first := "POST http://a.example/x?y HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"
	if _, err := ParseRequest([]byte(first), &r); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseRequest([]byte("GET /z HTTP/1.0\r\n\r\n"), &r); err != nil {
		t.Fatal(err)
	}
	want := get(func(s *reqSummary) {
		s.Target, s.Path, s.Host, s.Minor, s.KeepAlive, s.Headers = "/z", "/z", "<nil>", 0, false, 0
	})
	if got := summarize(&r); got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseRequestIncomplete(t *testing.T) {
	full := "POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n\r\n"
	for i := range len(full) {
		var r Request
		if _, err := ParseRequest([]byte(full[:i]), &r); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("prefix %q: err = %v, want ErrIncomplete", full[:i], err)
		}
	}
	var r Request
	if n, err := ParseRequest([]byte(full+"abc"), &r); err != nil || n != len(full) {
		t.Fatalf("full: n = %d, err = %v; want %d, nil", n, err, len(full))
	}
}

// TestParseRequestEarlyReject checks that a block already invalid fails
// before its end arrives, so junk cannot hold a connection open.
func TestParseRequestEarlyReject(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"TLS ClientHello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", ErrMalformed},
		{"bad method prefix", "GE(T", ErrMalformed},
		{"bad field line", "GET / HTTP/1.1\r\nHost : x\r\nMore", ErrMalformed},
		{"bare LF line", "GET / HTTP/1.1\nHost: x", ErrMalformed},
		{"too many fields", "GET / HTTP/1.1\r\n" + manyHeaders(MaxHeaders+1), ErrHeaderTooLarge},
		{"just a CR", "\r", ErrIncomplete},
		{"method prefix", "OPTIO", ErrIncomplete},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r Request
			if _, err := ParseRequest([]byte(tc.in), &r); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestParseRequestAllocs(t *testing.T) {
	buf := []byte(browserGET)
	var r Request
	if _, err := ParseRequest(buf, &r); err != nil { // grow r.Headers once
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := ParseRequest(buf, &r); err != nil {
			t.Fatal(err)
		}
		if r.Header("user-agent") == nil {
			t.Fatal("no User-Agent")
		}
	})
	if allocs != 0 {
		t.Errorf("ParseRequest + Header allocate %v times per call, want 0", allocs)
	}
	// Other success paths: absolute-form, chunked, CONNECT.
	for _, in := range []string{
		"POST http://a.example HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
		"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\nContent-Length: 5, 5\r\n\r\n",
	} {
		buf := []byte(in)
		if a := testing.AllocsPerRun(100, func() {
			if _, err := ParseRequest(buf, &r); err != nil {
				t.Fatal(err)
			}
		}); a != 0 {
			t.Errorf("%q: %v allocations per call, want 0", in, a)
		}
	}
}
