package health

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"ballast/internal/testutil"
)

// rawServer accepts connections on 127.0.0.1 and hands each to handle; it
// stops when the test ends, closing whatever handle left open.
func rawServer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { handle(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// check runs chk against addr with a timeout and returns Reason of the result.
func check(chk Checker, addr string, timeout time.Duration) string {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return Reason(chk.Check(ctx, addr))
}

func TestHTTPCheckerStatus(t *testing.T) {
	tests := []struct {
		name   string
		status int
		lo, hi int
		want   string
	}{
		{"200 in 200-399", 200, 200, 399, ""},
		{"503 in 200-399", 503, 200, 399, "status 503"},
		{"302 in 200-399", 302, 200, 399, ""},
		{"399 upper bound", 399, 200, 399, ""},
		{"400 above range", 400, 200, 399, "status 400"},
		{"204 exactly 204", 204, 204, 204, ""},
		{"200 when only 204", 200, 204, 204, "status 200"},
		{"404 in 200-499", 404, 200, 499, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.status == 302 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tt.status)
			}))
			defer srv.Close()
			chk := NewHTTPChecker("/healthz", "", tt.lo, tt.hi)
			if got := check(chk, srv.Listener.Addr().String(), time.Second); got != tt.want {
				t.Errorf("reason = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestHTTPCheckerRequest(t *testing.T) {
	tests := []struct {
		name     string
		path     string
		host     string
		wantPath string
		wantHost string // "" = the probed address
	}{
		{"host defaults to addr", "/healthz", "", "/healthz", ""},
		{"explicit host", "/healthz", "api.example.test", "/healthz", "api.example.test"},
		{"query kept", "/status?full=1", "", "/status?full=1", ""},
		{"empty path is /", "", "", "/", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan *http.Request, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got <- r.Clone(context.Background())
			}))
			defer srv.Close()
			addr := srv.Listener.Addr().String()
			if reason := check(NewHTTPChecker(tt.path, tt.host, 200, 399), addr, time.Second); reason != "" {
				t.Fatalf("check failed: %s", reason)
			}
			r := <-got
			wantHost := tt.wantHost
			if wantHost == "" {
				wantHost = addr
			}
			if r.Host != wantHost {
				t.Errorf("Host = %q, want %q", r.Host, wantHost)
			}
			if r.RequestURI != tt.wantPath {
				t.Errorf("request URI = %q, want %q", r.RequestURI, tt.wantPath)
			}
			if r.Method != http.MethodGet {
				t.Errorf("method = %s, want GET", r.Method)
			}
			if ua := r.UserAgent(); ua != "ballast-health" {
				t.Errorf("User-Agent = %q, want ballast-health", ua)
			}
			if !r.Close {
				t.Errorf("request did not ask for Connection: close")
			}
		})
	}
}

// TestHTTPCheckerFreshConnection guards against pooled connections: every
// probe must open its own, as a new client would.
func TestHTTPCheckerFreshConnection(t *testing.T) {
	var mu sync.Mutex
	conns := 0
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	srv.Start()
	defer srv.Close()
	chk := NewHTTPChecker("/", "", 200, 299)
	for range 3 {
		if r := check(chk, srv.Listener.Addr().String(), time.Second); r != "" {
			t.Fatal(r)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if conns != 3 {
		t.Errorf("3 probes used %d connections, want 3", conns)
	}
}

func TestHTTPCheckerFailures(t *testing.T) {
	silent := rawServer(t, func(c net.Conn) {
		// Read the request, never answer; the cleanup closes c.
		io.Copy(io.Discard, c)
	})
	reset := rawServer(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		c.Read(buf)
		c.(*net.TCPConn).SetLinger(0) // close with RST
		c.Close()
	})
	hangup := rawServer(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		c.Read(buf)
		c.Close()
	})
	garbage := rawServer(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		c.Read(buf)
		io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\n")
		c.Close()
	})
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A body that never ends: the checker must stop reading after a few KiB.
		chunk := []byte(strings.Repeat("x", 32<<10))
		for range 1000 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer huge.Close()

	tests := []struct {
		name string
		addr string
		want string
	}{
		{"closed port", testutil.FreeAddr(t), "connection refused"},
		{"never answers", silent, "timeout"},
		{"reset", reset, "reset"},
		{"hangs up", hangup, "connection closed"},
		{"not http", garbage, "GET " + garbage + "/: read response: malformed HTTP response \"SSH-2.0-OpenSSH_9.6\""},
		{"endless body passes", huge.Listener.Addr().String(), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			began := time.Now()
			got := check(NewHTTPChecker("/", "", 200, 399), tt.addr, 150*time.Millisecond)
			if got != tt.want {
				t.Errorf("reason = %q, want %q", got, tt.want)
			}
			if d := time.Since(began); d > time.Second {
				t.Errorf("check took %v, want it bounded by the 150ms timeout", d)
			}
		})
	}
}

// TestHTTPCheckerCancel checks that a probe stops when its ctx is canceled
// (the monitor stopping, the backend removed) and says so.
func TestHTTPCheckerCancel(t *testing.T) {
	silent := rawServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	began := time.Now()
	err := NewHTTPChecker("/", "", 200, 399).Check(ctx, silent)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(began); d > time.Second {
		t.Errorf("canceled check took %v", d)
	}
}

func TestTCPChecker(t *testing.T) {
	open := rawServer(t, func(c net.Conn) { c.Close() })
	tests := []struct {
		name string
		addr string
		want string
	}{
		{"listening", open, ""},
		{"closed port", testutil.FreeAddr(t), "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := check(NewTCPChecker(), tt.addr, time.Second); got != tt.want {
				t.Errorf("reason = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReason(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{&StatusError{Code: 502}, "status 502"},
		{context.DeadlineExceeded, "timeout"},
		{io.ErrUnexpectedEOF, "connection closed"},
		{errors.New("something odd"), "something odd"},
	}
	for _, tt := range tests {
		if got := Reason(tt.err); got != tt.want {
			t.Errorf("Reason(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
