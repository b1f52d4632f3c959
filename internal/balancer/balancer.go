// Package balancer chooses a backend for each request. One algorithm per file,
// each behind the one-method Balancer interface; sticky sessions (sticky.go) are
// layered on top of any of them.
//
// A Balancer is built for one immutable list of backends (a pool snapshot), so
// any precomputation — a smooth weighted schedule, a hash ring, cumulative
// weights — happens when the snapshot is built, off the request path. Pick
// itself only reads atomics: it takes no lock and does not allocate.
//
// Slow start (slow_start.go) shrinks the share of a backend that has just
// come back, for every algorithm but the hash ones.
package balancer

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"ballast/internal/backend"
)

// Header is the read side of a request's header fields. http.Header satisfies it;
// names passed to Get are already in canonical form.
type Header interface{ Get(name string) string }

// Request is what balancing sees of a client request, independent of the HTTP
// engine that carries it. TCP connections fill only ClientIP.
type Request struct {
	ClientIP netip.Addr
	Method   string // "" for TCP
	Host     string
	Path     string
	RawQuery string // without the '?'
	Header   Header // nil for TCP
}

// Balancer picks a backend for one request. Safe for concurrent use; never
// blocks; does not allocate; returns nil when no backend is usable.
type Balancer interface {
	Pick(r *Request) *backend.Backend
}

// Rand is a source of random numbers. Implementations used by a Balancer in
// production must be safe for concurrent use; tests pass a seeded source.
type Rand interface{ Uint64() uint64 }

// Clock tells the time; tests pass a fake one.
type Clock interface{ Now() time.Time }

type runtimeRand struct{}

// Uint64 uses math/rand/v2's top-level generator: per-thread state, no lock.
func (runtimeRand) Uint64() uint64 { return rand.Uint64() }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Options carries what some algorithms need besides the backends.
type Options struct {
	// HashOn selects the key of the hash algorithms (required by consistent_hash).
	HashOn HashOn
	// Rand defaults to a concurrency-safe runtime generator. Besides the
	// random algorithms, round robin draws from it to admit ramping backends.
	Rand Rand
	// Clock defaults to the system clock. Slow-start ramps are read against
	// it, and only while a backend is ramping.
	Clock Clock
}

func (o Options) withDefaults() Options {
	if o.Rand == nil {
		o.Rand = runtimeRand{}
	}
	if o.Clock == nil {
		o.Clock = systemClock{}
	}
	return o
}

// Algorithm names, as written in the config (see CONTRACT.md).
const (
	AlgRoundRobin         = "round_robin"
	AlgWeightedRoundRobin = "weighted_round_robin"
	AlgLeastConn          = "least_conn"
	AlgWeightedLeastConn  = "weighted_least_conn"
	AlgLeastTime          = "least_time"
	AlgP2C                = "p2c"
	AlgRandom             = "random"
	AlgIPHash             = "ip_hash"
	AlgConsistentHash     = "consistent_hash"
)

// Algorithms lists every algorithm name New accepts.
var Algorithms = []string{
	AlgRoundRobin, AlgWeightedRoundRobin, AlgLeastConn, AlgWeightedLeastConn,
	AlgLeastTime, AlgP2C, AlgRandom, AlgIPHash, AlgConsistentHash,
}

// NeedsHashOn reports whether the algorithm requires a hash_on key.
func NeedsHashOn(algorithm string) bool { return algorithm == AlgConsistentHash }

// New builds the named algorithm over backends (which it does not modify).
func New(algorithm string, backends []*backend.Backend, opts Options) (Balancer, error) {
	opts = opts.withDefaults()
	switch algorithm {
	case AlgRoundRobin:
		return gated(NewRoundRobin(backends), opts), nil
	case AlgWeightedRoundRobin:
		return gated(NewWeightedRoundRobin(backends), opts), nil
	case AlgLeastConn:
		return gated(NewLeastConn(backends), opts), nil
	case AlgWeightedLeastConn:
		return gated(NewWeightedLeastConn(backends), opts), nil
	case AlgLeastTime:
		return gated(NewLeastTime(backends), opts), nil
	case AlgP2C:
		return gated(NewP2C(backends, opts.Rand), opts), nil
	case AlgRandom:
		return gated(NewRandom(backends, opts.Rand), opts), nil
	case AlgIPHash:
		return NewIPHash(backends), nil
	case AlgConsistentHash:
		if !opts.HashOn.Valid() {
			return nil, fmt.Errorf("%s needs hash_on", algorithm)
		}
		return NewConsistentHash(backends, opts.HashOn), nil
	}
	return nil, fmt.Errorf("unknown algorithm %q", algorithm)
}
