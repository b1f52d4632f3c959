package etcd

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Backend is one backend of a pool as stored in etcd, and as delivered in a
// Snapshot. Its JSON form is the value of the keys described in the package
// documentation.
type Backend struct {
	// Addr is host:port. Required.
	Addr string `json:"addr"`
	// Weight is the backend's relative share, 1..1000; 0 means the default, 1.
	Weight int `json:"weight"`
	// MaxConns caps concurrent requests to the backend; 0 = no cap.
	MaxConns int `json:"max_conns"`
	// Backup backends get traffic only while no primary is usable.
	Backup bool `json:"backup"`
	// Registered is true in a Snapshot for a backend that registered itself
	// (lease-bound) rather than being added by an operator. Not stored.
	Registered bool `json:"-"`
}

// Weight bounds, the same as the config file's (config.Backend).
const (
	minWeight = 1
	maxWeight = 1000
)

// Key namespaces under the prefix.
const (
	poolsDir         = "pools/"
	backendsDir      = "/backends/"
	registrationsDir = "registrations/"
)

// checkPool reports whether name can be a pool's name in a key: non-empty,
// without "/" (the key separator) and without control characters.
func checkPool(name string) error {
	if name == "" {
		return fmt.Errorf("pool name is empty")
	}
	if strings.ContainsFunc(name, func(r rune) bool { return r == '/' || r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("pool name %q: must not contain '/' or control characters", name)
	}
	return nil
}

// normalize checks b and fills in defaults (weight 0 → 1). It returns the
// backend as it will be stored.
func normalize(b Backend) (Backend, error) {
	host, port, err := net.SplitHostPort(b.Addr)
	if err != nil {
		return b, fmt.Errorf("addr %q: must be host:port: %w", b.Addr, err)
	}
	if host == "" || strings.ContainsAny(host, "/ \t\r\n") || !utf8.ValidString(host) {
		return b, fmt.Errorf("addr %q: host must be a name or an IP address", b.Addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return b, fmt.Errorf("addr %q: port must be 1..65535", b.Addr)
	}
	if b.Weight == 0 {
		b.Weight = minWeight
	}
	if b.Weight < minWeight || b.Weight > maxWeight {
		return b, fmt.Errorf("backend %q: weight %d: must be %d..%d", b.Addr, b.Weight, minWeight, maxWeight)
	}
	if b.MaxConns < 0 {
		return b, fmt.Errorf("backend %q: max_conns %d: must be 0 (no cap) or more", b.Addr, b.MaxConns)
	}
	b.Registered = false
	return b, nil
}

// backendKey is where an operator-added backend lives.
func backendKey(prefix, pool, addr string) string {
	return prefix + poolsDir + pool + backendsDir + addr
}

// registrationKey is where a self-registered backend lives.
func registrationKey(prefix, pool, addr string) string {
	return prefix + registrationsDir + pool + "/" + addr
}

// parseKey splits a key (with the prefix already removed) into its pool and
// addr. ok is false for keys that are not backends; registered tells the two
// namespaces apart.
func parseKey(rel string) (pool, addr string, registered, ok bool) {
	switch {
	case strings.HasPrefix(rel, poolsDir):
		pool, addr, ok = strings.Cut(rel[len(poolsDir):], backendsDir)
	case strings.HasPrefix(rel, registrationsDir):
		pool, addr, ok = strings.Cut(rel[len(registrationsDir):], "/")
		registered = true
	}
	if !ok || checkPool(pool) != nil || addr == "" || strings.Contains(addr, "/") {
		return "", "", false, false
	}
	return pool, addr, registered, true
}

// decodeBackend parses a stored value for the backend at addr. A value
// without "addr" takes it from the key; one naming another addr is rejected,
// since the key is what identifies the backend (and what a delete removes).
func decodeBackend(addr string, value []byte) (Backend, error) {
	var b Backend
	if err := json.Unmarshal(value, &b); err != nil {
		return b, fmt.Errorf("backend %q: value is not a JSON backend: %w", addr, err)
	}
	if b.Addr == "" {
		b.Addr = addr
	}
	if b.Addr != addr {
		return b, fmt.Errorf("backend %q: value names addr %q", addr, b.Addr)
	}
	return normalize(b)
}

// encodeBackend is the stored value of b.
func encodeBackend(b Backend) string {
	v, _ := json.Marshal(b) // cannot fail: plain strings, ints and a bool
	return string(v)
}
