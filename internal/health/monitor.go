package health

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"ballast/internal/backend"
)

// Config is the schedule and thresholds of a Monitor. Zero or negative
// values take the defaults of the health_check config section.
type Config struct {
	// Interval is the time between the starts of two probes of one backend,
	// jittered by ±10%. Default 2s.
	Interval time.Duration
	// Timeout bounds one probe (it becomes the probe's ctx deadline). It
	// should not exceed Interval. Default 1s, or Interval if that is shorter.
	Timeout time.Duration
	// Rise is how many consecutive passes mark a down or starting backend up.
	// Default 2.
	Rise int
	// Fall is how many consecutive failures mark an up backend down; with
	// Fall > 1 a single failed probe never takes a backend out. Default 3.
	Fall int
}

// Defaults of Config, the same as those of the health_check config section.
const (
	DefaultInterval = 2 * time.Second
	DefaultTimeout  = 1 * time.Second
	DefaultRise     = 2
	DefaultFall     = 3
)

// ErrRunning is returned by Run when the Monitor is already running.
var ErrRunning = errors.New("health: monitor already running")

// withDefaults fills in the zero fields of c.
func (c Config) withDefaults() Config {
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = min(DefaultTimeout, c.Interval)
	}
	if c.Rise < 1 {
		c.Rise = DefaultRise
	}
	if c.Fall < 1 {
		c.Fall = DefaultFall
	}
	return c
}

// Monitor probes the backends of one pool and moves them between up and down.
//
// Each backend has its own prober goroutine, owned by Run. Its first probe
// comes after a random delay in [0, Interval) and the next ones every
// Interval ±10%, so a pool of a thousand backends is never probed in
// lockstep. A backend in state up goes down after Fall consecutive failures;
// one in state down or starting goes up after Rise consecutive passes. A
// draining or ejected backend is left alone (its counters keep running). Each
// transition is logged once: Warn "backend down" with the last probe's
// reason, Info "backend up".
type Monitor struct {
	pool string
	cfg  Config
	chk  Checker
	log  *slog.Logger
	// randN returns a uniform value in [0, n); rand.Int64N unless a test
	// replaces it before Run.
	randN func(n int64) int64

	probed atomic.Uint64

	mu      sync.Mutex
	probers map[*backend.Backend]*prober
	runCtx  context.Context // non-nil while Run accepts new probers
	running bool            // from Run's start until all its probers stopped
	wg      sync.WaitGroup  // the prober goroutines of the current Run
}

// prober is the health record of one backend.
type prober struct {
	b *backend.Backend
	// cancel stops the prober's goroutine; nil when none runs. Guarded by
	// Monitor.mu.
	cancel context.CancelFunc
	// passes and fails are the current streaks. Only the prober's goroutine
	// touches them (one at a time: a new Run starts only after the last
	// one's goroutines have all stopped).
	passes, fails int
	// last is the reason of the last probe, "" when it passed.
	last atomic.Pointer[string]
	// passed and failed count every probe result, for metrics.
	passed, failed atomic.Uint64
	// restart asks the prober's goroutine to start its pass streak again:
	// the backend was marked down from outside (MarkDown).
	restart atomic.Bool
}

// NewMonitor returns a monitor for the named pool that probes with chk
// (which must not be nil) and logs transitions to log (nil discards them).
// It probes nothing until Update names backends and Run runs.
func NewMonitor(pool string, cfg Config, chk Checker, log *slog.Logger) *Monitor {
	if chk == nil {
		panic("health: NewMonitor with a nil Checker")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Monitor{
		pool:    pool,
		cfg:     cfg.withDefaults(),
		chk:     chk,
		log:     log,
		randN:   rand.Int64N,
		probers: make(map[*backend.Backend]*prober),
	}
}

// Run probes until ctx is done, then returns nil once every prober goroutine
// has stopped. A probe in flight is canceled and its result ignored. Run may
// be called again after it returned (the counters of the backends carry
// over); a second concurrent Run returns ErrRunning.
func (m *Monitor) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.running {
		m.mu.Unlock()
		return ErrRunning
	}
	m.running = true
	m.runCtx = ctx
	for _, p := range m.probers {
		m.start(p)
	}
	m.mu.Unlock()

	<-ctx.Done()

	m.mu.Lock()
	m.runCtx = nil
	for _, p := range m.probers {
		if p.cancel != nil {
			p.cancel()
			p.cancel = nil
		}
	}
	m.mu.Unlock()
	// No Update can add to wg from here on: runCtx is nil.
	m.wg.Wait()
	m.mu.Lock()
	m.running = false
	m.mu.Unlock()
	return nil
}

// Update sets the backends to probe. It is safe to call at any time, before
// or during Run, from any goroutine: probers start for new backends and stop
// for removed ones (a probe in flight is canceled), and a backend that stays
// (the same pointer) keeps its prober, schedule and counters. Nil entries and
// duplicates are ignored.
func (m *Monitor) Update(backends []*backend.Backend) {
	keep := make(map[*backend.Backend]struct{}, len(backends))
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range backends {
		if b == nil {
			continue
		}
		keep[b] = struct{}{}
		if _, ok := m.probers[b]; ok {
			continue
		}
		p := &prober{b: b}
		m.probers[b] = p
		if m.runCtx != nil {
			m.start(p)
		}
	}
	for b, p := range m.probers {
		if _, ok := keep[b]; ok {
			continue
		}
		if p.cancel != nil {
			p.cancel()
		}
		delete(m.probers, b)
	}
}

