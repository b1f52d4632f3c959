package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httputil"
	"testing"
	"unsafe"
)

var requestSeeds = []string{
	browserGET,
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"\r\nPOST /p?q HTTP/1.1\r\nHost: a:1\r\nContent-Length: 3, 3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: [::1]\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"GET http://x.example/a?b HTTP/1.1\r\nHost: y\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n",
	"OPTIONS * HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
	"CONNECT x.example:443 HTTP/1.1\r\nHost: x.example:443\r\n\r\n",
	"PUT /\xff HTTP/1.1\r\nHost: a\r\nX: \xff\tv\r\nExpect: 100-continue\r\n\r\n",
}

// genRequest builds a header block from parts that touch every framing
// rule, so that random draws often produce requests that parse.
func genRequest(rng *rand.Rand) []byte {
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	b := []byte(pick("", "", "", "\r\n"))
	b = append(b, pick("GET", "POST", "PUT", "OPTIONS", "CONNECT", "HEAD")...)
	b = append(b, ' ')
	b = append(b, pick("/", "/a?b", "*", "http://h.example/x", "HTTPS://h.example", "h.example:443", "/%20?")...)
	b = append(b, pick(" HTTP/1.1\r\n", " HTTP/1.1\r\n", " HTTP/1.0\r\n")...)
	for range rng.IntN(6) {
		b = append(b, pick("Host", "host", "Content-Length", "Transfer-Encoding",
			"Connection", "Upgrade", "Expect", "X-A", "Trailer")...)
		b = append(b, pick(": ", ": ", ":", ":\t", " : ", ":  ")...)
		b = append(b, pick("h.example", "", "5", "05", "5, 5", "5,6", "7 ", "chunked",
			"Chunked", "gzip, chunked", "chunked, gzip", "identity", "close",
			"keep-alive", "upgrade", "100-continue", "a\tb", "\xff", "[::1]:80",
			"h.example:8080", "-1", "0")...)
		b = append(b, "\r\n"...)
	}
	if rng.IntN(3) == 0 {
		b = append(b, "Host: h.example\r\n"...)
	}
	return append(b, "\r\n"...)
}

// TestParseRequestDifferential runs the fuzz checks on many generated
// requests (seeded, so failures reproduce), to reach the framing rules
// more often than byte-level fuzzing does.
func TestParseRequestDifferential(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	accepted := 0
	for range 20000 {
		in := genRequest(rng)
		var r Request
		n, err := ParseRequest(in, &r)
		if err != nil {
			continue
		}
		accepted++
		checkRequest(t, in, n, &r)
		checkReserialised(t, &r)
		checkAgainstNetHTTP(t, in[:n], &r)
	}
	if accepted < 1000 {
		t.Errorf("only %d of 20000 generated requests parsed; the generator is too weak", accepted)
	}
}

// FuzzParseRequest checks that ParseRequest never panics and that what it
// accepts is sound: the block ends at n with CRLF CRLF, no field holds CR, LF
// or NUL, framing is unambiguous, a re-serialisation parses to the same
// request, and net/http, when it also accepts the block, frames it the same.
func FuzzParseRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	for _, p := range requestProbes {
		f.Add([]byte(expandHost(p.in)))
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 100 {
		f.Add(genRequest(rng))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Request
		n, err := ParseRequest(data, &r)
		if err != nil {
			if n != 0 {
				t.Fatalf("n = %d with error %v", n, err)
			}
			if !errors.Is(err, ErrIncomplete) && !errors.Is(err, ErrMalformed) &&
				!errors.Is(err, ErrHeaderTooLarge) && !errors.Is(err, ErrUnsupportedTransferCoding) {
				t.Fatalf("error of no class: %v", err)
			}
			return
		}
		checkRequest(t, data, n, &r)
		checkReserialised(t, &r)
		checkAgainstNetHTTP(t, data[:n], &r)
	})
}

