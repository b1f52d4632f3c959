package health

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ballast/internal/backend"
)

// waitFor polls cond every 2ms until it holds or d has passed.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// scripted is a Checker whose results the test hands out one at a time, per
// address; a Check blocks until its result is sent or its ctx ends.
type scripted struct {
	mu      sync.Mutex
	results map[string]chan error
}

func (s *scripted) ch(addr string) chan error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.results == nil {
		s.results = make(map[string]chan error)
	}
	c, ok := s.results[addr]
	if !ok {
		c = make(chan error)
		s.results[addr] = c
	}
	return c
}

func (s *scripted) Check(ctx context.Context, addr string) error {
	select {
	case err := <-s.ch(addr):
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// step hands addr's prober one result and waits until the monitor applied it.
func (s *scripted) step(t *testing.T, m *Monitor, addr string, err error) {
	t.Helper()
	n := m.Probed()
	select {
	case s.ch(addr) <- err:
	case <-time.After(2 * time.Second):
		t.Fatalf("no probe of %s came", addr)
	}
	waitFor(t, 2*time.Second, "the probe result to be applied", func() bool { return m.Probed() > n })
}

// logBuf is a goroutine-safe buffer for a JSON slog handler.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// records returns the decoded log records whose msg is msg.
func (l *logBuf) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("bad log line %q: %v", sc.Text(), err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

func newLog() (*logBuf, *slog.Logger) {
	lb := &logBuf{}
	return lb, slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// run starts m.Run and stops it when the test ends, failing if it does not
// return promptly.
func run(t *testing.T, m *Monitor) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
}

var errProbe = &StatusError{Code: 503}

func TestMonitorRiseFall(t *testing.T) {
	const P, F = true, false
	tests := []struct {
		name       string
		start      backend.State
		rise, fall int
		probes     []bool
		want       []backend.State // state after each probe
	}{
		{"up falls after fall failures", backend.StateUp, 2, 3,
			[]bool{F, F, F},
			[]backend.State{backend.StateUp, backend.StateUp, backend.StateDown}},
		{"one failure among passes never marks down", backend.StateUp, 2, 3,
			[]bool{P, F, P, P, F, F, P, F, F, P},
			slices.Repeat([]backend.State{backend.StateUp}, 10)},
		{"fall 1 marks down at once", backend.StateUp, 2, 1,
			[]bool{F},
			[]backend.State{backend.StateDown}},
		{"down rises after rise passes", backend.StateDown, 2, 3,
			[]bool{P, P},
			[]backend.State{backend.StateDown, backend.StateUp}},
		{"a failure restarts the rise streak", backend.StateDown, 2, 3,
			[]bool{P, F, P, P},
			[]backend.State{backend.StateDown, backend.StateDown, backend.StateDown, backend.StateUp}},
		{"starting rises", backend.StateStarting, 3, 3,
			[]bool{P, P, P},
			[]backend.State{backend.StateStarting, backend.StateStarting, backend.StateUp}},
		{"starting stays starting on failures", backend.StateStarting, 2, 1,
			[]bool{F, F},
			[]backend.State{backend.StateStarting, backend.StateStarting}},
		{"down and back up", backend.StateUp, 2, 2,
			[]bool{F, F, P, P, F, F},
			[]backend.State{backend.StateUp, backend.StateDown, backend.StateDown, backend.StateUp, backend.StateUp, backend.StateDown}},
		{"draining untouched", backend.StateDraining, 1, 1,
			[]bool{F, F, F, P, P},
			slices.Repeat([]backend.State{backend.StateDraining}, 5)},
		{"ejected untouched", backend.StateEjected, 1, 1,
			[]bool{P, P, F, F},
			slices.Repeat([]backend.State{backend.StateEjected}, 4)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &scripted{}
			m := NewMonitor("app", Config{Interval: time.Millisecond, Timeout: 10 * time.Second, Rise: tt.rise, Fall: tt.fall}, s, nil)
			b := backend.New("app", "b1", 1)
			b.SetState(tt.start)
			m.Update([]*backend.Backend{b})
			run(t, m)
			for i, pass := range tt.probes {
				var err error
				if !pass {
					err = errProbe
				}
				s.step(t, m, b.Addr, err)
				if got := b.State(); got != tt.want[i] {
					t.Fatalf("after probe %d (pass=%v): state %s, want %s", i+1, pass, got, tt.want[i])
				}
			}
		})
	}
}

// TestMonitorLogsOncePerTransition checks that a transition is logged once
// with its reason and count, and nothing is logged for the probes around it.
func TestMonitorLogsOncePerTransition(t *testing.T) {
	s := &scripted{}
	lb, log := newLog()
	m := NewMonitor("app", Config{Interval: time.Millisecond, Timeout: 10 * time.Second, Rise: 2, Fall: 3}, s, log)
	b := backend.New("app", "b1", 1)
	m.Update([]*backend.Backend{b})
	run(t, m)

	for range 6 {
		s.step(t, m, b.Addr, errProbe)
	}
	downs := lb.records(t, "backend down")
	if len(downs) != 1 {
		t.Fatalf("%d \"backend down\" lines after 6 failures, want 1", len(downs))
	}
	want := map[string]any{"level": "WARN", "pool": "app", "backend": "b1", "reason": "status 503", "consecutive": 3.0}
	for k, v := range want {
		if downs[0][k] != v {
			t.Errorf("backend down %s = %v, want %v", k, downs[0][k], v)
		}
	}
	if got := m.LastError("b1"); got != "status 503" {
		t.Errorf("LastError = %q, want status 503", got)
	}

	for range 5 {
		s.step(t, m, b.Addr, nil)
	}
	ups := lb.records(t, "backend up")
	if len(ups) != 1 {
		t.Fatalf("%d \"backend up\" lines after 5 passes, want 1", len(ups))
	}
	want = map[string]any{"level": "INFO", "pool": "app", "backend": "b1", "from": "down", "consecutive": 2.0}
	for k, v := range want {
		if ups[0][k] != v {
			t.Errorf("backend up %s = %v, want %v", k, ups[0][k], v)
		}
	}
	if got := m.LastError("b1"); got != "" {
		t.Errorf("LastError after passes = %q, want empty", got)
	}

	for range 3 {
		s.step(t, m, b.Addr, errors.New("boom"))
	}
	downs = lb.records(t, "backend down")
	if len(downs) != 2 || downs[1]["reason"] != "boom" {
		t.Errorf("after the second fall: down lines %v, want 2 with reason boom", downs)
	}
}

// counting is an HTTP backend on 127.0.0.1 that counts its requests and
// answers with the status held in code.
type counting struct {
	*httptest.Server
	hits atomic.Int64
	code atomic.Int64
}

func newCounting(t *testing.T) *counting {
	c := &counting{}
	c.code.Store(200)
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.hits.Add(1)
		w.WriteHeader(int(c.code.Load()))
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *counting) addr() string { return c.Listener.Addr().String() }

// TestMonitorDownAfterFall checks the timing on real servers: a backend
// whose server dies goes down after about Fall probes, not after one.
func TestMonitorDownAfterFall(t *testing.T) {
	const interval, fall = 50 * time.Millisecond, 3
	srv := newCounting(t)
	lb, log := newLog()
	m := NewMonitor("app", Config{Interval: interval, Timeout: 40 * time.Millisecond, Rise: 2, Fall: fall}, NewHTTPChecker("/", "", 200, 399), log)
	b := backend.New("app", srv.addr(), 1)
	m.Update([]*backend.Backend{b})
	run(t, m)

	waitFor(t, time.Second, "a first passing probe", func() bool { return m.Probed() >= 1 })
	srv.Close()
	closed := time.Now()
	waitFor(t, interval*fall+time.Second, "the backend to go down", func() bool { return b.State() == backend.StateDown })
	took := time.Since(closed)
	// Fall failures need at least Fall-1 gaps of Interval-10% after the first.
	if minimum := time.Duration(fall-1) * interval * 9 / 10; took < minimum {
		t.Errorf("down %v after the server closed, before %d probes could fail (%v)", took, fall, minimum)
	}
	if got := m.LastError(b.Addr); got != "connection refused" {
		t.Errorf("LastError = %q, want connection refused", got)
	}
	if downs := lb.records(t, "backend down"); len(downs) != 1 || downs[0]["reason"] != "connection refused" {
		t.Errorf("down log lines = %v, want one with reason connection refused", downs)
	}
}

// TestMonitorNoFlap: a single 503 in a row of 200s never takes a backend out.
func TestMonitorNoFlap(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1)%3 == 0 { // every third probe fails, never two in a row
			w.WriteHeader(503)
		}
	}))
	defer srv.Close()
	lb, log := newLog()
	m := NewMonitor("app", Config{Interval: 10 * time.Millisecond, Timeout: time.Second, Rise: 2, Fall: 2}, NewHTTPChecker("/", "", 200, 399), log)
	b := backend.New("app", srv.Listener.Addr().String(), 1)
	m.Update([]*backend.Backend{b})
	run(t, m)
	waitFor(t, 3*time.Second, "12 probes", func() bool {
		if b.State() != backend.StateUp {
			t.Fatalf("backend went %s after %d probes", b.State(), hits.Load())
		}
		return m.Probed() >= 12
	})
	if downs := lb.records(t, "backend down"); len(downs) != 0 {
		t.Errorf("logged %v", downs)
	}
}

