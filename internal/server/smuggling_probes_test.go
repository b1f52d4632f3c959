package server

import (
	"strconv"
	"strings"
	"testing"
)

// The request side of "never forward an ambiguous request": raw-socket probes
// against a real ballast whose backend records the exact bytes it receives.
// Every probe is followed on the same connection by "GET /next", so a probe
// that the proxy frames differently from how it forwards it shows up as a
// mangled or smuggled second request.
//
// Each probe has one of these outcomes:
//   - rejected: the client gets the status (400, or 501 for a valid transfer
//     coding ballast does not do, 431 for a header too large, 405 for CONNECT)
//     and the connection is closed; the backend receives nothing at all, so
//     /next never reaches it;
//   - aborted: a bad body behind a good head (a malformed chunk): the client
//     gets 400 (or only a close) and the backend may have received the head
//     and part of the body, but never a complete request, and its connection
//     is closed, so nothing can complete the request later;
//   - normalised: the backend receives exactly the listed requests, each well
//     formed, framed as listed, and read alike by h1 and net/http; the client
//     gets each one's echo in order.
//
// The net/http engine (BALLAST_TEST_ENGINE=net_http) is Go's own server,
// which decides some cases differently (netHTTP below, each with its reason,
// logged when it applies). What holds for both engines is that the backend
// never receives an ambiguously framed request, nor /next as a request of
// its own behind a refused one.

// nextReq follows every probe on its connection.
const nextReq = "GET /next HTTP/1.1\r\nHost: x\r\n\r\n"

// fwd is a request the backend must receive: method, target and body, framed
// by Transfer-Encoding: chunked when chunked is set, else by Content-Length
// (which may be absent or 0 for an empty body); and Host, when host is set.
type fwd struct {
	method, target, body string
	chunked              bool
	host                 string
}

var next = fwd{method: "GET", target: "/next"}

// reply is a final response the client must get: its status and, for echo
// > 0, the backend's answer to reqs[echo-1] as its body.
type reply struct{ status, echo int }

// outcome is what a probe must lead to.
type outcome struct {
	replies    []reply
	closed     bool  // the proxy then closes the client connection
	reqs       []fwd // exactly the complete requests the backend receives
	mayPartial bool  // the backend may also receive one incomplete request, whose connection must then be closed
}

func rejected(status int) outcome {
	return outcome{replies: []reply{{status, 0}}, closed: true}
}

// aborted: a bad body behind a good head gets status.
func aborted(status int) outcome {
	return outcome{replies: []reply{{status, 0}}, closed: true, mayPartial: true}
}

// forwarded: exactly reqs reach the backend, and the client gets their echoes.
func forwarded(reqs ...fwd) outcome {
	o := outcome{reqs: reqs}
	for i := range reqs {
		o.replies = append(o.replies, reply{200, i + 1})
	}
	return o
}

// normalised: r is forwarded as described, then /next.
func normalised(r fwd) outcome { return forwarded(r, next) }

// then: r is forwarded, and what follows it on the connection is refused.
func then(r fwd, status int) outcome {
	return outcome{replies: []reply{{200, 1}, {status, 0}}, closed: true, reqs: []fwd{r}}
}

type probe struct {
	cat, name string
	raw       string   // the probe; nextReq is sent after it
	want      outcome  // native engine, and net_http unless netHTTP is set
	netHTTP   *outcome // net_http engine, when Go's server decides otherwise
	why       string   // the reason for netHTTP
	halfClose bool     // shut the client's sending side after the probe
}

func post(headers, body string) string {
	return "POST / HTTP/1.1\r\nHost: x\r\n" + headers + "\r\n" + body
}

func get(target, headers string) string {
	return "GET " + target + " HTTP/1.1\r\nHost: x\r\n" + headers + "\r\n"
}

func ptr(o outcome) *outcome { return &o }

const te = "Transfer-Encoding: chunked\r\n"

