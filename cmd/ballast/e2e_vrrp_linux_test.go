package main

// End-to-end test of cluster.vrrp: two real ballast processes in network
// namespaces share a virtual IP, and a client in a third namespace sends a
// request to it every 10 ms while the master is killed, stopped, cut off, or
// comes back. The topology is private to each subtest (namespaces "sw" with a
// bridge, "a" and "b" for the ballast nodes, "c" for the client, addresses in
// 10.78.0.0/24) and is deleted in t.Cleanup; nothing touches the host's own
// network. Backends and the client are this test binary re-executed under
// `ip netns exec` in a helper mode chosen by an environment variable (see
// init below: init runs before TestMain, which cannot be extended from here).

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	vrrpModeEnv = "BALLAST_E2E_VRRP_MODE" // "backend" or "client"
	vrrpArgEnv  = "BALLAST_E2E_VRRP_ARG"  // backend: "ADDR NAME"; client: "URL"

	vrrpIface    = "eth0" // each node's veth into the bridge
	vrrpVIP      = "10.78.0.100"
	vrrpVIPCIDR  = vrrpVIP + "/24"
	vrrpBackend  = "127.0.0.1:9001" // each node's backend, inside its namespace
	vrrpListen   = "0.0.0.0:8080"
	vrrpTick     = 10 * time.Millisecond  // the client's request interval
	vrrpReqLimit = 200 * time.Millisecond // the client's per-request timeout

	vrrpMasterLine = `msg="vrrp state" state=master`
	vrrpBackupLine = `msg="vrrp state" state=backup`
)

// The advert interval of the nodes: 100ms, or BALLAST_VRRP_ADVERT (e.g. 1s,
// to measure the default interval), and the bounds that follow from it.
var (
	vrrpAdvert = advertFromEnv()
	// The backup's skew (priority 100): (256-100)/256 × advert.
	vrrpSkew = vrrpAdvert * 156 / 256
	// The bound for SIGKILL and link down: 3 × advert + skew + 50ms
	// (at 100ms adverts 411ms, "under 0.42s"), plus one tick of the client's
	// sampling.
	vrrpCrashBound = 3*vrrpAdvert + vrrpSkew + 50*time.Millisecond + vrrpTick
	// A graceful stop: the backup takes over after its skew (at 100ms
	// adverts 61ms, the bound 0.1s), with room for a lost tick.
	vrrpGracefulBound = vrrpSkew + 40*time.Millisecond + vrrpTick
)

func advertFromEnv() time.Duration {
	if v := os.Getenv("BALLAST_VRRP_ADVERT"); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d >= 10*time.Millisecond {
			return d
		}
	}
	return 100 * time.Millisecond
}

func init() {
	switch os.Getenv(vrrpModeEnv) {
	case "":
		return
	case "backend":
		os.Exit(vrrpBackendMain(os.Getenv(vrrpArgEnv)))
	case "client":
		os.Exit(vrrpClientMain(os.Getenv(vrrpArgEnv)))
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", vrrpModeEnv, os.Getenv(vrrpModeEnv))
		os.Exit(2)
	}
}

// vrrpBackendMain serves 200 and NAME on ADDR until killed; it prints
// "listening" once the socket is bound.
func vrrpBackendMain(arg string) int {
	addr, name, ok := strings.Cut(arg, " ")
	if !ok {
		fmt.Fprintf(os.Stderr, "backend: want \"ADDR NAME\", got %q\n", arg)
		return 2
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "backend:", err)
		return 1
	}
	fmt.Println("listening")
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, name)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	fmt.Fprintln(os.Stderr, "backend:", srv.Serve(ln))
	return 1
}

