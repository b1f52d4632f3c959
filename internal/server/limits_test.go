package server

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"ballast/internal/testutil"
)

// A listener's limits, enforced by whichever engine serves it (the tests run
// once per engine: BALLAST_TEST_ENGINE).

// withLimits adds a limits section (the YAML flow mapping's inside) to the
// listener of an httpConfig text.
func withLimits(cfg, limits string) string {
	return strings.Replace(cfg, "    routes:\n", "    limits: {"+limits+"}\n    routes:\n", 1)
}

// dialClient opens a raw client connection to the listener at url, closed
// when the test ends, with a 10 s deadline as a backstop.
func dialClient(t *testing.T, url string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// exchange writes raw to c (from a goroutine: the server may stop reading)
// and reads one response; its body is read whole.
func exchange(t *testing.T, c net.Conn, br *bufio.Reader, raw string) (*http.Response, string, error) {
	t.Helper()
	go io.WriteString(c, raw)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, string(body), err
}

func TestLimitMaxHeaderBytes(t *testing.T) {
	be := testutil.NewBackend(t, "b", nil)
	_, url := start(t, withLimits(httpConfig(t, "", be.Addr()), "max_header_bytes: 4096"))
	for _, tc := range []struct {
		name   string
		fill   int
		status int
	}{
		{"within", 2 << 10, 200},
		// 16 KiB is far below the 64 KiB default: only the listener's own
		// limit refuses it (net/http lets up to 4 KiB more through).
		{"beyond", 16 << 10, 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialClient(t, url)
			raw := "GET /h HTTP/1.1\r\nHost: x\r\nX-Fill: " + strings.Repeat("a", tc.fill) + "\r\n\r\n"
			resp, _, err := exchange(t, c, bufio.NewReader(c), raw)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("a %d-byte field: status %d, want %d", tc.fill, resp.StatusCode, tc.status)
			}
		})
	}
	if n := len(be.Requests()); n != 1 {
		t.Errorf("backend got %d requests, want 1 (the oversized one must not reach it)", n)
	}
}

