package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"ballast/internal/backend"
	"ballast/internal/balancer"
	"ballast/internal/pool"
	"ballast/internal/router"
)

// dispatchFixture is a dispatcher over one pool "app" routed from app.test/api/.
type dispatchFixture struct {
	d   *Dispatcher
	up  *Upstream
	bs  []*backend.Backend
	now time.Time // the dispatcher's clock
}

func newDispatchFixture(t *testing.T, s pool.Settings, n int) *dispatchFixture {
	t.Helper()
	bs := make([]*backend.Backend, n)
	for i := range bs {
		bs[i] = backend.New("app", fmt.Sprintf("10.0.0.%d:80", i+1), 1)
	}
	p, err := pool.New("app", s, bs)
	if err != nil {
		t.Fatal(err)
	}
	up := NewUpstream(p, Timeouts{})
	t.Cleanup(up.Close)
	table, err := router.New([]router.Route[*Upstream]{
		{Host: "app.test", PathPrefix: "/api/", Target: up},
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &dispatchFixture{d: NewDispatcher(table), up: up, bs: bs, now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	f.d.clock = func() time.Time { return f.now }
	return f
}

// totals sums the counters over all backends.
func (f *dispatchFixture) totals() (inFlight int64, requests, failures uint64) {
	for _, b := range f.bs {
		inFlight += b.InFlight()
		requests += b.Requests()
		failures += b.Failures()
	}
	return
}

var rrSettings = pool.Settings{Algorithm: balancer.AlgRoundRobin}

func apiRequest() *balancer.Request {
	return &balancer.Request{Host: "app.test", Path: "/api/users", Header: http.Header{}}
}

func TestDispatcherBeginErrors(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(bs []*backend.Backend)
		req    *balancer.Request
		want   error
		status int
	}{
		{"other host", nil, &balancer.Request{Host: "other.test", Path: "/api/x"}, ErrNoRoute, 404},
		{"path outside prefix", nil, &balancer.Request{Host: "app.test", Path: "/web"}, ErrNoRoute, 404},
		{"empty request", nil, &balancer.Request{}, ErrNoRoute, 404},
		{
			"all down",
			func(bs []*backend.Backend) {
				for _, b := range bs {
					b.SetState(backend.StateDown)
				}
			},
			apiRequest(), ErrNoBackend, 503,
		},
		{
			"all draining or ejected",
			func(bs []*backend.Backend) {
				bs[0].SetState(backend.StateDraining)
				bs[1].SetState(backend.StateEjected)
				bs[2].SetState(backend.StateDown)
			},
			apiRequest(), ErrNoBackend, 503,
		},
		{
			"none usable, one starting",
			func(bs []*backend.Backend) {
				bs[0].SetState(backend.StateDraining)
				bs[1].SetState(backend.StateEjected)
				bs[2].SetState(backend.StateStarting)
			},
			apiRequest(), ErrQueue, 503, // it would wait for the starting one; the queue holds no one (max 0)
		},
		{
			"all at max_conns",
			func(bs []*backend.Backend) {
				for _, b := range bs {
					b.SetMaxConns(1)
					b.Acquire()
				}
			},
			apiRequest(), ErrQueue, 503, // the queue holds no one (max 0)
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newDispatchFixture(t, rrSettings, 3)
			f.up.SetQueue(0, time.Second)
			if tt.setup != nil {
				tt.setup(f.bs)
			}
			in0, req0, _ := f.totals()
			a, err := f.d.Begin(context.Background(), tt.req)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Begin: err = %v, want %v", err, tt.want)
			}
			if s := StatusFor(err); s != tt.status {
				t.Errorf("StatusFor(%v) = %d, want %d", err, s, tt.status)
			}
			if a.Backend != nil || a.Upstream != nil {
				t.Errorf("failed Begin returned attempt %+v", a)
			}
			if in, req, _ := f.totals(); in != in0 || req != req0 {
				t.Errorf("failed Begin changed counters: in-flight %d→%d requests %d→%d", in0, in, req0, req)
			}
		})
	}
}

