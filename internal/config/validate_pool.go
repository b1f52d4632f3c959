package config

import (
	"ballast/internal/balancer"
	"slices"
	"strconv"
	"strings"
)

// Bounds the pool checks enforce.
const (
	// MaxWeight is the largest backend weight.
	MaxWeight = 1000
	// MaxRetryAttempts is the largest retries attempts.
	MaxRetryAttempts = 10
	// MaxMaxConns is the largest per-backend max_conns.
	MaxMaxConns = 1_000_000
)

func (v *validator) allPools() {
	if len(v.c.Pools) == 0 {
		v.add("pools", "at least one pool is required")
	}
	for _, name := range v.pools {
		p := "pools." + name
		if !isPoolName(name) {
			v.add(p, "invalid pool name %q (use letters, digits, '_', '.' and '-')", name)
		}
		if pool := v.c.Pools[name]; pool != nil {
			v.pool(p, pool)
		}
	}
	v.launchPorts()
}

// launchPorts checks that no two launched pools share ports: each picks free
// ports from its range, and two picking the same one at once would clash.
func (v *validator) launchPorts() {
	type span struct {
		name   string
		lo, hi int
	}
	var seen []span
	for _, name := range v.pools {
		pool := v.c.Pools[name]
		if pool == nil || pool.Launch == nil {
			continue
		}
		lo, hi, err := ParsePortRange(pool.Launch.Ports)
		if err != nil {
			continue // reported with the pool
		}
		for _, o := range seen {
			if lo <= o.hi && o.lo <= hi {
				v.add("pools."+name+".launch.ports", "ports %d-%d overlap those of pool %q (%d-%d): give each launched pool its own range", lo, hi, o.name, o.lo, o.hi)
			}
		}
		seen = append(seen, span{name, lo, hi})
	}
}

// pool checks one pool; p is its path ("pools.app").
func (v *validator) pool(p string, pool *Pool) {
	v.algorithm(p, pool)
	switch pool.BackendProtocol {
	case BackendHTTP1, BackendH2C:
	default:
		v.add(p+".backend_protocol", "backend_protocol must be %s or %s, got %q", BackendHTTP1, BackendH2C, pool.BackendProtocol)
	}
	v.backends(p, pool)
	if s := pool.Sticky; s != nil {
		if s.Cookie == "" {
			v.add(p+".sticky.cookie", "cookie is required")
		} else if !isToken(s.Cookie) {
			v.add(p+".sticky.cookie", "cookie must be a valid cookie name, got %q", s.Cookie)
		}
		v.nonNegative(p+".sticky.ttl", s.TTL, false)
	}
	if q := pool.Queue; q != nil {
		v.atLeast(p+".queue.max", q.Max, 0)
		v.nonNegative(p+".queue.timeout", q.Timeout, true)
		if q.Admission != AdmissionAdaptive && q.Admission != AdmissionFIFO {
			v.add(p+".queue.admission", "unknown admission %q: want adaptive or fifo", q.Admission)
		}
	}
	if h := pool.HealthCheck; h != nil {
		v.health(p+".health_check", h)
	}
	if ps := pool.Passive; ps != nil {
		v.atLeast(p+".passive.consecutive_failures", ps.ConsecutiveFailures, 1)
		v.nonNegative(p+".passive.eject_for", ps.EjectFor, true)
		v.between(p+".passive.max_ejected_percent", ps.MaxEjectedPercent, 0, 100)
	}
	if r := pool.Retries; r != nil {
		v.retries(p+".retries", r)
	}
	v.nonNegative(p+".timeouts.connect", pool.Timeouts.Connect, true)
	v.nonNegative(p+".timeouts.response_header", pool.Timeouts.ResponseHeader, true)
	v.nonNegative(p+".timeouts.idle", pool.Timeouts.Idle, true)
	v.nonNegative(p+".slow_start", pool.SlowStart, false)
	if l := pool.Launch; l != nil {
		v.launch(p+".launch", l)
	}
}

