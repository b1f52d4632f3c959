// Package router maps an HTTP request's host and path to a target (a pool).
// A Table is immutable once built; Match takes no lock and does not allocate.
package router

import (
	"fmt"
	"strings"
)

// Route is one rule: requests whose host and path match go to Target.
type Route[T any] struct {
	// Host matches the request host without its port, case-insensitively.
	// "" matches any host; "*.example.com" matches any subdomain of
	// example.com (not example.com itself).
	Host string
	// PathPrefix matches when the request path starts with it ("" or "/"
	// match every path). It is a plain string prefix: "/api" also matches
	// "/apiv2"; write "/api/" to match only below /api/.
	PathPrefix string
	// Target is what a match returns.
	Target T
}

// Table is an ordered list of routes; the first match wins.
type Table[T any] struct {
	routes []compiled[T]
}

type compiled[T any] struct {
	host     string // lower-case; for wildcards, the suffix including the leading dot
	wildcard bool
	prefix   string
	target   T
}

// New builds a table from routes in priority order.
func New[T any](routes []Route[T]) (*Table[T], error) {
	t := &Table[T]{routes: make([]compiled[T], 0, len(routes))}
	for i, r := range routes {
		c := compiled[T]{host: strings.ToLower(r.Host), prefix: r.PathPrefix, target: r.Target}
		if strings.HasPrefix(c.host, "*.") {
			c.wildcard = true
			c.host = c.host[1:]
			if len(c.host) < 2 {
				return nil, fmt.Errorf("route %d: wildcard host %q names no domain", i, r.Host)
			}
		}
		if c.prefix != "" && c.prefix[0] != '/' {
			return nil, fmt.Errorf("route %d: path_prefix %q does not start with /", i, r.PathPrefix)
		}
		t.routes = append(t.routes, c)
	}
	return t, nil
}

// Match returns the target of the first route matching host (a Host header,
// with or without port) and path, and whether one matched.
func (t *Table[T]) Match(host, path string) (T, bool) {
	host = StripPort(host)
	for i := range t.routes {
		r := &t.routes[i]
		if r.host != "" && !r.matchHost(host) {
			continue
		}
		if !strings.HasPrefix(path, r.prefix) {
			continue
		}
		return r.target, true
	}
	var zero T
	return zero, false
}

func (r *compiled[T]) matchHost(host string) bool {
	host = strings.TrimSuffix(host, ".") // a fully-qualified name with its root dot
	if !r.wildcard {
		return strings.EqualFold(host, r.host)
	}
	return len(host) > len(r.host) && strings.EqualFold(host[len(host)-len(r.host):], r.host)
}

// StripPort removes a ":port" suffix from a Host header value, keeping IPv6
// literals intact ("[::1]:80" → "[::1]").
func StripPort(host string) string {
	i := strings.LastIndexByte(host, ':')
	if i < 0 {
		return host
	}
	if strings.IndexByte(host, ']') > i { // inside an IPv6 literal without port
		return host
	}
	if host[0] != '[' && strings.Count(host, ":") > 1 { // bare IPv6, no port
		return host
	}
	return host[:i]
}
