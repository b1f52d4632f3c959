package h1

import (
	"errors"
	"strings"
	"testing"
)

// requestProbes are request-smuggling and malformed-request probes: each
// must be rejected with the given error class. They double as fuzz seeds.
// "H" is a valid Host line, so each probe breaks exactly one rule.
var requestProbes = []struct {
	name string
	in   string
	want error
}{
	// Content-Length and Transfer-Encoding together (RFC 9112 §6.3 item 3).
	{"CL then TE", "POST / HTTP/1.1\r\nH\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", ErrMalformed},
	{"TE then CL", "POST / HTTP/1.1\r\nH\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", ErrMalformed},
	{"TE with CL 0", "POST / HTTP/1.1\r\nH\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", ErrMalformed},
	{"unsupported TE with CL", "POST / HTTP/1.1\r\nH\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n", ErrMalformed},
	// Content-Length values.
	{"CL differing fields", "POST / HTTP/1.1\r\nH\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", ErrMalformed},
	{"CL differing list", "POST / HTTP/1.1\r\nH\r\nContent-Length: 5, 6\r\n\r\n", ErrMalformed},
	{"CL list and field differ", "POST / HTTP/1.1\r\nH\r\nContent-Length: 5, 5\r\nContent-Length: 50\r\n\r\n", ErrMalformed},
	{"CL plus sign", "POST / HTTP/1.1\r\nH\r\nContent-Length: +5\r\n\r\n", ErrMalformed},
	{"CL minus sign", "POST / HTTP/1.1\r\nH\r\nContent-Length: -5\r\n\r\n", ErrMalformed},
	{"CL inner space", "POST / HTTP/1.1\r\nH\r\nContent-Length: 1 0\r\n\r\n", ErrMalformed},
	{"CL hex", "POST / HTTP/1.1\r\nH\r\nContent-Length: 0x5\r\n\r\n", ErrMalformed},
	{"CL trailing junk", "POST / HTTP/1.1\r\nH\r\nContent-Length: 5a\r\n\r\n", ErrMalformed},
	{"CL decimal point", "POST / HTTP/1.1\r\nH\r\nContent-Length: 5.0\r\n\r\n", ErrMalformed},
	{"CL int64 overflow", "POST / HTTP/1.1\r\nH\r\nContent-Length: 9223372036854775808\r\n\r\n", ErrMalformed},
	{"CL huge", "POST / HTTP/1.1\r\nH\r\nContent-Length: 184467440737095516160\r\n\r\n", ErrMalformed},
	{"CL empty", "POST / HTTP/1.1\r\nH\r\nContent-Length: \r\n\r\n", ErrMalformed},
	{"CL empty list element", "POST / HTTP/1.1\r\nH\r\nContent-Length: 5,\r\n\r\n", ErrMalformed},
	{"CL vertical tab", "POST / HTTP/1.1\r\nH\r\nContent-Length: 5\x0b\r\n\r\n", ErrMalformed},
	// Transfer-Encoding values (RFC 9112 §6.1, §6.3 item 4).
	{"TE chunked, identity", "POST / HTTP/1.1\r\nH\r\nTransfer-Encoding: chunked, identity\r\n\r\n", ErrMalformed},
	{"TE identity", "POST / HTTP/1.1\r\nH\r\nTransfer-Encoding: identity\r\n\r\n", ErrMalformed},
	{"TE gzip", "POST / HTTP/1.1\r\nH\r\nTransfer-Encoding: gzip\r\n\r\n", ErrMalformed},
	{"TE gzip, chunked", "POST / HTTP/1.1\r\nH\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", ErrUnsupportedTransferCoding},
	{"TE deflate;p, Chunked", "POST / HTTP/1.1\r\nH\r\nTransfer-Encoding: deflate;q=\"a,b\" ,Chunked\r\n\r\n", ErrUnsupportedTransferCoding},
	{"TE chunked, chunked", "POST / HTTP/1.1\r\nH\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", ErrMalformed},
	{"TE xchunked", "POST / HTTP/1.1\r\nH\r\nTransfer-Encoding: xchunked\r\n\r\n", ErrMalformed},
	{"TE chunkedx", "POST / HTTP/1.1\r\nH\r\nTransfer-Encoding: chunkedx\r\n\r\n", ErrMalformed},
	{"TE chunked VT", "POST / HTTP/1.1\r\nH\r\nTransfer-Encoding: chunked\x0b\r\n\r\n", ErrMalformed},
	{"TE VT chunked", "POST / HTTP/1.1\r\nH\r\nTransfer-Encoding:\x0bchunked\r\n\r\n", ErrMalformed},
	{"TE chunked NUL", "POST / HTTP/1.1\r\nH\r\nTransfer-Encoding: chunked\x00\r\n\r\n", ErrMalformed},
	{"TE quoted", "POST / HTTP/1.1\r\nH\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", ErrMalformed},
	{"TE chunked with parameter", "POST / HTTP/1.1\r\nH\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", ErrMalformed},
	{"TE trailing comma", "POST / HTTP/1.1\r\nH\r\nTransfer-Encoding: chunked,\r\n\r\n", ErrMalformed},
	{"TE leading comma", "POST / HTTP/1.1\r\nH\r\nTransfer-Encoding: , chunked\r\n\r\n", ErrMalformed},
	{"TE chunk ed", "POST / HTTP/1.1\r\nH\r\nTransfer-Encoding: chunk ed\r\n\r\n", ErrMalformed},
	{"TE empty", "POST / HTTP/1.1\r\nH\r\nTransfer-Encoding: \r\n\r\n", ErrMalformed},
	{"two TE fields chunked", "POST / HTTP/1.1\r\nH\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", ErrMalformed},
	{"two TE fields gzip then chunked", "POST / HTTP/1.1\r\nH\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", ErrMalformed},
	{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", ErrMalformed},
	{"TE space before colon", "POST / HTTP/1.1\r\nH\r\nTransfer-Encoding : chunked\r\n\r\n", ErrMalformed},
	{"TE obs-fold", "POST / HTTP/1.1\r\nH\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", ErrMalformed},
	// Line endings (RFC 9112 §2.2).
	{"bare LF request-line", "GET / HTTP/1.1\nH\r\n\r\n", ErrMalformed},
	{"bare LF field line", "GET / HTTP/1.1\r\nHost: example.com\nX: y\r\n\r\n", ErrMalformed},
	{"bare LF final line", "GET / HTTP/1.1\r\nH\r\n\n", ErrMalformed},
	{"bare LF leading line", "\nGET / HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
	{"bare CR in value", "GET / HTTP/1.1\r\nH\r\nX: a\rb\r\n\r\n", ErrMalformed},
	{"bare CR as line end", "GET / HTTP/1.1\r\nH\rX: y\r\n\r\n", ErrMalformed},
	{"CR CR LF request-line", "GET / HTTP/1.1\r\r\nH\r\n\r\n", ErrMalformed},
	{"bare CR leading line", "\rGET / HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
	// Field lines (RFC 9112 §5, RFC 9110 §5.5).
	{"NUL in value", "GET / HTTP/1.1\r\nH\r\nX: a\x00b\r\n\r\n", ErrMalformed},
	{"DEL in value", "GET / HTTP/1.1\r\nH\r\nX: a\x7fb\r\n\r\n", ErrMalformed},
	{"CTL in value", "GET / HTTP/1.1\r\nH\r\nX: a\x01b\r\n\r\n", ErrMalformed},
	{"obs-fold", "GET / HTTP/1.1\r\nH\r\nX: a\r\n  b\r\n\r\n", ErrMalformed},
	{"obs-fold with tab", "GET / HTTP/1.1\r\nH\r\nX: a\r\n\tb\r\n\r\n", ErrMalformed},
	{"whitespace line after request-line", "GET / HTTP/1.1\r\n Host: example.com\r\n\r\n", ErrMalformed},
	{"space before colon", "GET / HTTP/1.1\r\nHost : example.com\r\n\r\n", ErrMalformed},
	{"tab before colon", "GET / HTTP/1.1\r\nH\r\nContent-Length\t: 5\r\n\r\n", ErrMalformed},
	{"space in name", "GET / HTTP/1.1\r\nH\r\nX Y: z\r\n\r\n", ErrMalformed},
	{"non-token name", "GET / HTTP/1.1\r\nH\r\nX(Y): z\r\n\r\n", ErrMalformed},
	{"obs-text in name", "GET / HTTP/1.1\r\nH\r\nX\xc3\xa9: z\r\n\r\n", ErrMalformed},
	{"no colon", "GET / HTTP/1.1\r\nH\r\nHost example.com\r\n\r\n", ErrMalformed},
	{"empty name", "GET / HTTP/1.1\r\nH\r\n: z\r\n\r\n", ErrMalformed},
	{"Connection not a token", "GET / HTTP/1.1\r\nH\r\nConnection: keep alive\r\n\r\n", ErrMalformed},
	{"129 fields", "GET / HTTP/1.1\r\nH\r\n" + manyHeaders(128) + "\r\n", ErrHeaderTooLarge},
	// Request-line (RFC 9112 §3).
	{"method with paren", "G(T / HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
	{"method with at", "GE@T / HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
	{"method with obs-text", "G\xc9T / HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
	{"empty method", " / HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
	{"lower-case version", "GET / http/1.1\r\nH\r\n\r\n", ErrMalformed},
	{"HTTP/0.9", "GET /\r\n\r\n", ErrMalformed},
	{"HTTP/2.0", "GET / HTTP/2.0\r\nH\r\n\r\n", ErrMalformed},
	{"HTTP/1.10", "GET / HTTP/1.10\r\nH\r\n\r\n", ErrMalformed},
	{"HTTP/1.2", "GET / HTTP/1.2\r\nH\r\n\r\n", ErrMalformed},
	{"HTTP/1", "GET / HTTP/1\r\nH\r\n\r\n", ErrMalformed},
	{"missing Host", "GET / HTTP/1.1\r\nX: y\r\n\r\n", ErrMalformed},
	{"missing Host with absolute-form", "GET http://example.com/ HTTP/1.1\r\n\r\n", ErrMalformed},
	{"two Hosts", "GET / HTTP/1.1\r\nH\r\nHost: other.example\r\n\r\n", ErrMalformed},
	{"two Hosts in HTTP/1.0", "GET / HTTP/1.0\r\nH\r\nhost: example.com\r\n\r\n", ErrMalformed},
	{"Host with space", "GET / HTTP/1.1\r\nHost: exa mple.com\r\n\r\n", ErrMalformed},
	{"Host with slash", "GET / HTTP/1.1\r\nHost: example.com/x\r\n\r\n", ErrMalformed},
	{"Host with userinfo", "GET / HTTP/1.1\r\nHost: user@example.com\r\n\r\n", ErrMalformed},
	{"Host bad port", "GET / HTTP/1.1\r\nHost: example.com:8o\r\n\r\n", ErrMalformed},
	{"Host port only", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", ErrMalformed},
	{"Host bad pct-encoding", "GET / HTTP/1.1\r\nHost: ex%zzmple\r\n\r\n", ErrMalformed},
	{"Host unclosed IPv6", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", ErrMalformed},
	{"target with space", "GET /a b HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
	{"target with CTL", "GET /a\x01b HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
	{"target with tab", "GET /a\tb HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
	{"target with DEL", "GET /a\x7fb HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
	{"target with obs-text", "GET /caf\xc3\xa9 HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
	{"target with fragment", "GET /a#b HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
	{"empty target", "GET  HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
	{"double SP after method", "GET  / HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
	{"double SP before version", "GET /  HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
	{"tab separator", "GET\t/ HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
	{"trailing SP", "GET / HTTP/1.1 \r\nH\r\n\r\n", ErrMalformed},
	{"leading SP", " GET / HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
	{"asterisk without OPTIONS", "GET * HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
	{"authority-form without CONNECT", "GET example.com:443 HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
	{"CONNECT origin-form", "CONNECT / HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
	{"CONNECT without port", "CONNECT example.com HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
	{"absolute-form other scheme", "GET ftp://example.com/ HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
	{"absolute-form userinfo", "GET http://u:p@example.com/ HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
	{"absolute-form empty host", "GET http:///x HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
	{"relative target", "GET a/b HTTP/1.1\r\nH\r\n\r\n", ErrMalformed},
}

func TestParseRequestProbes(t *testing.T) {
	if len(requestProbes) < 45 {
		t.Fatalf("only %d probes", len(requestProbes))
	}
	for _, tc := range requestProbes {
		t.Run(tc.name, func(t *testing.T) {
			in := expandHost(tc.in)
			var r Request
			n, err := ParseRequest([]byte(in), &r)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ParseRequest(%q) = %d, %v; want %v", in, n, err, tc.want)
			}
			if n != 0 {
				t.Errorf("n = %d on error, want 0", n)
			}
			// Each error class is exactly one of the sentinels.
			classes := 0
			for _, e := range []error{ErrMalformed, ErrUnsupportedTransferCoding, ErrHeaderTooLarge, ErrIncomplete} {
				if errors.Is(err, e) {
					classes++
				}
			}
			if classes != 1 {
				t.Errorf("error %v matches %d sentinels, want 1", err, classes)
			}
		})
	}
}

// expandHost replaces the line "H" of requestProbes by a valid Host line.
func expandHost(s string) string {
	return strings.ReplaceAll(s, "\nH\r", "\nHost: example.com\r")
}

// TestProbesValidWithoutDefect guards the probe table itself: removing the
// offending line from a few framing probes yields a request that parses, so
// the probes fail for the reason their names give.
func TestProbesValidWithoutDefect(t *testing.T) {
	for _, in := range []string{
		"POST / HTTP/1.1\r\nH\r\nContent-Length: 5\r\n\r\n",
		"POST / HTTP/1.1\r\nH\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nH\r\nX: a\r\n\r\n",
		"GET / HTTP/1.1\r\nH\r\n\r\n",
	} {
		var r Request
		if _, err := ParseRequest([]byte(expandHost(in)), &r); err != nil {
			t.Errorf("%q: %v", in, err)
		}
	}
}
