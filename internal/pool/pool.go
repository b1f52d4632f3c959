// Package pool is a named group of backends as the request path sees it: an
// immutable Snapshot (backends, the balancer built for exactly them, sticky
// sessions) published through an atomic pointer. Changes — a reload, a backend
// added or removed through the admin API — build a new Snapshot off the request
// path and swap it in with one atomic store; marks such as health state are
// atomics on the shared *backend.Backend and need no new Snapshot.
package pool

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"ballast/internal/backend"
	"ballast/internal/balancer"
)

// Settings say how a pool spreads traffic. They are fixed per Snapshot.
type Settings struct {
	// Algorithm is a balancer algorithm name (balancer.Algorithms).
	Algorithm string
	// HashOn is the consistent_hash key; zero for other algorithms.
	HashOn balancer.HashOn
	// StickyCookie enables cookie persistence when non-empty.
	StickyCookie string
	// StickyTTL is the sticky cookie's Max-Age (0 = session cookie).
	StickyTTL time.Duration
	// SlowStart is how long a backend's share ramps up, from 10% to all of
	// it, after the backend comes back up or is added with Add (config
	// slow_start; 0, the default, turns it off). It is set on every backend
	// when the snapshot is published, except under ip_hash and
	// consistent_hash, which ignore ramps (balancer.HonoursSlowStart); there
	// it is 0, which also ends ramps in progress.
	SlowStart time.Duration
	// Rand and Clock override the balancer's sources (tests); nil for defaults.
	Rand  balancer.Rand
	Clock balancer.Clock
}

// Snapshot is an immutable view of a pool: never modified once published.
type Snapshot struct {
	// Backends lists every backend of the pool in config order, whatever its state.
	Backends []*backend.Backend
	// Settings the balancer was built with.
	Settings Settings

	bal    balancer.Balancer // over the primary backends
	backup balancer.Balancer // over the backup backends; nil when there are none
	sticky *balancer.Sticky
}

// Pool is one named pool. Its methods are safe for concurrent use; Pick is
// lock-free and Update serialises writers among themselves only.
type Pool struct {
	name string
	snap atomic.Pointer[Snapshot]
	mu   sync.Mutex // serialises Update/Add/Remove; never taken by Pick
}

// New builds a pool with the given settings and backends.
func New(name string, s Settings, backends []*backend.Backend) (*Pool, error) {
	p := &Pool{name: name}
	if err := p.Update(s, backends); err != nil {
		return nil, err
	}
	return p, nil
}

// Name returns the pool's name.
func (p *Pool) Name() string { return p.name }

// Snapshot returns the current snapshot. Callers must not modify it.
func (p *Pool) Snapshot() *Snapshot { return p.snap.Load() }

// Pick chooses a backend for r. When the pool is sticky and the response must
// carry a (new) cookie, cookie is the full Set-Cookie value; otherwise "".
// It returns a nil backend when none is usable.
func (p *Pool) Pick(r *balancer.Request) (b *backend.Backend, cookie string) {
	s := p.snap.Load()
	if s.sticky == nil {
		b = s.bal.Pick(r)
	} else {
		var set bool
		if b, set = s.sticky.Pick(r); b != nil && set {
			cookie = s.sticky.SetCookieValue(b)
		}
	}
	if b == nil && s.backup != nil {
		b = s.backup.Pick(r)
	}
	return b, cookie
}

// Update replaces the pool's settings and backends with a freshly built snapshot.
//
// Update starts no slow-start ramp: a backend that is new in a reload is the
// caller's to ramp, with backend.Backend.StartRamp after the Update, since
// only the caller knows which backends are new (the registry hands out the
// same *Backend for the ones that stay).
func (p *Pool) Update(s Settings, backends []*backend.Backend) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.publish(s, backends)
}

// Add appends a backend to the pool (it must not be there already). Under
// slow start its share ramps up from the moment it is added.
func (p *Pool) Add(b *backend.Backend) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.snap.Load()
	if cur.find(b.Addr) >= 0 {
		return fmt.Errorf("pool %q: backend %s: %w", p.name, b.Addr, ErrExists)
	}
	if err := p.publish(cur.Settings, append(slices.Clip(cur.Backends), b)); err != nil {
		return err
	}
	b.StartRamp()
	return nil
}

// Drain marks the backend with addr draining and returns it: it gets no new
// requests — sticky clients bound to it included, who are moved to another
// backend with a new cookie — while those in flight finish and are counted
// as before (see backend.Backend.WaitIdle). It stays in the pool, listed as
// draining; setting it up again ends the drain (with a slow-start ramp).
func (p *Pool) Drain(addr string) (*backend.Backend, error) {
	b := p.Backend(addr)
	if b == nil {
		return nil, fmt.Errorf("pool %q: backend %s: %w", p.name, addr, ErrNotFound)
	}
	b.SetState(backend.StateDraining)
	return b, nil
}

// Remove takes the backend with addr out of the pool and returns it, so that the
// caller can wait for its in-flight requests to finish.
func (p *Pool) Remove(addr string) (*backend.Backend, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.snap.Load()
	i := cur.find(addr)
	if i < 0 {
		return nil, fmt.Errorf("pool %q: backend %s: %w", p.name, addr, ErrNotFound)
	}
	b := cur.Backends[i]
	return b, p.publish(cur.Settings, slices.Delete(slices.Clone(cur.Backends), i, i+1))
}

// Backend returns the backend with addr, or nil.
func (p *Pool) Backend(addr string) *backend.Backend {
	s := p.snap.Load()
	if i := s.find(addr); i >= 0 {
		return s.Backends[i]
	}
	return nil
}

func (s *Snapshot) find(addr string) int {
	return slices.IndexFunc(s.Backends, func(b *backend.Backend) bool { return b.Addr == addr })
}

// publish builds and stores a new snapshot; p.mu must be held.
func (p *Pool) publish(s Settings, backends []*backend.Backend) error {
	bs := slices.Clip(slices.Clone(backends))
	var primary, backups []*backend.Backend
	for _, b := range bs {
		if b.Backup() {
			backups = append(backups, b)
		} else {
			primary = append(primary, b)
		}
	}
	opts := balancer.Options{HashOn: s.HashOn, Rand: s.Rand, Clock: s.Clock}
	bal, err := balancer.New(s.Algorithm, primary, opts)
	if err != nil {
		return fmt.Errorf("pool %q: %w", p.name, err)
	}
	snap := &Snapshot{Backends: bs, Settings: s, bal: bal}
	if len(backups) > 0 {
		// Backups are few and only used in an emergency: plain rotation.
		if snap.backup, err = balancer.New(balancer.AlgRoundRobin, backups, opts); err != nil {
			return fmt.Errorf("pool %q: backups: %w", p.name, err)
		}
	}
	slow := s.SlowStart
	if !balancer.HonoursSlowStart(s.Algorithm) {
		slow = 0
	}
	for _, b := range bs {
		b.SetSlowStart(slow)
	}
	if s.StickyCookie != "" {
		snap.sticky = balancer.NewSticky(s.StickyCookie, s.StickyTTL, bal, primary)
	}
	p.snap.Store(snap)
	return nil
}
