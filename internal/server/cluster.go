package server

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"time"

	"ballast/internal/backend"
	"ballast/internal/cluster/vrrp"
	"ballast/internal/config"
)

// vrrpNode is the running VRRP speaker of cluster.vrrp.
type vrrpNode struct {
	cfg     config.VRRP // as configured, to tell whether a reload changed it
	speaker *vrrp.Speaker
	healthy bool // what the speaker was last told; guarded by s.mu
	cancel  context.CancelFunc
	done    chan struct{}
}

// vrrpConfig turns the cluster.vrrp section (defaults applied, validated)
// into the speaker's config.
func vrrpConfig(c *config.VRRP) (vrrp.Config, error) {
	vc := vrrp.Config{
		Interface: c.Interface, VRID: c.VirtualRouterID, Priority: c.Priority,
		AdvertInterval: c.AdvertInterval.D(), PreemptDelay: c.PreemptDelay.D(),
		Preempt: c.Preempt == nil || *c.Preempt,
	}
	for _, v := range c.VirtualIPs {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return vc, fmt.Errorf("cluster.vrrp.virtual_ips: %w", err)
		}
		vc.VirtualIPs = append(vc.VirtualIPs, p)
	}
	for _, v := range c.UnicastPeers {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return vc, fmt.Errorf("cluster.vrrp.unicast_peers: %w", err)
		}
		vc.UnicastPeers = append(vc.UnicastPeers, a)
	}
	return vc, nil
}

// startVRRP starts the speaker of cfg.Cluster.VRRP, if any. s.mu is held and
// s.runCtx set. The speaker holds the virtual IPs only while the node is
// healthy (see vrrpHealthy), which the state watcher tells it.
func (s *Server) startVRRP(cfg *config.Config) error {
	if cfg.Cluster == nil || cfg.Cluster.VRRP == nil {
		return nil
	}
	vc, err := vrrpConfig(cfg.Cluster.VRRP)
	if err != nil {
		return err
	}
	m := s.metrics
	vc.OnStateChange = func(st vrrp.State) {
		s.log.Info("vrrp state", "state", st.String())
		m.SetVRRPState(st.String())
	}
	m.SetVRRPState("initialize")
	sp, err := vrrp.New(vc, s.log)
	if err != nil {
		return fmt.Errorf("cluster.vrrp: %w", err)
	}
	healthy := s.vrrpHealthy(cfg)
	sp.SetHealthy(healthy)
	ctx, cancel := context.WithCancel(context.Background()) // stopped by stopVRRP, first thing at shutdown
	n := &vrrpNode{cfg: *cfg.Cluster.VRRP, speaker: sp, healthy: healthy, cancel: cancel, done: make(chan struct{})}
	s.wg.Go(func() {
		defer close(n.done)
		if err := sp.Run(ctx); err != nil {
			s.log.Error("vrrp stopped", "err", err)
		}
	})
	s.vrrp = n
	return nil
}

// StartVRRPAfter makes Run start the VRRP speaker only once after closes:
// what a process taking over in a binary upgrade does, so that it does not
// touch the virtual IPs while the process it replaces still holds them (that
// one releases them on exit; this one then takes them back by preemption).
// Call it before Run.
func (s *Server) StartVRRPAfter(after <-chan struct{}) { s.vrrpAfter = after }

// deferVRRP starts the speaker once s.vrrpAfter closes (unless Run ends
// first). s.mu is held.
func (s *Server) deferVRRP() {
	after := s.vrrpAfter
	s.vrrpAfter = nil
	s.vrrpWaiting = true
	s.wg.Go(func() {
		select {
		case <-after:
		case <-s.runCtx.Done():
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.vrrpWaiting = false
		if !s.running {
			return
		}
		if err := s.startVRRP(s.cfg); err != nil {
			s.log.Error("cluster.vrrp not started", "err", err)
		}
	})
}

// syncVRRP is startVRRP on reload: a changed or removed section stops the
// speaker (releasing the virtual IPs) before a new one starts. s.mu is held.
func (s *Server) syncVRRP(cfg *config.Config) error {
	if s.vrrpWaiting {
		return nil // it starts with the config of its time
	}
	var next *config.VRRP
	if cfg.Cluster != nil {
		next = cfg.Cluster.VRRP
	}
	if s.vrrp != nil && next != nil && reflect.DeepEqual(s.vrrp.cfg, *next) {
		return nil
	}
	s.stopVRRP()
	return s.startVRRP(cfg)
}

// stopVRRP releases the virtual IPs (a priority-0 advertisement lets the
// backup take over at once) and waits for the speaker to end.
func (s *Server) stopVRRP() {
	n := s.vrrp
	if n == nil {
		return
	}
	s.vrrp = nil
	n.cancel()
	defer s.metrics.SetVRRPState("")
	select {
	case <-n.done:
	case <-time.After(5 * time.Second):
		s.log.Error("vrrp speaker did not stop within 5s")
	}
}

// vrrpHealthy reports whether this node may hold the virtual IPs: with
// track_pools, while each of them has a backend up; without, while any pool
// has one. s.mu is held.
func (s *Server) vrrpHealthy(cfg *config.Config) bool {
	if cfg.Cluster == nil || cfg.Cluster.VRRP == nil {
		return true
	}
	// A backend counts once it is up and, in a pool with active health
	// checks, has passed a probe: backends start up before their first
	// probe, and a node that just started must not take the IPs on that
	// presumption.
	upIn := func(name string) bool {
		up, ok := s.ups[name]
		if !ok {
			return false
		}
		m := s.monitors[name]
		for _, b := range up.Pool.Snapshot().Backends {
			if b.State() != backend.StateUp {
				continue
			}
			if m != nil {
				if passed, _ := m.mon.Results(b.Addr); passed == 0 {
					continue
				}
			}
			return true
		}
		return false
	}
	if track := cfg.Cluster.VRRP.TrackPools; len(track) > 0 {
		for _, name := range track {
			if !upIn(name) {
				return false
			}
		}
		return true
	}
	for _, name := range cfg.PoolOrder {
		if upIn(name) {
			return true
		}
	}
	return false
}
