package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Validate checks c after defaults and returns every problem, each located by
// c.Line at its field, sorted by line; nil when c is valid. Parse and Load
// call it; call it yourself only on a Config built in code.
func (c *Config) Validate() Problems {
	v := &validator{c: c, pools: c.poolNames()}
	v.admin()
	v.nonNegative("shutdown_timeout", c.ShutdownTimeout, true)
	v.listeners()
	v.allPools()
	v.protocols()
	v.cluster()
	v.probs.sortByLine()
	return v.probs
}

// validator collects problems while walking a Config.
type validator struct {
	c     *Config
	pools []string // pool names, sorted, for deterministic output
	probs Problems
}

// add records a problem at the line of path.
func (v *validator) add(path, format string, args ...any) {
	v.addAt(v.c.Line(path), path, format, args...)
}

// addAt records a problem at an explicit line.
func (v *validator) addAt(line int, path, format string, args ...any) {
	v.probs = append(v.probs, Problem{File: v.c.File, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// between checks lo <= x <= hi for the int field at path.
func (v *validator) between(path string, x, lo, hi int) {
	if x < lo || x > hi {
		v.add(path, "%s must be between %d and %d", fieldName(path), lo, hi)
	}
}

// atLeast checks x >= lo for the int field at path.
func (v *validator) atLeast(path string, x, lo int) {
	if x < lo {
		v.add(path, "%s must be >= %d", fieldName(path), lo)
	}
}

// nonNegative checks the duration at path is >= 0, or > 0 when positive.
func (v *validator) nonNegative(path string, d Duration, positive bool) {
	switch {
	case d < 0:
		v.add(path, "%s must not be negative", fieldName(path))
	case d == 0 && positive:
		v.add(path, "%s must be > 0", fieldName(path))
	}
}

// hostPort checks a host:port field, required or not.
func (v *validator) hostPort(path, addr string, needHost bool) bool {
	if addr == "" {
		v.add(path, "%s is required", fieldName(path))
		return false
	}
	if err := checkHostPort(addr, needHost); err != nil {
		v.add(path, "%v", err)
		return false
	}
	return true
}

// poolRef checks that a pool reference names a defined pool.
func (v *validator) poolRef(path, name string) {
	switch {
	case name == "":
		v.add(path, "%s is required", fieldName(path))
	case v.c.Pools[name] == nil:
		v.add(path, "undefined pool %q", name)
	}
}

func (v *validator) admin() {
	a := v.c.Admin
	if a == nil || !v.hostPort("admin.listen", a.Listen, false) {
		return
	}
	for i, l := range v.c.Listeners {
		if strings.EqualFold(l.Listen, a.Listen) {
			v.add("admin.listen", "address %s is also used by listeners[%d] (line %d)",
				a.Listen, i, v.c.Line("listeners["+strconv.Itoa(i)+"].listen"))
		}
	}
}

func (v *validator) listeners() {
	if len(v.c.Listeners) == 0 {
		v.add("listeners", "at least one listener is required")
	}
	names := map[string]string{} // name → path of its first use
	addrs := map[string]string{} // listen → path of its first use
	for i := range v.c.Listeners {
		p := "listeners[" + strconv.Itoa(i) + "]"
		l := &v.c.Listeners[i]
		v.unique(p+".name", l.Name, names, "listener name %q")
		if v.hostPort(p+".listen", l.Listen, false) {
			v.unique(p+".listen", strings.ToLower(l.Listen), addrs, "listen address %s")
		}
		v.listener(p, l)
		v.atLeast(p+".limits.max_conns", l.Limits.MaxConns, 0)
		v.nonNegative(p+".limits.idle_timeout", l.Limits.IdleTimeout, true)
	}
}

// unique records value under path in seen, reporting a required-but-empty or
// repeated value; what names the value in the message ("listener name %q").
func (v *validator) unique(path, value string, seen map[string]string, what string) {
	if value == "" {
		v.add(path, "%s is required", fieldName(path))
		return
	}
	if first, dup := seen[value]; dup {
		v.add(path, "duplicate "+what+" (first at line %d)", value, v.c.Line(first))
		return
	}
	seen[value] = path
}

// listener checks what depends on the protocol.
func (v *validator) listener(p string, l *Listener) {
	switch l.Protocol {
	case ProtocolHTTP:
		if l.Pool != "" {
			v.add(p+".pool", "pool only applies to tcp listeners (an http listener uses routes)")
		}
		if l.TLS != nil {
			v.tls(p+".tls", l.TLS)
			if l.RedirectHTTPS {
				v.add(p+".redirect_https", "redirect_https applies to plaintext listeners (this one has tls)")
			}
			if l.H2C {
				v.add(p+".h2c", "h2c applies to plaintext listeners (a tls listener has HTTP/2 by ALPN)")
			}
		}
		switch l.Engine {
		case EngineNative, EngineNetHTTP:
		default:
			v.add(p+".engine", "engine must be %s or %s, got %q", EngineNative, EngineNetHTTP, l.Engine)
		}
		if !l.RedirectHTTPS || len(l.Routes) > 0 {
			v.routes(p, l.Routes)
		}
		if l.Limits.MaxHeaderBytes != 0 {
			v.between(p+".limits.max_header_bytes", l.Limits.MaxHeaderBytes, 1024, MaxHeaderBytesLimit)
		}
		if l.Limits.MaxBodyBytes < 0 {
			v.add(p+".limits.max_body_bytes", "max_body_bytes must be >= 0")
		}
		v.nonNegative(p+".limits.read_header_timeout", l.Limits.ReadHeaderTimeout, true)
		v.nonNegative(p+".limits.write_timeout", l.Limits.WriteTimeout, true)
	case ProtocolTCP:
		if len(l.Routes) > 0 {
			v.add(p+".routes", "routes only apply to http listeners (a tcp listener uses pool)")
		}
		if l.TLS != nil {
			v.add(p+".tls", "tls only applies to http listeners")
		}
		if v.c.has(p + ".engine") {
			v.add(p+".engine", "engine only applies to http listeners")
		}
		v.poolRef(p+".pool", l.Pool)
		for _, f := range []string{"redirect_https", "h2c", "limits.max_header_bytes", "limits.max_body_bytes", "limits.read_header_timeout", "limits.write_timeout"} {
			if v.c.has(p + "." + f) {
				v.add(p+"."+f, "%s only applies to http listeners", fieldName(p+"."+f))
			}
		}
	default:
		v.add(p+".protocol", "protocol must be http or tcp, got %q", l.Protocol)
	}
}

// MaxHeaderBytesLimit is the largest limits.max_header_bytes.
const MaxHeaderBytesLimit = 1 << 20

func (v *validator) tls(p string, t *TLS) {
	for i, c := range t.Certs {
		cp := p + ".certs[" + strconv.Itoa(i) + "]"
		if c.Cert == "" || c.Key == "" {
			v.add(cp, "each of certs needs both cert and key")
		}
	}
	if t.MinVersion != "1.2" && t.MinVersion != "1.3" {
		v.add(p+".min_version", "min_version must be \"1.2\" or \"1.3\", got %q", t.MinVersion)
	}
	if t.Cert == "" {
		v.add(p+".cert", "tls needs both cert and key; cert is missing")
	}
	if t.Key == "" {
		v.add(p+".key", "tls needs both cert and key; key is missing")
	}
}

// routes checks an http listener's routes, including ones that can never
// match because an earlier catch-all route takes every request.
func (v *validator) routes(p string, routes []Route) {
	if len(routes) == 0 {
		v.add(p+".routes", "an http listener needs at least one route")
	}
	catchAll := -1
	for i, r := range routes {
		rp := p + ".routes[" + strconv.Itoa(i) + "]"
		v.poolRef(rp+".pool", r.Pool)
		if r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/") {
			v.add(rp+".path_prefix", "path_prefix must start with /")
		}
		if strings.ContainsAny(r.Host, "/ ") {
			v.add(rp+".host", "invalid host %q (a bare host name, like api.example.com)", r.Host)
		}
		if catchAll >= 0 {
			v.add(rp, "route is unreachable: routes[%d] before it matches every request", catchAll)
		} else if r.Host == "" && r.PathPrefix == "" {
			catchAll = i
		}
	}
}

func (v *validator) cluster() {
	cl := v.c.Cluster
	if cl == nil {
		return
	}
	if cl.VRRP != nil {
		v.vrrp("cluster.vrrp", cl.VRRP)
	}
	if e := cl.Etcd; e != nil {
		if len(e.Endpoints) == 0 {
			v.add("cluster.etcd.endpoints", "at least one etcd endpoint is required")
		}
		for i, ep := range e.Endpoints {
			v.endpoint("cluster.etcd.endpoints["+strconv.Itoa(i)+"]", ep)
		}
	}
}

// endpoint checks an etcd endpoint, host:port or a URL such as https://h:2379.
func (v *validator) endpoint(p, ep string) {
	if !strings.Contains(ep, "://") {
		v.hostPort(p, ep, true)
		return
	}
	u, err := url.Parse(ep)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.add(p, "invalid etcd endpoint %q (want host:port or http(s)://host:port)", ep)
	}
}

// Bounds of the VRRP advertisement interval, a 12-bit count of centiseconds.
const (
	minAdvertInterval = 10 * time.Millisecond
	maxAdvertInterval = 4095 * 10 * time.Millisecond
)

func (v *validator) vrrp(p string, r *VRRP) {
	if r.Interface == "" {
		v.add(p+".interface", "interface is required")
	}
	v.between(p+".virtual_router_id", r.VirtualRouterID, 1, 255)
	v.between(p+".priority", r.Priority, 1, 255)
	switch ai := r.AdvertInterval.D(); {
	case ai < minAdvertInterval || ai > maxAdvertInterval:
		v.add(p+".advert_interval", "advert_interval must be between 10ms and 40.95s")
	case ai%(10*time.Millisecond) != 0:
		v.add(p+".advert_interval", "advert_interval must be a multiple of 10ms (it is sent in centiseconds)")
	}
	v.nonNegative(p+".preempt_delay", r.PreemptDelay, false)
	v.virtualIPs(p+".virtual_ips", r.VirtualIPs)
	for i, name := range r.TrackPools {
		v.poolRef(p+".track_pools["+strconv.Itoa(i)+"]", name)
	}
	for i, peer := range r.UnicastPeers {
		if !isIP(peer) {
			v.add(p+".unicast_peers["+strconv.Itoa(i)+"]", "invalid unicast peer %q (want an IP address)", peer)
		}
	}
}

// virtualIPs checks the VRRP addresses: at least one, each an IPv4 prefix
// (ballast speaks VRRPv3 over IPv4).
func (v *validator) virtualIPs(p string, vips []string) {
	if len(vips) == 0 {
		v.add(p, "at least one virtual ip is required")
	}
	for i, s := range vips {
		ip := p + "[" + strconv.Itoa(i) + "]"
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			v.add(ip, "invalid virtual ip %q (want an address with its prefix length, like 192.0.2.100/24)", s)
			continue
		}
		if !pfx.Addr().Is4() {
			v.add(ip, "virtual ip %s: IPv6 is not supported yet (ballast speaks VRRPv3 over IPv4)", s)
		}
	}
}

// poolNames returns the pool names sorted, so problems come out in the same
// order on every run even for a Config without line numbers.
func (c *Config) poolNames() []string {
	names := make([]string, 0, len(c.Pools))
	for name := range c.Pools {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// fieldName is the last element of a field path: "pools.app.weight" → "weight".
func fieldName(path string) string {
	if i := strings.LastIndexAny(path, ".]"); i >= 0 && path[i] == '.' {
		return path[i+1:]
	}
	return path
}
