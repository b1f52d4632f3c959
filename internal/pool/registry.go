package pool

import (
	"errors"
	"sync"

	"ballast/internal/backend"
)

// Sentinel errors of this package.
var (
	// ErrExists: a backend with that address is already in the pool.
	ErrExists = errors.New("already in the pool")
	// ErrNotFound: no backend with that address is in the pool.
	ErrNotFound = errors.New("not in the pool")
)

// Registry hands out the *backend.Backend for each (pool, address) pair and keeps
// handing out the same one across reloads, so that health state, in-flight counts
// and latency history survive a config change. It is used when snapshots are
// built, never on the request path.
type Registry struct {
	mu       sync.Mutex
	backends map[key]*backend.Backend
}

type key struct{ pool, addr string }

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{backends: make(map[key]*backend.Backend)}
}

// Spec is what the config says of one backend.
type Spec struct {
	Addr     string
	Weight   int
	MaxConns int
	Backup   bool
}

// Backend returns the registry's backend for spec.Addr in pool, creating it
// (state up) if it is new. Weight, max_conns and the backup mark are set from
// spec either way.
func (r *Registry) Backend(pool string, spec Spec) *backend.Backend {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := key{pool, spec.Addr}
	b, ok := r.backends[k]
	if !ok {
		b = backend.New(pool, spec.Addr, spec.Weight)
		r.backends[k] = b
	}
	b.SetWeight(spec.Weight)
	b.SetMaxConns(spec.MaxConns)
	b.SetBackup(spec.Backup)
	return b
}

// Retain forgets every backend not listed in keep (pool name → addresses), so a
// backend removed from the config starts fresh if it is added back later.
func (r *Registry) Retain(keep map[string][]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	live := make(map[key]bool)
	for p, addrs := range keep {
		for _, a := range addrs {
			live[key{p, a}] = true
		}
	}
	for k := range r.backends {
		if !live[k] {
			delete(r.backends, k)
		}
	}
}
