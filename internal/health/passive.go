package health

import (
	"log/slog"
	"time"

	"ballast/internal/backend"
)

// PassiveConfig is passive outlier detection: ejecting a backend that live
// traffic shows to be failing.
type PassiveConfig struct {
	// ConsecutiveFailures ejects a backend after this many failed exchanges
	// in a row (connect errors, resets, timeouts, 5xx).
	ConsecutiveFailures int
	// EjectFor is the first ejection's length; each further ejection of the
	// same backend doubles it, up to maxEjectFactor times.
	EjectFor time.Duration
	// MaxEjectedPercent caps the share of the pool's backends that may be
	// ejected at once, so that one bad deploy cannot empty the pool.
	MaxEjectedPercent int
	// Active reports that the pool has active health checks: an ejected
	// backend then returns through them (it is set down when its ejection
	// ends, and the check brings it up), else it returns up directly.
	Active bool
}

// maxEjectFactor caps how much repeated ejections lengthen: 2^4 × eject_for.
const maxEjectFactor = 16

// Outliers ejects the backends of one pool that fail live traffic. Report is
// called on the request path: it reads and writes atomics only, and takes
// time (a timer, a scan of the pool) only when a backend is to be ejected.
type Outliers struct {
	pool     string
	cfg      PassiveConfig
	log      *slog.Logger
	backends func() []*backend.Backend // the pool's current backends
	timers   *Timers
}

// NewOutliers returns passive outlier detection for a pool whose current
// backends backends returns; ejections end through timers (nil: a set of
// its own). Changes are logged to log (nil discards them).
func NewOutliers(pool string, cfg PassiveConfig, backends func() []*backend.Backend, timers *Timers, log *slog.Logger) *Outliers {
	if timers == nil {
		timers = &Timers{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Outliers{pool: pool, cfg: cfg, log: log, backends: backends, timers: timers}
}

// Report records the outcome of one exchange with b, after backend.Release
// has counted it.
func (o *Outliers) Report(b *backend.Backend, failed bool) {
	if !failed {
		return // backend.Release already ended the streak
	}
	if b.FailureStreak() < o.cfg.ConsecutiveFailures || b.State() != backend.StateUp {
		return
	}
	o.eject(b, "consecutive_failures", b.FailureStreak())
}

// Eject takes b out at once, without waiting for consecutive failures, when
// live traffic proves it unreachable (its host refused a connection) — within
// the max_ejected_percent cap, like any ejection. It reports whether it did.
func (o *Outliers) Eject(b *backend.Backend, reason string) bool {
	return o.eject(b, "reason", reason)
}

// eject ejects b if there is room, logging why (key, val).
func (o *Outliers) eject(b *backend.Backend, key string, val any) bool {
	if b.State() != backend.StateUp || !o.roomToEject() {
		return false
	}
	if !b.CompareAndSwapState(backend.StateUp, backend.StateEjected) {
		return false // someone else (another request, a health check) got there first
	}
	n := b.CountEjection()
	d := o.cfg.EjectFor * time.Duration(min(1<<(n-1), maxEjectFactor))
	o.log.Warn("backend ejected", "pool", o.pool, "backend", b.Addr, key, val, "for", d.String())
	b.ResetFailureStreak()
	o.timers.afterFunc(d, func() { o.readmit(b) })
	return true
}

// roomToEject reports whether one more ejection keeps the ejected share of
// the pool within MaxEjectedPercent.
func (o *Outliers) roomToEject() bool {
	bs := o.backends()
	ejected := 0
	for _, b := range bs {
		if b.State() == backend.StateEjected {
			ejected++
		}
	}
	return (ejected+1)*100 <= o.cfg.MaxEjectedPercent*len(bs)
}

// readmit ends b's ejection: through the active check when there is one.
func (o *Outliers) readmit(b *backend.Backend) {
	to := backend.StateUp
	if o.cfg.Active {
		to = backend.StateDown
	}
	if b.CompareAndSwapState(backend.StateEjected, to) {
		o.log.Info("backend ejection over", "pool", o.pool, "backend", b.Addr, "now", to.String())
	}
}
