package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"ballast/internal/backend"
)

// The test binary doubles as the launched app: with SUPERVISOR_TEST_APP set it
// serves HTTP on the port given as its last argument.
func TestMain(m *testing.M) {
	if mode := os.Getenv("SUPERVISOR_TEST_APP"); mode != "" {
		testApp(mode, os.Args[len(os.Args)-1])
		return
	}
	os.Exit(m.Run())
}

// testApp is the launched process. Modes: serve (answers; GET /exit exits
// with status 3), crash (exits at once with status 2), never (never listens).
func testApp(mode, port string) {
	switch mode {
	case "crash":
		fmt.Println("crashing on purpose")
		os.Exit(2)
	case "never":
		time.Sleep(time.Hour)
		return
	}
	fmt.Printf("listening on %s\n", port)
	fmt.Fprintln(os.Stderr, "a line on stderr")
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/exit" {
			os.Exit(3)
		}
		fmt.Fprintf(w, "pid %d\n", os.Getpid())
	})}
	go func() {
		<-term
		srv.Close()
	}()
	_ = srv.Serve(ln)
}

// fakePool records what the supervisor does to the pool.
type fakePool struct {
	mu     sync.Mutex
	bs     []*backend.Backend
	joined int
	left   int
}

func (p *fakePool) Join(b *backend.Backend) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b.State() != backend.StateStarting {
		return fmt.Errorf("joined in state %v", b.State())
	}
	p.bs = append(p.bs, b)
	p.joined++
	return nil
}

func (p *fakePool) Leave(b *backend.Backend) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i := slices.Index(p.bs, b); i >= 0 {
		p.bs = slices.Delete(p.bs, i, i+1)
		p.left++
	}
}

// up returns the backends in state up.
func (p *fakePool) up() []*backend.Backend {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*backend.Backend
	for _, b := range p.bs {
		if b.State() == backend.StateUp {
			out = append(out, b)
		}
	}
	return out
}

// syncBuffer is a log destination read while written.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var nextPorts atomic.Int32

// testSpec is a spec running the test binary in mode, on a range of ports of
// its own.
func testSpec(mode string, instances int) Spec {
	lo := 19600 + int(nextPorts.Add(1)-1)*20
	exe, _ := os.Executable()
	return Spec{
		Command: []string{exe, "-test.run=^$", "{port}"}, Instances: instances,
		PortLo: lo, PortHi: lo + 19, Env: map[string]string{"SUPERVISOR_TEST_APP": mode},
		StartTimeout: 5 * time.Second, StopTimeout: 2 * time.Second,
	}
}

