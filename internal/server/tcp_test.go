package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"ballast/internal/backend"
	"ballast/internal/balancer"
	"ballast/internal/testutil"
)

// tcpEcho is a TCP backend on 127.0.0.1: it greets each connection with
// "NAME\n", echoes until the client half-closes, then answers "bye NAME\n"
// and closes. Closing ln makes it refuse new connections.
type tcpEcho struct {
	name string
	ln   net.Listener
}

func newTCPEcho(t *testing.T, name string) *tcpEcho {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, name+"\n")
				io.Copy(c, c)
				io.WriteString(c, "bye "+name+"\n")
			}()
		}
	}()
	return &tcpEcho{name: name, ln: ln}
}

func (e *tcpEcho) Addr() string { return e.ln.Addr().String() }

// tcpConfig is a config with one tcp listener "db" in front of pool "db" and
// an admin listener. pool is the indented YAML of the pool without its
// backends, limits the listener's limits (flow YAML, or ""), and each backend
// the flow YAML of one backend ({addr: ..., max_conns: 1}).
func tcpConfig(t *testing.T, limits, pool string, backends ...string) (cfg, adminAddr string) {
	t.Helper()
	adminAddr = testutil.FreeAddr(t)
	var b strings.Builder
	fmt.Fprintf(&b, "shutdown_timeout: 5s\nadmin: {listen: %s}\nlisteners:\n  - name: db\n    listen: %s\n    protocol: tcp\n    pool: db\n", adminAddr, testutil.FreeAddr(t))
	if limits != "" {
		fmt.Fprintf(&b, "    limits: %s\n", limits)
	}
	b.WriteString("pools:\n  db:\n")
	for line := range strings.SplitSeq(strings.TrimSpace(pool), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			fmt.Fprintf(&b, "    %s\n", line)
		}
	}
	b.WriteString("    backends:\n")
	for _, be := range backends {
		fmt.Fprintf(&b, "      - %s\n", be)
	}
	return b.String(), adminAddr
}

// backendAt is the flow YAML of a plain backend at a.
func backendAt(a string) string { return "{addr: " + a + "}" }

// tcpConn is a client connection to a tcp listener.
type tcpConn struct {
	t *testing.T
	*net.TCPConn
	br *bufio.Reader
}

func dialTCP(t *testing.T, s *Server) *tcpConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr("db").String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &tcpConn{t: t, TCPConn: c.(*net.TCPConn), br: bufio.NewReader(c)}
}

func (c *tcpConn) line() string {
	c.t.Helper()
	s, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %q, %v", s, err)
	}
	return strings.TrimSuffix(s, "\n")
}

func (c *tcpConn) roundTrip(msg string) {
	c.t.Helper()
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		c.t.Fatalf("write: %v", err)
	}
	if got := c.line(); got != msg {
		c.t.Fatalf("echo: got %q, want %q", got, msg)
	}
}

