package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ballast/internal/backend"
	"ballast/internal/testutil"
)

// app is a backend running as a real process (testdata/app.py), which a test
// can kill, stop and start again on the same address.
type app struct {
	t    *testing.T
	name string
	addr string

	mu    sync.Mutex
	cmd   *exec.Cmd
	lines []string // its stdout, over every run
}

// startApp starts a test backend process named name on a free address.
func startApp(t *testing.T, name string) *app {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed (scripts/test.sh installs it)")
	}
	a := &app{t: t, name: name, addr: testutil.FreeAddr(t)}
	a.start()
	t.Cleanup(a.kill)
	return a
}

// startApps starts n test backends named b0, b1, ...
func startApps(t *testing.T, n int) ([]*app, []string) {
	apps := make([]*app, n)
	addrs := make([]string, n)
	for i := range n {
		apps[i] = startApp(t, fmt.Sprintf("b%d", i))
		addrs[i] = apps[i].addr
	}
	return apps, addrs
}

// start runs the process and waits until it accepts connections.
func (a *app) start() {
	a.t.Helper()
	_, port, _ := net.SplitHostPort(a.addr)
	cmd := exec.Command("python3", "testdata/app.py", a.name, port)
	// Dies with the test process even if that crashes before its cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		a.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	a.mu.Lock()
	a.cmd = cmd
	a.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			a.mu.Lock()
			a.lines = append(a.lines, sc.Text())
			a.mu.Unlock()
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", a.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("app %s did not start listening on %s: %v", a.name, a.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill ends the process with SIGKILL: the kernel resets its connections and
// closes its listener. It is a no-op when the process is not running.
func (a *app) kill() {
	a.mu.Lock()
	cmd := a.cmd
	a.cmd = nil
	a.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	cmd.Wait()
}

// signal sends sig (SIGSTOP, SIGCONT) to the running process.
func (a *app) signal(sig syscall.Signal) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd != nil {
		a.cmd.Process.Signal(sig)
	}
}

// wait waits for a process that exits by itself (POST /die).
func (a *app) wait() {
	a.mu.Lock()
	cmd := a.cmd
	a.cmd = nil
	a.mu.Unlock()
	if cmd != nil {
		cmd.Wait()
	}
}

// count returns how many stdout lines start with prefix.
func (a *app) count(prefix string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, l := range a.lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// loadResult is what a load run saw.
type loadResult struct {
	mu       sync.Mutex
	ok       int
	failed   []string // one line per failed request
	latency  []time.Duration
	backends map[string]int
}

func (r *loadResult) add(status int, backend string, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err != nil:
		r.failed = append(r.failed, err.Error())
	case status != http.StatusOK:
		r.failed = append(r.failed, fmt.Sprintf("status %d from %q", status, backend))
	default:
		r.ok++
		r.backends[backend]++
	}
	r.latency = append(r.latency, d)
}

// percentile returns the p-th percentile (0-100) of the latencies.
func (r *loadResult) percentile(p float64) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return percentile(r.latency, p)
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

// load sends GET url from clients concurrent keep-alive clients until ctx
// ends or max requests were sent, whichever comes first.
func load(ctx context.Context, url string, clients, max int) *loadResult {
	r := &loadResult{backends: map[string]int{}}
	tr := &http.Transport{MaxIdleConnsPerHost: clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	var sent sync.Mutex
	n := 0
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				sent.Lock()
				n++
				more := n <= max
				sent.Unlock()
				if !more {
					return
				}
				start := time.Now()
				resp, err := c.Get(url)
				if err != nil {
					r.add(0, "", time.Since(start), err)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				r.add(resp.StatusCode, resp.Header.Get("X-Backend"), time.Since(start), nil)
			}
		})
	}
	wg.Wait()
	return r
}

// waitState waits until the backend at addr of pool app is in state want and
// returns how long that took; it fails the test after limit.
func waitState(t *testing.T, s *Server, addr string, want backend.State, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	b := s.Pool("app").Backend(addr)
	for b.State() != want {
		if time.Since(start) > limit {
			t.Fatalf("backend %s still %s after %v, want %s", addr, b.State(), limit, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}
