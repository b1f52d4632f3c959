package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"ballast/internal/testutil"
)

// TestE2EUpgradeUnderLoad: the operator replaces the binary on disk and sends
// SIGUSR2; the new binary takes over the listening socket while 20 clients
// keep sending requests, the old process exits 0, and not one request fails —
// no connection refused, none reset.
func TestE2EUpgradeUnderLoad(t *testing.T) {
	t.Parallel()
	backend := testutil.NewBackend(t, "app", nil)
	u := newUpgradeSetup(t, backend.Addr())
	old := u.start()
	old.waitListening(u.listen)
	u.waitPID(old.pid())

	load := startLoad(t, "http://"+u.listen+"/", "app\n", 16, 4)
	time.Sleep(500 * time.Millisecond) // under way before the upgrade
	u.install()                        // the new binary replaces the old file, as install(1) does
	old.signal(syscall.SIGUSR2)

	if code := old.wait(30 * time.Second); code != 0 {
		t.Fatalf("old process exit code = %d, want 0; log:\n%s", code, u.log())
	}
	load.mark() // from here on, only the new process can answer
	newPID := u.waitNewPID(old.pid())
	if !strings.Contains(u.log(), fmt.Sprintf(`msg="upgrade: new process ready" pid=%d`, newPID)) {
		t.Errorf("log lacks the new process's ready line (pid %d):\n%s", newPID, u.log())
	}
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", newPID)); err == nil && exe != u.exe {
		t.Errorf("the new process runs %q, want the replaced binary %q", exe, u.exe)
	}
	time.Sleep(time.Second)
	res := load.stop()
	if resp, err := testutil.Client().Get("http://" + u.admin + "/api/v1/pools"); err != nil || resp.StatusCode != 200 {
		t.Errorf("the admin API after the upgrade: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	t.Logf("upgrade: %s", res)
	if res.failed != 0 {
		t.Errorf("%d of %d requests failed (%d refused, %d reset); first errors:\n%s",
			res.failed, res.requests, res.refused, res.reset, strings.Join(res.samples, "\n"))
	}
	if res.keepAliveAfter == 0 || res.freshAfter == 0 {
		t.Errorf("the new process served %d keep-alive and %d new-connection requests, want both > 0",
			res.keepAliveAfter, res.freshAfter)
	}
}

// TestE2EUpgradeLaunched: an upgrade of a ballast that runs its backends
// (launch): the new process starts its own instances and takes over only once
// they are ready; the old one stops its instances when it exits. No request
// fails, none is left orphaned.
func TestE2EUpgradeLaunched(t *testing.T) {
	t.Parallel()
	app := mustAbs(t, "../../internal/server/testdata/app.py")
	lo := 22000 + int(time.Now().UnixNano()%100)*50
	u := newUpgradeSetupWith(t, func(listen string) string {
		return fmt.Sprintf(`listeners:
  - {name: web, listen: %s, routes: [{pool: app}]}
pools:
  app:
    health_check: {path: /healthz, interval: 1s}
    launch:
      command: ["python3", %q, "app", "{port}"]
      instances: 2
      ports: %d-%d
`, listen, app, lo, lo+49)
	})
	old := u.start()
	old.waitListening(u.listen)
	u.waitPID(old.pid())
	before, err := launchedInstances(u.admin)
	for ; err == nil && (len(before) < 2 || before[0].State != "running" || before[1].State != "running"); before, err = launchedInstances(u.admin) {
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}

	load := startLoad(t, "http://"+u.listen+"/", "app\n", 8, 2)
	time.Sleep(500 * time.Millisecond)
	u.install()
	old.signal(syscall.SIGUSR2)
	if code := old.wait(30 * time.Second); code != 0 {
		t.Fatalf("old process exit code = %d, want 0; log:\n%s", code, u.log())
	}
	load.mark()
	u.waitNewPID(old.pid())
	time.Sleep(500 * time.Millisecond)
	res := load.stop()
	t.Logf("upgrade of a launched pool: %s", res)
	if res.failed != 0 {
		t.Errorf("%d of %d requests failed; first errors:\n%s", res.failed, res.requests, strings.Join(res.samples, "\n"))
	}
	for _, in := range before {
		if alive(in.PID) {
			t.Errorf("the old process's instance %d (pid %d) outlived it", in.ID, in.PID)
		}
	}
	after, err := launchedInstances(u.admin)
	if err != nil || len(after) != 2 {
		t.Fatalf("instances after the upgrade: %+v %v", after, err)
	}
}

// TestE2EUpgradeFailureKeepsServing: a new process that cannot start (the
// config on disk was broken since) is reported as "upgrade failed"; the old
// process serves on as if nothing happened, keeps the pid file, and a later
// upgrade, once the config is repaired, succeeds.
func TestE2EUpgradeFailureKeepsServing(t *testing.T) {
	t.Parallel()
	backend := testutil.NewBackend(t, "app", nil)
	u := newUpgradeSetup(t, backend.Addr())
	old := u.start()
	old.waitListening(u.listen)
	u.waitPID(old.pid())
	load := startLoad(t, "http://"+u.listen+"/", "app\n", 2, 1)

	good, err := os.ReadFile(u.config)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, u.config, brokenConfig)
	old.signal(syscall.SIGUSR2)
	u.waitLog(35*time.Second, `msg="upgrade failed"`)
	problem := strings.Replace(brokenProblems[0], "broken.yaml", "ballast.yaml", 1)
	if out := u.log(); !strings.Contains(out, "exited before it was ready (exit status 1)") ||
		!strings.Contains(out, problem) {
		t.Errorf("the log lacks the reason (the new process's exit and its config problems):\n%s", out)
	}
	if old.exited() {
		t.Fatalf("the old process exited after a failed upgrade; log:\n%s", u.log())
	}
	if pid := u.readPID(); pid != old.pid() {
		t.Errorf("pid file holds %d after a failed upgrade, want the old process's %d", pid, old.pid())
	}
	time.Sleep(500 * time.Millisecond) // serving on, under load

	writeFile(t, u.config, string(good))
	old.signal(syscall.SIGUSR2)
	if code := old.wait(30 * time.Second); code != 0 {
		t.Fatalf("old process exit code after the repaired upgrade = %d, want 0; log:\n%s", code, u.log())
	}
	load.mark()
	u.waitNewPID(old.pid())
	time.Sleep(500 * time.Millisecond)
	res := load.stop()
	t.Logf("failed upgrade, then upgrade: %s", res)
	if res.failed != 0 {
		t.Errorf("%d of %d requests failed; first errors:\n%s", res.failed, res.requests, strings.Join(res.samples, "\n"))
	}
	if res.keepAliveAfter+res.freshAfter == 0 {
		t.Error("the new process served no request")
	}
}

