package server

import (
	"context"
	"fmt"

	"ballast/internal/backend"
	"ballast/internal/config"
	"ballast/internal/health"
)

// monitor is one pool's running active health check.
type monitor struct {
	cfg    config.HealthCheck // as configured, to tell whether a reload changed it
	mon    *health.Monitor
	cancel context.CancelFunc
	done   chan struct{}
}

// activeCheck reports whether the pool (nil: a pool no longer configured)
// has active health checks.
func activeCheck(pc *config.Pool) bool {
	return pc != nil && pc.HealthCheck != nil && pc.HealthCheck.Type != config.HealthNone
}

// syncMonitors makes the running health checks match cfg: a pool whose
// health_check did not change keeps its monitor (and its rise/fall counters)
// and gets the pool's current backends; a changed one is restarted; a removed
// one is stopped and the backends it had marked down are put back up, since
// nothing would ever bring them back. s.mu must be held and Run must have
// started (s.runCtx set).
func (s *Server) syncMonitors(cfg *config.Config) error {
	for name, m := range s.monitors {
		pc, ok := cfg.Pools[name]
		if ok && activeCheck(pc) && *pc.HealthCheck == m.cfg {
			continue
		}
		m.stop()
		delete(s.monitors, name)
		if up, ok := s.ups[name]; ok && !activeCheck(pc) {
			for _, b := range up.Pool.Snapshot().Backends {
				if b.State() == backend.StateDown {
					b.SetState(backend.StateUp)
				}
			}
		}
	}
	for _, name := range cfg.PoolOrder {
		pc := cfg.Pools[name]
		up, ok := s.ups[name]
		if !ok || !activeCheck(pc) {
			continue
		}
		if m, ok := s.monitors[name]; ok {
			m.mon.Update(up.Pool.Snapshot().Backends)
			continue
		}
		hcfg, chk, err := health.FromConfig(pc.HealthCheck)
		if err != nil {
			return fmt.Errorf("pool %q: %w", name, err)
		}
		hc := pc.HealthCheck
		mon := health.NewMonitor(name, hcfg, chk, s.log)
		mon.Update(up.Pool.Snapshot().Backends)
		ctx, cancel := context.WithCancel(s.runCtx)
		m := &monitor{cfg: *hc, mon: mon, cancel: cancel, done: make(chan struct{})}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer close(m.done)
			mon.Run(ctx)
		}()
		s.monitors[name] = m
	}
	return nil
}

// syncRefused tells every pool what to do with a backend whose host refused a
// connection: mark it down at once when the pool has active checks (they
// bring it back), else eject it when it has passive detection; a pool with
// neither keeps trying it (each refusal costs a request only a local retry).
// s.mu must be held; call after syncMonitors and syncPassive.
func (s *Server) syncRefused() {
	for name, up := range s.ups {
		var f func(*backend.Backend)
		if m, ok := s.monitors[name]; ok {
			mon := m.mon
			f = func(b *backend.Backend) { mon.MarkDown(b, "connection refused") }
		} else if o := up.Outliers(); o != nil {
			f = func(b *backend.Backend) { o.Eject(b, "connection refused") }
		}
		up.OnRefused(f)
	}
}

// stop ends the monitor and waits for its probes to finish.
func (m *monitor) stop() {
	m.cancel()
	<-m.done
}

// syncPassive gives every pool with a passive section its outlier detection
// (rebuilt on each reload: it holds no state of its own, the counters live on
// the backends) and takes it from pools without one.
func (s *Server) syncPassive(cfg *config.Config) {
	for name, up := range s.ups {
		pc := cfg.Pools[name]
		if pc == nil || pc.Passive == nil {
			up.SetOutliers(nil)
			continue
		}
		p := pc.Passive
		pool := up.Pool
		up.SetOutliers(health.NewOutliers(name, health.PassiveConfig{
			ConsecutiveFailures: p.ConsecutiveFailures,
			EjectFor:            p.EjectFor.D(),
			MaxEjectedPercent:   p.MaxEjectedPercent,
			Active:              activeCheck(pc),
		}, func() []*backend.Backend { return pool.Snapshot().Backends }, &s.ejections, s.log))
	}
}
