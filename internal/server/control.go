package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"ballast/internal/admin"
	"ballast/internal/backend"
	"ballast/internal/config"
	"ballast/internal/pool"
)

// control is the server as the admin API drives it (admin.Control).
type control struct{ s *Server }

var _ admin.Control = control{}

// State returns every pool and backend as the admin API shows them.
func (c control) State() admin.State {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	st := admin.State{Version: s.Version, ConfigHash: s.cfg.Hash, Started: s.started.UTC(),
		Pools: []admin.Pool{}, Listeners: []admin.Listener{}}
	for _, lc := range s.cfg.Listeners {
		st.Listeners = append(st.Listeners, admin.Listener{Name: lc.Name, Listen: lc.Listen, Protocol: lc.Protocol})
	}
	if n := s.vrrp; n != nil {
		st.VRRP = &admin.VRRP{State: n.speaker.State(), Priority: n.cfg.Priority, Healthy: n.healthy, VirtualIPs: n.cfg.VirtualIPs}
	}
	for _, name := range s.cfg.PoolOrder {
		up, ok := s.ups[name]
		if !ok {
			continue
		}
		pc := s.cfg.Pools[name]
		p := admin.Pool{Name: name, Algorithm: pc.Algorithm, Backends: []admin.Backend{},
			Queue: admin.Queue{Length: up.QueueLen(), Max: pc.Queue.Max, TimeoutMS: pc.Queue.Timeout.D().Milliseconds(),
				Admission: pc.Queue.Admission, WaitingSlow: up.QueueLenSlow()}}
		if am := up.Admission(); pc.Queue.Admission == config.AdmissionAdaptive {
			p.Queue.SlowInService, p.Queue.Reserve = am.SlowInService, am.Reserve
		}
		m := s.monitors[name]
		for _, b := range up.Pool.Snapshot().Backends {
			ab := admin.Backend{Addr: b.Addr, State: b.State().String(), Weight: b.Weight(), MaxConns: b.MaxConns(),
				Backup: b.Backup(), InFlight: b.InFlight(), Requests: b.Requests(), Failures: b.Failures(),
				LatencyMS: float64(b.Latency().Microseconds()) / 1000, Ejections: b.Ejections()}
			if m != nil {
				ab.LastCheckError = m.mon.LastError(b.Addr)
			}
			p.Backends = append(p.Backends, ab)
		}
		if sup := s.sups[name]; sup != nil {
			p.Launch = launchState(sup)
		}
		st.Pools = append(st.Pools, p)
	}
	return st
}

// pool returns the named pool and its active health check, under s.mu.
func (c control) pool(name string) (*pool.Pool, *monitor, error) {
	up, ok := c.s.ups[name]
	if !ok {
		return nil, nil, fmt.Errorf("no pool %q: %w", name, admin.ErrNotFound)
	}
	return up.Pool, c.s.monitors[name], nil
}

// AddBackend adds a backend to a running pool. With active health checks it
// starts as "starting" and gets traffic once it passes rise probes; without,
// it gets traffic at once (with a slow-start ramp when the pool has one).
// The change lasts until the next reload, which rebuilds pools from the file.
func (c control) AddBackend(name string, nb admin.NewBackend) error {
	if err := checkAddr(nb.Addr); err != nil {
		return err
	}
	if nb.Weight < 1 || nb.Weight > config.MaxWeight {
		return fmt.Errorf("weight %d: must be between 1 and %d: %w", nb.Weight, config.MaxWeight, admin.ErrInvalid)
	}
	if nb.MaxConns < 0 || nb.MaxConns > config.MaxMaxConns {
		return fmt.Errorf("max_conns %d: must be between 0 and %d: %w", nb.MaxConns, config.MaxMaxConns, admin.ErrInvalid)
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	p, m, err := c.pool(name)
	if err != nil {
		return err
	}
	if p.Backend(nb.Addr) != nil {
		return fmt.Errorf("pool %q already has backend %s: %w", name, nb.Addr, admin.ErrConflict)
	}
	b := backend.New(name, nb.Addr, nb.Weight)
	b.SetMaxConns(nb.MaxConns)
	b.SetBackup(nb.Backup)
	if m != nil {
		b.SetState(backend.StateStarting)
	}
	if err := p.Add(b); err != nil {
		return fmt.Errorf("%w: %w", err, admin.ErrConflict)
	}
	if m != nil {
		m.mon.Update(p.Snapshot().Backends)
	}
	s.ups[name].KickQueue()
	s.log.Info("backend added", "pool", name, "backend", nb.Addr, "weight", nb.Weight, "source", "admin")
	return nil
}

// checkAddr accepts host:port with a port in 1..65535.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err == nil && host != "" {
		if n, perr := strconv.Atoi(port); perr == nil && n >= 1 && n <= 65535 {
			return nil
		}
	}
	return fmt.Errorf("addr %q: want host:port, like 127.0.0.1:8001: %w", addr, admin.ErrInvalid)
}