func start(t *testing.T, spec Spec) (*Supervisor, *fakePool, *syncBuffer) {
	t.Helper()
	p := &fakePool{}
	logs := &syncBuffer{}
	s := New("app", spec, p, slog.New(slog.NewTextHandler(logs, nil)))
	for _, b := range s.Start(context.Background()) {
		if err := p.Join(b); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(s.Stop)
	return s, p, logs
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(addr, path string) (string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func TestStartServesAndLogs(t *testing.T) {
	t.Parallel()
	spec := testSpec("serve", 3)
	s, p, logs := start(t, spec)
	select {
	case <-s.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	ups := p.up()
	if len(ups) != 3 {
		t.Fatalf("%d backends up, want 3", len(ups))
	}
	seen := map[string]bool{}
	for _, b := range ups {
		_, port, _ := net.SplitHostPort(b.Addr)
		n, _ := strconv.Atoi(port)
		if n < spec.PortLo || n > spec.PortHi || seen[b.Addr] {
			t.Fatalf("backend %s: port outside %d-%d or repeated", b.Addr, spec.PortLo, spec.PortHi)
		}
		seen[b.Addr] = true
		if body, err := get(b.Addr, "/"); err != nil || !strings.HasPrefix(body, "pid ") {
			t.Fatalf("GET %s: %q %v", b.Addr, body, err)
		}
	}
	waitFor(t, "output in the log", 2*time.Second, func() bool {
		l := logs.String()
		return strings.Contains(l, `msg="listening on`) && strings.Contains(l, `msg="a line on stderr" pool=app instance=`)
	})
	st := s.Status()
	if len(st) != 3 || st[0].State != "running" || st[0].PID == 0 {
		t.Fatalf("status %+v", st)
	}
}

func TestPortInUseIsSkipped(t *testing.T) {
	t.Parallel()
	spec := testSpec("serve", 1)
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(spec.PortLo))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, p, _ := start(t, spec)
	<-s.Ready()
	ups := p.up()
	if len(ups) != 1 || ups[0].Addr == ln.Addr().String() {
		t.Fatalf("backends %v: want one, not on the taken port %s", ups, ln.Addr())
	}
}

func TestCrashRestartsWithBackoff(t *testing.T) {
	t.Parallel()
	s, p, logs := start(t, testSpec("serve", 2))
	<-s.Ready()
	victim := p.up()[0]
	pid := s.Status()[0].PID
	get(victim.Addr, "/exit")
	waitFor(t, "the crashed instance marked down", 2*time.Second, func() bool { return victim.State() != backend.StateUp })
	if n := len(p.up()); n != 1 {
		t.Fatalf("%d up while one restarts, want 1", n)
	}
	waitFor(t, "the instance back up", 5*time.Second, func() bool { return victim.State() == backend.StateUp })
	st := s.Status()[0]
	if st.PID == pid || st.Restarts != 1 || st.LastExit != "exit status 3" || s.Restarts() != 1 {
		t.Fatalf("after a crash: %+v, restarts %d", st, s.Restarts())
	}
	if !strings.Contains(logs.String(), "instance will be restarted") {
		t.Fatal("the crash is not in the log")
	}
}

func TestCrashLoopBacksOff(t *testing.T) {
	t.Parallel()
	s, _, logs := start(t, testSpec("crash", 1))
	time.Sleep(3 * time.Second)
	starts := strings.Count(logs.String(), "instance started")
	// 200 ms, 400, 800, 1.6 s (±20 %): at most 5 starts in 3 s, never a storm.
	if starts < 3 || starts > 5 {
		t.Fatalf("%d starts in 3 s of a crash loop, want 3..5 (exponential backoff)", starts)
	}
	if st := s.Status()[0]; st.Restarts < 2 || st.LastExit != "exit status 2" {
		t.Fatalf("status %+v", st)
	}
	if d := backoff(100); d > backoffMax*6/5 || d < backoffMax*4/5 {
		t.Fatalf("backoff cap: %v", d)
	}
}

func TestRollingRestartKeepsCapacity(t *testing.T) {
	t.Parallel()
	s, p, _ := start(t, testSpec("serve", 3))
	<-s.Ready()
	oldPIDs := map[int]bool{}
	for _, in := range s.Status() {
		oldPIDs[in.PID] = true
	}
	stop := make(chan struct{})
	minUp := make(chan int, 1)
	go func() {
		low := 3
		for {
			select {
			case <-stop:
				minUp <- low
				return
			default:
			}
			low = min(low, len(p.up()))
			time.Sleep(time.Millisecond)
		}
	}()
	if err := s.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(stop)
	if low := <-minUp; low < 3 {
		t.Fatalf("%d instances up at one point of the rolling restart, want never fewer than 3", low)
	}
	st := s.Status()
	if len(st) != 3 {
		t.Fatalf("%d instances after the restart", len(st))
	}
	for _, in := range st {
		if oldPIDs[in.PID] || in.State != "running" {
			t.Fatalf("instance %+v: not replaced", in)
		}
	}
	for pid := range oldPIDs {
		if alive(pid) {
			t.Fatalf("old pid %d still alive", pid)
		}
	}
	if p.joined != 6 || p.left != 3 {
		t.Fatalf("joined %d, left %d; want 6 and 3", p.joined, p.left)
	}
}

func TestRestartWaitsForDrain(t *testing.T) {
	t.Parallel()
	s, p, _ := start(t, testSpec("serve", 1))
	<-s.Ready()
	b := p.up()[0]
	b.Acquire() // a request in flight on the old instance
	done := make(chan error, 1)
	go func() { done <- s.Restart(context.Background()) }()
	waitFor(t, "the old instance draining", 5*time.Second, func() bool { return b.State() == backend.StateDraining })
	time.Sleep(300 * time.Millisecond)
	if _, err := get(b.Addr, "/"); err != nil {
		t.Fatalf("the draining instance was stopped with a request in flight: %v", err)
	}
	b.Release(false)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := get(b.Addr, "/"); err == nil {
		t.Fatal("the old instance still answers after the restart")
	}
}

func TestRestartStopsWhenReplacementNeverReady(t *testing.T) {
	t.Parallel()
	spec := testSpec("serve", 2)
	s, p, _ := start(t, spec)
	<-s.Ready()
	before := s.Status()
	broken := spec
	broken.Env = map[string]string{"SUPERVISOR_TEST_APP": "never"}
	broken.StartTimeout = time.Second
	s.mu.Lock()
	s.spec = broken
	s.mu.Unlock()
	err := s.Restart(context.Background())
	if !errors.Is(err, ErrNotReady) {
		t.Fatalf("restart with a replacement that never gets ready: %v", err)
	}
	after := s.Status()
	if len(after) != 2 || after[0].PID != before[0].PID || after[1].PID != before[1].PID {
		t.Fatalf("old instances not kept: before %+v after %+v", before, after)
	}
	if n := len(p.up()); n != 2 {
		t.Fatalf("%d up, want 2", n)
	}
}

func TestApplyScalesAndRolls(t *testing.T) {
	t.Parallel()
	spec := testSpec("serve", 1)
	s, p, _ := start(t, spec)
	<-s.Ready()
	first := s.Status()[0].PID
	more := spec
	more.Instances = 3
	s.Apply(more)
	waitFor(t, "scaled up to 3", 10*time.Second, func() bool { return len(p.up()) == 3 && len(s.Status()) == 3 })
	if s.Status()[0].PID != first {
		t.Fatal("scaling up replaced a running instance")
	}
	changed := more
	changed.Instances = 2
	changed.Env = map[string]string{"SUPERVISOR_TEST_APP": "serve", "APP_VERSION": "2"}
	s.Apply(changed)
	waitFor(t, "rolled and scaled down to 2", 15*time.Second, func() bool {
		st := s.Status()
		if len(st) != 2 || len(p.up()) != 2 {
			return false
		}
		for _, in := range st {
			if in.PID == first || in.State != "running" {
				return false
			}
		}
		return true
	})
}

func TestStopLeavesNoProcess(t *testing.T) {
	t.Parallel()
	p := &fakePool{}
	s := New("app", testSpec("serve", 2), p, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, b := range s.Start(context.Background()) {
		p.Join(b)
	}
	<-s.Ready()
	var pids []int
	for _, in := range s.Status() {
		pids = append(pids, in.PID)
	}
	s.Stop()
	for _, pid := range pids {
		if alive(pid) {
			t.Fatalf("pid %d alive after Stop", pid)
		}
	}
	if len(p.bs) != 0 {
		t.Fatalf("%d backends left in the pool", len(p.bs))
	}
}

func TestWorkerSlots(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	none := env(nil)
	for _, c := range []struct {
		cmd  string
		env  func(string) string
		want int
	}{
		{"gunicorn -w 2 -b 127.0.0.1:{port} app:app", none, 2},
		{"gunicorn --workers=4 --threads 3 app:app", none, 12},
		{"/usr/bin/gunicorn -w3 app:app", none, 3},
		{"python3 -m gunicorn --workers 5 app:app", none, 5},
		{"gunicorn app:app", none, 1},
		{"gunicorn app:app", env(map[string]string{"WEB_CONCURRENCY": "6"}), 6},
		{"gunicorn -k gthread -w 2 --threads 4 app:app", none, 8},
		{"gunicorn -k uvicorn.workers.UvicornWorker -w 2 app:app", none, 0},
		{"gunicorn -c gunicorn.conf.py app:app", none, 0},
		{"gunicorn -w x app:app", none, 0},
		{"uwsgi --http :{port} --processes 4 --threads 2", none, 8},
		{"uwsgi --http :{port} -p 3", none, 3},
		{"uwsgi --ini app.ini", none, 0},
		{"python3 -m uvicorn app:app --port {port}", none, 0},
	} {
		got, why := WorkerSlots(strings.Fields(c.cmd), c.env)
		if got != c.want || (got == 0) != (why != "") {
			t.Errorf("%s: %d (%q), want %d", c.cmd, got, why, c.want)
		}
	}
}

func TestSpecHost(t *testing.T) {
	for cmd, want := range map[string]string{
		"gunicorn -b 127.0.0.1:{port} app:app":        "127.0.0.1:8000",
		"gunicorn --bind=0.0.0.0:{port} app:app":      "127.0.0.1:8000",
		"gunicorn -b [::1]:{port} app:app":            "[::1]:8000",
		"uvicorn --host 127.0.0.2 --port {port} app":  "127.0.0.2:8000",
		"uvicorn --host=0.0.0.0 --port {port} app":    "127.0.0.1:8000",
		"uwsgi --http-socket tcp://10.0.0.1:{port} x": "10.0.0.1:8000",
	} {
		if got := (Spec{Command: strings.Fields(cmd)}).addr(8000); got != want {
			t.Errorf("%s: %s, want %s", cmd, got, want)
		}
	}
}
