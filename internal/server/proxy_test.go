package server

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"ballast/internal/backend"
	"ballast/internal/testutil"
)

func TestForwardedHeaders(t *testing.T) {
	be := testutil.NewBackend(t, "b", nil)
	_, url := start(t, httpConfig(t, "", be.Addr()))
	c := testutil.Client()

	_, hdr, _ := testutil.Get(t, c, url+"/x?y=1", "Host", "shop.example:8443",
		"X-Forwarded-For", "203.0.113.7", "X-Request-Id", "abc-123")
	_, _, _ = testutil.Get(t, c, url+"/second")

	reqs := be.Requests()
	if len(reqs) != 2 {
		t.Fatalf("backend got %d requests", len(reqs))
	}
	r := reqs[0]
	checks := map[string]string{
		"X-Forwarded-For":   "203.0.113.7, 127.0.0.1",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "shop.example:8443",
		"X-Request-Id":      "abc-123",
	}
	for k, want := range checks {
		if got := r.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if r.Host != "shop.example:8443" || r.URL.RequestURI() != "/x?y=1" {
		t.Errorf("backend saw Host %q URI %q", r.Host, r.URL.RequestURI())
	}
	if hdr.Get("X-Backend") != "b" {
		t.Errorf("response header lost: %v", hdr)
	}
	second := reqs[1]
	if got := second.Header.Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("fresh X-Forwarded-For = %q", got)
	}
	if id := second.Header.Get("X-Request-Id"); len(id) != 32 {
		t.Errorf("generated X-Request-Id = %q, want 32 hex digits", id)
	}
}

func TestHopByHopHeadersRemovedBothWays(t *testing.T) {
	rb := newRawBackend(t, "HTTP/1.1 200 OK\r\n"+
		"Content-Length: 3\r\n"+
		"Connection: X-Internal-Hop\r\n"+
		"X-Internal-Hop: secret\r\n"+
		"Keep-Alive: timeout=5\r\n"+
		"Proxy-Authenticate: Basic\r\n"+
		"X-End-To-End: kept\r\n"+
		"\r\nok\n")
	_, url := start(t, httpConfig(t, "", rb.Addr()))

	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: example\r\n"+
		"Connection: keep-alive, X-Client-Hop\r\n"+
		"X-Client-Hop: private\r\n"+
		"Keep-Alive: 300\r\n"+
		"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"+
		"Proxy-Connection: keep-alive\r\n"+
		"Te: gzip\r\n"+
		"Upgrade-Insecure-Requests: 1\r\n"+
		"X-Kept: yes\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	got := <-rb.requests
	lower := strings.ToLower(got)
	for _, h := range []string{"x-client-hop", "keep-alive: 300", "proxy-authorization", "proxy-connection", "te: gzip", "connection: keep-alive, x-client-hop"} {
		if strings.Contains(lower, h) {
			t.Errorf("backend received hop-by-hop %q:\n%s", h, got)
		}
	}
	for _, h := range []string{"x-kept: yes", "upgrade-insecure-requests: 1"} {
		if !strings.Contains(lower, h) {
			t.Errorf("end-to-end header %q lost:\n%s", h, got)
		}
	}
	for _, h := range []string{"X-Internal-Hop", "Keep-Alive", "Proxy-Authenticate"} {
		if v := resp.Header.Get(h); v != "" {
			t.Errorf("client received hop-by-hop %s: %q", h, v)
		}
	}
	if resp.Header.Get("X-End-To-End") != "kept" {
		t.Errorf("end-to-end response header lost: %v", resp.Header)
	}
}

func TestErrorStatusMapping(t *testing.T) {
	t.Run("502 unreachable", func(t *testing.T) {
		_, url := start(t, httpConfig(t, "", testutil.FreeAddr(t)))
		status, _, body := testutil.Get(t, testutil.Client(), url+"/")
		if status != http.StatusBadGateway || !strings.HasPrefix(body, "502 ") {
			t.Fatalf("got %d %q", status, body)
		}
	})
	t.Run("502 broken response", func(t *testing.T) {
		rb := newRawBackend(t, "this is not http\r\n\r\n")
		_, url := start(t, httpConfig(t, "", rb.Addr()))
		status, _, body := testutil.Get(t, testutil.Client(), url+"/")
		if status != http.StatusBadGateway {
			t.Fatalf("got %d %q", status, body)
		}
	})
	t.Run("503 no usable backend", func(t *testing.T) {
		be := testutil.NewBackend(t, "b", nil)
		s, url := start(t, httpConfig(t, "", be.Addr()))
		s.Pool("app").Backend(be.Addr()).SetState(backend.StateDown)
		status, _, body := testutil.Get(t, testutil.Client(), url+"/")
		if status != http.StatusServiceUnavailable || !strings.HasPrefix(body, "503 ") {
			t.Fatalf("got %d %q", status, body)
		}
	})
	t.Run("504 slow backend", func(t *testing.T) {
		release := make(chan struct{})
		be := testutil.NewBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		defer close(release)
		_, url := start(t, httpConfig(t, "timeouts: {response_header: 200ms}", be.Addr()))
		began := time.Now()
		status, _, body := testutil.Get(t, testutil.Client(), url+"/")
		if status != http.StatusGatewayTimeout || !strings.HasPrefix(body, "504 ") {
			t.Fatalf("got %d %q", status, body)
		}
		if d := time.Since(began); d > 3*time.Second {
			t.Fatalf("504 took %v", d)
		}
	})
	t.Run("404 no route", func(t *testing.T) {
		be := testutil.NewBackend(t, "b", nil)
		cfg := strings.Replace(httpConfig(t, "", be.Addr()), "      - pool: app", "      - pool: app\n        host: only.example", 1)
		_, url := start(t, cfg)
		status, _, _ := testutil.Get(t, testutil.Client(), url+"/", "Host", "other.example")
		if status != http.StatusNotFound {
			t.Fatalf("got %d", status)
		}
	})
}