func checkRequest(t *testing.T, data []byte, n int, r *Request) {
	t.Helper()
	if n < 4 || n > len(data) || string(data[n-4:n]) != "\r\n\r\n" {
		t.Fatalf("n = %d does not end a header block in %q", n, data)
	}
	if r.Minor != 0 && r.Minor != 1 {
		t.Fatalf("Minor = %d", r.Minor)
	}
	var cl, te bool
	for _, h := range r.Headers {
		if len(h.Name) == 0 || bytes.ContainsAny(h.Name, "\r\n\x00 \t:") {
			t.Fatalf("bad field name %q", h.Name)
		}
		if bytes.ContainsAny(h.Value, "\r\n\x00") {
			t.Fatalf("bad field value %q", h.Value)
		}
		cl = cl || equalFold(h.Name, "content-length")
		te = te || equalFold(h.Name, "transfer-encoding")
	}
	if cl && te {
		t.Fatal("accepted both Content-Length and Transfer-Encoding")
	}
	if r.Chunked != (r.ContentLength == -1) || r.ContentLength < -1 {
		t.Fatalf("Chunked = %v with ContentLength %d", r.Chunked, r.ContentLength)
	}
	if r.Chunked != te {
		t.Fatalf("Chunked = %v but Transfer-Encoding present = %v", r.Chunked, te)
	}
	if r.Minor == 1 && r.Host == nil {
		t.Fatal("HTTP/1.1 request accepted without a host")
	}
	for _, s := range [][]byte{r.Method, r.Target, r.Path, r.Query, r.Host, r.Upgrade} {
		checkInside(t, data[:n], s)
	}
	for _, h := range r.Headers {
		checkInside(t, data[:n], h.Name)
		checkInside(t, data[:n], h.Value)
	}
}

// checkInside fails unless s is empty or lies within buf: parsed fields must
// point into the caller's buffer, never at a copy.
func checkInside(t *testing.T, buf, s []byte) {
	t.Helper()
	if len(s) == 0 {
		return
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
	if p < base || p+uintptr(len(s)) > base+uintptr(len(buf)) {
		t.Fatalf("field %q does not point into the parsed buffer", s)
	}
}

// checkReserialised writes r back out from its fields and parses it again.
func checkReserialised(t *testing.T, r *Request) {
	t.Helper()
	var b []byte
	b = append(b, r.Method...)
	b = append(b, ' ')
	b = append(b, r.Target...)
	b = append(b, " HTTP/1."...)
	b = append(b, byte('0'+r.Minor))
	b = append(b, "\r\n"...)
	for _, h := range r.Headers {
		b = append(b, h.Name...)
		b = append(b, ": "...)
		b = append(b, h.Value...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	var r2 Request
	n, err := ParseRequest(b, &r2)
	if err != nil || n != len(b) {
		t.Fatalf("re-serialised %q: n = %d, err = %v", b, n, err)
	}
	if summarize(r) != summarize(&r2) {
		t.Fatalf("re-serialised request differs:\n%+v\n%+v", summarize(r), summarize(&r2))
	}
	for i := range r.Headers {
		if !bytes.Equal(r.Headers[i].Name, r2.Headers[i].Name) || !bytes.Equal(r.Headers[i].Value, r2.Headers[i].Value) {
			t.Fatalf("header %d: %q: %q became %q: %q", i, r.Headers[i].Name, r.Headers[i].Value, r2.Headers[i].Name, r2.Headers[i].Value)
		}
	}
}

// checkAgainstNetHTTP is a differential check: when net/http's (more
// lenient) parser also accepts the block, both must agree on the method,
// the host and how long the body is, or one of them could be smuggled past.
func checkAgainstNetHTTP(t *testing.T, block []byte, r *Request) {
	t.Helper()
	for bytes.HasPrefix(block, []byte("\r\n")) {
		block = block[2:] // ReadRequest does not skip empty lines (its server does)
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(block)))
	if err != nil {
		return
	}
	defer req.Body.Close()
	if req.Method != string(r.Method) {
		t.Fatalf("net/http method %q, ours %q", req.Method, r.Method)
	}
	if req.Host != string(r.Host) {
		t.Fatalf("net/http host %q, ours %q", req.Host, r.Host)
	}
	if req.ContentLength != r.ContentLength {
		t.Fatalf("net/http ContentLength %d, ours %d", req.ContentLength, r.ContentLength)
	}
}

// FuzzChunkedReader checks that ChunkedReader never panics, reports only
// the documented errors, and that a body it accepts re-encodes to the same
// data and trailers, never outgrows its input, and agrees with net/http's
// chunked decoder whenever that accepts it too.
func FuzzChunkedReader(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n0\r\nX-A: 1\r\n\r\nNEXT"), uint8(3))
	f.Add([]byte("3;a=\"b;c\" ; d\r\nabc\r\n000\r\n\r\n"), uint8(64))
	for _, p := range chunkedProbes {
		if len(p.in) < 1024 { // big seeds make minimizing each new input crawl
			f.Add([]byte(p.in), uint8(1))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		out, trailers, consumed, err := decodeFuzz(data, int(step)%97+1)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrHeaderTooLarge) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("error of no class: %v", err)
			}
			return
		}
		if len(out)+len(trailers) > consumed || consumed > len(data) {
			t.Fatalf("decoded %d+%d bytes from %d consumed of %d", len(out), len(trailers), consumed, len(data))
		}
		if !bytes.HasSuffix(data[:consumed], []byte("\r\n")) {
			t.Fatalf("body does not end in CRLF: %q", data[:consumed])
		}
		wire := AppendLastChunk(AppendChunk(nil, out), trailers)
		out2, trailers2, consumed2, err := decodeFuzz(wire, 4096)
		if err != nil || !bytes.Equal(out, out2) || !bytes.Equal(trailers, trailers2) || consumed2 != len(wire) {
			t.Fatalf("re-encoded body %q decodes to %q %q (%v)", wire, out2, trailers2, err)
		}
		theirs, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(data[:consumed])))
		if err == nil && !bytes.Equal(out, theirs) {
			t.Fatalf("net/http decodes %q, ours %q", theirs, out)
		}
	})
}

