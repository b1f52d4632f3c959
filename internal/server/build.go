package server

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	"ballast/internal/backend"
	"ballast/internal/balancer"
	"ballast/internal/config"
	"ballast/internal/pool"
	"ballast/internal/proxy"
	"ballast/internal/router"
)

// poolSettings turns a pool's config into the balancer settings of its snapshot.
func poolSettings(pc *config.Pool) (pool.Settings, error) {
	s := pool.Settings{Algorithm: pc.Algorithm, SlowStart: pc.SlowStart.D()}
	if pc.HashOn != "" {
		h, err := balancer.ParseHashOn(pc.HashOn)
		if err != nil {
			return s, err
		}
		s.HashOn = h
	}
	if pc.Sticky != nil {
		s.StickyCookie = pc.Sticky.Cookie
		s.StickyTTL = pc.Sticky.TTL.D()
	}
	return s, nil
}

// clientLimits turns a listener's limits into what its HTTP engine enforces
// (max_conns is enforced around accept: limitConns).
func clientLimits(lc *config.Listener) proxy.ClientLimits {
	l := &lc.Limits
	return proxy.ClientLimits{
		MaxHeaderBytes:    cmp.Or(l.MaxHeaderBytes, config.DefaultMaxHeaderBytes),
		MaxBodyBytes:      int64(l.MaxBodyBytes),
		ReadHeaderTimeout: l.ReadHeaderTimeout.D(),
		IdleTimeout:       l.IdleTimeout.D(),
		WriteTimeout:      l.WriteTimeout.D(),
	}
}

func timeouts(pc *config.Pool) proxy.Timeouts {
	return proxy.Timeouts{
		Connect:        pc.Timeouts.Connect.D(),
		ResponseHeader: pc.Timeouts.ResponseHeader.D(),
		Idle:           pc.Timeouts.Idle.D(),
	}
}

// retryPolicy turns a pool's retries section into the data path's policy
// (nil: connect failures only).
func retryPolicy(r *config.Retries) *proxy.RetryPolicy {
	if r == nil {
		return nil
	}
	p := &proxy.RetryPolicy{Attempts: r.Attempts, IdempotentOnly: *r.IdempotentOnly, BudgetPercent: r.Budget}
	for _, cond := range r.On {
		switch cond {
		case config.RetryTimeout:
			p.OnTimeout = true
		case config.RetryReset:
			p.OnReset = true
		default:
			p.RetryStatus(config.RetryStatus(cond))
		}
	}
	return p
}

// upstreams holds the pools and their data-path views for one config.
type upstreams map[string]*proxy.Upstream

// buildUpstreams creates or updates every pool of cfg. Pools and upstreams
// that already exist in old are updated in place (keeping their backends'
// state and their idle connections) unless their timeouts or link (tls,
// backend_protocol, the CA file's contents) changed, in which case the pool is
// kept and a new upstream made. It returns the new set and the
// upstreams of old that are no longer used.
func (s *Server) buildUpstreams(cfg *config.Config, old upstreams) (upstreams, []*proxy.Upstream, error) {
	// The links read files (CA certificates): read them all before any pool
	// changes, so that a file that cannot be read changes nothing.
	links := make(map[string]proxy.Link, len(cfg.Pools))
	for _, name := range cfg.PoolOrder {
		l, err := backendLink(name, cfg.Pools[name])
		if err != nil {
			return nil, nil, err
		}
		links[name] = l
	}
	next := make(upstreams, len(cfg.Pools))
	keep := make(map[string][]string, len(cfg.Pools))
	for _, name := range cfg.PoolOrder {
		pc := cfg.Pools[name]
		settings, err := poolSettings(pc)
		if err != nil {
			return nil, nil, fmt.Errorf("pool %q: %w", name, err)
		}
		bs := make([]*backend.Backend, 0, len(pc.Backends))
		for _, bc := range pc.Backends {
			bs = append(bs, s.reg.Backend(name, pool.Spec{
				Addr: bc.Addr, Weight: bc.Weight, MaxConns: bc.MaxConns, Backup: bc.Backup,
			}))
			keep[name] = append(keep[name], bc.Addr)
		}
		t := timeouts(pc)
		var up *proxy.Upstream
		if prev, ok := old[name]; ok {
			if pc.Launch != nil {
				bs = append(bs, s.launchedBackends(name, prev.Pool)...)
			}
			before := prev.Pool.Snapshot().Backends
			if err := prev.Pool.Update(settings, bs); err != nil {
				return nil, nil, err
			}
			// A backend new in this reload joins with a slow-start ramp.
			for _, b := range bs {
				if !slices.Contains(before, b) {
					b.StartRamp()
				}
			}
			up = prev
			if prev.Timeouts != t || prev.LinkID() != links[name].ID {
				up = proxy.NewUpstreamLink(prev.Pool, t, links[name])
			}
		} else {
			p, err := pool.New(name, settings, bs)
			if err != nil {
				return nil, nil, err
			}
			up = proxy.NewUpstreamLink(p, t, links[name])
		}
		up.SetRetryPolicy(retryPolicy(pc.Retries))
		up.SetQueue(pc.Queue.Max, pc.Queue.Timeout.D())
		up.SetAdaptive(pc.Queue.Admission != config.AdmissionFIFO)
		next[name] = up
	}
	var retired []*proxy.Upstream
	for _, name := range slices.Sorted(maps.Keys(old)) {
		if next[name] != old[name] {
			retired = append(retired, old[name])
		}
	}
	s.reg.Retain(keep)
	return next, retired, nil
}

// routeTable builds an HTTP listener's routing table over ups.
func routeTable(lc *config.Listener, ups upstreams) (*proxy.Table, error) {
	routes := make([]router.Route[*proxy.Upstream], 0, len(lc.Routes))
	for _, rc := range lc.Routes {
		up, ok := ups[rc.Pool]
		if !ok {
			return nil, fmt.Errorf("listener %q: route to undefined pool %q", lc.Name, rc.Pool)
		}
		routes = append(routes, router.Route[*proxy.Upstream]{Host: rc.Host, PathPrefix: rc.PathPrefix, Target: up})
	}
	t, err := router.New(routes)
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", lc.Name, err)
	}
	return t, nil
}