// A body of unknown length goes up chunked and comes back chunked, whole.
func TestChunkedBothWays(t *testing.T) {
	be := testutil.NewBackend(t, "echo", func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != -1 {
			t.Errorf("backend got Content-Length %d, want chunked", r.ContentLength)
		}
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		for i := range 5 {
			fmt.Fprintf(w, "chunk %d\n", i)
			w.(http.Flusher).Flush()
		}
		fmt.Fprintf(w, "%d %x\n", n, h.Sum(nil))
	})
	_, url := start(t, httpConfig(t, "", be.Addr()))

	payload := make([]byte, 3<<20)
	rand.Read(payload)
	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < len(payload); i += 64 << 10 {
			pw.Write(payload[i : i+64<<10])
		}
		pw.Close()
	}()
	resp, err := testutil.Client().Post(url+"/upload", "application/octet-stream", pr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("response Transfer-Encoding %v, want chunked", resp.TransferEncoding)
	}
	want := fmt.Sprintf("%d %x\n", len(payload), sha256.Sum256(payload))
	if !strings.HasSuffix(string(body), want) || !strings.HasPrefix(string(body), "chunk 0\n") {
		t.Fatalf("body = %q, want suffix %q", body, want)
	}
}

// Expect: 100-continue reaches the backend, whose 100 reaches the client
// before the body is sent; a backend that refuses early never gets the body.
func TestExpectContinue(t *testing.T) {
	be := testutil.NewBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refuse" {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "got %d\n", n)
	})
	_, url := start(t, httpConfig(t, "", be.Addr()))
	addr := strings.TrimPrefix(url, "http://")

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	fmt.Fprint(conn, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
		t.Fatalf("first line %q, %v; want 100 Continue", line, err)
	}
	for line != "\r\n" { // the rest of the 100 response
		line, _ = br.ReadString('\n')
	}
	fmt.Fprint(conn, "hello")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "got 5\n" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}

	// The backend refuses without reading: the client gets the final status
	// and no 100.
	fmt.Fprint(conn, "POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("got %d, want 413", resp.StatusCode)
	}
}

func TestWebSocketEcho(t *testing.T) {
	be := testutil.NewBackend(t, "ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo: "), msg...)); err != nil {
				return
			}
		}
	})
	_, url := start(t, httpConfig(t, "", be.Addr()))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/socket", nil)
	if err != nil {
		t.Fatalf("dial through proxy: %v", err)
	}
	defer c.CloseNow()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for i := range 20 {
		msg := fmt.Sprintf("message %d %s", i, strings.Repeat("x", i*1000))
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "echo: "+msg {
			t.Fatalf("echo %d wrong: %.40q", i, got)
		}
	}
	c.Close(websocket.StatusNormalClosure, "done")
}

// Regression: a client offering several protocols ("websocket, foo/1") got
// 502 when the backend chose one of them.
func TestUpgradeWithSeveralOfferedProtocols(t *testing.T) {
	rb := newRawBackend(t, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: foo/1\r\n\r\nswitched")
	_, url := start(t, httpConfig(t, "", rb.Addr()))
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket, foo/1\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "foo/1" {
		t.Fatalf("got %d Upgrade %q", resp.StatusCode, resp.Header.Get("Upgrade"))
	}
	rest, _ := io.ReadAll(br)
	if string(rest) != "switched" {
		t.Fatalf("tunnel carried %q", rest)
	}
	if got := <-rb.requests; !strings.Contains(got, "Upgrade: websocket, foo/1\r\n") {
		t.Fatalf("backend got:\n%s", got)
	}
}