// smuggled is a request hidden where only a wrong framing would find it.
const smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

var probes = []probe{
	// Content-Length.
	{cat: "CL", name: "CL then TE", raw: post("Content-Length: 5\r\n"+te, "0\r\n\r\n"),
		want:    rejected(400),
		netHTTP: ptr(normalised(fwd{method: "POST", target: "/", chunked: true})),
		why:     "net/http lets Transfer-Encoding win and drops Content-Length (RFC 9112 §6.3 allows it), and keeps the connection"},
	{cat: "CL", name: "TE then CL", raw: post(te+"Content-Length: 5\r\n", "0\r\n\r\n"),
		want:    rejected(400),
		netHTTP: ptr(normalised(fwd{method: "POST", target: "/", chunked: true}))},
	{cat: "CL", name: "CL.TE desync", raw: post("Content-Length: 6\r\n"+te, "0\r\n\r\nX"),
		want:    rejected(400),
		netHTTP: ptr(forwarded(fwd{method: "POST", target: "/", chunked: true}, fwd{method: "XGET", target: "/next"})),
		why: "net/http frames by Transfer-Encoding and does not close the connection after a message with both " +
			"(RFC 9112 §6.1 says it MUST): the byte behind the chunked body prefixes the next request"},
	{cat: "CL", name: "TE.CL desync", raw: post(te+"Content-Length: 3\r\n", "5\r\nhello\r\n0\r\n\r\n"),
		want:    rejected(400),
		netHTTP: ptr(normalised(fwd{method: "POST", target: "/", body: "hello", chunked: true}))},
	{cat: "CL", name: "differing duplicate CL", raw: post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), want: rejected(400)},
	{cat: "CL", name: "equal duplicate CL", raw: post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"),
		want: normalised(fwd{method: "POST", target: "/", body: "hello"})},
	{cat: "CL", name: "CL list of equal values", raw: post("Content-Length: 5, 5\r\n", "hello"),
		want: normalised(fwd{method: "POST", target: "/", body: "hello"}), netHTTP: ptr(rejected(400)),
		why: "net/http does not accept a list in one Content-Length field (RFC 9110 §8.6 allows identical values)"},
	{cat: "CL", name: "CL list of differing values", raw: post("Content-Length: 5, 6\r\n", "hello!"), want: rejected(400)},
	{cat: "CL", name: "CL with plus sign", raw: post("Content-Length: +5\r\n", "hello"), want: rejected(400)},
	{cat: "CL", name: "negative CL", raw: post("Content-Length: -5\r\n", ""), want: rejected(400)},
	{cat: "CL", name: "CL with inner space", raw: post("Content-Length: 1 2\r\n", "hello world!"), want: rejected(400)},
	{cat: "CL", name: "CL with surrounding OWS", raw: post("Content-Length: \t 5 \t\r\n", "hello"),
		want: normalised(fwd{method: "POST", target: "/", body: "hello"})},
	{cat: "CL", name: "hex CL", raw: post("Content-Length: 0x5\r\n", "hello"), want: rejected(400)},
	{cat: "CL", name: "CL with leading zeros", raw: post("Content-Length: 005\r\n", "hello"),
		want: normalised(fwd{method: "POST", target: "/", body: "hello"})},
	{cat: "CL", name: "CL overflowing int64", raw: post("Content-Length: 99999999999999999999\r\n", "hello"), want: rejected(400)},
	{cat: "CL", name: "empty CL", raw: post("Content-Length: \r\n", ""), want: rejected(400)},
	{cat: "CL", name: "CL shorter than the body", raw: post("Content-Length: 2\r\n", "hello"),
		want: forwarded(fwd{method: "POST", target: "/", body: "he"}, fwd{method: "lloGET", target: "/next"})},
	{cat: "CL", name: "body cut off by the client", raw: post("Content-Length: 100\r\n", "short"), halfClose: true,
		want: outcome{closed: true, mayPartial: true}},

	// Transfer-Encoding obfuscations.
	{cat: "TE", name: "xchunked", raw: post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"),
		want: rejected(400), netHTTP: ptr(rejected(501)), why: "net/http answers 501 to every transfer coding but chunked"},
	{cat: "TE", name: "chunked, identity", raw: post("Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n"),
		want: rejected(400), netHTTP: ptr(rejected(501))},
	{cat: "TE", name: "chunked twice in one field", raw: post("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"),
		want: rejected(400), netHTTP: ptr(rejected(501))},
	{cat: "TE", name: "two TE fields", raw: post(te+te, "0\r\n\r\n"),
		want: rejected(400), netHTTP: ptr(rejected(501))},
	{cat: "TE", name: "identity", raw: post("Transfer-Encoding: identity\r\n", "0\r\n\r\n"),
		want: rejected(400), netHTTP: ptr(rejected(501))},
	{cat: "TE", name: "chunked with a parameter", raw: post("Transfer-Encoding: chunked;q=1\r\n", "0\r\n\r\n"),
		want: rejected(400), netHTTP: ptr(rejected(501))},
	{cat: "TE", name: "gzip, chunked", raw: post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"), want: rejected(501)},
	{cat: "TE", name: "TE: tab chunked", raw: post("Transfer-Encoding: \tchunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
		want: normalised(fwd{method: "POST", target: "/", body: "hello", chunked: true})},
	{cat: "TE", name: "TE upper case", raw: post("Transfer-Encoding: CHUNKED\r\n", "5\r\nhello\r\n0\r\n\r\n"),
		want: normalised(fwd{method: "POST", target: "/", body: "hello", chunked: true})},
	{cat: "TE", name: "TE with vertical tab", raw: post("Transfer-Encoding: chunked\x0b\r\n", "0\r\n\r\n"), want: rejected(400)},
	{cat: "TE", name: "space before colon", raw: post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n"), want: rejected(400)},
	{cat: "TE", name: "tab before colon", raw: post("Transfer-Encoding\t: chunked\r\n", "0\r\n\r\n"), want: rejected(400)},
	{cat: "TE", name: "Transfer_Encoding", raw: post("Transfer_Encoding: chunked\r\n", "0\r\n\r\n"),
		// Not a framing field: the POST has no body, and "0" is no request.
		want: then(fwd{method: "POST", target: "/"}, 400)},
	{cat: "TE", name: "TE folded onto the next line", raw: post("Transfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n"),
		want:    rejected(400),
		netHTTP: ptr(normalised(fwd{method: "POST", target: "/", chunked: true})),
		why:     "net/http unfolds obs-fold (RFC 9112 §5.2 allows it) and forwards chunked framing"},
	{cat: "TE", name: "TE in HTTP/1.0", raw: "POST / HTTP/1.0\r\nHost: x\r\n" + te + "\r\n0\r\n\r\n",
		want:    rejected(400),
		netHTTP: ptr(outcome{replies: []reply{{200, 1}}, closed: true, reqs: []fwd{{method: "POST", target: "/"}}}),
		why: "net/http ignores Transfer-Encoding in HTTP/1.0 (RFC 9112 §6.1 says to treat the framing as faulty); " +
			"it forwards a bodyless POST and closes, as HTTP/1.0 without keep-alive"},

	// Chunked bodies.
	{cat: "chunk", name: "invalid chunk size", raw: post(te, "zz\r\nhello\r\n0\r\n\r\n"), want: aborted(400)},
	{cat: "chunk", name: "chunk size overflowing 64 bits", raw: post(te, "10000000000000000\r\nx\r\n0\r\n\r\n"), want: aborted(400)},
	{cat: "chunk", name: "chunk size over int64", raw: post(te, "ffffffffffffffff\r\nx\r\n0\r\n\r\n"), halfClose: true,
		want:    aborted(400),
		netHTTP: ptr(outcome{closed: true, mayPartial: true}),
		why:     "net/http takes a chunk size up to 2^64-1: the rest of the connection is chunk data, re-chunked to the backend"},
	{cat: "chunk", name: "negative chunk size", raw: post(te, "-5\r\nhello\r\n0\r\n\r\n"), want: aborted(400)},
	{cat: "chunk", name: "space before chunk size", raw: post(te, " 5\r\nhello\r\n0\r\n\r\n"), want: aborted(400)},
	{cat: "chunk", name: "chunk data without CRLF", raw: post(te, "5\r\nhelloXX0\r\n\r\n"), want: aborted(400)},
	{cat: "chunk", name: "huge chunk swallowing the next request", raw: post(te, "fffffff\r\nabc"), halfClose: true,
		// The next request is chunk data; the client then stops sending.
		want: outcome{closed: true, mayPartial: true}},
	{cat: "chunk", name: "chunk extension", raw: post(te, "5;name=val;flag\r\nhello\r\n0\r\n\r\n"),
		want: normalised(fwd{method: "POST", target: "/", body: "hello", chunked: true})},
	{cat: "chunk", name: "quoted chunk extension", raw: post(te, "5;n=\"a;b\\\"c\"\r\nhello\r\n0\r\n\r\n"),
		want: normalised(fwd{method: "POST", target: "/", body: "hello", chunked: true})},
	{cat: "chunk", name: "chunk extension with NUL", raw: post(te, "5;a\x00=b\r\nhello\r\n0\r\n\r\n"),
		want:    aborted(400),
		netHTTP: ptr(normalised(fwd{method: "POST", target: "/", body: "hello", chunked: true})),
		why:     "net/http drops chunk extensions unread"},
	{cat: "chunk", name: "chunk extension without name", raw: post(te, "5;=b\r\nhello\r\n0\r\n\r\n"),
		want:    aborted(400),
		netHTTP: ptr(normalised(fwd{method: "POST", target: "/", body: "hello", chunked: true}))},
	{cat: "chunk", name: "oversized chunk extension", raw: post(te, "5;a="+strings.Repeat("b", 20<<10)+"\r\nhello\r\n0\r\n\r\n"), want: aborted(400)},
	{cat: "chunk", name: "framing field in trailer", raw: post(te, "5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n"),
		want:    aborted(400),
		netHTTP: ptr(normalised(fwd{method: "POST", target: "/", body: "hello", chunked: true})),
		why:     "net/http reads the trailer and forwards none of it"},

	// Line ends and forbidden bytes.
	{cat: "bytes", name: "bare LF after the request line", raw: "GET / HTTP/1.1\nHost: x\r\n\r\n",
		want:    rejected(400),
		netHTTP: ptr(normalised(fwd{method: "GET", target: "/"})),
		why:     "net/http accepts bare LF line ends in the header (RFC 9112 §2.2 allows it) and forwards CRLF"},
	{cat: "bytes", name: "bare LF in the header", raw: "GET / HTTP/1.1\r\nHost: x\nX-A: b\n\n",
		want:    rejected(400),
		netHTTP: ptr(normalised(fwd{method: "GET", target: "/"}))},
	{cat: "bytes", name: "bare LF after a chunk size", raw: post(te, "5\nhello\r\n0\r\n\r\n"), want: aborted(400)},
	{cat: "bytes", name: "bare LF after chunk data", raw: post(te, "5\r\nhello\n0\r\n\r\n"), want: aborted(400)},
	{cat: "bytes", name: "bare LF ending the trailer", raw: post(te, "5\r\nhello\r\n0\r\n\n"),
		want:    aborted(400),
		netHTTP: ptr(normalised(fwd{method: "POST", target: "/", body: "hello", chunked: true})),
		why:     "net/http reads the trailer section as a header, bare LF included"},
	{cat: "bytes", name: "LF inside a field value", raw: get("/", "X-A: b\nX-B: c\r\n"),
		want:    rejected(400),
		netHTTP: ptr(normalised(fwd{method: "GET", target: "/"}))},
	{cat: "bytes", name: "bare CR in the request line", raw: "GET / HTTP/1.1\rHost: x\r\n\r\n", want: rejected(400)},
	{cat: "bytes", name: "bare CR ending a field", raw: get("/", "X-A: b\rX-B: c\r\n"), want: rejected(400)},
	{cat: "bytes", name: "NUL in a field value", raw: get("/", "X-A: b\x00c\r\n"), want: rejected(400)},
	{cat: "bytes", name: "CR in a field value", raw: get("/", "X-A: b\rc\r\n"), want: rejected(400)},
	{cat: "bytes", name: "DEL in a field value", raw: get("/", "X-A: b\x7fc\r\n"), want: rejected(400)},
	{cat: "bytes", name: "obs-text in a field value", raw: get("/", "X-A: caf\xe9\r\n"), want: normalised(fwd{method: "GET", target: "/"})},
	{cat: "bytes", name: "obs-fold", raw: get("/", "X-A: b\r\n c\r\n"),
		want:    rejected(400),
		netHTTP: ptr(normalised(fwd{method: "GET", target: "/"})),
		why:     "net/http unfolds obs-fold into one value (RFC 9112 §5.2 allows it)"},
	{cat: "bytes", name: "whitespace before colon", raw: get("/", "X-A : b\r\n"), want: rejected(400)},
	{cat: "bytes", name: "whitespace before the first field", raw: "GET / HTTP/1.1\r\n Host: x\r\n\r\n", want: rejected(400)},
	{cat: "bytes", name: "empty field name", raw: get("/", ": b\r\n"), want: rejected(400)},
	{cat: "bytes", name: "invalid field name", raw: get("/", "X(A): b\r\n"), want: rejected(400)},

	// Methods.
	{cat: "method", name: "separator in method", raw: "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", want: rejected(400)},
	{cat: "method", name: "NUL in method", raw: "G\x00T / HTTP/1.1\r\nHost: x\r\n\r\n", want: rejected(400)},
	{cat: "method", name: "non-ASCII method", raw: "G\xc3\x89T / HTTP/1.1\r\nHost: x\r\n\r\n", want: rejected(400)},
	{cat: "method", name: "empty method", raw: " / HTTP/1.1\r\nHost: x\r\n\r\n", want: rejected(400)},
	{cat: "method", name: "lower-case method", raw: "get / HTTP/1.1\r\nHost: x\r\n\r\n", want: normalised(fwd{method: "get", target: "/"})},
	{cat: "method", name: "TLS ClientHello on the plain port", raw: "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", want: rejected(400)},

	// Request targets.
	{cat: "target", name: "absolute-form", raw: "GET http://y/a?b=1 HTTP/1.1\r\nHost: y\r\n\r\n", want: normalised(fwd{method: "GET", target: "/a?b=1", host: "y"})},
	{cat: "target", name: "absolute-form with userinfo", raw: get("http://u:p@x/", ""),
		want:    rejected(400),
		netHTTP: ptr(normalised(fwd{method: "GET", target: "/", host: "x"})),
		why:     "net/http drops the userinfo of an absolute-form target"},
	{cat: "target", name: "absolute-form, other scheme", raw: get("ftp://x/a", ""),
		want:    rejected(400),
		netHTTP: ptr(normalised(fwd{method: "GET", target: "/a"})),
		why:     "net/http takes any scheme; the engine forwards the path"},
	{cat: "target", name: "asterisk-form with GET", raw: get("*", ""), want: rejected(400)},
	{cat: "target", name: "asterisk-form with OPTIONS", raw: "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
		want:    normalised(fwd{method: "OPTIONS", target: "*"}),
		netHTTP: ptr(outcome{replies: []reply{{200, 0}, {200, 1}}, reqs: []fwd{next}}),
		why:     "net/http answers OPTIONS * itself and never calls the handler"},
	{cat: "target", name: "authority-form with GET", raw: get("x:80", ""), want: rejected(400)}, // The tap backend answers the garbled request line 400 itself.

	{cat: "target", name: "CONNECT", raw: "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", want: rejected(405)},
	{cat: "target", name: "space in target", raw: get("/a b", ""), want: rejected(400)},
	{cat: "target", name: "fragment", raw: get("/a#b", ""),
		want:    rejected(400),
		netHTTP: ptr(normalised(fwd{method: "GET", target: "/a%23b"})),
		why:     "net/http keeps '#' in the path, and the transport escapes it"},
	{cat: "target", name: "control byte in target", raw: get("/a\x01", ""), want: rejected(400)},
	{cat: "target", name: "non-ASCII target", raw: get("/caf\xc3\xa9", ""),
		want:    rejected(400),
		netHTTP: ptr(normalised(fwd{method: "GET", target: "/caf%C3%A9"})),
		why:     "net/http takes bytes over 0x7f in the target, and the transport escapes them"},
	{cat: "target", name: "two spaces before the target", raw: "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", want: rejected(400)},
	{cat: "target", name: "double slash path", raw: get("//x/a", ""), want: normalised(fwd{method: "GET", target: "//x/a"})},

	// Versions.
	{cat: "version", name: "HTTP/0.9", raw: "GET /\r\n", want: rejected(400)},
	{cat: "version", name: "HTTP/1.2", raw: "GET / HTTP/1.2\r\nHost: x\r\n\r\n",
		want:    rejected(400),
		netHTTP: ptr(normalised(fwd{method: "GET", target: "/"})),
		why:     "net/http serves any HTTP/1.x (RFC 9110 §2.5 allows it); the transport sends HTTP/1.1"},
	{cat: "version", name: "HTTP/2.0", raw: "GET / HTTP/2.0\r\nHost: x\r\n\r\n",
		want: rejected(400), netHTTP: ptr(rejected(505)), why: "net/http answers 505 HTTP Version Not Supported"},
	{cat: "version", name: "HTTP/2 preface", raw: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", want: rejected(400)},
	{cat: "version", name: "lower-case version", raw: "GET / http/1.1\r\nHost: x\r\n\r\n", want: rejected(400)},
	{cat: "version", name: "trailing space after version", raw: "GET / HTTP/1.1 \r\nHost: x\r\n\r\n", want: rejected(400)},

	// Host.
	{cat: "host", name: "missing Host", raw: "GET / HTTP/1.1\r\n\r\n", want: rejected(400)},
	{cat: "host", name: "duplicate Host", raw: "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", want: rejected(400)},
	{cat: "host", name: "Host with userinfo", raw: "GET / HTTP/1.1\r\nHost: u@x\r\n\r\n", want: rejected(400)},
	{cat: "host", name: "Host with a space", raw: "GET / HTTP/1.1\r\nHost: x y\r\n\r\n", want: rejected(400)},
	{cat: "host", name: "absolute-form overrides Host", raw: "GET http://a.example/p HTTP/1.1\r\nHost: b.example\r\n\r\n",
		want: normalised(fwd{method: "GET", target: "/p", host: "a.example"})},

	// Pipelining.
	{cat: "pipeline", name: "request inside a body", raw: post("Content-Length: "+strconv.Itoa(len(smuggled))+"\r\n", smuggled),
		want: normalised(fwd{method: "POST", target: "/", body: smuggled})},
	{cat: "pipeline", name: "chunked body then a request", raw: post(te, "5\r\nhello\r\n0\r\n\r\n"),
		want: normalised(fwd{method: "POST", target: "/", body: "hello", chunked: true})},
	{cat: "pipeline", name: "empty lines before the next request", raw: post("Content-Length: 5\r\n", "hello\r\n\r\n"),
		want: normalised(fwd{method: "POST", target: "/", body: "hello"})},

	// Limits.
	{cat: "limit", name: "request line too long", raw: "GET /" + strings.Repeat("a", 80<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n", want: rejected(431)},
	{cat: "limit", name: "header block too large", raw: get("/", strings.Repeat("X-A: "+strings.Repeat("b", 1000)+"\r\n", 80)), want: rejected(431)},

	// Expect.
	{cat: "expect", name: "100-continue with the body sent at once", raw: post("Expect: 100-continue\r\nContent-Length: 5\r\n", "hello"),
		want: normalised(fwd{method: "POST", target: "/", body: "hello"})},
	{cat: "expect", name: "refused upload whose body is a request",
		raw: "POST /early HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: " + strconv.Itoa(len(smuggled)) + "\r\n\r\n" + smuggled,
		// The backend refuses before the body; the body is never read as a
		// request, and the connection closes behind the 401.
		want: outcome{replies: []reply{{401, 0}}, closed: true, mayPartial: true}},
	{cat: "expect", name: "unknown expectation", raw: post("Expect: 100-continuex\r\nContent-Length: 5\r\n", "hello"),
		want:    normalised(fwd{method: "POST", target: "/", body: "hello"}),
		netHTTP: ptr(rejected(417)),
		why:     "net/http answers 417 to an expectation it does not know (RFC 9110 §10.1.1 allows either)"},
	{cat: "expect", name: "100-continue without a body", raw: get("/", "Expect: 100-continue\r\n"),
		want: normalised(fwd{method: "GET", target: "/"})},
	{cat: "expect", name: "100-continue with CL and TE", raw: post("Expect: 100-continue\r\nContent-Length: 5\r\n"+te, "0\r\n\r\n"),
		want:    rejected(400),
		netHTTP: ptr(normalised(fwd{method: "POST", target: "/", chunked: true}))},
}

// TestSmugglingProbes runs every probe on its own connection to one ballast.
func TestSmugglingProbes(t *testing.T) {
	tb := newTapBackend(t)
	_, url := start(t, httpConfig(t, "", tb.Addr()))
	addr := strings.TrimPrefix(url, "http://")
	engine := testEngine()
	for _, p := range probes {
		t.Run(p.cat+"/"+p.name, func(t *testing.T) {
			want := p.want
			if engine == "net_http" && p.netHTTP != nil {
				want = *p.netHTTP
				if p.why != "" {
					t.Log("net_http differs:", p.why)
				}
			}
			obs := observe(t, tb, addr, p, want)
			if err := obs.check(want); err != nil {
				t.Fatalf("%v\n%s", err, obs.dump())
			}
		})
	}
}

// A client's malformed request body is the client's fault: it must not count
// against the backend in passive health checking, or any client could eject
// every backend with a few bad uploads.
func TestClientBodyErrorsDoNotEjectBackends(t *testing.T) {
	tb := newTapBackend(t)
	s, url := start(t, httpConfig(t, "passive: {consecutive_failures: 2, eject_for: 1m, max_ejected_percent: 100}", tb.Addr()))
	addr := strings.TrimPrefix(url, "http://")
	for i := range 2 { // consecutive_failures
		rc := dialRaw(t, addr)
		rc.send(post(te, "zz\r\nhello\r\n0\r\n\r\n"))
		st, _, _, err := rc.response("POST")
		if err != nil || st != 400 {
			t.Fatalf("bad body %d: status %d (%v), want 400", i+1, st, err)
		}
	}
	rc := dialRaw(t, addr)
	rc.send(get("/after", ""))
	st, body, _, err := rc.response("GET")
	if err != nil {
		t.Fatal(err)
	}
	if st != 200 {
		state := s.Pool("app").Backend(tb.Addr()).State()
		t.Fatalf("a good request after the bad ones: %d %q (backend %v)", st, body, state)
	}
}