func TestDispatcherBeginCountsInFlight(t *testing.T) {
	f := newDispatchFixture(t, rrSettings, 3)
	var attempts []Attempt
	for i := range 6 {
		a, err := f.d.Begin(context.Background(), apiRequest())
		if err != nil {
			t.Fatalf("Begin %d: %v", i, err)
		}
		if a.Upstream != f.up {
			t.Fatalf("Begin %d: upstream %p, want the routed %p", i, a.Upstream, f.up)
		}
		if want := f.bs[i%3]; a.Backend != want {
			t.Errorf("Begin %d: backend %s, want %s (round robin)", i, a.Backend.Addr, want.Addr)
		}
		if a.SetCookie != "" {
			t.Errorf("non-sticky pool set cookie %q", a.SetCookie)
		}
		attempts = append(attempts, a)
		if in, req, _ := f.totals(); in != int64(i+1) || req != uint64(i+1) {
			t.Fatalf("after %d Begins: in-flight %d requests %d", i+1, in, req)
		}
	}
	for _, b := range f.bs {
		if b.InFlight() != 2 {
			t.Errorf("%s in-flight %d, want 2", b.Addr, b.InFlight())
		}
	}
	for i := range attempts {
		f.d.End(&attempts[i], 200, nil)
	}
	if in, req, fail := f.totals(); in != 0 || req != 6 || fail != 0 {
		t.Errorf("after End: in-flight %d requests %d failures %d, want 0 6 0", in, req, fail)
	}
}

// A backend at max_conns is skipped by Begin and usable again after End.
func TestDispatcherMaxConns(t *testing.T) {
	f := newDispatchFixture(t, rrSettings, 1)
	f.bs[0].SetMaxConns(2)
	f.up.SetQueue(0, time.Second)
	a1, err1 := f.d.Begin(context.Background(), apiRequest())
	a2, err2 := f.d.Begin(context.Background(), apiRequest())
	if err1 != nil || err2 != nil {
		t.Fatalf("Begin below max_conns: %v, %v", err1, err2)
	}
	if _, err := f.d.Begin(context.Background(), apiRequest()); !errors.Is(err, ErrQueue) || StatusFor(err) != 503 {
		t.Fatalf("Begin at max_conns without a queue: err = %v, want ErrQueue (503)", err)
	}
	f.d.End(&a1, 200, nil)
	a3, err := f.d.Begin(context.Background(), apiRequest())
	if err != nil {
		t.Fatalf("Begin after End: %v", err)
	}
	f.d.End(&a2, 200, nil)
	f.d.End(&a3, 200, nil)
	if f.bs[0].InFlight() != 0 {
		t.Errorf("in-flight %d, want 0", f.bs[0].InFlight())
	}
}

func TestDispatcherEnd(t *testing.T) {
	clientGone := errors.Join(ErrClientGone, context.Canceled)
	tests := []struct {
		name   string
		status int
		err    error
		failed bool
	}{
		{"200", 200, nil, false},
		{"304", 304, nil, false},
		{"404 is the client's problem", 404, nil, false},
		{"499 from the backend", 499, nil, false},
		{"500", 500, nil, true},
		{"502", 502, nil, true},
		{"503", 503, nil, true},
		{"599", 599, nil, true},
		{"connect error", 0, errors.Join(ErrConnect, errors.New("connection refused")), true},
		{"response timeout", 0, errors.Join(ErrResponseTimeout, errors.New("timeout awaiting response headers")), true},
		{"bad response", 0, errors.Join(ErrBadResponse, io.ErrUnexpectedEOF), true},
		{"body broke off after 200", 200, errors.Join(ErrBadResponse, io.ErrUnexpectedEOF), true},
		{"unclassified error", 0, errors.New("whatever"), true},
		{"client gone before response", 0, clientGone, false},
		{"client gone during body", 200, clientGone, false},
		{"client gone wrapped", 0, fmt.Errorf("copy: %w", clientGone), false},
		{"client gone but backend sent 503", 503, clientGone, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newDispatchFixture(t, rrSettings, 2)
			a, err := f.d.Begin(context.Background(), apiRequest())
			if err != nil {
				t.Fatal(err)
			}
			other, err := f.d.Begin(context.Background(), apiRequest()) // stays in flight on the other backend
			if err != nil {
				t.Fatal(err)
			}
			f.d.End(&a, tt.status, tt.err)
			want := uint64(0)
			if tt.failed {
				want = 1
			}
			if got := a.Backend.Failures(); got != want {
				t.Errorf("failures = %d, want %d", got, want)
			}
			if a.Backend.InFlight() != 0 {
				t.Errorf("in-flight = %d after End, want 0", a.Backend.InFlight())
			}
			if other.Backend.InFlight() != 1 || other.Backend.Failures() != 0 {
				t.Errorf("End touched another backend: in-flight %d failures %d", other.Backend.InFlight(), other.Backend.Failures())
			}
			if a.Backend.Requests() != 1 {
				t.Errorf("requests = %d, want 1", a.Backend.Requests())
			}
		})
	}
}