// vrrpClientMain starts a GET of URL every 10ms, each on a new connection
// with a 200ms timeout, until its stdin is closed (at most 60s), then waits
// for the requests in flight. One line per request on stdout:
//
//	R START_UNIX_MICRO END_UNIX_MICRO STATUS|ERR BODY-OR-ERROR
func vrrpClientMain(url string) int {
	stop := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	tr := &http.Transport{ // Proxy nil: never an environment proxy
		DialContext:       (&net.Dialer{Timeout: vrrpReqLimit}).DialContext,
		DisableKeepAlives: true,
	}
	c := &http.Client{Transport: tr, Timeout: vrrpReqLimit}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	emit := func(start, end time.Time, status, text string) {
		text = strings.Join(strings.Fields(text), " ")
		if len(text) > 200 {
			text = text[:200]
		}
		mu.Lock()
		fmt.Fprintf(out, "R %d %d %s %s\n", start.UnixMicro(), end.UnixMicro(), status, text)
		out.Flush()
		mu.Unlock()
	}
	var wg sync.WaitGroup
	tick := time.NewTicker(vrrpTick)
	defer tick.Stop()
	limit := time.After(60 * time.Second)
loop:
	for {
		select {
		case <-stop:
			break loop
		case <-limit:
			break loop
		case <-tick.C:
		}
		wg.Go(func() {
			start := time.Now()
			resp, err := c.Get(url)
			if err != nil {
				emit(start, time.Now(), "ERR", err.Error())
				return
			}
			body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if err != nil {
				emit(start, time.Now(), "ERR", "body: "+err.Error())
				return
			}
			emit(start, time.Now(), strconv.Itoa(resp.StatusCode), string(body))
		})
	}
	wg.Wait()
	return 0
}

// vrrpTopo is one subtest's private network.
type vrrpTopo struct {
	t   *testing.T
	ns  map[string]string // role ("sw", "a", "b", "c") -> namespace name
	dir string            // config files
}

var vrrpSeq atomic.Int32 // makes namespace names unique within this process

func vrrpRequire(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root (creates network namespaces; ballast adds addresses and opens raw sockets)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipped: needs the ip command (iproute2) to create network namespaces")
	}
}