// TestMonitorRecovers: a down backend comes back after Rise passes.
func TestMonitorRecovers(t *testing.T) {
	const interval = 20 * time.Millisecond
	srv := newCounting(t)
	srv.code.Store(503)
	m := NewMonitor("app", Config{Interval: interval, Timeout: time.Second, Rise: 3, Fall: 2}, NewHTTPChecker("/", "", 200, 399), nil)
	b := backend.New("app", srv.addr(), 1)
	m.Update([]*backend.Backend{b})
	run(t, m)
	waitFor(t, 2*time.Second, "the backend to go down", func() bool { return b.State() == backend.StateDown })
	if got := m.LastError(b.Addr); got != "status 503" {
		t.Errorf("LastError = %q, want status 503", got)
	}

	srv.code.Store(200)
	fixed := srv.hits.Load()
	waitFor(t, 2*time.Second, "the backend to come back", func() bool { return b.State() == backend.StateUp })
	// The probe in flight when the fix landed may have seen either status.
	if passes := srv.hits.Load() - fixed; passes < 3 {
		t.Errorf("back up after %d probes, want at least Rise = 3", passes)
	}
}

// TestMonitorUpdate checks that probers start for added backends, stop for
// removed ones, and keep their streaks for backends that stay.
func TestMonitorUpdate(t *testing.T) {
	const interval = 20 * time.Millisecond
	a, bs, c := newCounting(t), newCounting(t), newCounting(t)
	m := NewMonitor("app", Config{Interval: interval, Timeout: time.Second}, NewHTTPChecker("/", "", 200, 399), nil)
	ba := backend.New("app", a.addr(), 1)
	bb := backend.New("app", bs.addr(), 1)
	bc := backend.New("app", c.addr(), 1)
	m.Update([]*backend.Backend{ba, bb}) // before Run
	run(t, m)
	waitFor(t, 2*time.Second, "both backends probed", func() bool { return a.hits.Load() >= 2 && bs.hits.Load() >= 2 })

	m.Update([]*backend.Backend{ba, bc})
	waitFor(t, 2*time.Second, "the added backend probed", func() bool { return c.hits.Load() >= 2 })
	removed := bs.hits.Load()
	aBefore := a.hits.Load()
	time.Sleep(5 * interval)
	if got := bs.hits.Load(); got != removed {
		t.Errorf("removed backend probed %d more times", got-removed)
	}
	if a.hits.Load() <= aBefore {
		t.Errorf("kept backend no longer probed")
	}
	if got := m.LastError(bs.addr()); got != "" {
		t.Errorf("LastError of a removed backend = %q", got)
	}
}