func TestDispatcherResponded(t *testing.T) {
	f := newDispatchFixture(t, rrSettings, 1)
	b := f.bs[0]

	a, err := f.d.Begin(context.Background(), apiRequest())
	if err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(250 * time.Millisecond)
	f.d.Responded(&a)
	if got := b.Latency(); got != 250*time.Millisecond {
		t.Fatalf("latency after first response = %v, want exactly 250ms (Begin→Responded on the fake clock)", got)
	}
	if b.InFlight() != 1 {
		t.Errorf("Responded changed in-flight to %d", b.InFlight())
	}
	f.d.End(&a, 200, nil)

	// A second, faster response 9.8s later folds in with weight 1-exp(-0.98).
	f.now = f.now.Add(9750 * time.Millisecond)
	a, err = f.d.Begin(context.Background(), apiRequest())
	if err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(50 * time.Millisecond)
	f.d.Responded(&a)
	f.d.End(&a, 200, nil)
	w := math.Exp(-0.98)
	want := time.Duration(250e6*w + 50e6*(1-w))
	if got := b.Latency(); got < want-time.Microsecond || got > want+time.Microsecond {
		t.Errorf("latency after second response = %v, want %v", got, want)
	}

	// An attempt that never got a response records no latency.
	before := b.Latency()
	f.now = f.now.Add(time.Minute)
	a, _ = f.d.Begin(context.Background(), apiRequest())
	f.now = f.now.Add(30 * time.Second)
	f.d.End(&a, 0, errors.Join(ErrResponseTimeout, errors.New("timeout")))
	if b.Latency() != before {
		t.Errorf("End without Responded changed latency %v → %v", before, b.Latency())
	}
}

func TestDispatcherSticky(t *testing.T) {
	f := newDispatchFixture(t, pool.Settings{Algorithm: balancer.AlgRoundRobin, StickyCookie: "srv"}, 3)
	a, err := f.d.Begin(context.Background(), apiRequest())
	if err != nil {
		t.Fatal(err)
	}
	f.d.End(&a, 200, nil)
	if !strings.HasPrefix(a.SetCookie, "srv="+a.Backend.ID+";") {
		t.Fatalf("SetCookie = %q, want srv=%s…", a.SetCookie, a.Backend.ID)
	}
	for range 5 {
		r := apiRequest()
		r.Header.(http.Header).Set("Cookie", "srv="+a.Backend.ID)
		a2, err := f.d.Begin(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		f.d.End(&a2, 200, nil)
		if a2.Backend != a.Backend || a2.SetCookie != "" {
			t.Errorf("cookie for %s: got %s with SetCookie %q", a.Backend.Addr, a2.Backend.Addr, a2.SetCookie)
		}
	}
}

func TestDispatcherSetTable(t *testing.T) {
	f := newDispatchFixture(t, rrSettings, 2)
	a, err := f.d.Begin(context.Background(), apiRequest())
	if err != nil {
		t.Fatal(err)
	}
	empty, err := router.New[*Upstream](nil)
	if err != nil {
		t.Fatal(err)
	}
	f.d.SetTable(empty)
	if _, err := f.d.Begin(context.Background(), apiRequest()); !errors.Is(err, ErrNoRoute) {
		t.Errorf("Begin after SetTable(empty): err = %v, want ErrNoRoute", err)
	}
	// The attempt routed on the old table finishes normally.
	f.d.End(&a, 200, nil)
	if a.Backend.InFlight() != 0 {
		t.Errorf("in-flight %d after End on the old table", a.Backend.InFlight())
	}
}

// Begin/End from many goroutines balance out exactly (run with -race).
func TestDispatcherConcurrent(t *testing.T) {
	f := newDispatchFixture(t, pool.Settings{Algorithm: balancer.AlgLeastConn}, 4)
	f.d.clock = time.Now // the fixture's fake clock is not safe for concurrent use
	const workers, per = 16, 300
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				a, err := f.d.Begin(context.Background(), apiRequest())
				if err != nil {
					t.Errorf("Begin: %v", err)
					return
				}
				f.d.Responded(&a)
				status := 200
				if (w+i)%10 == 0 {
					status = 503
				}
				f.d.End(&a, status, nil)
			}
		})
	}
	wg.Wait()
	in, req, fail := f.totals()
	if in != 0 || req != workers*per || fail != workers*per/10 {
		t.Errorf("in-flight %d requests %d failures %d, want 0 %d %d", in, req, fail, workers*per, workers*per/10)
	}
}
