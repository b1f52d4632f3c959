package server

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"ballast/internal/backend"
	"ballast/internal/testutil"
)

// serveNamed serves "name\n" on ln until the test ends or ln is closed.
func serveNamed(t *testing.T, ln net.Listener, name string) *http.Server {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name+"\n")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return srv
}

// A backend that dies is marked down by the active check within
// interval × fall (+ slack) and gets no more traffic; when it comes back it is
// marked up within interval × rise (+ slack) and gets traffic again.
func TestActiveHealthCheckDownAndUp(t *testing.T) {
	_, addrs := backends(t, 2)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dyingAddr := ln.Addr().String()
	dying := serveNamed(t, ln, "dying")

	pool := "health_check: {type: http, path: /healthz, interval: 100ms, timeout: 100ms, rise: 2, fall: 2}"
	s, url := start(t, httpConfig(t, pool, addrs[0], addrs[1], dyingAddr))
	b := s.Pool("app").Backend(dyingAddr)
	if c := count(hits(t, url+"/", 9)); c["dying"] != 3 {
		t.Fatalf("before: %v", c)
	}

	dying.Close() // listener closed: connections refused from now on
	killed := time.Now()
	testutil.WaitFor(t, 100*time.Millisecond*2+time.Second, "backend marked down", func() bool {
		return b.State() == backend.StateDown
	})
	t.Logf("marked down %v after it died", time.Since(killed).Round(time.Millisecond))
	if c := count(hits(t, url+"/", 20)); c["dying"] != 0 || c["b0"]+c["b1"] != 20 {
		t.Fatalf("a down backend still got traffic: %v", c)
	}

	// Back on the same address.
	ln2, err := net.Listen("tcp", dyingAddr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", dyingAddr, err)
	}
	serveNamed(t, ln2, "dying")
	back := time.Now()
	testutil.WaitFor(t, 100*time.Millisecond*2+time.Second, "backend marked up", func() bool {
		return b.State() == backend.StateUp
	})
	t.Logf("marked up %v after it returned", time.Since(back).Round(time.Millisecond))
	if c := count(hits(t, url+"/", 9)); c["dying"] != 3 {
		t.Fatalf("a recovered backend gets no traffic: %v", c)
	}
}

// Removing health_check on reload puts the backends it had marked down back
// up: nothing else would ever bring them back.
func TestReloadWithoutHealthCheckRestoresBackends(t *testing.T) {
	_, addrs := backends(t, 1)
	dead := testutil.FreeAddr(t)
	pool := "health_check: {type: tcp, interval: 50ms, timeout: 50ms, rise: 1, fall: 1}"
	text := httpConfig(t, pool, addrs[0], dead)
	s, _ := start(t, text)
	b := s.Pool("app").Backend(dead)
	testutil.WaitFor(t, 2*time.Second, "dead backend marked down", func() bool { return b.State() == backend.StateDown })

	next := strings.Replace(text, "    "+pool+"\n", "", 1)
	if next == text {
		t.Fatal("test bug: health_check line not removed")
	}
	reload(t, s, next)
	if b.State() != backend.StateUp {
		t.Fatalf("state %v after health_check was removed, want up", b.State())
	}
}

func reload(t *testing.T, s *Server, text string) {
	t.Helper()
	cfg := parse(t, text)
	if err := s.Reload(cfg); err != nil {
		t.Fatal(err)
	}
}