// TestMonitorUpdateKeepsStreak: a backend that stays across Update keeps its
// failure count, so a reload does not reset a backend about to go down.
func TestMonitorUpdateKeepsStreak(t *testing.T) {
	s := &scripted{}
	m := NewMonitor("app", Config{Interval: time.Millisecond, Timeout: 10 * time.Second, Rise: 2, Fall: 3}, s, nil)
	b := backend.New("app", "b1", 1)
	m.Update([]*backend.Backend{b})
	run(t, m)
	s.step(t, m, "b1", errProbe)
	s.step(t, m, "b1", errProbe)
	m.Update([]*backend.Backend{backend.New("app", "b2", 1), b})
	s.step(t, m, "b1", errProbe)
	if b.State() != backend.StateDown {
		t.Errorf("state %s after 2+1 failures across an Update, want down", b.State())
	}
}

// TestMonitorUpdateConcurrent races Updates against Run and each other.
func TestMonitorUpdateConcurrent(t *testing.T) {
	var all []*backend.Backend
	for i := range 20 {
		all = append(all, backend.New("app", fmt.Sprintf("b%d", i), 1))
	}
	chk := CheckerFunc(func(ctx context.Context, addr string) error { return nil })
	m := NewMonitor("app", Config{Interval: time.Millisecond, Timeout: time.Second}, chk, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				lo := (g + i) % len(all)
				m.Update(all[lo:min(len(all), lo+7)])
			}
		})
	}
	wg.Wait()
	m.Update(all)
	waitFor(t, 2*time.Second, "probes", func() bool { return m.Probed() > 40 })
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return")
	}
}

