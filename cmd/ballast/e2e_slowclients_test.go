//go:build linux

package main

import (
	"bufio"
	"debug/buildinfo"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ballast/internal/testutil"
)

// Slow and idle clients must not starve a normal one: the figures the README
// quotes come from this test (go test -v -run SlowClients ./cmd/ballast/).
const (
	idleConns    = 10_000 // keep-alive connections that served one request, then wait
	trickleConns = 1_000  // connections sending a request header one byte per second
	probes       = 200    // normal requests, each on a new connection, during the attack
	probeBound   = 100 * time.Millisecond
)

// TestE2ESlowClients runs the real binary under 10,000 idle keep-alive
// connections and 1,000 slowloris connections, and measures a normal client's
// latency meanwhile (each request on a new connection: accept, routing,
// proxying) and ballast's memory per idle connection.
func TestE2ESlowClients(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc/PID/status to measure memory")
	}
	raiseFileLimit(t, idleConns+trickleConns+1000)
	// The figures are those users see only if the binary is not built with
	// -race (TestMain builds it without, even under go test -race).
	if bi, err := buildinfo.ReadFile(ballastBin); err != nil {
		t.Fatal(err)
	} else if slices.ContainsFunc(bi.Settings, func(s debug.BuildSetting) bool { return s.Key == "-race" && s.Value == "true" }) {
		t.Fatal("the ballast binary under test is built with -race")
	}
	deadline := time.Now().Add(45 * time.Second) // the whole test stays well under 60 s

	backend := newCannedBackend(t)
	dir := t.TempDir()
	listen := testutil.FreeAddr(t)
	// max_conns above the attack: the cap is not what this test is about.
	cfg := strings.Replace(httpConfig(listen, backend), "    routes:\n", "    limits: {max_conns: 20000}\n    routes:\n", 1)
	writeFile(t, filepath.Join(dir, "ballast.yaml"), cfg)
	p := startBallast(t, dir, "run", "-c", "ballast.yaml")
	p.waitListening(listen)
	for range 20 { // warm up: pools, buffers, the backend connections
		if _, err := probe(listen); err != nil {
			t.Fatalf("warm-up request: %v", err)
		}
	}
	before := rss(t, p.pid())

	idle := openIdle(t, listen, deadline)
	time.Sleep(300 * time.Millisecond) // let the goroutines park and release their buffers
	after := rss(t, p.pid())
	perConn := float64(after-before) / idleConns / 1024
	t.Logf("ballast VmRSS %.1f MiB before, %.1f MiB with %d idle keep-alive connections: %.2f KiB per idle connection",
		mib(before), mib(after), len(idle), perConn)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	trickling := startTrickle(t, listen, stop, &wg, deadline)
	defer func() {
		close(stop)
		wg.Wait()
	}()
	select { // every slowloris connection open and sending
	case <-trickling:
	case <-time.After(time.Until(deadline)):
		t.Fatal("slowloris connections not open in time")
	}
	// The normal client is measured against the attack in its steady state,
	// not against the burst of 1,000 connections arriving at once.
	time.Sleep(2 * time.Second)
	// This process (client and backend, built with -race) must not add its
	// own garbage collection pauses to what is measured of ballast.
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))

	// A starved client is starved every time. The machine the tests run on
	// may be shared, though, and a stall of the whole machine can spoil one
	// round: only a second round over the bound fails the test.
	for round := 1; ; round++ {
		worst := measureProbes(t, listen, deadline)
		if worst < probeBound {
			break
		}
		if round == 2 {
			t.Errorf("slowest normal request took %v, want < %v", worst, probeBound)
			break
		}
		t.Logf("slowest normal request took %v (bound %v): measuring again", worst, probeBound)
	}

	// The idle connections are still open and still serve.
	for _, c := range idle[:10] {
		if _, err := roundTrip(c, bufio.NewReader(c)); err != nil {
			t.Errorf("an idle keep-alive connection no longer serves: %v", err)
			break
		}
	}
}

// measureProbes times probes normal requests one after the other, logs their
// p50, p99 and max, and returns the max.
func measureProbes(t *testing.T, addr string, deadline time.Time) time.Duration {
	lat := make([]time.Duration, 0, probes)
	for range probes {
		if time.Now().After(deadline) {
			t.Fatalf("out of time after %d normal requests", len(lat))
		}
		d, err := probe(addr)
		if err != nil {
			t.Fatalf("normal request %d during the attack: %v", len(lat)+1, err)
		}
		lat = append(lat, d)
	}
	slices.Sort(lat)
	p50, p99, worst := lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	t.Logf("%d normal requests (new connection each) during %d idle + %d slowloris connections: p50 %v, p99 %v, max %v",
		probes, idleConns, trickleConns, p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), worst.Round(10*time.Microsecond))
	return worst
}

