package server

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Ambiguous or malformed requests never reach a backend: the native engine
// answers 400 (or 501 for a transfer coding it does not know) and closes the
// connection. Well-formed variants reach the backend as exactly one request.
func TestHostileRequestsThroughProxy(t *testing.T) {
	if testEngine() != "native" {
		t.Skip("net/http's own parser is tested upstream; this guards the native engine")
	}
	rb := newRawBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
	_, url := start(t, httpConfig(t, "", rb.Addr()))
	addr := strings.TrimPrefix(url, "http://")

	cases := []struct {
		name, raw string
		status    int
	}{
		{"CL and TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE and CL", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400},
		{"differing CLs", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", 400},
		{"CL list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 5\r\n\r\nabcde", 400},
		{"signed CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd", 400},
		{"obfuscated TE", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400},
		{"TE with vertical tab", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n", 400},
		{"TE gzip", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
		{"bare LF", "GET / HTTP/1.1\nHost: x\n\n", 400},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost: x\r\nX-A : a\r\n\r\n", 400},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"HTTP/0.9", "GET /\r\n\r\n", 400},
		{"bad method", "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(conn, c.raw)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
			}
			if c.name != "bad chunk size" { // that one's head is fine: it reaches the backend, its body does not
				select {
				case got := <-rb.requests:
					t.Fatalf("backend received:\n%s", got)
				case <-time.After(50 * time.Millisecond):
				}
			}
		})
	}
	for len(rb.requests) > 0 {
		<-rb.requests
	}

	// A pipelined pair on one connection reaches the backend as two requests,
	// each exactly once.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /two HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	for i := range 2 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for _, want := range []string{"POST /one HTTP/1.1", "GET /two HTTP/1.1"} {
		got := <-rb.requests
		if !strings.HasPrefix(got, want+"\r\n") {
			t.Fatalf("backend got %q, want %s", strings.SplitN(got, "\r\n", 2)[0], want)
		}
	}
}

// Regression: a request answered by ballast itself (404, 503) left its header
// in the read buffer, and the next turn of the keep-alive loop parsed it again.
func TestOwnErrorsKeepTheConnectionInStep(t *testing.T) {
	rb := newRawBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
	cfg := strings.Replace(httpConfig(t, "", rb.Addr()), "      - pool: app", "      - pool: app\n        path_prefix: /app", 1)
	_, url := start(t, cfg)
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\nGET /app HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	for i, want := range []int{404, 200} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("response %d: status %d, want %d", i, resp.StatusCode, want)
		}
	}
	conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if b, err := br.ReadByte(); err == nil {
		t.Fatalf("extra byte %q after the two responses", b)
	}
}