// A request header that does not come whole within read_header_timeout ends
// the connection (the native engine answers 408; net/http closes without an
// answer), whether the client stalls or trickles bytes to look alive — and not
// before the timeout.
func TestLimitReadHeaderTimeout(t *testing.T) {
	be := testutil.NewBackend(t, "b", nil)
	_, url := start(t, withLimits(httpConfig(t, "", be.Addr()), "read_header_timeout: 300ms, idle_timeout: 10s"))
	for _, trickle := range []bool{false, true} {
		t.Run(map[bool]string{false: "stall", true: "trickle"}[trickle], func(t *testing.T) {
			c := dialClient(t, url)
			begin := time.Now()
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
			if trickle {
				stop := make(chan struct{})
				defer close(stop)
				go func() {
					for range 100 { // bounded: 5 s at most
						select {
						case <-stop:
							return
						case <-time.After(50 * time.Millisecond):
						}
						if _, err := io.WriteString(c, "X-A: b\r\n"); err != nil {
							return
						}
					}
				}()
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			took := time.Since(begin)
			switch {
			case err == nil && resp.StatusCode != http.StatusRequestTimeout:
				t.Fatalf("status %d, want 408", resp.StatusCode)
			case err == nil:
				resp.Body.Close()
			case testEngine() == "native":
				t.Fatalf("no 408: %v", err)
			case isTimeout(err):
				t.Fatalf("the connection was held for 10 s")
			}
			if took < 250*time.Millisecond || took > 3*time.Second {
				t.Errorf("ended after %v, want about 300ms", took)
			}
		})
	}
	if n := len(be.Requests()); n != 0 {
		t.Errorf("backend got %d requests", n)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// An idle keep-alive connection is closed after idle_timeout, not before.
func TestLimitIdleTimeout(t *testing.T) {
	be := testutil.NewBackend(t, "b", nil)
	_, url := start(t, withLimits(httpConfig(t, "", be.Addr()), "idle_timeout: 300ms"))
	c := dialClient(t, url)
	br := bufio.NewReader(c)
	resp, _, err := exchange(t, c, br, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if err != nil || resp.StatusCode != 200 || resp.Close {
		t.Fatalf("first request: %v %v", resp, err)
	}
	idle := time.Now()
	_, err = br.ReadByte()
	took := time.Since(idle)
	if err == nil || isTimeout(err) {
		t.Fatalf("idle connection not closed (read: %v)", err)
	}
	if took < 250*time.Millisecond || took > 3*time.Second {
		t.Errorf("idle connection closed after %v, want about 300ms", took)
	}
}

// A client that takes no response bytes for write_timeout is disconnected
// (and the backend's connection with it); a response that keeps flowing is
// never cut, however long it lasts.
func TestLimitWriteTimeout(t *testing.T) {
	type outcome struct {
		n   int64
		err error
	}
	done := make(chan outcome, 1)
	be := testutil.NewBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		switch r.URL.Path {
		case "/big": // 256 MiB, far beyond what socket buffers hold
			w.Header().Set("Content-Length", strconv.Itoa(256<<20))
			buf := make([]byte, 64<<10)
			var n int64
			var err error
			for n < 256<<20 && err == nil {
				var k int
				k, err = w.Write(buf)
				n += int64(k)
			}
			done <- outcome{n, err}
		case "/trickle": // 8 pieces 100ms apart: 800ms in all, each gap below the timeout
			for i := range 8 {
				if i > 0 {
					time.Sleep(100 * time.Millisecond)
				}
				fmt.Fprintf(w, "piece %d\n", i)
				rc.Flush()
			}
		}
	})
	_, url := start(t, withLimits(httpConfig(t, "", be.Addr()), "write_timeout: 300ms"))

	t.Run("flowing", func(t *testing.T) {
		c := dialClient(t, url)
		resp, body, err := exchange(t, c, bufio.NewReader(c), "GET /trickle HTTP/1.1\r\nHost: x\r\n\r\n")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || strings.Count(body, "piece") != 8 {
			t.Fatalf("a slow but flowing response was cut: %d %q", resp.StatusCode, body)
		}
	})
	t.Run("stalled", func(t *testing.T) {
		c := dialClient(t, url)
		io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
		// The client never reads. Without a write timeout ballast would
		// wait on it forever, and the backend on ballast.
		select {
		case o := <-done:
			if o.err == nil || o.n >= 256<<20 {
				t.Fatalf("backend wrote %d bytes, err %v: want its connection cut", o.n, o.err)
			}
			t.Logf("backend cut after %d MiB", o.n>>20)
		case <-time.After(15 * time.Second):
			t.Fatal("a client that reads nothing still held its connection after 15s (write_timeout 300ms)")
		}
		// Ballast closed the client's connection: reading now, the client
		// gets what the kernel still held for it, then the end.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := io.Copy(io.Discard, c)
		if isTimeout(err) || n >= 256<<20 {
			t.Fatalf("client read %d bytes, then %v: want an early end", n, err)
		}
	})
}

// max_body_bytes: a Content-Length above it gets 413 and reaches no backend; a
// chunked body gets 413 if it is past the cap when forwarding starts, and
// aborts both connections if it passes the cap later.
func TestLimitMaxBodyBytes(t *testing.T) {
	entered := make(chan struct{}, 16)
	bodyErr := make(chan error, 16)
	be := testutil.NewBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		b, err := io.ReadAll(r.Body)
		bodyErr <- err
		fmt.Fprintf(w, "%d", len(b))
	})
	_, url := start(t, withLimits(httpConfig(t, "", be.Addr()), "max_body_bytes: 1024"))
	chunk := func(n int) string { return fmt.Sprintf("%x\r\n%s\r\n", n, strings.Repeat("b", n)) }
	const chunked = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	drain := func() {
		for len(entered) > 0 {
			<-entered
			<-bodyErr
		}
	}
	for _, tc := range []struct {
		name, raw string
		status    int
		body      string // of a 200
	}{
		{"length within", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\n\r\n" + strings.Repeat("a", 1024), 200, "1024"},
		{"length above", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n" + strings.Repeat("a", 1025), 413, ""},
		{"length far above, body unsent", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n", 413, ""},
		{"chunked within", chunked + chunk(500) + chunk(524) + "0\r\n\r\n", 200, "1024"},
		{"chunked above at once", chunked + chunk(4096) + "0\r\n\r\n", 413, ""},
		{"chunked above in small chunks", chunked + strings.Repeat(chunk(100), 11) + "0\r\n\r\n", 413, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			drain()
			c := dialClient(t, url)
			resp, body, err := exchange(t, c, bufio.NewReader(c), tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status || tc.status == 200 && body != tc.body {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tc.status, tc.body)
			}
			if tc.status == 413 {
				select {
				case <-entered:
					t.Fatal("the request reached the backend")
				case <-time.After(50 * time.Millisecond):
				}
			}
		})
	}

	t.Run("chunked passes the cap after forwarding began", func(t *testing.T) {
		drain()
		c := dialClient(t, url)
		io.WriteString(c, chunked+chunk(512))
		select {
		case <-entered:
		case <-time.After(5 * time.Second):
			t.Fatal("the request did not reach the backend")
		}
		io.WriteString(c, chunk(1024)+"0\r\n\r\n")
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
			t.Fatalf("client got a response (%d), want its connection aborted", resp.StatusCode)
		} else if isTimeout(err) {
			t.Fatal("client connection neither answered nor aborted")
		}
		select {
		case err := <-bodyErr:
			if err == nil {
				t.Fatal("the backend read a complete body")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the backend's connection was not aborted")
		}
	})
}

// max_conns: with N connections open the next one is not accepted (it waits
// in the kernel's backlog, neither served nor refused) until one closes; then
// it is served.
func TestLimitMaxConns(t *testing.T) {
	be := testutil.NewBackend(t, "b", nil)
	_, url := start(t, withLimits(httpConfig(t, "", be.Addr()), "max_conns: 2"))
	const get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	var open []net.Conn
	for range 2 {
		c := dialClient(t, url)
		if resp, _, err := exchange(t, c, bufio.NewReader(c), get); err != nil || resp.StatusCode != 200 {
			t.Fatalf("connection %d: %v %v", len(open)+1, resp, err)
		}
		open = append(open, c)
	}
	third := dialClient(t, url) // the kernel completes the handshake: the backlog
	io.WriteString(third, get)
	third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := http.ReadResponse(bufio.NewReader(third), nil); !isTimeout(err) {
		t.Fatalf("third connection with max_conns 2: %v, want no answer yet", err)
	}
	open[0].Close()
	third.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(third), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("third connection after one closed: %v %v", resp, err)
	}
	resp.Body.Close()
	// The second is still served: the third took the slot the first left.
	if resp, _, err := exchange(t, open[1], bufio.NewReader(open[1]), get); err != nil || resp.StatusCode != 200 {
		t.Fatalf("second connection: %v %v", resp, err)
	}
}

// A reload that changes a listener's limits rebuilds its engine on the same
// socket (binding the address again would fail while the old one drains).
func TestLimitsChangeOnReload(t *testing.T) {
	be := testutil.NewBackend(t, "b", nil)
	cfg := httpConfig(t, "", be.Addr())
	s, url := start(t, cfg)
	client := testutil.Client()
	big := strings.Repeat("a", 16<<10)
	if st, _, _ := testutil.Get(t, client, url+"/", "X-Fill", big); st != 200 {
		t.Fatalf("16 KiB header under the default limit: %d", st)
	}
	if err := s.Reload(parse(t, withLimits(cfg, "max_header_bytes: 4096"))); err != nil {
		t.Fatalf("reload with new limits: %v", err)
	}
	if got := "http://" + s.Addr("web").String(); got != url {
		t.Fatalf("listener moved from %s to %s", url, got)
	}
	client = testutil.Client() // a fresh connection: the old engine drains
	if st, _, _ := testutil.Get(t, client, url+"/", "X-Fill", big); st != 431 {
		t.Fatalf("16 KiB header after max_header_bytes 4096: %d, want 431", st)
	}
	if st, _, _ := testutil.Get(t, client, url+"/"); st != 200 {
		t.Fatalf("small request after the reload: %d", st)
	}
}