// attackDialer opens the idle and slowloris connections. TCP keep-alive is
// off on this side: 11,000 connections opened within seconds would send their
// probes in one burst, an artefact of the test (ballast's side keeps Go's
// default).
var attackDialer = net.Dialer{Timeout: 5 * time.Second, KeepAlive: -1}

// raiseFileLimit raises the soft RLIMIT_NOFILE to the hard one, or skips the
// test when the hard limit is below need. Calling Setrlimit also makes the
// ballast child inherit the raised limit (os/exec otherwise restores the
// limit the process started with).
func raiseFileLimit(t *testing.T, need uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Max < need {
		t.Skipf("needs %d open files (test and ballast each); the hard RLIMIT_NOFILE is %d", need, lim.Max)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
}

// newCannedBackend is a minimal HTTP/1.1 backend: every request gets the same
// small response. Raw rather than net/http, to keep the (race-instrumented)
// test process's share of the latency small.
func newCannedBackend(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	const resp = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n\r\nok\n"
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if _, err := io.WriteString(c, resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func rss(t *testing.T, pid int) int64 {
	v, err := procStatus(pid, "VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

const getReq = "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n"

// roundTrip sends one GET on c and reads its response whole.
func roundTrip(c net.Conn, br *bufio.Reader) (int, error) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, getReq); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	return resp.StatusCode, nil
}

// probe is one normal client's request on a new connection; it returns the
// time from dialing to the end of the response.
func probe(addr string) (time.Duration, error) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if _, err := roundTrip(c, bufio.NewReaderSize(c, 512)); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// openIdle opens idleConns keep-alive connections, each served one request.
// They are closed when the test ends.
func openIdle(t *testing.T, addr string, deadline time.Time) []net.Conn {
	conns := make([]net.Conn, idleConns)
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	const workers = 64
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < idleConns; i += workers {
				if time.Now().After(deadline) {
					errs <- fmt.Errorf("out of time after %d idle connections", i)
					return
				}
				c, err := attackDialer.Dial("tcp", addr)
				if err != nil {
					errs <- fmt.Errorf("idle connection %d: %w", i, err)
					return
				}
				conns[i] = c
				if _, err := roundTrip(c, bufio.NewReaderSize(c, 512)); err != nil {
					errs <- fmt.Errorf("idle connection %d: %w", i, err)
					return
				}
				c.SetDeadline(time.Time{})
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	return conns
}

// startTrickle opens trickleConns connections that send a request header one
// byte per second (a header far too long to finish during the test), from 10
// goroutines, until stop is closed or the deadline passes. The channel it
// returns is closed once every connection is open and has sent a byte. A
// write error (ballast closing a connection after read_header_timeout) ends
// that connection's trickle.
func startTrickle(t *testing.T, addr string, stop <-chan struct{}, wg *sync.WaitGroup, deadline time.Time) <-chan struct{} {
	header := "GET /slow HTTP/1.1\r\nHost: app.test\r\nX-Pad: " + strings.Repeat("a", 100)
	const groups = 10
	ready := make(chan struct{})
	var opened sync.WaitGroup
	opened.Add(groups)
	for g := range groups {
		wg.Go(func() {
			var once sync.Once
			started := func() { once.Do(opened.Done) }
			var conns []net.Conn
			defer func() {
				started()
				for _, c := range conns {
					c.Close()
				}
			}()
			for range trickleConns / groups {
				c, err := attackDialer.Dial("tcp", addr)
				if err != nil {
					t.Errorf("slowloris connection: %v", err)
					break
				}
				conns = append(conns, c)
			}
			open := make([]bool, len(conns))
			for i := range open {
				open[i] = true
			}
			// Each group starts at its own offset within the second.
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			time.Sleep(time.Duration(g) * time.Second / groups)
			for k := 0; k < len(header) && time.Now().Before(deadline); k++ {
				for i, c := range conns {
					if open[i] {
						c.SetWriteDeadline(time.Now().Add(time.Second))
						if _, err := c.Write([]byte{header[k]}); err != nil {
							open[i] = false
						}
					}
				}
				started()
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		})
	}
	go func() { opened.Wait(); close(ready) }()
	return ready
}