// closedWithin waits up to d for the connection to be closed by ballast.
func (c *tcpConn) closedWithin(d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	n, err := c.br.Read(make([]byte, 1))
	if n > 0 {
		c.t.Fatal("unexpected byte while waiting for the close")
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

func TestTCPModeEchoAndHalfClose(t *testing.T) {
	e := newTCPEcho(t, "e0")
	cfg, _ := tcpConfig(t, "", "", backendAt(e.Addr()))
	s, _ := start(t, cfg)
	c := dialTCP(t, s)
	if got := c.line(); got != "e0" {
		t.Fatalf("greeting %q", got)
	}
	c.roundTrip("hello")
	io.WriteString(c, "last\n")
	c.CloseWrite() // the backend sees EOF and still answers
	rest, err := io.ReadAll(c.br)
	if err != nil || string(rest) != "last\nbye e0\n" {
		t.Fatalf("after CloseWrite: %q, %v", rest, err)
	}
}

// consistent_hash on source_ip keeps a client on the backend its address
// hashes to; every connection from 127.0.0.1 lands there.
func TestTCPModeHashSourceIP(t *testing.T) {
	var bs, names []string
	for i := range 4 {
		e := newTCPEcho(t, fmt.Sprint("e", i))
		bs = append(bs, backendAt(e.Addr()))
		names = append(names, e.Addr())
	}
	cfg, _ := tcpConfig(t, "", "algorithm: consistent_hash\nhash_on: source_ip", bs...)
	s, _ := start(t, cfg)
	want, _ := s.Pool("db").Pick(&balancer.Request{ClientIP: netip.MustParseAddr("127.0.0.1")})
	wantName := ""
	for i, a := range names {
		if a == want.Addr {
			wantName = fmt.Sprint("e", i)
		}
	}
	for i := range 8 {
		c := dialTCP(t, s)
		if got := c.line(); got != wantName {
			t.Fatalf("connection %d went to %s, want %s", i, got, wantName)
		}
		c.Close()
	}
}

// A connection beyond max_conns waits in the pool's queue and gets the slot
// when the connection holding it ends.
func TestTCPModeMaxConnsQueue(t *testing.T) {
	e := newTCPEcho(t, "e0")
	cfg, _ := tcpConfig(t, "", "queue: {max: 5, timeout: 5s}", "{addr: "+e.Addr()+", max_conns: 1}")
	s, _ := start(t, cfg)
	b := s.Pool("db").Backend(e.Addr())

	first := dialTCP(t, s)
	first.line()
	second := dialTCP(t, s)
	io.WriteString(second, "waited\n")
	second.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _ := second.br.Read(make([]byte, 1)); n != 0 {
		t.Fatal("a second connection reached a backend with max_conns 1")
	}
	if b.InFlight() != 1 {
		t.Fatalf("in flight %d, want 1", b.InFlight())
	}
	first.Close()
	second.SetReadDeadline(time.Now().Add(5 * time.Second))
	if g, m := second.line(), second.line(); g != "e0" || m != "waited" {
		t.Fatalf("after the slot freed: %q, %q", g, m)
	}
}

// Draining a backend through the admin API: new connections go to the
// others, the open one continues.
func TestTCPModeDrain(t *testing.T) {
	e0, e1 := newTCPEcho(t, "e0"), newTCPEcho(t, "e1")
	cfg, adm := tcpConfig(t, "", "", backendAt(e0.Addr()), backendAt(e1.Addr()))
	s, _ := start(t, cfg)

	open := dialTCP(t, s)
	name := open.line()
	target := map[string]string{"e0": e0.Addr(), "e1": e1.Addr()}[name]
	if st := call(t, "POST", "http://"+adm+"/api/v1/pools/db/backends/"+url.PathEscape(target)+"/drain", "", nil, nil); st != http.StatusOK {
		t.Fatalf("drain: status %d", st)
	}
	for i := range 4 {
		c := dialTCP(t, s)
		if got := c.line(); got == name {
			t.Fatalf("connection %d went to draining %s", i, name)
		}
		c.Close()
	}
	open.roundTrip("still served")
	b := s.Pool("db").Backend(target)
	if b.State() != backend.StateDraining || b.InFlight() != 1 {
		t.Fatalf("drained backend: state %v, in flight %d", b.State(), b.InFlight())
	}
}

// An active tcp health check marks a backend that stopped listening down;
// new connections then go to the others without even trying it.
func TestTCPModeHealthCheck(t *testing.T) {
	live, dying := newTCPEcho(t, "live"), newTCPEcho(t, "dying")
	cfg, _ := tcpConfig(t, "", "health_check: {type: tcp, interval: 50ms, timeout: 50ms, rise: 1, fall: 2}",
		backendAt(live.Addr()), backendAt(dying.Addr()))
	s, _ := start(t, cfg)
	seen := map[string]int{}
	for range 4 {
		c := dialTCP(t, s)
		seen[c.line()]++
		c.Close()
	}
	if seen["live"] != 2 || seen["dying"] != 2 {
		t.Fatalf("before: %v", seen)
	}

	dying.ln.Close() // refuses connections from now on; no traffic until it is marked down
	b := s.Pool("db").Backend(dying.Addr())
	testutil.WaitFor(t, 3*time.Second, "dying backend marked down", func() bool { return b.State() == backend.StateDown })
	failures := b.Failures()
	for i := range 6 {
		c := dialTCP(t, s)
		if got := c.line(); got != "live" {
			t.Fatalf("connection %d went to %q", i, got)
		}
		c.Close()
	}
	if b.Failures() != failures {
		t.Fatalf("a backend marked down was still tried: failures %d → %d", failures, b.Failures())
	}
}

// ballast_backend_in_flight counts a TCP backend's open connections.
func TestTCPModeInFlightMetric(t *testing.T) {
	e := newTCPEcho(t, "e0")
	cfg, adm := tcpConfig(t, "", "", backendAt(e.Addr()))
	s, _ := start(t, cfg)
	gauge := func() string {
		resp, err := http.Get("http://" + adm + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for line := range strings.SplitSeq(string(body), "\n") {
			if strings.HasPrefix(line, `ballast_backend_in_flight{backend="`+e.Addr()+`",pool="db"} `) {
				return line[strings.LastIndexByte(line, ' ')+1:]
			}
		}
		t.Fatalf("no in_flight gauge for %s in /metrics", e.Addr())
		return ""
	}
	a, b := dialTCP(t, s), dialTCP(t, s)
	a.line()
	b.line()
	if got := gauge(); got != "2" {
		t.Fatalf("in_flight %s with two open connections", got)
	}
	a.Close()
	b.Close()
	testutil.WaitFor(t, 5*time.Second, "in_flight 0", func() bool { return gauge() == "0" })
}

// limits.idle_timeout closes a TCP connection with no byte either way for
// that long, and leaves a busy one alone.
func TestTCPModeIdleTimeout(t *testing.T) {
	const idle = time.Second
	e := newTCPEcho(t, "e0")
	cfg, _ := tcpConfig(t, "{idle_timeout: 1s}", "", backendAt(e.Addr()))
	s, _ := start(t, cfg)

	quiet, busy := dialTCP(t, s), dialTCP(t, s)
	quiet.line()
	busy.line()
	last := time.Now()
	for i := range 6 { // 1.5 s, a byte every quarter of the idle timeout
		busy.roundTrip(fmt.Sprint("tick ", i))
		time.Sleep(idle / 4)
	}
	if !quiet.closedWithin(2 * time.Second) {
		t.Fatalf("quiet connection still open %v after its last byte: limits.idle_timeout not applied "+
			"(newListener must call l.tcp.SetIdleTimeout, and the conn the TCP engine gets must expose its *net.TCPConn)", time.Since(last))
	}
	busy.roundTrip("still open")
}
