package server

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"ballast/internal/backend"
	"ballast/internal/testutil"
)

// failing starts a backend that answers 500 and counts its requests.
func failing(t *testing.T, name string) (*testutil.Backend, *atomic.Int64) {
	var n atomic.Int64
	b := testutil.NewBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		http.Error(w, name+" is broken", http.StatusInternalServerError)
	})
	return b, &n
}

// statuses sends n GETs and counts the answers by status.
func statuses(t *testing.T, url string, n int) map[int]int {
	c := testutil.Client()
	m := map[int]int{}
	for range n {
		st, _, _ := testutil.Get(t, c, url)
		m[st]++
	}
	return m
}

// A backend that fails live traffic consecutive_failures times in a row is
// ejected: it gets nothing more until eject_for has passed; then it is back,
// and a second ejection lasts twice as long.
func TestPassiveEjection(t *testing.T) {
	_, addrs := backends(t, 2)
	bad, hitsBad := failing(t, "bad")
	s, url := start(t, httpConfig(t, "passive: {consecutive_failures: 3, eject_for: 600ms}", addrs[0], addrs[1], bad.Addr()))
	b := s.Pool("app").Backend(bad.Addr())

	// The ejection starts during the loop, so the loop's start is a lower
	// bound of it: the backend cannot be back before start + eject_for.
	loop := time.Now()
	got := statuses(t, url+"/", 30)
	if hitsBad.Load() != 3 || got[500] != 3 || got[200] != 27 {
		t.Fatalf("bad backend got %d requests, answers %v; want exactly 3 failures before ejection", hitsBad.Load(), got)
	}
	if b.State() != backend.StateEjected {
		t.Fatalf("state %v, want ejected", b.State())
	}
	testutil.WaitFor(t, 3*time.Second, "ejection over", func() bool { return b.State() == backend.StateUp })
	if d := time.Since(loop); d < 580*time.Millisecond {
		t.Fatalf("back %v after the failures began, before eject_for (600ms)", d)
	}

	loop = time.Now()
	statuses(t, url+"/", 30) // fails 3 more times: ejected again, for 1.2s
	if b.State() != backend.StateEjected {
		t.Fatalf("state %v after new failures, want ejected", b.State())
	}
	testutil.WaitFor(t, 5*time.Second, "second ejection over", func() bool { return b.State() == backend.StateUp })
	if d := time.Since(loop); d < 1180*time.Millisecond {
		t.Fatalf("second ejection over %v after the failures began, want at least twice eject_for (1.2s)", d)
	}
}

// max_ejected_percent: with two of three backends failing and a 50 % cap,
// only one is ejected.
func TestPassiveEjectionCap(t *testing.T) {
	_, addrs := backends(t, 1)
	bad1, _ := failing(t, "bad1")
	bad2, _ := failing(t, "bad2")
	s, url := start(t, httpConfig(t, "passive: {consecutive_failures: 2, eject_for: 1m, max_ejected_percent: 50}", addrs[0], bad1.Addr(), bad2.Addr()))
	statuses(t, url+"/", 30)
	n := 0
	for _, a := range []string{bad1.Addr(), bad2.Addr()} {
		if s.Pool("app").Backend(a).State() == backend.StateEjected {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d of 3 backends ejected with a 50%% cap, want 1", n)
	}
}