// upgradeSetup is a directory with its own copy of the binary (which the
// test replaces), a config, a pid file and one log file that the old and the
// new process share, as they would share a journal.
type upgradeSetup struct {
	t       *testing.T
	dir     string
	exe     string // dir/ballast
	config  string
	pidFile string
	logFile *os.File
	listen  string
	admin   string // the admin listener, handed over too
}

func newUpgradeSetup(t *testing.T, backend string) *upgradeSetup {
	t.Helper()
	return newUpgradeSetupWith(t, func(listen string) string { return httpConfig(listen, backend) })
}

// newUpgradeSetupWith is newUpgradeSetup with the config (admin section
// aside) made by config for the listen address.
func newUpgradeSetupWith(t *testing.T, config func(listen string) string) *upgradeSetup {
	t.Helper()
	dir := t.TempDir()
	u := &upgradeSetup{
		t:       t,
		dir:     dir,
		exe:     filepath.Join(dir, "ballast"),
		config:  filepath.Join(dir, "ballast.yaml"),
		pidFile: filepath.Join(dir, "ballast.pid"),
		listen:  testutil.FreeAddr(t),
		admin:   testutil.FreeAddr(t),
	}
	writeFile(t, u.config, "admin: {listen: "+u.admin+"}\n"+config(u.listen))
	u.install()
	f, err := os.OpenFile(filepath.Join(dir, "ballast.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	u.logFile = f
	t.Cleanup(func() {
		u.stopNew()
		f.Close()
		if t.Failed() {
			t.Logf("ballast log:\n%s", u.log())
		}
	})
	return u
}

// install copies the built binary to u.exe through a temporary file and a
// rename: a running process keeps its (now unlinked) file.
func (u *upgradeSetup) install() {
	u.t.Helper()
	b, err := os.ReadFile(ballastBin)
	if err != nil {
		u.t.Fatal(err)
	}
	tmp := u.exe + ".new"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		u.t.Fatal(err)
	}
	if err := os.Rename(tmp, u.exe); err != nil {
		u.t.Fatal(err)
	}
}

// start runs u.exe in u.dir, its output to the shared log. Like startBallast,
// the process is killed by its PID at the end if it still runs.
func (u *upgradeSetup) start() *proc {
	u.t.Helper()
	p := &proc{t: u.t, done: make(chan struct{})}
	p.cmd = exec.Command(u.exe, "run", "-c", "ballast.yaml", "-pid-file", "ballast.pid")
	p.cmd.Dir = u.dir
	p.cmd.Stdout, p.cmd.Stderr = u.logFile, u.logFile
	if err := p.cmd.Start(); err != nil {
		u.t.Fatalf("start ballast: %v", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	u.t.Cleanup(func() {
		if !p.exited() {
			p.cmd.Process.Kill() // by PID: the process this test started
			<-p.done
		}
	})
	return p
}

// log is everything both processes have logged so far.
func (u *upgradeSetup) log() string {
	b, _ := os.ReadFile(u.logFile.Name())
	return string(b)
}

// waitLog waits for the log to contain sub.
func (u *upgradeSetup) waitLog(timeout time.Duration, sub string) {
	u.t.Helper()
	testutil.WaitFor(u.t, timeout, "log line "+sub, func() bool { return strings.Contains(u.log(), sub) })
}

// readPID is the pid in the pid file, or 0.
func (u *upgradeSetup) readPID() int {
	b, err := os.ReadFile(u.pidFile)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// waitPID waits until the pid file holds pid.
func (u *upgradeSetup) waitPID(pid int) {
	u.t.Helper()
	testutil.WaitFor(u.t, 10*time.Second, fmt.Sprintf("pid file to hold %d", pid), func() bool { return u.readPID() == pid })
}

// waitNewPID waits until the pid file names a running process other than
// old, and returns its pid.
func (u *upgradeSetup) waitNewPID(old int) int {
	u.t.Helper()
	var pid int
	testutil.WaitFor(u.t, 10*time.Second, "pid file to name the new process", func() bool {
		pid = u.readPID()
		return pid != 0 && pid != old && alive(pid)
	})
	return pid
}

// stopNew stops the process an upgrade started, found by the pid file and
// recognised by its executable: SIGTERM, then SIGKILL if it lingers. It is not
// the test's child, so it is polled rather than waited for.
func (u *upgradeSetup) stopNew() {
	pid := u.readPID()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if pid == 0 || err != nil || strings.TrimSuffix(exe, " (deleted)") != u.exe {
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(15 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			u.t.Errorf("upgraded ballast (pid %d) still runs 15s after SIGTERM", pid)
			syscall.Kill(pid, syscall.SIGKILL)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid is a running process (not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// load is clients sending GET requests in loops, each bounded by a count
// and by the test: keep-alive clients reuse one connection, fresh ones open a
// new connection per request.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	after  atomic.Bool // set by mark

	requests, failed, refused, reset atomic.Int64
	keepAliveAfter, freshAfter       atomic.Int64 // successful after mark

	mu      sync.Mutex
	samples []string // the first errors, under mu
}

// loadTotals is what a load measured.
type loadTotals struct {
	requests, failed, refused, reset int64
	keepAliveAfter, freshAfter       int64 // successful after mark
	samples                          []string
}

func (r loadTotals) String() string {
	return fmt.Sprintf("%d requests, %d failed (%d refused, %d reset); after the old process exited: %d keep-alive, %d new-connection",
		r.requests, r.failed, r.refused, r.reset, r.keepAliveAfter, r.freshAfter)
}

// startLoad starts keepAlive and fresh clients fetching url, each wanting a
// 200 with body want, until stop (or 90s, or 50,000 requests each).
func startLoad(t *testing.T, url, want string, keepAlive, fresh int) *load {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	l := &load{cancel: cancel}
	t.Cleanup(func() { l.stop() })
	for i := range keepAlive + fresh {
		keep := i < keepAlive
		l.wg.Go(func() { l.client(ctx, url, want, keep) })
	}
	return l
}

func (l *load) client(ctx context.Context, url, want string, keep bool) {
	tr := &http.Transport{DisableKeepAlives: !keep, MaxIdleConnsPerHost: 1, DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	const maxRequests = 50_000
	for range maxRequests {
		if ctx.Err() != nil {
			return
		}
		err := get(ctx, c, url, want)
		l.requests.Add(1)
		switch {
		case err != nil:
			l.fail(err, keep)
		case !l.after.Load():
		case keep:
			l.keepAliveAfter.Add(1)
		default:
			l.freshAfter.Add(1)
		}
		if !keep {
			// A new connection per request leaves one TIME_WAIT socket
			// each: pace them, so a long run cannot exhaust the ports.
			time.Sleep(2 * time.Millisecond)
		}
	}
}

// get fetches url and checks for a 200 with body want.
func get(ctx context.Context, c *http.Client, url, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || string(body) != want {
		return fmt.Errorf("%d %q", resp.StatusCode, body)
	}
	return nil
}

func (l *load) fail(err error, keep bool) {
	if errors.Is(err, context.Canceled) {
		l.requests.Add(-1) // stopped by the test, not failed
		return
	}
	l.failed.Add(1)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		l.refused.Add(1)
	case errors.Is(err, syscall.ECONNRESET):
		l.reset.Add(1)
	}
	l.mu.Lock()
	if len(l.samples) < 10 {
		kind := "new connection"
		if keep {
			kind = "keep-alive"
		}
		l.samples = append(l.samples, time.Now().Format("15:04:05.000 ")+kind+": "+err.Error())
	}
	l.mu.Unlock()
}

// mark starts counting the requests served after this point.
func (l *load) mark() { l.after.Store(true) }

// stop ends the load, waits for its clients and returns the totals.
func (l *load) stop() loadTotals {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return loadTotals{
		requests: l.requests.Load(), failed: l.failed.Load(), refused: l.refused.Load(), reset: l.reset.Load(),
		keepAliveAfter: l.keepAliveAfter.Load(), freshAfter: l.freshAfter.Load(),
		samples: append([]string(nil), l.samples...),
	}
}

// The listener names in BALLAST_LISTEN_FDS survive any character a config may
// give them, "," and "=" included.
func TestListenFDsRoundTrip(t *testing.T) {
	for _, fds := range []map[string]int{
		{},
		{"web": 3},
		{"web": 3, "db": 4, "admin": 5},
		{"a=b": 3, "c,d": 4, "e%20f g": 5, "ünï": 6},
	} {
		v := formatListenFDs(fds)
		got, err := parseListenFDs(v)
		if err != nil || !maps.Equal(got, fds) {
			t.Errorf("parseListenFDs(%q) = %v, %v; want %v", v, got, err, fds)
		}
	}
	for _, bad := range []string{"web", "web=", "=3", "web=2", "web=x", "web=3,web=4", "web=3,db=3", "web=3,", "%zz=3"} {
		if got, err := parseListenFDs(bad); err == nil {
			t.Errorf("parseListenFDs(%q) = %v, want an error", bad, got)
		}
	}
}

func FuzzParseListenFDs(f *testing.F) {
	for _, s := range []string{"", "web=3", "web=3,db=4", "a%3Db=3", "web=3,web=4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		fds, err := parseListenFDs(v)
		if err != nil {
			return
		}
		again, err := parseListenFDs(formatListenFDs(fds))
		if err != nil || !maps.Equal(again, fds) {
			t.Fatalf("%q parsed to %v, which formats to %q, which parses to %v, %v", v, fds, formatListenFDs(fds), again, err)
		}
	})
}
