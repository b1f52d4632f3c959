package proxy

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestNativeConcurrentNoCrossTalk: 50 clients × 100 requests, mixed GETs
// and POSTs (Content-Length and chunked bodies of varied sizes), over
// keep-alive connections to two net/http backends. Each backend echoes the
// request's own token and a hash of its body, so that any response delivered
// to the wrong request, or any body mixed up between requests, is caught.
func TestNativeConcurrentNoCrossTalk(t *testing.T) {
	var hits [2]atomic.Int64
	mk := func(i int) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			w.Header().Set("X-Token", r.Header.Get("X-Token"))
			fmt.Fprintf(w, "%s %s token=%s len=%d sha=%x", r.Method, r.URL.RequestURI(),
				r.Header.Get("X-Token"), len(body), sha256.Sum256(body))
		}))
		t.Cleanup(s.Close)
		return s
	}
	b0, b1 := mk(0), mk(1)
	p := newAdvProxy(t, advProxyConfig{}, b0.Listener.Addr().String(), b1.Listener.Addr().String())

	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	const workers, perWorker = 50, 100
	bodies := make([][]byte, 8)
	for i := range bodies {
		bodies[i] = advRandBody([]int{0, 1, 100, 4096, 16 << 10, 40000, 70000, 5}[i], uint64(i+10))
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				if err := advOneLoadRequest(client, p.addr, w, i, bodies[(w+i)%len(bodies)]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d requests in %v; backends served %d and %d", workers*perWorker, time.Since(start), hits[0].Load(), hits[1].Load())
	if hits[0].Load() == 0 || hits[1].Load() == 0 {
		t.Errorf("one backend got no traffic: %d / %d", hits[0].Load(), hits[1].Load())
	}
	if total := hits[0].Load() + hits[1].Load(); total != workers*perWorker {
		t.Errorf("backends served %d requests, want %d (none lost, none duplicated)", total, workers*perWorker)
	}
}

// advOneLoadRequest sends request i of worker w and checks its answer.
func advOneLoadRequest(client *http.Client, addr string, w, i int, body []byte) error {
	tok := fmt.Sprintf("w%d-r%d", w, i)
	path := fmt.Sprintf("/load/%d/%d?q=%s", w, i, tok)
	method := "GET"
	var rd io.Reader
	switch i % 3 {
	case 1:
		method, rd = "POST", bytes.NewReader(body) // Content-Length
	case 2:
		method, rd = "PUT", io.MultiReader(bytes.NewReader(body)) // unknown length: chunked
	default:
		body = nil
	}
	req, err := http.NewRequest(method, "http://"+addr+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("X-Token", tok)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", tok, err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("%s: reading body: %w", tok, err)
	}
	want := fmt.Sprintf("%s %s token=%s len=%d sha=%x", method, path, tok, len(body), sha256.Sum256(body))
	if resp.StatusCode != 200 || string(got) != want || resp.Header.Get("X-Token") != tok {
		return fmt.Errorf("%s: status %d, X-Token %q, body %q, want %q", tok, resp.StatusCode,
			resp.Header.Get("X-Token"), strings.TrimSpace(string(got)), want)
	}
	return nil
}