// algorithm checks the algorithm name and its hash_on key. hash_on is allowed
// with any algorithm (CONTRACT.md's example pairs it with least_conn) but is
// only required, and only used, by consistent_hash.
func (v *validator) algorithm(p string, pool *Pool) {
	if !slices.Contains(balancer.Algorithms, pool.Algorithm) {
		v.add(p+".algorithm", "unknown algorithm %q (valid: %s)", pool.Algorithm, strings.Join(balancer.Algorithms, ", "))
	}
	if pool.HashOn == "" {
		if balancer.NeedsHashOn(pool.Algorithm) {
			v.add(p+".algorithm", "consistent_hash needs hash_on")
		}
		return
	}
	if _, err := balancer.ParseHashOn(pool.HashOn); err != nil {
		v.add(p+".hash_on", "%v", err)
	}
}

// backends checks each backend and that the pool has some.
func (v *validator) backends(p string, pool *Pool) {
	if len(pool.Backends) == 0 && pool.Launch == nil {
		v.add(p+".backends", "at least one backend is required (or launch)")
	}
	seen := map[string]string{} // addr → path of its first use
	for i, b := range pool.Backends {
		bp := p + ".backends[" + strconv.Itoa(i) + "]"
		if v.hostPort(bp+".addr", b.Addr, true) {
			key := strings.ToLower(b.Addr)
			if first, dup := seen[key]; dup {
				v.add(bp+".addr", "duplicate backend %s (first at line %d)", b.Addr, v.c.Line(first))
			} else {
				seen[key] = bp + ".addr"
			}
		}
		v.between(bp+".weight", b.Weight, 1, MaxWeight)
		if b.MaxConns < 0 || b.MaxConns > MaxMaxConns {
			v.add(bp+".max_conns", "max_conns must be between 0 (no limit) and %d", MaxMaxConns)
		}
	}
}

func (v *validator) health(p string, h *HealthCheck) {
	switch h.Type {
	case HealthHTTP:
		if !strings.HasPrefix(h.Path, "/") {
			v.add(p+".path", "path must start with /")
		}
		if _, _, err := ParseStatusRange(h.ExpectStatus); err != nil {
			v.add(p+".expect_status", "%v", err)
		}
	case HealthTCP, HealthNone:
	default:
		v.add(p+".type", "type must be http, tcp or none, got %q", h.Type)
	}
	v.atLeast(p+".rise", h.Rise, 1)
	v.atLeast(p+".fall", h.Fall, 1)
	v.nonNegative(p+".interval", h.Interval, true)
	v.nonNegative(p+".timeout", h.Timeout, true)
	if h.Interval > 0 && h.Timeout > h.Interval {
		v.add(p+".timeout", "timeout (%s) must not exceed interval (%s)", h.Timeout.D(), h.Interval.D())
	}
}

func (v *validator) retries(p string, r *Retries) {
	v.between(p+".attempts", r.Attempts, 0, MaxRetryAttempts)
	v.between(p+".budget", r.Budget, 0, 100)
	for i, cond := range r.On {
		switch cond {
		case RetryConnectFailure, RetryTimeout, RetryReset:
			continue
		}
		if RetryStatus(cond) == 0 {
			v.add(p+".on["+strconv.Itoa(i)+"]",
				"unknown retry condition %q (valid: connect_failure, timeout, reset, or a status code 500-599)", cond)
		}
	}
}

func (v *validator) launch(p string, l *Launch) {
	if len(l.Command) == 0 || l.Command[0] == "" {
		v.add(p+".command", "command is required")
	} else if !slices.ContainsFunc(l.Command, func(s string) bool { return strings.Contains(s, "{port}") }) {
		v.add(p+".command", "command must contain {port}, where each instance gets its port")
	}
	v.atLeast(p+".instances", l.Instances, 1)
	v.between(p+".max_conns", l.MaxConns, 0, MaxMaxConns)
	v.nonNegative(p+".start_timeout", l.StartTimeout, true)
	v.nonNegative(p+".stop_timeout", l.StopTimeout, true)
	if l.Ports == "" {
		v.add(p+".ports", "ports is required (a range such as 18000-18999)")
		return
	}
	lo, hi, err := ParsePortRange(l.Ports)
	if err != nil {
		v.add(p+".ports", "%v", err)
		return
	}
	if n := hi - lo + 1; l.Instances > n {
		v.add(p+".ports", "ports %s has %d ports, fewer than instances (%d)", l.Ports, n, l.Instances)
	}
}