// DrainBackend stops new requests to a backend; those in flight finish.
func (c control) DrainBackend(name, addr string) error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	p, _, err := c.pool(name)
	if err != nil {
		return err
	}
	if _, err := p.Drain(addr); err != nil {
		return fmt.Errorf("%w: %w", err, admin.ErrNotFound)
	}
	s.log.Info("backend draining", "pool", name, "backend", addr, "source", "admin")
	return nil
}

// RemoveBackend drains a backend, waits for its requests in flight (within
// ctx), then takes it out of the pool.
func (c control) RemoveBackend(ctx context.Context, name, addr string) error {
	s := c.s
	s.mu.Lock()
	p, _, err := c.pool(name)
	var b *backend.Backend
	if err == nil {
		if b, err = p.Drain(addr); err != nil {
			err = fmt.Errorf("%w: %w", err, admin.ErrNotFound)
		}
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if err := b.WaitIdle(ctx); err != nil {
		return fmt.Errorf("backend %s still has %d requests in flight (left draining): %w", addr, b.InFlight(), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := p.Remove(addr); err != nil {
		return fmt.Errorf("%w: %w", err, admin.ErrNotFound)
	}
	if m := s.monitors[name]; m != nil {
		m.mon.Update(p.Snapshot().Backends)
	}
	s.log.Info("backend removed", "pool", name, "backend", addr, "source", "admin")
	return nil
}

// RestartPool restarts a launched pool's instances (see launch).
// It returns once every instance has been replaced, one at a time.
func (c control) RestartPool(ctx context.Context, name string) error {
	s := c.s
	s.mu.Lock()
	_, _, err := c.pool(name)
	sup := s.sups[name]
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if sup == nil {
		return fmt.Errorf("pool %q is not launched by ballast (no launch section): nothing to restart: %w", name, admin.ErrConflict)
	}
	s.log.Info("rolling restart", "pool", name, "source", "admin")
	if err := sup.Restart(ctx); err != nil {
		return fmt.Errorf("pool %q: rolling restart stopped: %w", name, err)
	}
	return nil
}

// Reload re-reads the config file, as SIGHUP does.
func (c control) Reload() error { return c.s.ReloadFile() }

// Events returns recent backend state changes.
func (c control) Events(since uint64) ([]admin.Event, uint64) { return c.s.events.since(since) }

// ReloadFile re-reads the config file the server was started with and
// applies it. A file with any problem is rejected whole: every problem is
// logged, counted in the metrics and returned (config.Problems), and the
// running config keeps serving.
func (s *Server) ReloadFile() error {
	s.mu.Lock()
	file := s.cfg.File
	s.mu.Unlock()
	if file == "" {
		return errors.New("the config was not loaded from a file: nothing to reload")
	}
	cfg, err := config.Load(file)
	if err == nil {
		err = s.Reload(cfg)
	}
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			for _, p := range ps {
				s.log.Error("reload rejected", "problem", p.String())
			}
		} else {
			s.log.Error("reload rejected", "err", err)
		}
		if s.metrics != nil {
			s.metrics.Reloaded(false, "")
		}
		return err
	}
	return nil
}
