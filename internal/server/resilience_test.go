package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"ballast/internal/backend"
	"ballast/internal/testutil"
)

// retryAll is a retries section naming every condition.
const retryAll = `retries: {attempts: 2, on: [connect_failure, timeout, reset, "502", "503", "504"]}`

// One of three backends is killed under 50 concurrent GET clients and comes
// back: no GET fails, it is marked down within interval × fall + 1 s (at once,
// in fact: its host refuses connections) and up within interval × rise + 1 s.
func TestKillOneOfThreeUnderLoad(t *testing.T) {
	apps, addrs := startApps(t, 3)
	const interval, rise, fall = 500 * time.Millisecond, 2, 3
	s, url := start(t, httpConfig(t, `
algorithm: least_conn
health_check: {type: http, path: /healthz, interval: 500ms, timeout: 250ms, rise: 2, fall: 3}
`+retryAll, addrs...))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var res *loadResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Requests that take a while, so that some are always in progress
		// at the backend that is killed.
		res = load(ctx, url+"/slow?ms=20", 50, 200000)
	}()
	time.Sleep(time.Second)
	killed := time.Now()
	apps[1].kill()
	down := time.Since(killed) + waitState(t, s, addrs[1], backend.StateDown, interval*fall+time.Second)
	time.Sleep(time.Second)
	apps[1].start()
	up := waitState(t, s, addrs[1], backend.StateUp, interval*rise+time.Second)
	back := apps[1].count("REQ GET /slow")
	time.Sleep(time.Second)
	cancel()
	<-done
	if n := apps[1].count("REQ GET /slow"); n <= back {
		t.Errorf("the returned backend got no traffic (%d requests before, %d after)", back, n)
	}
	t.Logf("kill test: %d GETs, %d failed; marked down after %v (bound %v), up after %v (bound %v); p50 %v p99 %v max %v",
		res.ok+len(res.failed), len(res.failed), down.Round(time.Millisecond), interval*fall+time.Second,
		up.Round(time.Millisecond), interval*rise+time.Second,
		res.percentile(50), res.percentile(99), res.percentile(100))
	if len(res.failed) > 0 {
		t.Fatalf("%d of %d GETs failed, want 0; first: %v", len(res.failed), res.ok+len(res.failed), res.failed[:min(5, len(res.failed))])
	}
	if res.ok < 1000 {
		t.Fatalf("only %d GETs in the test: the load did not run", res.ok)
	}
}

// A backend that hangs (SIGSTOP: the kernel still accepts, nobody answers):
// GETs sent to it time out after response_header and go to another backend,
// so none waits much longer than that; passive detection ejects it.
func TestHangingBackendRetriedAndEjected(t *testing.T) {
	apps, addrs := startApps(t, 3)
	apps[2].signal(syscall.SIGSTOP)
	defer apps[2].signal(syscall.SIGCONT)
	const timeout = 300 * time.Millisecond
	s, url := start(t, httpConfig(t, `
algorithm: round_robin
timeouts: {response_header: 300ms}
passive: {consecutive_failures: 3, eject_for: 30s}
`+retryAll, addrs...))

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := load(ctx, url+"/any", 10, 600)
	if len(res.failed) > 0 {
		t.Fatalf("%d GETs failed: %v", len(res.failed), res.failed[:min(5, len(res.failed))])
	}
	slowest := res.percentile(100)
	t.Logf("hanging backend: %d GETs, 0 failed, p50 %v p99 %v max %v (response_header %v)",
		res.ok, res.percentile(50), res.percentile(99), slowest, timeout)
	if slowest > timeout+700*time.Millisecond {
		t.Errorf("a GET took %v, much longer than the response timeout %v", slowest, timeout)
	}
	if st := s.Pool("app").Backend(addrs[2]).State(); st != backend.StateEjected {
		t.Errorf("hanging backend is %s, want ejected", st)
	}
	if n := res.backends["b2"]; n != 0 {
		t.Errorf("%d answers from the stopped backend", n)
	}
}

