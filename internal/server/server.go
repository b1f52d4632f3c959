// Package server is ballast's composition root: it turns a config into pools,
// routing tables and listeners, swaps them on reload, and owns the lifetime of
// every goroutine it starts — Run returns only when all of them have stopped.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"ballast/internal/config"
	"ballast/internal/health"
	"ballast/internal/metrics"
	"ballast/internal/pool"
	"ballast/internal/supervisor"
)

// Server runs one ballast instance.
type Server struct {
	log *slog.Logger
	reg *pool.Registry

	mu        sync.Mutex // serialises Run's start, Reload and shutdown; never on the request path
	cfg       *config.Config
	ups       upstreams
	listeners map[string]*listener
	monitors  map[string]*monitor               // active health checks by pool
	sups      map[string]*supervisor.Supervisor // launched pools' processes
	vrrp      *vrrpNode                         // cluster.vrrp's speaker, or nil
	// vrrpAfter, when set, delays the speaker's start (StartVRRPAfter);
	// vrrpWaiting is true while Run waits for it.
	vrrpAfter   <-chan struct{}
	vrrpWaiting bool
	stopping    sync.WaitGroup // supervisors stopping after a reload removed them
	// ejections are the pending ends of passive ejections, across reloads;
	// stopped when Run returns.
	ejections health.Timers
	running   bool
	runCtx    context.Context // Run's context: the lifetime of monitors
	wg        sync.WaitGroup  // one per goroutine the server starts
	ready     chan struct{}   // closed once every listener is bound

	// Version is what the admin API reports as ballast's version; set before Run.
	Version string
	started time.Time
	metrics *metrics.Metrics
	sink    sink
	events  events
	// the admin listener, the section it runs with and its token
	admin      *adminServer
	adminCfg   *config.Admin
	adminToken string
	// inherited are listening sockets handed over by the process this one
	// upgrades, by listener name, until Run binds (see Inherit).
	inherited map[string]*net.TCPListener
}

// New prepares a server for cfg (already validated). It binds nothing yet.
func New(cfg *config.Config, log *slog.Logger) (*Server, error) {
	s := &Server{
		log:       log,
		reg:       pool.NewRegistry(),
		listeners: make(map[string]*listener),
		monitors:  make(map[string]*monitor),
		sups:      make(map[string]*supervisor.Supervisor),
		ready:     make(chan struct{}),
		Version:   "dev",
	}
	ups, _, err := s.buildUpstreams(cfg, nil)
	if err != nil {
		return nil, err
	}
	s.cfg, s.ups = cfg, ups
	return s, nil
}

// Run binds every listener, serves until ctx is done, then shuts down
// gracefully: it stops accepting, lets in-flight requests finish within the
// config's shutdown_timeout, closes what is left and returns. A listener that
// cannot bind (address in use, permission) is returned as an error before any
// traffic is served.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	for _, lc := range s.cfg.Listeners {
		l, err := s.newListener(&lc)
		if err == nil {
			s.listeners[lc.Name] = l
			err = l.setUpstreams(s.ups)
		}
		if err != nil {
			s.closeAll()
			s.mu.Unlock()
			return err
		}
	}
	s.runCtx = ctx
	s.started = time.Now()
	s.syncPassive(s.cfg)
	if err := s.syncMonitors(s.cfg); err != nil {
		s.closeAll()
		s.mu.Unlock()
		return err
	}
	s.syncRefused()
	if err := s.startObserving(s.cfg); err != nil {
		s.closeAll()
		s.mu.Unlock()
		return err
	}
	if s.vrrpAfter != nil {
		s.deferVRRP()
	} else if err := s.startVRRP(s.cfg); err != nil {
		s.closeAll()
		s.mu.Unlock()
		return err
	}
	s.syncLaunch(s.cfg)
	s.closeInherited()
	for _, lc := range s.cfg.Listeners {
		s.serve(s.listeners[lc.Name])
	}
	s.running = true
	close(s.ready)
	s.mu.Unlock()

	<-ctx.Done()
	s.shutdown()
	s.wg.Wait()
	s.ejections.Stop()
	s.sink.setAccessLog(nil)
	return nil
}

// Ready is closed once Run has bound every listener.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the bound address of the named listener, or nil.
func (s *Server) Addr(name string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.listeners[name]; ok {
		return l.ln.Addr()
	}
	return nil
}

// Pool returns the named pool of the running config, or nil.
func (s *Server) Pool(name string) *pool.Pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if up, ok := s.ups[name]; ok {
		return up.Pool
	}
	return nil
}

