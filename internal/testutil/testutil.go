// Package testutil holds helpers shared by ballast's tests: free ports, named
// backends that record what they receive, and HTTP clients that do not pool.
package testutil

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// FreeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// Backend is a named HTTP backend on 127.0.0.1 that records the requests it gets.
type Backend struct {
	Name string
	*httptest.Server

	mu   sync.Mutex
	reqs []*http.Request
}

// NewBackend starts a backend answering "NAME\n" (header X-Backend: NAME), or
// running h when h is not nil. It is closed when the test ends.
func NewBackend(t testing.TB, name string, h http.HandlerFunc) *Backend {
	t.Helper()
	b := &Backend{Name: name}
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Backend", name)
			io.WriteString(w, name+"\n")
		}
	}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.reqs = append(b.reqs, r.Clone(r.Context()))
		b.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(b.Server.Close)
	return b
}

// Addr is the backend's host:port.
func (b *Backend) Addr() string { return b.Listener.Addr().String() }

// Requests returns copies of the requests received so far.
func (b *Backend) Requests() []*http.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*http.Request(nil), b.reqs...)
}

// Client returns an HTTP client with its own keep-alive pool and a timeout.
func Client() *http.Client {
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Get fetches url and returns status and body, failing the test on transport errors.
func Get(t testing.TB, c *http.Client, url string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

// WaitFor polls cond every 10ms until it is true or timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