// A POST that reached a backend which then died is not sent again: exactly
// one backend received it, and the client gets a 502.
func TestPostToDyingBackendNotRetried(t *testing.T) {
	apps, addrs := startApps(t, 2)
	_, url := start(t, httpConfig(t, "algorithm: round_robin\n"+retryAll, addrs...))
	c := testutil.Client()
	for i := range 2 {
		req, _ := http.NewRequest("POST", url+"/die", strings.NewReader("order=42"))
		req.Header.Set("X-Id", fmt.Sprint(i))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("POST %d: the client got no response (%v), want a 502", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("POST %d: status %d, want 502", i, resp.StatusCode)
		}
		received := 0
		for _, a := range apps {
			received += a.count(fmt.Sprintf("RECV %d", i))
		}
		if received != 1 {
			t.Fatalf("POST %d received %d times, want exactly once", i, received)
		}
		for _, a := range apps {
			if a.count(fmt.Sprintf("RECV %d", i)) == 1 {
				a.wait()
				a.start() // the next POST finds two live backends again
			}
		}
	}
}

// max_conns 1 on two backends with 20 slow requests at once: no backend ever
// has two, and they are served in order of arrival.
func TestMaxConnsQueueFIFO(t *testing.T) {
	_, addrs := startApps(t, 2)
	cfg := httpConfig(t, "algorithm: least_conn\nqueue: {max: 100, timeout: 10s}", addrs...)
	cfg = strings.ReplaceAll(cfg, "      - addr: "+addrs[0], "      - addr: "+addrs[0]+"\n        max_conns: 1")
	cfg = strings.ReplaceAll(cfg, "      - addr: "+addrs[1], "      - addr: "+addrs[1]+"\n        max_conns: 1")
	s, url := start(t, cfg)

	const n, service = 20, 100 * time.Millisecond
	type result struct {
		status     int
		start      int64 // the backend's X-Start
		concurrent string
		latency    time.Duration
	}
	results := make([]result, n)
	var finished atomic.Int64
	var wg sync.WaitGroup
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	for i := range n {
		wg.Go(func() {
			begin := time.Now()
			resp, err := c.Get(fmt.Sprintf("%s/slow?ms=%d&i=%d", url, service.Milliseconds(), i))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			var st int64
			fmt.Sscan(resp.Header.Get("X-Start"), &st)
			results[i] = result{resp.StatusCode, st, resp.Header.Get("X-Concurrent"), time.Since(begin)}
			finished.Add(1)
		})
		// Arrive in a known order: each request waits in the queue (or
		// holds a slot) before the next one is sent.
		want := i + 1
		testutil.WaitFor(t, 5*time.Second, "request in ballast", func() bool {
			up := s.ups["app"]
			inFlight := int(s.Pool("app").Backend(addrs[0]).InFlight() + s.Pool("app").Backend(addrs[1]).InFlight())
			return inFlight+up.QueueLen()+int(finished.Load()) >= want
		})
	}
	wg.Wait()
	var waits []time.Duration
	for i, r := range results {
		if r.status != http.StatusOK {
			t.Fatalf("request %d: status %d", i, r.status)
		}
		if r.concurrent != "1" {
			t.Errorf("request %d: the backend had %s requests at once, want 1", i, r.concurrent)
		}
		// In order of arrival; two backends start their handlers with some
		// jitter, far less than the 100 ms a request waits for a slot.
		if i > 0 && r.start < results[i-1].start-int64(50*time.Millisecond) {
			t.Errorf("request %d began at the backend %v before request %d: not in order of arrival",
				i, time.Duration(results[i-1].start-r.start), i-1)
		}
		waits = append(waits, max(0, r.latency-service))
	}
	t.Logf("max_conns queue: %d requests of %v on 2 backends × max_conns 1: wait p50 %v p90 %v p99 %v max %v",
		n, service, percentile(waits, 50).Round(time.Millisecond), percentile(waits, 90).Round(time.Millisecond),
		percentile(waits, 99).Round(time.Millisecond), percentile(waits, 100).Round(time.Millisecond))
}

// withMaxConns sets max_conns on every backend line of a config made by httpConfig.
func withMaxConns(cfg string, n int, addrs ...string) string {
	for _, a := range addrs {
		cfg = strings.ReplaceAll(cfg, "      - addr: "+a+"\n", fmt.Sprintf("      - addr: %s\n        max_conns: %d\n", a, n))
	}
	return cfg
}

