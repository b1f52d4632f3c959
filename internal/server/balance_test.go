package server

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ballast/internal/backend"
	"ballast/internal/testutil"
)

// backends starts n named backends ("b0", "b1", …) and returns them with their addresses.
func backends(t *testing.T, n int) ([]*testutil.Backend, []string) {
	bs := make([]*testutil.Backend, n)
	addrs := make([]string, n)
	for i := range bs {
		bs[i] = testutil.NewBackend(t, fmt.Sprintf("b%d", i), nil)
		addrs[i] = bs[i].Addr()
	}
	return bs, addrs
}

// hits sends n GETs and returns the backend names in order of answer.
func hits(t *testing.T, url string, n int, hdr ...string) []string {
	c := testutil.Client()
	out := make([]string, n)
	for i := range out {
		status, _, body := testutil.Get(t, c, url, hdr...)
		if status != http.StatusOK {
			t.Fatalf("request %d: status %d: %s", i, status, body)
		}
		out[i] = strings.TrimSpace(body)
	}
	return out
}

func count(names []string) map[string]int {
	m := map[string]int{}
	for _, n := range names {
		m[n]++
	}
	return m
}

func TestRoundRobinRotatesExactly(t *testing.T) {
	_, addrs := backends(t, 3)
	_, url := start(t, httpConfig(t, "algorithm: round_robin", addrs...))
	got := hits(t, url+"/", 9)
	// The rotation may start anywhere, but then it is strict.
	for i := 3; i < len(got); i++ {
		if got[i] != got[i-3] {
			t.Fatalf("not a strict rotation: %v", got)
		}
	}
	if c := count(got); len(c) != 3 {
		t.Fatalf("want 3 backends used, got %v", c)
	}
}

func TestWeightedRoundRobinThroughProxy(t *testing.T) {
	_, addrs := backends(t, 2)
	cfg := httpConfig(t, "algorithm: weighted_round_robin")
	cfg += fmt.Sprintf("      - addr: %s\n        weight: 3\n      - addr: %s\n", addrs[0], addrs[1])
	_, url := start(t, cfg)
	c := count(hits(t, url+"/", 40))
	if c["b0"] != 30 || c["b1"] != 10 {
		t.Fatalf("weights 3:1 over 40 requests: got %v, want b0=30 b1=10", c)
	}
}

// Every algorithm spreads sequential traffic from one client over all
// backends, except ip_hash, which pins the single client to one.
func TestAlgorithmsSpreadThroughProxy(t *testing.T) {
	for _, alg := range []string{"least_conn", "weighted_least_conn", "least_time", "p2c", "random"} {
		t.Run(alg, func(t *testing.T) {
			_, addrs := backends(t, 3)
			_, url := start(t, httpConfig(t, "algorithm: "+alg, addrs...))
			c := count(hits(t, url+"/", 150))
			if len(c) != 3 {
				t.Fatalf("%s used %d of 3 backends: %v", alg, len(c), c)
			}
		})
	}
	t.Run("ip_hash", func(t *testing.T) {
		_, addrs := backends(t, 3)
		_, url := start(t, httpConfig(t, "algorithm: ip_hash", addrs...))
		if c := count(hits(t, url+"/", 30)); len(c) != 1 {
			t.Fatalf("one client spread over %v, want one backend", c)
		}
	})
}

// least_conn sends new requests away from a backend busy with slow ones.
func TestLeastConnAvoidsBusyBackend(t *testing.T) {
	release := make(chan struct{})
	slow := testutil.NewBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		w.Write([]byte("slow\n"))
	})
	fast := testutil.NewBackend(t, "fast", nil)
	s, url := start(t, httpConfig(t, "algorithm: least_conn", slow.Addr(), fast.Addr()))
	defer close(release)

	// Requests to /slow park on the slow backend (the fast one answers them
	// at once); once one is parked, every new request must go to the idle one.
	var wg sync.WaitGroup
	var answered atomic.Int64 // /slow requests the fast backend answered
	c := testutil.Client()
	for range 6 {
		wg.Go(func() {
			resp, err := c.Get(url + "/slow")
			if err == nil {
				resp.Body.Close()
				answered.Add(1)
			}
		})
	}
	b := s.Pool("app").Backend(slow.Addr())
	// Every /slow request is placed (parked, or answered by the fast one)
	// before the test's own: none of them can tie with it on the way.
	testutil.WaitFor(t, 5*time.Second, "slow requests placed", func() bool {
		return b.InFlight() >= 1 && b.InFlight()+answered.Load() == 6
	})
	got := count(hits(t, url+"/", 20))
	if got["fast"] != 20 {
		t.Fatalf("least_conn sent %d of 20 requests to the busy backend: %v", got["slow"], got)
	}
}