// newVRRPTopo builds the switch namespace with bridge br0 and the
// namespaces a (10.78.0.1), b (10.78.0.2) and c (10.78.0.9), each with a veth
// eth0 plugged into the bridge and lo up.
func newVRRPTopo(t *testing.T) *vrrpTopo {
	t.Helper()
	vrrpRequire(t)
	tp := &vrrpTopo{t: t, ns: map[string]string{}, dir: t.TempDir()}
	prefix := fmt.Sprintf("bve2e%d-%d-", os.Getpid(), vrrpSeq.Add(1))
	sw := prefix + "sw"
	if out, err := exec.Command("ip", "netns", "add", sw).CombinedOutput(); err != nil {
		t.Skipf("skipped: cannot create a network namespace (needs root with CAP_SYS_ADMIN and iproute2): %v: %s", err, out)
	}
	tp.cleanupNetns(sw)
	tp.ns["sw"] = sw
	tp.ip("-n", sw, "link", "set", "lo", "up")
	tp.ip("-n", sw, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	tp.ip("-n", sw, "link", "set", "br0", "up")
	for _, r := range []struct{ role, addr string }{{"a", "10.78.0.1/24"}, {"b", "10.78.0.2/24"}, {"c", "10.78.0.9/24"}} {
		ns := prefix + r.role
		tp.ip("netns", "add", ns)
		tp.cleanupNetns(ns)
		tp.ns[r.role] = ns
		port := "p" + r.role
		tp.ip("-n", sw, "link", "add", port, "type", "veth", "peer", "name", vrrpIface, "netns", ns)
		tp.ip("-n", sw, "link", "set", port, "master", "br0", "up")
		tp.ip("-n", ns, "addr", "add", r.addr, "dev", vrrpIface)
		tp.ip("-n", ns, "link", "set", vrrpIface, "up")
		tp.ip("-n", ns, "link", "set", "lo", "up")
	}
	return tp
}

// cleanupNetns deletes namespace name when the test ends; its veth ends go
// with it. Cleanups run last-in first-out, so the processes started later
// in the namespace are killed first.
func (tp *vrrpTopo) cleanupNetns(name string) {
	tp.t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			tp.t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
}

func (tp *vrrpTopo) ip(args ...string) {
	tp.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		tp.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// helperCmd is this test binary in helper mode inside role's namespace. The
// helper dies with the test process (Pdeathsig); `ip netns exec` execs the
// command in place, so the PID is the helper's own.
func (tp *vrrpTopo) helperCmd(role, mode, arg string) *exec.Cmd {
	tp.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		tp.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", tp.ns[role], exe)
	cmd.Env = append(os.Environ(), vrrpModeEnv+"="+mode, vrrpArgEnv+"="+arg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// vrrpHelper is a running helper process.
type vrrpHelper struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stderr syncBuffer
	done   chan struct{}
}

// stop kills the helper by its PID and waits (at most 5s) for it.
func (h *vrrpHelper) stop() {
	select {
	case <-h.done:
		return
	default:
	}
	_ = h.cmd.Process.Kill()
	select {
	case <-h.done:
	case <-time.After(5 * time.Second):
		h.t.Errorf("%s (pid %d) did not exit after SIGKILL", h.name, h.cmd.Process.Pid)
	}
}

// startBackend runs a backend answering 200 and role's name on
// 127.0.0.1:9001 inside role's namespace, and waits until it listens.
func (tp *vrrpTopo) startBackend(role string) *vrrpHelper {
	t := tp.t
	t.Helper()
	h := &vrrpHelper{t: t, name: "backend " + role, done: make(chan struct{})}
	h.cmd = tp.helperCmd(role, "backend", vrrpBackend+" "+role)
	h.cmd.Stderr = &h.stderr
	stdout, err := h.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.cmd.Start(); err != nil {
		t.Fatalf("start backend %s: %v", role, err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "listening" {
				close(ready)
			}
		}
		_ = h.cmd.Wait()
		close(h.done)
	}()
	t.Cleanup(h.stop)
	select {
	case <-ready:
	case <-h.done:
		t.Fatalf("backend %s exited: %s", role, h.stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("backend %s not listening after 10s: %s", role, h.stderr.String())
	}
	return h
}

// startNode runs the real ballast binary in role's namespace with a listener
// on 0.0.0.0:8080, pool app on the namespace's backend and cluster.vrrp on
// eth0 with the given priority. It reuses proc (e2e_main_test.go) for the
// process's output, signals and exit.
func (tp *vrrpTopo) startNode(role string, priority int) *proc {
	t := tp.t
	t.Helper()
	cfg := filepath.Join(tp.dir, "ballast-"+role+".yaml")
	writeFile(t, cfg, fmt.Sprintf(`shutdown_timeout: 5s
listeners:
  - name: web
    listen: %s
    routes:
      - pool: app
pools:
  app:
    algorithm: round_robin
    backends:
      - addr: %s
    health_check:
      path: /
      interval: 200ms
      timeout: 150ms # the default 1s may not exceed the interval
      rise: 1
cluster:
  vrrp:
    interface: %s
    virtual_router_id: 42
    priority: %d
    advert_interval: %s
    virtual_ips: [%s]
`, vrrpListen, vrrpBackend, vrrpIface, priority, vrrpAdvert, vrrpVIPCIDR))
	p := &proc{t: t, done: make(chan struct{})}
	p.cmd = exec.Command("ip", "netns", "exec", tp.ns[role], ballastBin, "run", "-c", cfg,
		"-pid-file", filepath.Join(tp.dir, role+".pid"))
	p.cmd.Stdout = &p.stdout
	p.cmd.Stderr = &p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start ballast in %s: %v", role, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			p.cmd.Process.Kill() // by PID: `ip netns exec` became ballast
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Errorf("ballast %s (pid %d) did not exit after SIGKILL", role, p.pid())
			}
		}
		if t.Failed() {
			t.Logf("ballast %s (priority %d) stderr:\n%s", role, priority, p.stderr.String())
		}
	})
	return p
}