// A full queue answers 503 at once, a wait past queue.timeout answers 503
// within timeout + 0.5 s; both say when to come back (Retry-After).
func TestQueueOverflowAndTimeout(t *testing.T) {
	_, addrs := startApps(t, 2)
	s, url := start(t, withMaxConns(httpConfig(t, "queue: {max: 2, timeout: 500ms}", addrs...), 1, addrs...))
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	type result struct {
		status     int
		retryAfter string
		took       time.Duration
	}
	get := func(path string) result {
		begin := time.Now()
		resp, err := c.Get(url + path)
		if err != nil {
			t.Error(err)
			return result{}
		}
		resp.Body.Close()
		return result{resp.StatusCode, resp.Header.Get("Retry-After"), time.Since(begin)}
	}
	var wg sync.WaitGroup
	long := make(chan result, 2)
	for range 2 { // hold both slots
		wg.Go(func() { long <- get("/slow?ms=2500") })
	}
	testutil.WaitFor(t, 5*time.Second, "both slots taken", func() bool {
		p := s.Pool("app")
		return p.Backend(addrs[0]).InFlight()+p.Backend(addrs[1]).InFlight() == 2
	})
	queued := make(chan result, 2)
	for range 2 { // fill the queue
		wg.Go(func() { queued <- get("/any") })
	}
	testutil.WaitFor(t, 5*time.Second, "two waiting", func() bool { return s.ups["app"].QueueLen() == 2 })
	over := get("/any")
	if over.status != http.StatusServiceUnavailable || over.retryAfter == "" {
		t.Errorf("queue full: status %d Retry-After %q, want 503 with Retry-After", over.status, over.retryAfter)
	}
	if over.took > 200*time.Millisecond {
		t.Errorf("queue full: answered after %v, want at once", over.took)
	}
	for range 2 {
		r := <-queued
		if r.status != http.StatusServiceUnavailable || r.retryAfter == "" {
			t.Errorf("queue timeout: status %d Retry-After %q, want 503 with Retry-After", r.status, r.retryAfter)
		}
		if r.took < 500*time.Millisecond || r.took > time.Second {
			t.Errorf("queue timeout: answered after %v, want within 500ms + 0.5s", r.took)
		}
	}
	wg.Wait()
	for range 2 {
		if r := <-long; r.status != http.StatusOK {
			t.Errorf("request holding a slot: status %d", r.status)
		}
	}
}

// Backups get traffic only while no primary is up, and give it back as soon
// as one is.
func TestBackupTakeoverAndGiveBack(t *testing.T) {
	apps, addrs := startApps(t, 3)
	cfg := httpConfig(t, "health_check: {type: http, path: /healthz, interval: 200ms, timeout: 100ms, rise: 2, fall: 2}\n"+retryAll, addrs...)
	cfg = strings.ReplaceAll(cfg, "      - addr: "+addrs[2]+"\n", "      - addr: "+addrs[2]+"\n        backup: true\n")
	s, url := start(t, cfg)

	c := testutil.Client()
	sample := func(n int) map[string]int {
		got := map[string]int{}
		for range n {
			st, hdr, _ := testutil.Get(t, c, url+"/any")
			if st != http.StatusOK {
				t.Fatalf("status %d", st)
			}
			got[hdr.Get("X-Backend")]++
		}
		return got
	}
	if got := sample(20); got["b2"] != 0 {
		t.Fatalf("backup served while primaries were up: %v", got)
	}
	apps[0].kill()
	apps[1].kill()
	if got := sample(20); got["b2"] != 20 {
		t.Fatalf("with both primaries dead: %v, want all from the backup b2", got)
	}
	apps[0].start()
	waitState(t, s, addrs[0], backend.StateUp, 2*time.Second)
	if got := sample(20); got["b0"] != 20 {
		t.Fatalf("after a primary came back: %v, want all from b0", got)
	}
}