// decodeFuzz decodes data, step bytes per Read, and returns the data, a copy
// of the trailers and how many input bytes the body took.
func decodeFuzz(data []byte, step int) (out, trailers []byte, consumed int, err error) {
	src := bytes.NewReader(data)
	br := bufio.NewReaderSize(src, 256)
	var c ChunkedReader
	c.Reset(br)
	p := make([]byte, step)
	for {
		n, err := c.Read(p)
		out = append(out, p[:n]...)
		if err == io.EOF {
			consumed = len(data) - src.Len() - br.Buffered()
			return out, bytes.Clone(c.Trailers()), consumed, nil
		}
		if err != nil {
			return nil, nil, 0, err
		}
	}
}

// FuzzParseResponse checks that ParseResponse never panics and that the
// framing it reports is consistent: one of bodyless, chunked, a length, or
// until close; never Content-Length beside Transfer-Encoding; no
// keep-alive on a body that ends at close.
func FuzzParseResponse(f *testing.F) {
	f.Add([]byte(typicalResponse), "GET")
	for _, p := range responseProbes {
		f.Add([]byte(p.in), "GET")
	}
	f.Add([]byte("HTTP/1.1 101 Switching\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n"), "GET")
	f.Add([]byte("HTTP/1.0 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"), "HEAD")
	f.Fuzz(func(t *testing.T, data []byte, method string) {
		var r Response
		n, err := ParseResponse(data, []byte(method), &r)
		if err != nil {
			if n != 0 {
				t.Fatalf("n = %d with error %v", n, err)
			}
			return
		}
		if n < 4 || n > len(data) || string(data[n-4:n]) != "\r\n\r\n" {
			t.Fatalf("n = %d does not end a header block", n)
		}
		if r.Status < 100 || r.Status > 599 {
			t.Fatalf("status %d", r.Status)
		}
		modes := 0
		for _, m := range []bool{r.Bodyless, r.Chunked, r.UntilClose} {
			if m {
				modes++
			}
		}
		switch {
		case modes > 1:
			t.Fatalf("several framings: %+v", summarizeResp(&r))
		case r.Bodyless && r.ContentLength != 0,
			(r.Chunked || r.UntilClose) && r.ContentLength != -1,
			modes == 0 && r.ContentLength < 0:
			t.Fatalf("ContentLength %d with %+v", r.ContentLength, summarizeResp(&r))
		case r.UntilClose && r.KeepAlive:
			t.Fatal("keep-alive on a body delimited by close")
		case r.Header("content-length") != nil && r.Header("transfer-encoding") != nil:
			t.Fatal("accepted both Content-Length and Transfer-Encoding")
		}
		for _, h := range r.Headers {
			if bytes.ContainsAny(h.Value, "\r\n\x00") || len(h.Name) == 0 {
				t.Fatalf("bad field %q: %q", h.Name, h.Value)
			}
		}
	})
}