// Probed returns the number of probes completed so far (canceled ones are not
// counted). It is incremented after the probe's result has been applied to
// the backend's state.
func (m *Monitor) Probed() uint64 { return m.probed.Load() }

// LastError returns the reason the last probe of the backend at addr failed,
// or "" when it passed, has not run yet, or no such backend is probed.
func (m *Monitor) LastError(addr string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	for b, p := range m.probers {
		if b.Addr == addr {
			if r := p.last.Load(); r != nil {
				return *r
			}
			return ""
		}
	}
	return ""
}

// Results returns how many probes of the backend at addr passed and failed.
func (m *Monitor) Results(addr string) (passed, failed uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for b, p := range m.probers {
		if b.Addr == addr {
			return p.passed.Load(), p.failed.Load()
		}
	}
	return 0, 0
}

// start runs p's goroutine under the current Run. m.mu is held.
func (m *Monitor) start(p *prober) {
	ctx, cancel := context.WithCancel(m.runCtx)
	p.cancel = cancel
	m.wg.Go(func() { m.loop(ctx, p) })
}

// loop probes p.b on its schedule until ctx is done.
func (m *Monitor) loop(ctx context.Context, p *prober) {
	t := time.NewTimer(m.firstDelay())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		began := time.Now()
		m.probe(ctx, p)
		// Interval runs from start to start, so a slow probe does not
		// stretch the schedule.
		t.Reset(max(0, m.nextDelay()-time.Since(began)))
	}
}

// firstDelay returns a uniform delay in [0, Interval): backends added at
// once (at start, on a reload) spread their probes over the interval.
func (m *Monitor) firstDelay() time.Duration {
	return time.Duration(m.randN(int64(m.cfg.Interval)))
}

// nextDelay returns Interval ±10%, uniformly.
func (m *Monitor) nextDelay() time.Duration {
	iv := int64(m.cfg.Interval)
	spread := iv / 5
	if spread == 0 {
		return m.cfg.Interval
	}
	return time.Duration(iv - spread/2 + m.randN(spread+1))
}

// probe runs one check of p.b and applies its result.
func (m *Monitor) probe(ctx context.Context, p *prober) {
	pctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	err := m.chk.Check(pctx, p.b.Addr)
	cancel()
	if ctx.Err() != nil {
		// Stopping: the result says nothing about the backend.
		return
	}
	m.record(p, err)
	m.probed.Add(1)
}

// record counts one probe result and moves the backend when a streak
// reaches its threshold.
func (m *Monitor) record(p *prober, err error) {
	if p.restart.Swap(false) {
		p.passes = 0
	}
	reason := Reason(err)
	if err == nil {
		p.passed.Add(1)
		p.passes++
		p.fails = 0
		p.last.Store(nil)
	} else {
		p.failed.Add(1)
		p.fails++
		p.passes = 0
		p.last.Store(&reason)
		if p.b.State() == backend.StateStarting {
			// A starting backend is not serving yet: its failures are
			// expected and must not count against it once it is up.
			p.fails = 0
		}
	}
	switch from := p.b.State(); {
	case from == backend.StateUp && p.fails >= m.cfg.Fall:
		if transition(p.b, from, backend.StateDown) {
			m.log.Warn("backend down", "pool", m.pool, "backend", p.b.Addr,
				"reason", reason, "consecutive", p.fails)
		}
	case (from == backend.StateDown || from == backend.StateStarting) && p.passes >= m.cfg.Rise:
		if transition(p.b, from, backend.StateUp) {
			m.log.Info("backend up", "pool", m.pool, "backend", p.b.Addr,
				"from", from.String(), "consecutive", p.passes)
		}
	}
}

// MarkDown takes b out at once, without waiting for fall failed probes, when
// live traffic proves it unreachable (its host refused a connection): it goes
// down and needs rise passing probes, counted from now, to come back. It
// reports whether b was up and is now down; b must be one of the monitor's
// backends.
func (m *Monitor) MarkDown(b *backend.Backend, reason string) bool {
	m.mu.Lock()
	p, ok := m.probers[b]
	m.mu.Unlock()
	if !ok || !transition(b, backend.StateUp, backend.StateDown) {
		return false
	}
	p.restart.Store(true)
	p.last.Store(&reason)
	m.log.Warn("backend down", "pool", m.pool, "backend", b.Addr, "reason", reason, "source", "traffic")
	return true
}

// transition moves b from state from to state to and reports whether it did.
// Another writer (the admin API draining b, passive ejection) may change b's
// state between our read and this write; then theirs wins.
func transition(b *backend.Backend, from, to backend.State) bool {
	return b.CompareAndSwapState(from, to)
}