// A backend that comes back gets a share that ramps up over slow_start: small
// at first, its full share once the window has passed.
func TestSlowStartRamp(t *testing.T) {
	apps, addrs := startApps(t, 2)
	const window = 3 * time.Second
	s, url := start(t, httpConfig(t, `
algorithm: weighted_round_robin
slow_start: 3s
health_check: {type: http, path: /healthz, interval: 300ms, timeout: 250ms, rise: 1, fall: 2}
`+retryAll, addrs...))
	apps[1].kill()
	waitState(t, s, addrs[1], backend.StateDown, 4*time.Second)
	apps[1].start()
	waitState(t, s, addrs[1], backend.StateUp, 4*time.Second)
	up := time.Now()

	const bucket = 500 * time.Millisecond
	const buckets = 8 // 4 s: the 3 s window and one second past it
	var mu sync.Mutex
	var hits, total [buckets]int
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			c := testutil.Client()
			for {
				i := int(time.Since(up) / bucket)
				if i >= buckets {
					return
				}
				st, hdr, _ := testutil.Get(t, c, url+"/any")
				if st != http.StatusOK {
					t.Errorf("status %d", st)
					return
				}
				mu.Lock()
				total[i]++
				if hdr.Get("X-Backend") == "b1" {
					hits[i]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	share := make([]float64, buckets)
	var line strings.Builder
	for i := range buckets {
		if total[i] == 0 {
			t.Fatalf("no requests in bucket %d", i)
		}
		share[i] = float64(hits[i]) / float64(total[i])
		fmt.Fprintf(&line, " %v:%.0f%%(%d)", time.Duration(i)*bucket, 100*share[i], total[i])
	}
	t.Logf("slow start %v, share of the returning backend per %v:%s", window, bucket, line.String())
	if share[0] > 0.2 {
		t.Errorf("first %v: share %.0f%%, want a small fraction (< 20%%)", bucket, 100*share[0])
	}
	if share[3] <= share[0] || share[5] <= share[2] {
		t.Errorf("share does not grow over the window: %v", share)
	}
	for _, i := range []int{6, 7} {
		if share[i] < 0.4 {
			t.Errorf("after the window (bucket %d): share %.0f%%, want its full half", i, 100*share[i])
		}
	}
}

// A draining backend gets no new requests — sticky clients bound to it move
// to another backend — while its requests in flight finish.
func TestDrain(t *testing.T) {
	apps, addrs := startApps(t, 2)
	s, url := start(t, httpConfig(t, "algorithm: round_robin\nsticky: {cookie: srv}", addrs...))
	c := testutil.Client()

	// A sticky client bound to b0.
	var cookie string
	for range 4 {
		st, hdr, _ := testutil.Get(t, c, url+"/any")
		if st == http.StatusOK && hdr.Get("X-Backend") == "b0" {
			cookie = strings.Split(hdr.Get("Set-Cookie"), ";")[0]
			break
		}
	}
	if cookie == "" {
		t.Fatal("no answer from b0 with a sticky cookie")
	}
	// A slow request in flight on b0.
	slow := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", url+"/slow?ms=1000", nil)
		req.Header.Set("Cookie", cookie)
		resp, err := testutil.Client().Do(req)
		if err != nil {
			slow <- 0
			return
		}
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	testutil.WaitFor(t, 5*time.Second, "slow request at b0", func() bool { return apps[0].count("REQ GET /slow") == 1 })

	b, err := s.Pool("app").Drain(addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	if b.State() != backend.StateDraining || b.State().String() != "draining" {
		t.Fatalf("state %s, want draining", b.State())
	}
	before := apps[0].count("REQ")
	for range 10 {
		st, hdr, _ := testutil.Get(t, c, url+"/any", "Cookie", cookie)
		if st != http.StatusOK || hdr.Get("X-Backend") != "b1" {
			t.Fatalf("sticky client after drain: status %d from %q, want 200 from b1", st, hdr.Get("X-Backend"))
		}
		if !strings.HasPrefix(hdr.Get("Set-Cookie"), "srv=") {
			t.Fatalf("sticky client moved without a new cookie")
		}
	}
	if n := apps[0].count("REQ"); n != before {
		t.Fatalf("draining backend got %d new requests", n-before)
	}
	if st := <-slow; st != http.StatusOK {
		t.Fatalf("request in flight on the draining backend: status %d, want 200", st)
	}
	if err := b.WaitIdle(context.Background()); err != nil || b.InFlight() != 0 {
		t.Fatalf("WaitIdle: %v, in flight %d", err, b.InFlight())
	}
}
