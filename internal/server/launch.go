package server

import (
	"ballast/internal/admin"
	"context"
	"errors"
	"os"
	"strconv"
	"sync"

	"ballast/internal/backend"
	"ballast/internal/config"
	"ballast/internal/health"
	"ballast/internal/pool"
	"ballast/internal/supervisor"
)

// launchSpec turns a pool's launch section into what its supervisor runs.
func launchSpec(pc *config.Pool) (supervisor.Spec, string) {
	l := pc.Launch
	lo, hi, _ := config.ParsePortRange(l.Ports) // validated
	spec := supervisor.Spec{
		Command: l.Command, Instances: l.Instances, PortLo: lo, PortHi: hi,
		Workdir: l.Workdir, Env: l.Env, MaxConns: l.MaxConns,
		StartTimeout: l.StartTimeout.D(), StopTimeout: l.StopTimeout.D(),
	}
	note := ""
	if l.MaxConns == 0 {
		env := func(k string) string {
			if v, ok := l.Env[k]; ok {
				return v
			}
			return os.Getenv(k)
		}
		if n, why := supervisor.WorkerSlots(l.Command, env); n > 0 {
			spec.MaxConns = n
			note = "max_conns per instance set to " + strconv.Itoa(n) +
				" (the command's workers × threads; each serves one request at a time)"
		} else {
			note = "max_conns per instance not set (" + why + "): no cap"
		}
	}
	if _, chk, err := health.FromConfig(pc.HealthCheck); err == nil && chk != nil {
		timeout := pc.HealthCheck.Timeout.D()
		spec.Ready = func(addr string) error {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			return chk.Check(ctx, addr)
		}
	}
	return spec, note
}

// launchPool is a launched pool as its supervisor sees it: the pool of that
// name in the running config, whatever reloads happen meanwhile.
type launchPool struct {
	s    *Server
	name string
}

// Join adds b (starting) to the pool and to its health checks.
func (lp launchPool) Join(b *backend.Backend) error {
	s := lp.s
	s.mu.Lock()
	defer s.mu.Unlock()
	up, ok := s.ups[lp.name]
	if !ok {
		return errPoolGone
	}
	if err := up.Pool.Add(b); err != nil {
		return err
	}
	if m := s.monitors[lp.name]; m != nil {
		m.mon.Update(up.Pool.Snapshot().Backends)
	}
	return nil
}

// Leave takes b out of the pool, if it is still there.
func (lp launchPool) Leave(b *backend.Backend) {
	s := lp.s
	s.mu.Lock()
	defer s.mu.Unlock()
	up, ok := s.ups[lp.name]
	if !ok || up.Pool.Backend(b.Addr) != b {
		return
	}
	if _, err := up.Pool.Remove(b.Addr); err != nil {
		return
	}
	if m := s.monitors[lp.name]; m != nil {
		m.mon.Update(up.Pool.Snapshot().Backends)
	}
}

// errPoolGone: a launched instance joins a pool that a reload removed.
var errPoolGone = errors.New("the pool is no longer configured")

// syncLaunch makes the running supervisors match cfg: a new launch section
// starts one, a changed one is applied (rolling the instances when what they
// run changed), a removed one is stopped in the background. s.mu is held and
// the pools of cfg are built.
func (s *Server) syncLaunch(cfg *config.Config) {
	for name, sup := range s.sups {
		if pc, ok := cfg.Pools[name]; ok && pc.Launch != nil {
			continue
		}
		delete(s.sups, name)
		s.log.Info("launch removed; stopping its instances", "pool", name)
		s.stopping.Go(sup.Stop)
	}
	for _, name := range cfg.PoolOrder {
		pc := cfg.Pools[name]
		if pc.Launch == nil {
			continue
		}
		spec, note := launchSpec(pc)
		if sup, ok := s.sups[name]; ok {
			sup.Apply(spec)
			continue
		}
		if note != "" {
			s.log.Info(note, "pool", name)
		}
		sup := supervisor.New(name, spec, launchPool{s, name}, s.log)
		sup.OnChange(func() { s.kickQueue(name) })
		// The first instances join now, starting: requests that come before
		// one is ready wait for it rather than find an empty pool.
		if up, ok := s.ups[name]; ok {
			for _, b := range sup.Start(s.runCtx) {
				if err := up.Pool.Add(b); err != nil {
					s.log.Error("launched instance not added", "pool", name, "backend", b.Addr, "err", err)
				}
			}
			if m := s.monitors[name]; m != nil {
				m.mon.Update(up.Pool.Snapshot().Backends)
			}
		}
		s.sups[name] = sup
	}
}

// launchedBackends returns the backends of p (the named pool) that its
// supervisor runs: a reload keeps them, while it rebuilds the rest from the
// file.
func (s *Server) launchedBackends(name string, p *pool.Pool) []*backend.Backend {
	sup, ok := s.sups[name]
	if !ok {
		return nil
	}
	var out []*backend.Backend
	for _, b := range p.Snapshot().Backends {
		if sup.Owns(b) {
			out = append(out, b)
		}
	}
	return out
}

// stopLaunched stops every supervisor's instances, all pools at once, and
// waits for those stopped by earlier reloads.
func (s *Server) stopLaunched() {
	s.mu.Lock()
	sups := s.sups
	s.sups = make(map[string]*supervisor.Supervisor)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, sup := range sups {
		wg.Go(sup.Stop)
	}
	wg.Wait()
	s.stopping.Wait()
}

// LaunchReady is closed once every launched pool's first instances are ready
// (or had their start_timeout): what a binary upgrade waits for before the
// old process stops accepting.
func (s *Server) LaunchReady() <-chan struct{} {
	s.mu.Lock()
	sups := make([]*supervisor.Supervisor, 0, len(s.sups))
	for _, sup := range s.sups {
		sups = append(sups, sup)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, sup := range sups {
			<-sup.Ready()
		}
	}()
	return done
}

// launchState is a supervisor's instances as the admin API shows them.
func launchState(sup *supervisor.Supervisor) *admin.Launch {
	spec := sup.Spec()
	l := &admin.Launch{Command: spec.Command, MaxConns: spec.MaxConns, Restarts: sup.Restarts(),
		Instances: []admin.Instance{}}
	for _, in := range sup.Status() {
		l.Instances = append(l.Instances, admin.Instance{ID: in.ID, PID: in.PID, Addr: in.Addr,
			State: in.State, Restarts: in.Restarts, LastExit: in.LastExit, Since: in.Since})
	}
	return l
}

// kickQueue hands free slots of the named pool to its waiting requests (an
// instance came up).
func (s *Server) kickQueue(name string) {
	s.mu.Lock()
	up := s.ups[name]
	s.mu.Unlock()
	if up != nil {
		up.KickQueue()
	}
}