// Reload applies a new (validated) config: pools are updated in place (their
// backends keep health state and counters), routing tables are swapped
// atomically, listeners whose address and protocol did not change keep their
// sockets, new ones are bound and removed ones drained. A TLS listener that
// keeps its socket re-reads its certificate files (even when their paths did
// not change), for new handshakes. If a new listener cannot bind, or a
// certificate cannot be loaded, nothing changes and the error is returned.
func (s *Server) Reload(cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return errors.New("server is not running")
	}
	// Bind what is new first, and read the certificates of the TLS listeners
	// that stay (their files may have new contents): the only steps that can
	// fail for outside reasons.
	fresh := make(map[string]*listener)
	certs := make(map[string]*tls.Config)
	for _, lc := range cfg.Listeners {
		if old, ok := s.listeners[lc.Name]; ok && old.sameSocket(&lc) {
			if lc.TLS == nil {
				continue
			}
			conf, err := handshakeConfig(&lc)
			if err != nil {
				for _, f := range fresh {
					f.ln.Close()
				}
				return err
			}
			certs[lc.Name] = conf
			continue
		}
		l, err := s.newListener(&lc)
		if err != nil {
			for _, f := range fresh {
				f.ln.Close()
			}
			return err
		}
		fresh[lc.Name] = l
	}

	ups, retired, err := s.buildUpstreams(cfg, s.ups)
	if err != nil {
		for _, f := range fresh {
			f.ln.Close()
		}
		return err
	}
	next := make(map[string]*listener, len(cfg.Listeners))
	for _, lc := range cfg.Listeners {
		l, ok := fresh[lc.Name]
		if !ok {
			l = s.listeners[lc.Name]
		}
		l.cfg = lc
		if conf, ok := certs[lc.Name]; ok {
			l.certs.conf.Store(conf) // new handshakes only; open connections keep theirs
		}
		if err := l.setUpstreams(ups); err != nil {
			return err // validated configs route only to defined pools
		}
		next[lc.Name] = l
	}
	for name, old := range s.listeners {
		if next[name] != old {
			go old.shutdown(s.cfg.ShutdownTimeout.D(), s.log)
		}
	}
	for _, l := range fresh {
		s.serve(l)
	}
	for _, up := range retired {
		up.Close()
	}
	s.cfg, s.ups, s.listeners = cfg, ups, next
	s.syncPassive(cfg)
	if err := s.syncMonitors(cfg); err != nil {
		s.log.Error("health checks not updated", "err", err)
	}
	s.syncRefused()
	s.syncLaunch(cfg)
	if err := s.syncVRRP(cfg); err != nil {
		s.log.Error("cluster.vrrp not applied", "err", err)
	}
	s.metrics.SetPools(cfg.PoolOrder)
	s.metrics.Reloaded(true, cfg.Hash)
	if err := s.sink.setAccessLog(cfg.AccessLog); err != nil {
		s.log.Error("access log not switched", "err", err)
	}
	if err := s.syncAdmin(cfg); err != nil {
		s.log.Error("admin listener not restarted", "err", err)
	}
	s.log.Info("config reloaded", "listeners", len(next), "pools", len(ups), "config_hash", cfg.Hash)
	return nil
}

// startObserving starts what watches the server: metrics, the access log,
// the state-change watcher and the admin listener. s.mu is held.
func (s *Server) startObserving(cfg *config.Config) error {
	s.metrics = metrics.New(s.Version, s.metricsPools)
	s.sink.metrics = s.metrics
	s.metrics.SetPools(cfg.PoolOrder)
	s.metrics.SetConfigHash(cfg.Hash)
	if err := s.sink.setAccessLog(cfg.AccessLog); err != nil {
		return fmt.Errorf("access_log: %w", err)
	}
	a, err := s.startAdmin(cfg)
	if err != nil {
		s.sink.setAccessLog(nil)
		return err
	}
	s.admin, s.adminCfg, s.adminToken = a, cfg.Admin, tokenOf(cfg.Admin)
	s.wg.Go(func() { s.watch(s.runCtx) })
	return nil
}

// serve starts l's accept loop in a goroutine the server owns.
func (s *Server) serve(l *listener) {
	if l.disp != nil {
		l.disp.SetObserver(listenerObserver{name: l.cfg.Name, s: &s.sink})
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := l.serve(); err != nil {
			s.log.Error("listener stopped", "listener", l.cfg.Name, "err", err)
		}
	}()
	s.log.Info("listening", "listener", l.cfg.Name, "addr", l.ln.Addr().String(), "protocol", l.cfg.Protocol)
}

// shutdown drains every listener in parallel within shutdown_timeout. It holds
// s.mu only to take the listener set, so Addr and Pool keep answering meanwhile.
func (s *Server) shutdown() {
	s.mu.Lock()
	// The virtual IPs go first: the backup takes over while this node drains.
	s.stopVRRP()
	s.running = false
	timeout := s.cfg.ShutdownTimeout.D()
	ls := slices.Collect(maps.Values(s.listeners))
	ups := s.ups
	adm := s.admin
	s.mu.Unlock()
	adm.stop()

	s.log.Info("shutting down", "timeout", timeout.String())
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Go(func() { l.shutdown(timeout, s.log) })
	}
	wg.Wait()
	s.stopLaunched()
	for _, up := range ups {
		up.Close()
	}
}

func (s *Server) closeAll() {
	for name, l := range s.listeners {
		l.ln.Close()
		delete(s.listeners, name)
	}
	s.closeInherited()
}

// bindError words a failed bind for the operator.
func bindError(lc *config.Listener, err error) error {
	return fmt.Errorf("listener %q: cannot listen on %s: %w", lc.Name, lc.Listen, err)
}
