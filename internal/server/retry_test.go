package server

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"ballast/internal/testutil"
)

// A backend that refuses connections costs the clients nothing: each request
// that picks it goes on to another backend (nothing was sent, so this is safe
// for any method).
func TestConnectFailureTriesAnotherBackend(t *testing.T) {
	_, addrs := backends(t, 2)
	dead := testutil.FreeAddr(t)
	_, url := start(t, httpConfig(t, "algorithm: round_robin", addrs[0], dead, addrs[1]))

	got := count(hits(t, url+"/", 30)) // hits fails the test on any non-200
	if got["b0"]+got["b1"] != 30 {
		t.Fatalf("answers %v", got)
	}
	c := testutil.Client()
	for i := range 6 {
		resp, err := c.Post(url+"/upload", "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %d: status %d", i, resp.StatusCode)
		}
	}
}

// statusBackend answers every request with status, counting what it got and
// keeping the last body.
func statusBackend(t *testing.T, name string, status int) (*testutil.Backend, *atomic.Int64) {
	var n atomic.Int64
	b := testutil.NewBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n.Add(1)
		w.Header().Set("X-Backend", name)
		w.WriteHeader(status)
		fmt.Fprintf(w, "%s %d %s\n", name, len(body), body)
	})
	return b, &n
}

// A 503 named in retries.on sends an idempotent request to another backend
// (a PUT's body with it); a POST is not sent again and gets the 503 itself.
func TestRetryOnStatus(t *testing.T) {
	bad, badN := statusBackend(t, "bad", http.StatusServiceUnavailable)
	good, goodN := statusBackend(t, "good", http.StatusOK)
	_, url := start(t, httpConfig(t, `algorithm: round_robin
retries: {attempts: 1, on: ["503"]}`, bad.Addr(), good.Addr()))
	c := testutil.Client()
	for i := range 6 {
		req, _ := http.NewRequest("PUT", url+"/doc", strings.NewReader("v=1"))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "good 3 v=1\n" {
			t.Fatalf("PUT %d: %d %q, want 200 from good with the body", i, resp.StatusCode, body)
		}
	}
	// Each PUT that met bad was retried once, on good.
	if goodN.Load() != 6 || badN.Load() == 0 {
		t.Fatalf("bad got %d, good %d; want good to answer all 6, bad to have had some", badN.Load(), goodN.Load())
	}
	badN.Store(0)
	goodN.Store(0)
	statuses := map[int]int{}
	for range 6 {
		resp, err := c.Post(url+"/order", "text/plain", strings.NewReader("o=1"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		statuses[resp.StatusCode]++
	}
	if statuses[503] != 3 || statuses[200] != 3 || badN.Load()+goodN.Load() != 6 {
		t.Fatalf("POSTs: statuses %v, received %d+%d; want 3×503 and 3×200, each received once",
			statuses, badN.Load(), goodN.Load())
	}
}

// With idempotent_only false a POST is retried too; with budget 0 nothing
// sent is retried.
func TestRetryNonIdempotentAndBudget(t *testing.T) {
	bad, _ := statusBackend(t, "bad", http.StatusBadGateway)
	good, _ := statusBackend(t, "good", http.StatusOK)
	for _, tc := range []struct {
		retries string
		want    int // 200s out of 4 POSTs
	}{
		{`retries: {on: ["502"], idempotent_only: false}`, 4},
		{`retries: {on: ["502"], idempotent_only: false, budget: 0}`, 2},
	} {
		_, url := start(t, httpConfig(t, "algorithm: round_robin\n"+tc.retries, bad.Addr(), good.Addr()))
		ok := 0
		for range 4 {
			resp, err := testutil.Client().Post(url+"/x", "text/plain", strings.NewReader("p"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ok++
			}
		}
		if ok != tc.want {
			t.Errorf("%s: %d of 4 POSTs succeeded, want %d", tc.retries, ok, tc.want)
		}
	}
}

// A body too large to keep is streamed and not retried once sent.
func TestLargeBodyNotRetried(t *testing.T) {
	bad, badN := statusBackend(t, "bad", http.StatusServiceUnavailable)
	good, goodN := statusBackend(t, "good", http.StatusOK)
	_, url := start(t, httpConfig(t, `algorithm: round_robin
retries: {on: ["503"]}`, bad.Addr(), good.Addr()))
	big := strings.Repeat("x", 100<<10)
	statuses := map[int]int{}
	for range 4 {
		req, _ := http.NewRequest("PUT", url+"/blob", strings.NewReader(big))
		resp, err := testutil.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		statuses[resp.StatusCode]++
	}
	if statuses[503] != 2 || badN.Load()+goodN.Load() != 4 {
		t.Fatalf("statuses %v, received %d; want two 503s and each PUT received once", statuses, badN.Load()+goodN.Load())
	}
}
