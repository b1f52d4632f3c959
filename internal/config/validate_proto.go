package config

import "strconv"

// NetHTTP reports whether an http listener is served by Go's net/http engine
// rather than the native one: a TLS listener (for HTTP/2 by ALPN), an h2c
// listener, a redirect_https listener, or one with engine: net_http.
func (l *Listener) NetHTTP() bool {
	return l.Protocol == ProtocolHTTP &&
		(l.TLS != nil || l.H2C || l.RedirectHTTPS || l.Engine == EngineNetHTTP)
}

// protocols checks what ties listeners to the pools they use: only the
// net_http engine speaks HTTP/2 to backends, a tcp listener passes bytes
// through as they are (no pool tls, no backend protocol), and an http health
// check speaks plaintext HTTP/1.1, which a pool with tls does not.
func (v *validator) protocols() {
	for i := range v.c.Listeners {
		l := &v.c.Listeners[i]
		p := "listeners[" + strconv.Itoa(i) + "]"
		switch l.Protocol {
		case ProtocolHTTP:
			if l.NetHTTP() {
				continue
			}
			for j, r := range l.Routes {
				if pc := v.c.Pools[r.Pool]; pc != nil && pc.BackendProtocol == BackendH2C {
					v.add(p+".routes["+strconv.Itoa(j)+"].pool",
						"pool %q has backend_protocol h2c, which only the net_http engine speaks; listener %q uses the %s engine (give it tls, h2c: true or engine: net_http)",
						r.Pool, l.Name, l.Engine)
				}
			}
		case ProtocolTCP:
			pc := v.c.Pools[l.Pool]
			switch {
			case pc == nil:
			case pc.TLS != nil:
				v.add(p+".pool", "pool %q has tls, which a tcp listener does not use (it passes the bytes through as they are)", l.Pool)
			case pc.BackendProtocol == BackendH2C:
				v.add(p+".pool", "pool %q has backend_protocol h2c, which a tcp listener does not use (it passes the bytes through as they are)", l.Pool)
			}
		}
	}
	for _, name := range v.pools {
		pc := v.c.Pools[name]
		if pc != nil && pc.TLS != nil && pc.HealthCheck != nil && pc.HealthCheck.Type == HealthHTTP {
			v.add("pools."+name+".health_check.type",
				"an http health check speaks plaintext HTTP/1.1, which the backends of a pool with tls do not; use type: tcp")
		}
	}
}