func TestConsistentHashPinsKeys(t *testing.T) {
	_, addrs := backends(t, 4)
	_, url := start(t, httpConfig(t, "algorithm: consistent_hash\nhash_on: header:X-User", addrs...))
	used := map[string]bool{}
	for u := range 40 {
		user := fmt.Sprintf("user-%d", u)
		got := count(hits(t, url+"/", 5, "X-User", user))
		if len(got) != 1 {
			t.Fatalf("%s spread over %v", user, got)
		}
		for k := range got {
			used[k] = true
		}
	}
	if len(used) < 3 {
		t.Fatalf("40 users landed on only %d of 4 backends", len(used))
	}
}

func TestStickyCookie(t *testing.T) {
	_, addrs := backends(t, 3)
	s, url := start(t, httpConfig(t, "algorithm: round_robin\nsticky: {cookie: sid, ttl: 1h}", addrs...))
	c := testutil.Client()

	status, hdr, first := testutil.Get(t, c, url+"/")
	if status != 200 {
		t.Fatal(status)
	}
	set := hdr.Get("Set-Cookie")
	if !strings.HasPrefix(set, "sid=") || !strings.Contains(set, "Max-Age=3600") {
		t.Fatalf("Set-Cookie = %q", set)
	}
	cookie := strings.SplitN(set, ";", 2)[0]
	for range 10 {
		_, hdr, body := testutil.Get(t, c, url+"/", "Cookie", cookie)
		if body != first {
			t.Fatalf("sticky client moved from %q to %q", first, body)
		}
		if hdr.Get("Set-Cookie") != "" {
			t.Fatal("cookie re-set while the backend is fine")
		}
	}

	// The pinned backend goes down: the client moves and gets a new cookie.
	name := strings.TrimSpace(first)
	var pinned *backend.Backend
	for i, a := range addrs {
		if fmt.Sprintf("b%d", i) == name {
			pinned = s.Pool("app").Backend(a)
		}
	}
	pinned.SetState(backend.StateDown)
	_, hdr, moved := testutil.Get(t, c, url+"/", "Cookie", cookie)
	if moved == first {
		t.Fatal("client stayed on a down backend")
	}
	if nc := hdr.Get("Set-Cookie"); nc == "" || strings.SplitN(nc, ";", 2)[0] == cookie {
		t.Fatalf("no new cookie after moving: %q", nc)
	}

	// A forged cookie gets an ordinary pick and a real cookie.
	status, hdr, _ = testutil.Get(t, c, url+"/", "Cookie", "sid=0123456789abcdef")
	if status != 200 || hdr.Get("Set-Cookie") == "" {
		t.Fatalf("forged cookie: status %d, Set-Cookie %q", status, hdr.Get("Set-Cookie"))
	}
}

func TestBackupOnlyWhenPrimariesDown(t *testing.T) {
	_, addrs := backends(t, 2)
	cfg := httpConfig(t, "")
	cfg += fmt.Sprintf("      - addr: %s\n      - addr: %s\n        backup: true\n", addrs[0], addrs[1])
	s, url := start(t, cfg)
	if c := count(hits(t, url+"/", 10)); c["b0"] != 10 {
		t.Fatalf("backup got traffic while the primary is up: %v", c)
	}
	s.Pool("app").Backend(addrs[0]).SetState(backend.StateDown)
	if c := count(hits(t, url+"/", 10)); c["b1"] != 10 {
		t.Fatalf("backup not used with the primary down: %v", c)
	}
	s.Pool("app").Backend(addrs[0]).SetState(backend.StateUp)
	if c := count(hits(t, url+"/", 10)); c["b0"] != 10 {
		t.Fatalf("traffic not given back to the primary: %v", c)
	}
}
