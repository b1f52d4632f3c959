package h1

import (
	"errors"
	"strings"
	"testing"
)

type respSummary struct {
	Minor, Status                         int
	Reason                                string
	Bodyless, Chunked, UntilClose, KeepOn bool
	ContentLength                         int64
	Upgrade                               string
	Headers                               int
}

func summarizeResp(r *Response) respSummary {
	return respSummary{
		Minor: r.Minor, Status: r.Status, Reason: str(r.Reason),
		Bodyless: r.Bodyless, Chunked: r.Chunked, UntilClose: r.UntilClose,
		KeepOn: r.KeepAlive, ContentLength: r.ContentLength,
		Upgrade: str(r.Upgrade), Headers: len(r.Headers),
	}
}

func TestParseResponseValid(t *testing.T) {
	tests := []struct {
		name, method, in string
		want             respSummary
	}{
		{"200 with CL", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
			respSummary{1, 200, "OK", false, false, false, true, 5, "<nil>", 1}},
		{"chunked", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
			respSummary{1, 200, "OK", false, true, false, true, -1, "<nil>", 1}},
		{"gzip then chunked", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
			respSummary{1, 200, "OK", false, true, false, true, -1, "<nil>", 1}},
		{"TE without chunked runs until close", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
			respSummary{1, 200, "OK", false, false, true, false, -1, "<nil>", 1}},
		{"no framing runs until close", "GET", "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n",
			respSummary{1, 200, "OK", false, false, true, false, -1, "<nil>", 1}},
		{"204 bodyless", "GET", "HTTP/1.1 204 No Content\r\n\r\n",
			respSummary{1, 204, "No Content", true, false, false, true, 0, "<nil>", 0}},
		{"304 with CL is bodyless", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n",
			respSummary{1, 304, "Not Modified", true, false, false, true, 0, "<nil>", 1}},
		{"HEAD with CL is bodyless", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
			respSummary{1, 200, "OK", true, false, false, true, 0, "<nil>", 1}},
		{"HEAD with chunked is bodyless", "HEAD", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
			respSummary{1, 200, "OK", true, false, false, true, 0, "<nil>", 1}},
		{"100 Continue", "POST", "HTTP/1.1 100 Continue\r\n\r\n",
			respSummary{1, 100, "Continue", true, false, false, true, 0, "<nil>", 0}},
		{"101 upgrade", "GET", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
			respSummary{1, 101, "Switching Protocols", true, false, false, true, 0, "websocket", 2}},
		{"200 with Upgrade is no upgrade", "GET", "HTTP/1.1 200 OK\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
			respSummary{1, 200, "OK", false, false, false, true, 0, "<nil>", 3}},
		{"CONNECT 200 is a tunnel", "CONNECT", "HTTP/1.1 200 Connection established\r\n\r\n",
			respSummary{1, 200, "Connection established", true, false, false, true, 0, "<nil>", 0}},
		{"CONNECT 407 has a body", "CONNECT", "HTTP/1.1 407 Proxy Auth\r\nContent-Length: 2\r\n\r\n",
			respSummary{1, 407, "Proxy Auth", false, false, false, true, 2, "<nil>", 1}},
		{"missing reason and SP", "GET", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
			respSummary{1, 200, "<nil>", false, false, false, true, 0, "<nil>", 1}},
		{"empty reason", "GET", "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n",
			respSummary{1, 404, "", false, false, false, true, 0, "<nil>", 1}},
		{"reason with obs-text and tab", "GET", "HTTP/1.1 200 \xc3\x93K\tfine\r\nContent-Length: 0\r\n\r\n",
			respSummary{1, 200, "\xc3\x93K\tfine", false, false, false, true, 0, "<nil>", 1}},
		{"HTTP/1.0 keep-alive", "GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n",
			respSummary{0, 200, "OK", false, false, false, true, 2, "<nil>", 2}},
		{"HTTP/1.0 closes", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n",
			respSummary{0, 200, "OK", false, false, false, false, 2, "<nil>", 1}},
		{"Connection close", "GET", "HTTP/1.1 500 Oops\r\nConnection: close\r\nContent-Length: 2\r\n\r\n",
			respSummary{1, 500, "Oops", false, false, false, false, 2, "<nil>", 2}},
		{"identical CL list", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\n",
			respSummary{1, 200, "OK", false, false, false, true, 3, "<nil>", 2}},
		{"status 599", "GET", "HTTP/1.1 599 Edge\r\nContent-Length: 0\r\n\r\n",
			respSummary{1, 599, "Edge", false, false, false, true, 0, "<nil>", 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r Response
			n, err := ParseResponse([]byte(tc.in), []byte(tc.method), &r)
			if err != nil {
				t.Fatalf("ParseResponse: %v", err)
			}
			if want := strings.Index(tc.in, "\r\n\r\n") + 4; n != want {
				t.Errorf("n = %d, want %d", n, want)
			}
			if got := summarizeResp(&r); got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

var responseProbes = []struct {
	name string
	in   string
	want error
}{
	{"status 99", "HTTP/1.1 099 Low\r\n\r\n", ErrMalformed},
	{"status 600", "HTTP/1.1 600 High\r\n\r\n", ErrMalformed},
	{"status 2x0", "HTTP/1.1 2x0 OK\r\n\r\n", ErrMalformed},
	{"two-digit status", "HTTP/1.1 20 OK\r\n\r\n", ErrMalformed},
	{"four-digit status", "HTTP/1.1 2000 OK\r\n\r\n", ErrMalformed},
	{"no SP before reason", "HTTP/1.1 200OK\r\n\r\n", ErrMalformed},
	{"signed status", "HTTP/1.1 +20 OK\r\n\r\n", ErrMalformed},
	{"lower-case version", "http/1.1 200 OK\r\n\r\n", ErrMalformed},
	{"HTTP/2", "HTTP/2 200 OK\r\n\r\n", ErrMalformed},
	{"HTTP/1.10", "HTTP/1.10 200 OK\r\n\r\n", ErrMalformed},
	{"double SP", "HTTP/1.1  200 OK\r\n\r\n", ErrMalformed},
	{"CTL in reason", "HTTP/1.1 200 O\x01K\r\n\r\n", ErrMalformed},
	{"bare CR in reason", "HTTP/1.1 200 O\rK\r\n\r\n", ErrMalformed},
	{"bare LF status-line", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", ErrMalformed},
	{"bare LF end", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n", ErrMalformed},
	{"leading empty line", "\r\nHTTP/1.1 200 OK\r\n\r\n", ErrMalformed},
	{"TE and CL", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", ErrMalformed},
	{"CL and TE on HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", ErrMalformed},
	{"CL differing", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", ErrMalformed},
	{"CL negative", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", ErrMalformed},
	{"CL hex", "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", ErrMalformed},
	{"CL on 304 still validated", "HTTP/1.1 304 Not Modified\r\nContent-Length: abc\r\n\r\n", ErrMalformed},
	{"chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", ErrMalformed},
	{"chunked not last", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", ErrMalformed},
	{"TE invalid", "HTTP/1.1 200 OK\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", ErrMalformed},
	{"two TE fields", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", ErrMalformed},
	{"TE in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", ErrMalformed},
	{"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", ErrMalformed},
	{"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n", ErrMalformed},
	{"NUL in value", "HTTP/1.1 200 OK\r\nX: \x00\r\n\r\n", ErrMalformed},
	{"129 fields", "HTTP/1.1 200 OK\r\n" + manyHeaders(129) + "\r\n", ErrHeaderTooLarge},
	{"not HTTP", "SSH-2.0-OpenSSH\r\n", ErrMalformed},
}

func TestParseResponseProbes(t *testing.T) {
	for _, tc := range responseProbes {
		t.Run(tc.name, func(t *testing.T) {
			method := "GET"
			if strings.HasPrefix(tc.name, "CL and TE on HEAD") {
				method = "HEAD"
			}
			var r Response
			n, err := ParseResponse([]byte(tc.in), []byte(method), &r)
			if !errors.Is(err, tc.want) || n != 0 {
				t.Fatalf("ParseResponse(%q) = %d, %v; want 0, %v", tc.in, n, err, tc.want)
			}
		})
	}
}

func TestParseResponseIncomplete(t *testing.T) {
	full := "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
	for i := range len(full) {
		var r Response
		if _, err := ParseResponse([]byte(full[:i]), []byte("GET"), &r); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("prefix %q: err = %v, want ErrIncomplete", full[:i], err)
		}
	}
	var r Response
	if _, err := ParseResponse([]byte("HTTQ"), []byte("GET"), &r); !errors.Is(err, ErrMalformed) {
		t.Errorf("HTTQ prefix: err = %v, want ErrMalformed at once", err)
	}
}

func TestParseResponseHeaderAndReuse(t *testing.T) {
	var r Response
	in := "HTTP/1.1 101 Switching\r\nConnection: upgrade\r\nUpgrade: h2c\r\nX-A: 1\r\n\r\n"
	if _, err := ParseResponse([]byte(in), []byte("GET"), &r); err != nil {
		t.Fatal(err)
	}
	if got := str(r.Header("x-a")); got != "1" {
		t.Errorf(`Header("x-a") = %q, want "1"`, got)
	}
	if _, err := ParseResponse([]byte("HTTP/1.0 200 OK\r\n\r\n"), []byte("GET"), &r); err != nil {
		t.Fatal(err)
	}
	want := respSummary{0, 200, "OK", false, false, true, false, -1, "<nil>", 0}
	if got := summarizeResp(&r); got != want {
		t.Errorf("after reuse got %+v, want %+v", got, want)
	}
	if r.Header("x-a") != nil {
		t.Error("stale header after reuse")
	}
}

func TestParseResponseAllocs(t *testing.T) {
	buf := []byte(typicalResponse)
	method := []byte("GET")
	var r Response
	if _, err := ParseResponse(buf, method, &r); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := ParseResponse(buf, method, &r); err != nil {
			t.Fatal(err)
		}
		if r.Header("content-type") == nil {
			t.Fatal("no Content-Type")
		}
	})
	if allocs != 0 {
		t.Errorf("ParseResponse allocates %v times per call, want 0", allocs)
	}
}

func TestResponseCoded(t *testing.T) {
	for te, want := range map[string]bool{"chunked": false, "gzip, chunked": true, "gzip": true} {
		var r Response
		raw := "HTTP/1.1 200 OK\r\nTransfer-Encoding: " + te + "\r\n\r\n"
		if _, err := ParseResponse([]byte(raw), []byte("GET"), &r); err != nil {
			t.Fatalf("%q: %v", te, err)
		}
		if r.Coded != want {
			t.Errorf("Transfer-Encoding %q: Coded = %v, want %v", te, r.Coded, want)
		}
	}
}