// waitLog waits up to limit for p's stderr to contain sub, failing at once
// if p exits first.
func waitLog(p *proc, name string, limit time.Duration, sub string) {
	p.t.Helper()
	end := time.Now().Add(limit)
	for !strings.Contains(p.stderr.String(), sub) {
		if p.exited() {
			p.t.Fatalf("ballast %s exited before logging %q; stderr:\n%s", name, sub, p.stderr.String())
		}
		if time.Now().After(end) {
			p.t.Fatalf("ballast %s did not log %q within %v; stderr:\n%s", name, sub, limit, p.stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// vrrpResult is one request of the client.
type vrrpResult struct {
	start, end time.Time
	status     int    // 0: no response
	text       string // the body, or the error
}

func (r vrrpResult) ok() bool { return r.status == http.StatusOK }

func (r vrrpResult) String() string {
	st := "ERR"
	if r.status != 0 {
		st = strconv.Itoa(r.status)
	}
	return fmt.Sprintf("%s +%v %s %q", r.start.Format("15:04:05.000"), r.end.Sub(r.start).Round(time.Millisecond), st, r.text)
}

// vrrpClient is the client helper running in namespace c.
type vrrpClient struct {
	vrrpHelper
	stdin   io.WriteCloser
	mu      sync.Mutex
	results []vrrpResult
	bad     []string // unparsable lines
}

// startClient starts the client against http://VIP:8080/.
func (tp *vrrpTopo) startClient() *vrrpClient {
	t := tp.t
	t.Helper()
	c := &vrrpClient{vrrpHelper: vrrpHelper{t: t, name: "client", done: make(chan struct{})}}
	c.cmd = tp.helperCmd("c", "client", "http://"+net.JoinHostPort(vrrpVIP, "8080")+"/")
	c.cmd.Stderr = &c.stderr
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start client: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.record(sc.Text())
		}
		_ = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(c.vrrpHelper.stop)
	return c
}

func (c *vrrpClient) record(line string) {
	f := strings.SplitN(line, " ", 5)
	var r vrrpResult
	var err error
	if len(f) < 4 || f[0] != "R" {
		err = fmt.Errorf("bad line")
	}
	var s, e int64
	if err == nil {
		s, err = strconv.ParseInt(f[1], 10, 64)
	}
	if err == nil {
		e, err = strconv.ParseInt(f[2], 10, 64)
	}
	if err == nil && f[3] != "ERR" {
		r.status, err = strconv.Atoi(f[3])
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.bad = append(c.bad, line)
		return
	}
	r.start, r.end = time.UnixMicro(s), time.UnixMicro(e)
	if len(f) == 5 {
		r.text = f[4]
	}
	c.results = append(c.results, r)
}

// waitAnswer waits up to limit until a request started at or after since got
// 200 with body want, and returns its start.
func (c *vrrpClient) waitAnswer(limit time.Duration, since time.Time, want string) time.Time {
	c.t.Helper()
	end := time.Now().Add(limit)
	for {
		c.mu.Lock()
		for _, r := range c.results {
			if r.ok() && r.text == want && !r.start.Before(since) {
				c.mu.Unlock()
				return r.start
			}
		}
		n := len(c.results)
		var last string
		if n > 0 {
			last = c.results[n-1].String()
		}
		c.mu.Unlock()
		if time.Now().After(end) {
			c.t.Fatalf("client: no 200 %q within %v (%d requests, last %s); stderr: %s", want, limit, n, last, c.stderr.String())
		}
		select {
		case <-c.done:
			c.t.Fatalf("client exited: %s", c.stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// finish closes the client's stdin, waits (at most 5s) for its requests in
// flight and its exit, and returns every result in order of start.
func (c *vrrpClient) finish() []vrrpResult {
	c.t.Helper()
	c.stdin.Close()
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		c.t.Fatalf("client did not exit within 5s of its stdin closing")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.bad) > 0 {
		c.t.Errorf("client printed %d unparsable lines, first %q", len(c.bad), c.bad[0])
	}
	rs := slices.Clone(c.results)
	slices.SortStableFunc(rs, func(x, y vrrpResult) int { return x.start.Compare(y.start) })
	return rs
}

// vrrpOutage summarises the client's requests (in order of start).
type vrrpOutage struct {
	requests  int
	failed    int // not 200: errors and error statuses
	status503 int
	runs      int           // separate runs of failed requests
	outage    time.Duration // start of the first failure to the start of the first success after the last one
	firstFail time.Time
	recovered time.Time // start of the first success after the last failure (zero if none)
	after     []string  // bodies of successes after the recovery, distinct, in order
}

func analyzeVRRP(rs []vrrpResult) vrrpOutage {
	var o vrrpOutage
	o.requests = len(rs)
	lastFail := -1
	prevFailed := false
	for i, r := range rs {
		if r.ok() {
			prevFailed = false
			continue
		}
		o.failed++
		if r.status == http.StatusServiceUnavailable {
			o.status503++
		}
		if !prevFailed {
			o.runs++
		}
		prevFailed = true
		if o.firstFail.IsZero() {
			o.firstFail = r.start
		}
		lastFail = i
	}
	from := 0
	if lastFail >= 0 {
		from = -1
		for i := lastFail + 1; i < len(rs); i++ {
			if rs[i].ok() {
				from = i
				o.recovered = rs[i].start
				o.outage = o.recovered.Sub(o.firstFail)
				break
			}
		}
	}
	if from >= 0 {
		for _, r := range rs[from:] {
			if !slices.Contains(o.after, r.text) {
				o.after = append(o.after, r.text)
			}
		}
	}
	return o
}

// logFailures logs the failed requests and their neighbours.
func logFailures(t *testing.T, rs []vrrpResult) {
	t.Helper()
	var b strings.Builder
	shown := -1
	for i, r := range rs {
		if r.ok() {
			continue
		}
		for j := max(i-2, shown+1); j <= min(i+2, len(rs)-1); j++ {
			fmt.Fprintf(&b, "  %s\n", rs[j])
			shown = j
		}
	}
	if b.Len() > 0 {
		t.Logf("failed requests (with neighbours):\n%s", b.String())
	}
}

// vrrpPair starts backends a and b, ballast a (priority 150) until it is
// master, then ballast b (priority 100) until it is backup, and the client
// until it has seen a's answers for a while.
func vrrpPair(t *testing.T) (tp *vrrpTopo, na, nb *proc, ba *vrrpHelper, c *vrrpClient) {
	t.Helper()
	tp = newVRRPTopo(t)
	ba = tp.startBackend("a")
	tp.startBackend("b")
	na = tp.startNode("a", 150)
	waitLog(na, "a", 10*time.Second, vrrpMasterLine)
	nb = tp.startNode("b", 100)
	waitLog(nb, "b", 10*time.Second, vrrpBackupLine)
	time.Sleep(3 * vrrpAdvert) // b hears a few adverts
	if strings.Contains(nb.stderr.String(), vrrpMasterLine) {
		t.Fatalf("b became master next to a healthy a of higher priority")
	}
	c = tp.startClient()
	c.waitAnswer(5*time.Second, time.Time{}, "a")
	time.Sleep(300 * time.Millisecond) // a steady baseline
	return tp, na, nb, ba, c
}

// checkFailover stops the client a second after b answered and checks one
// outage under bound, after which only b answers.
func checkFailover(t *testing.T, c *vrrpClient, event time.Time, bound time.Duration, what string) {
	t.Helper()
	back := c.waitAnswer(5*time.Second, event, "b")
	time.Sleep(time.Second) // b keeps answering
	rs := c.finish()
	o := analyzeVRRP(rs)
	t.Logf("%s: outage %v (first failed request to the next success; bound %v), %d failed of %d requests in %d run(s), %d × 503; event to b's first answer %v",
		what, o.outage.Round(time.Millisecond), bound, o.failed, o.requests, o.runs, o.status503, back.Sub(event).Round(time.Millisecond))
	if o.failed == 0 {
		t.Logf("%s: no request failed", what)
	}
	if o.failed > 0 && o.recovered.IsZero() {
		logFailures(t, rs)
		t.Fatalf("%s: no success after the last failure", what)
	}
	if o.outage >= bound {
		logFailures(t, rs)
		t.Errorf("%s: outage %v, want < %v", what, o.outage, bound)
	}
	if o.runs > 1 {
		logFailures(t, rs)
		t.Errorf("%s: %d separate runs of failures, want one outage", what, o.runs)
	}
	if o.failed > 0 && !slices.Equal(o.after, []string{"b"}) {
		t.Errorf("%s: after the outage the client got %q, want only \"b\"", what, o.after)
	}
}

// TestE2EVRRP runs two ballast nodes holding a floating IP with VRRP (100ms
// adverts), two backends and a client requesting the VIP every 10ms; see the
// subtests for the cases.
func TestE2EVRRP(t *testing.T) {
	vrrpRequire(t)

	// The master killed: the backup takes over within 3 × advert + skew.
	t.Run("SIGKILL", func(t *testing.T) {
		_, na, _, _, c := vrrpPair(t)
		event := time.Now()
		na.signal(syscall.SIGKILL)
		checkFailover(t, c, event, vrrpCrashBound, "master killed with SIGKILL")
	})

	// A graceful stop: a priority-0 advert hands over after b's skew only.
	t.Run("SIGTERM", func(t *testing.T) {
		_, na, nb, _, c := vrrpPair(t)
		event := time.Now()
		na.signal(syscall.SIGTERM)
		checkFailover(t, c, event, vrrpGracefulBound, "master stopped with SIGTERM")
		if code := na.wait(15 * time.Second); code != 0 {
			t.Errorf("a exited with code %d after SIGTERM, want 0", code)
		}
		if !strings.Contains(nb.stderr.String(), vrrpMasterLine) {
			t.Errorf("b never logged state=master")
		}
	})

	// The master's link down: as for SIGKILL, b hears no more adverts.
	t.Run("LinkDown", func(t *testing.T) {
		tp, _, _, _, c := vrrpPair(t)
		event := time.Now()
		tp.ip("-n", tp.ns["a"], "link", "set", vrrpIface, "down")
		checkFailover(t, c, event, vrrpCrashBound, "master's link down")
	})

	// a returns after a stop, its backend healthy: it preempts b with at
	// most one failed request and no 503.
	t.Run("Upgrade", func(t *testing.T) {
		// SIGUSR2 on the master: the old process releases the virtual IP on
		// exit (b takes over), the new one starts its speaker only then and
		// takes the IP back by preemption. Two graceful handovers, no 503.
		tp, na, _, _, c := vrrpPair(t)
		pidFile := filepath.Join(tp.dir, "a.pid")
		event := time.Now()
		na.signal(syscall.SIGUSR2)
		// The new process inherits the old one's stderr, so Wait ends by
		// WaitDelay; the old process's own exit status is what counts.
		select {
		case <-na.done:
		case <-time.After(20 * time.Second):
			t.Fatal("the old a did not exit within 20s of SIGUSR2")
		}
		var ee *exec.ExitError
		if errors.As(na.err, &ee) {
			t.Fatalf("the old a exited with %v, want 0", na.err)
		}
		var newPID int
		for deadline := time.Now().Add(5 * time.Second); newPID == 0 || newPID == na.pid(); {
			if time.Now().After(deadline) {
				t.Fatal("no new pid in the pid file after the upgrade")
			}
			b, _ := os.ReadFile(pidFile)
			newPID, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			time.Sleep(20 * time.Millisecond)
		}
		t.Cleanup(func() { syscall.Kill(newPID, syscall.SIGKILL) }) // by PID: the process this test's upgrade started
		back := c.waitAnswer(15*time.Second, time.Now(), "a")
		time.Sleep(500 * time.Millisecond)
		rs := c.finish()
		o := analyzeVRRP(rs)
		t.Logf("upgrade of the master: %d failed of %d requests in %d run(s), %d × 503, longest outage %v; the new a answered %v after SIGUSR2",
			o.failed, o.requests, o.runs, o.status503, o.outage.Round(time.Millisecond), back.Sub(event).Round(time.Millisecond))
		if o.status503 > 0 || o.runs > 2 || o.failed > 2*int(vrrpGracefulBound/(10*time.Millisecond)) {
			logFailures(t, rs)
			t.Errorf("upgrade of the master: want at most two short graceful handovers and no 503")
		}
	})
	t.Run("PreemptOnReturn", func(t *testing.T) { testPreemptOnReturn(t, 0) })

	// a returns after a stop while its backend is down: it must not take the
	// VIP (and answer 503) before the backend is healthy; once it is, a
	// preempts b with at most one failed request.
	t.Run("PreemptWaitsForHealthyBackend", func(t *testing.T) { testPreemptOnReturn(t, 1500*time.Millisecond) })
}

// testPreemptOnReturn: with a and b up, a is stopped (b master); a comes back
// with its backend down for backendDown (0: the backend stays up) and must
// take the VIP back only once its backend is healthy, with at most one failed
// request and no 503 in the client's log from a's return on.
func testPreemptOnReturn(t *testing.T, backendDown time.Duration) {
	tp, na, nb, ba, c := vrrpPair(t)
	na.signal(syscall.SIGTERM)
	if code := na.wait(15 * time.Second); code != 0 {
		t.Fatalf("a exited with code %d after SIGTERM, want 0", code)
	}
	c.waitAnswer(5*time.Second, time.Now(), "b")
	if backendDown > 0 {
		ba.stop()
	}
	time.Sleep(300 * time.Millisecond)

	// From here on b is the steady master: count only what follows.
	begin := time.Now()
	na2 := tp.startNode("a", 150)
	waitLog(na2, "a", 10*time.Second, `msg=listening`)
	healthy := begin // when a's backend is (or starts) serving
	if backendDown > 0 {
		time.Sleep(backendDown) // > master down interval (≈ 0.34s) and several health checks
		if out := na2.stderr.String(); strings.Contains(out, vrrpMasterLine) {
			t.Errorf("a became master while its only backend is down (restarted at %s):\n%s", begin.UTC().Format("15:04:05.000"), out)
		}
		healthy = time.Now()
		tp.startBackend("a")
	}
	waitLog(na2, "a", 10*time.Second, vrrpMasterLine)
	took := c.waitAnswer(5*time.Second, healthy, "a")
	waitLog(nb, "b", 5*time.Second, vrrpBackupLine)
	time.Sleep(time.Second) // a keeps answering
	all := c.finish()
	var rs []vrrpResult
	for _, r := range all {
		if !r.start.Before(begin) {
			rs = append(rs, r)
		}
	}
	o := analyzeVRRP(rs)
	seen := map[string]int{}
	for _, r := range rs {
		if r.ok() {
			seen[r.text]++
		}
	}
	what := "preemption on return"
	if backendDown > 0 {
		what += fmt.Sprintf(" (a's backend down for its first %v)", backendDown)
	}
	t.Logf("%s: %d failed of %d requests, %d × 503, outage %v; answers %v; a serving to a's first answer %v",
		what, o.failed, o.requests, o.status503, o.outage.Round(time.Millisecond), seen, took.Sub(healthy).Round(time.Millisecond))
	if o.failed > 1 || o.status503 > 0 {
		logFailures(t, rs)
	}
	if o.failed > 1 {
		t.Errorf("%s: %d failed requests, want at most 1", what, o.failed)
	}
	if o.status503 > 0 {
		t.Errorf("%s: %d answers 503, want none", what, o.status503)
	}
	for _, r := range rs {
		if r.ok() && r.text == "a" && r.start.Before(healthy) {
			t.Errorf("%s: a answered (%s) before its backend was started", what, r)
			break
		}
	}
	if o.failed > 0 && !slices.Equal(o.after, []string{"a"}) {
		t.Errorf("%s: after the switch the client got %q, want only \"a\"", what, o.after)
	}
	// Both may answer for a moment (each holds the VIP until b hears a's
	// advert): log it rather than fail.
	lastB, firstA := time.Time{}, time.Time{}
	for _, r := range rs {
		if r.ok() && r.text == "b" {
			lastB = r.start
		}
		if r.ok() && r.text == "a" && firstA.IsZero() {
			firstA = r.start
		}
	}
	if !firstA.IsZero() && lastB.After(firstA) {
		t.Logf("%s: b still answered %v after a's first answer", what, lastB.Sub(firstA).Round(time.Millisecond))
	}
}