// TestMonitorJitter: first probes spread over the interval instead of all
// coming at once.
func TestMonitorJitter(t *testing.T) {
	const n, interval = 50, 200 * time.Millisecond
	var mu sync.Mutex
	first := make(map[string]time.Time)
	chk := CheckerFunc(func(ctx context.Context, addr string) error {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := first[addr]; !ok {
			first[addr] = time.Now()
		}
		return nil
	})
	m := NewMonitor("app", Config{Interval: interval, Timeout: interval}, chk, nil)
	var bs []*backend.Backend
	for i := range n {
		bs = append(bs, backend.New("app", fmt.Sprintf("b%d", i), 1))
	}
	m.Update(bs)
	began := time.Now()
	run(t, m)
	waitFor(t, interval+time.Second, "every backend probed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(first) == n
	})
	mu.Lock()
	defer mu.Unlock()
	var lo, hi time.Time
	for _, at := range first {
		if lo.IsZero() || at.Before(lo) {
			lo = at
		}
		if at.After(hi) {
			hi = at
		}
	}
	// 50 uniform draws over 200ms span less than half of it with
	// probability about 50·2⁻⁴⁹: this cannot flake.
	if spread := hi.Sub(lo); spread < interval/2 {
		t.Errorf("first probes of %d backends within %v, want them spread over the %v interval", n, spread, interval)
	}
	if late := hi.Sub(began); late > interval+200*time.Millisecond {
		t.Errorf("last first probe %v after Run, want within the interval", late)
	}
}

func TestMonitorSchedule(t *testing.T) {
	tests := []struct {
		name  string
		randN func(int64) int64
		first time.Duration
		next  time.Duration
	}{
		{"lowest draw", func(int64) int64 { return 0 }, 0, 90 * time.Millisecond},
		{"highest draw", func(n int64) int64 { return n - 1 }, 100*time.Millisecond - 1, 110 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMonitor("app", Config{Interval: 100 * time.Millisecond}, NewTCPChecker(), nil)
			m.randN = tt.randN
			if got := m.firstDelay(); got != tt.first {
				t.Errorf("first delay %v, want %v", got, tt.first)
			}
			if got := m.nextDelay(); got != tt.next {
				t.Errorf("next delay %v, want %v", got, tt.next)
			}
		})
	}
}

// TestMonitorStops: Run returns promptly after cancel, even with probes in
// flight, and leaves no goroutine behind.
func TestMonitorStops(t *testing.T) {
	before := runtime.NumGoroutine()
	var inFlight atomic.Int64
	chk := CheckerFunc(func(ctx context.Context, addr string) error {
		inFlight.Add(1)
		defer inFlight.Add(-1)
		<-ctx.Done() // a probe that only ends with its ctx
		return ctx.Err()
	})
	m := NewMonitor("app", Config{Interval: 10 * time.Millisecond, Timeout: 10 * time.Second}, chk, nil)
	var bs []*backend.Backend
	for i := range 20 {
		bs = append(bs, backend.New("app", fmt.Sprintf("b%d", i), 1))
	}
	m.Update(bs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	waitFor(t, 2*time.Second, "every probe in flight", func() bool { return inFlight.Load() == 20 })

	if err := m.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Errorf("second concurrent Run = %v, want ErrRunning", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Run did not return within 1s of cancel")
	}
	if n := inFlight.Load(); n != 0 {
		t.Errorf("Run returned with %d probes in flight", n)
	}
	if m.Probed() != 0 {
		t.Errorf("canceled probes counted: Probed = %d", m.Probed())
	}
	for i, st := range bs {
		if st.State() != backend.StateUp {
			t.Errorf("backend %d moved to %s by a canceled probe", i, st.State())
		}
	}
	waitFor(t, time.Second, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })

	// Run again after it returned: probing resumes.
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- m.Run(ctx) }()
	waitFor(t, 2*time.Second, "probes of the second Run", func() bool { return inFlight.Load() == 20 })
	cancel()
	<-done
	waitFor(t, time.Second, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
}
