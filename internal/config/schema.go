// Package config is ballast's user-facing configuration schema (CONTRACT.md):
// strict YAML decoding that keeps line numbers, defaults in one place
// (defaults.go), and Validate, which reports every problem at once as
// FILE:LINE: field.path: message.
package config

import "time"

// Config is a whole ballast configuration file.
type Config struct {
	// Admin enables the admin API, /metrics and the dashboard. Optional.
	Admin *Admin `yaml:"admin"`
	// AccessLog writes one JSON line per request. Optional; absent: off.
	AccessLog *AccessLog `yaml:"access_log"`
	// ShutdownTimeout bounds how long SIGTERM/SIGINT waits for in-flight requests
	// to finish before closing what is left. Default 30s.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// Listeners are the addresses ballast accepts clients on. At least one.
	Listeners []Listener `yaml:"listeners"`
	// Pools are the named groups of backends that routes send traffic to.
	Pools map[string]*Pool `yaml:"pools"`
	// Cluster configures high availability of the ballast tier itself. Optional.
	Cluster *Cluster `yaml:"cluster"`

	// File is the path the config was loaded from ("" when parsed from memory).
	File string `yaml:"-"`
	// Hash identifies the config's bytes: "sha256:" and the hex digest.
	Hash string `yaml:"-"`
	// PoolOrder lists the pool names in the order the file defines them.
	PoolOrder []string `yaml:"-"`
	// lines maps field paths ("pools.app.backends[0].weight") to their line.
	lines map[string]int
	// nulls holds the field paths written as null, which count as absent
	// when defaults are applied.
	nulls map[string]bool
}

// Admin is the admin listener.
type Admin struct {
	// Listen is host:port for the admin API. Required when admin is present.
	Listen string `yaml:"listen"`
	// TokenFile, when set, names a file whose contents (trimmed) every admin
	// request must present as "Authorization: Bearer <token>".
	TokenFile string `yaml:"token_file"`
}

// AccessLog is where the access log goes.
type AccessLog struct {
	// Output is stdout, stderr, off, or a file path (appended to; reopened
	// on reload, for log rotation). Default stdout.
	Output string `yaml:"output"`
}

// Listener is one address that accepts clients.
type Listener struct {
	// Name identifies the listener in logs and metrics. Required, unique.
	Name string `yaml:"name"`
	// Listen is host:port (IPv6 as [::1]:8080). Required, unique.
	Listen string `yaml:"listen"`
	// Protocol is http (default) or tcp.
	Protocol string `yaml:"protocol"`
	// TLS enables HTTPS on an http listener. Optional.
	TLS *TLS `yaml:"tls"`
	// Engine is the HTTP engine of a plaintext http listener: native
	// (default; ballast's own HTTP/1.1 engine) or net_http (Go's standard
	// library). TLS listeners always use net_http, which brings HTTP/2.
	Engine string `yaml:"engine"`
	// Routes map requests to pools on an http listener; the first match wins.
	Routes []Route `yaml:"routes"`
	// Pool receives every connection of a tcp listener.
	Pool string `yaml:"pool"`
	// RedirectHTTPS makes a plaintext http listener answer every request with
	// a 308 redirect to the same URL over https (routes are then optional).
	RedirectHTTPS bool `yaml:"redirect_https"`
	// H2C makes a plaintext http listener also accept HTTP/2 without TLS
	// (prior knowledge); it then uses the net_http engine.
	H2C bool `yaml:"h2c"`
	// Limits protect the listener from clients; defaults apply.
	Limits Limits `yaml:"limits"`
}

// Limits bound what one listener accepts from clients.
type Limits struct {
	// MaxConns caps concurrent client connections; beyond it new ones wait in
	// the kernel's backlog. Default 10000; 0 = no cap.
	MaxConns int `yaml:"max_conns"`
	// MaxHeaderBytes caps a request's header block (431 beyond). Default 64 KiB.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxBodyBytes caps a request body (413 beyond). Default 0 = no cap.
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// ReadHeaderTimeout bounds how long a client may take to send a request
	// header (408 beyond). Default 10s.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// IdleTimeout closes a client connection idle this long: between requests
	// on http (default 120s), with no byte either way on tcp (default 1h).
	IdleTimeout Duration `yaml:"idle_timeout"`
	// WriteTimeout disconnects a client that accepts no response bytes for
	// this long. Default 60s.
	WriteTimeout Duration `yaml:"write_timeout"`
}

// TLS is a certificate and key pair in PEM files.
type TLS struct {
	// Cert is the PEM certificate chain file, leaf first. Required.
	Cert string `yaml:"cert"`
	// Key is the PEM private key file of Cert. Required.
	Key string `yaml:"key"`
	// Certs are more certificates, chosen by the client's SNI server name;
	// Cert/Key is the default for names none of them covers.
	Certs []CertPair `yaml:"certs"`
	// MinVersion is the oldest TLS version accepted: "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
}

// CertPair is one certificate and its key.
type CertPair struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// BackendTLS is TLS from ballast to a pool's backends.
type BackendTLS struct {
	// CA is a PEM file of the authorities that sign the backends'
	// certificates; empty: the system's.
	CA string `yaml:"ca"`
	// ServerName is the name verified in the backends' certificates (and
	// sent as SNI); empty: the host of each backend's addr.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify turns verification off (tests only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Route sends matching requests to a pool. An empty Host or PathPrefix matches
// everything; a route with neither is the catch-all.
type Route struct {
	// Host matches the request's host (without port), case-insensitively.
	Host string `yaml:"host"`
	// PathPrefix matches the start of the request path.
	PathPrefix string `yaml:"path_prefix"`
	// Pool is the name of the pool to send matching requests to. Required.
	Pool string `yaml:"pool"`
}

// Pool is a named group of backends and how traffic is spread over them.
type Pool struct {
	// Algorithm is one of the names in CONTRACT.md. Default round_robin.
	Algorithm string `yaml:"algorithm"`
	// HashOn is the key of consistent_hash: source_ip | path | uri |
	// header:NAME | cookie:NAME | query:NAME. Required by consistent_hash.
	HashOn string `yaml:"hash_on"`
	// Sticky adds cookie session persistence on top of any algorithm.
	Sticky *Sticky `yaml:"sticky"`
	// Backends are the servers of the pool. At least one unless launched.
	Backends []Backend `yaml:"backends"`
	// Queue is the waiting room used when every backend is at max_conns.
	Queue *Queue `yaml:"queue"`
	// HealthCheck configures active health checks.
	HealthCheck *HealthCheck `yaml:"health_check"`
	// Passive configures outlier detection from live traffic.
	Passive *Passive `yaml:"passive"`
	// Retries configures which failed requests are tried again elsewhere.
	Retries *Retries `yaml:"retries"`
	// Timeouts bound each exchange with a backend.
	Timeouts Timeouts `yaml:"timeouts"`
	// SlowStart ramps a recovered backend's share up over this time. Optional.
	SlowStart Duration `yaml:"slow_start"`
	// Launch makes ballast start and supervise the backends itself. Optional.
	Launch *Launch `yaml:"launch"`
	// TLS makes ballast talk to the backends over TLS. Optional.
	TLS *BackendTLS `yaml:"tls"`
	// BackendProtocol is how ballast speaks HTTP to the backends: http1
	// (default) or h2c (HTTP/2 without TLS, or HTTP/2 over tls; what gRPC
	// backends need).
	BackendProtocol string `yaml:"backend_protocol"`
}

// Backend is one server of a pool.
type Backend struct {
	// Addr is host:port. Required, unique within the pool.
	Addr string `yaml:"addr"`
	// Weight is the backend's relative share, 1..1000. Default 1.
	Weight int `yaml:"weight"`
	// MaxConns caps concurrent requests to the backend; 0 (default) = no cap.
	MaxConns int `yaml:"max_conns"`
	// Backup backends get traffic only while no primary is usable.
	Backup bool `yaml:"backup"`
}

// Sticky is cookie-based session persistence.
type Sticky struct {
	// Cookie is the cookie's name. Required.
	Cookie string `yaml:"cookie"`
	// TTL is the cookie's Max-Age; 0 (default) makes it a session cookie.
	TTL Duration `yaml:"ttl"`
}

// Queue is the pool's waiting room.
type Queue struct {
	// Max is how many requests may wait. Default 1000.
	Max int `yaml:"max"`
	// Timeout is how long a request may wait before it gets 503. Default 5s.
	Timeout Duration `yaml:"timeout"`
	// Admission is who gets a freed slot: adaptive (default: requests of
	// routes measured fast go first, and requests of slow routes may hold
	// only the slots the fast ones do not need; a slow request that waited a
	// second goes first) or fifo (first come, first served).
	Admission string `yaml:"admission"`
}

// Queue admission orders.
const (
	AdmissionAdaptive = "adaptive"
	AdmissionFIFO     = "fifo"
)

// HealthCheck is an active health check.
type HealthCheck struct {
	// Type is http, tcp or none. Default http.
	Type string `yaml:"type"`
	// Path is the http check's request path. Default /.
	Path string `yaml:"path"`
	// Host is the http check's Host header. Default: the backend address.
	Host string `yaml:"host"`
	// Interval between probes of one backend. Default 2s.
	Interval Duration `yaml:"interval"`
	// Timeout of one probe. Default 1s.
	Timeout Duration `yaml:"timeout"`
	// Rise is how many consecutive passes mark a backend up. Default 2.
	Rise int `yaml:"rise"`
	// Fall is how many consecutive failures mark a backend down. Default 3.
	Fall int `yaml:"fall"`
	// ExpectStatus is the accepted status range, "200-399" (default) or "200".
	ExpectStatus string `yaml:"expect_status"`
}

// Passive is outlier detection from live traffic.
type Passive struct {
	// ConsecutiveFailures ejects a backend after this many failures in a row. Default 5.
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// EjectFor is the first ejection's length. Default 30s.
	EjectFor Duration `yaml:"eject_for"`
	// MaxEjectedPercent caps the share of a pool that may be ejected. Default 50.
	MaxEjectedPercent int `yaml:"max_ejected_percent"`
}

// Retries says which failed requests are tried again on another backend.
type Retries struct {
	// Attempts is the number of retries after the first try. Default 2.
	Attempts int `yaml:"attempts"`
	// On lists the retry conditions: connect_failure, timeout, reset, or a
	// 5xx status code such as "502". Default [connect_failure].
	On []string `yaml:"on"`
	// IdempotentOnly restricts retries after the request was sent to
	// idempotent methods (RFC 9110). Default true.
	IdempotentOnly *bool `yaml:"idempotent_only"`
	// Budget caps retries of sent requests at this percentage of recent
	// requests (0..100), so that retries cannot multiply an outage; 0 retries
	// only connect failures. Default 20.
	Budget int `yaml:"budget"`
}

// Timeouts bound each exchange with a backend.
type Timeouts struct {
	// Connect bounds dialing a backend. Default 2s.
	Connect Duration `yaml:"connect"`
	// ResponseHeader bounds the wait for the response header once the request
	// has been sent; past it the client gets 504. Default 30s.
	ResponseHeader Duration `yaml:"response_header"`
	// Idle is how long an unused keep-alive connection to a backend is kept. Default 90s.
	Idle Duration `yaml:"idle"`
}

// Launch makes ballast run the pool's backends itself.
type Launch struct {
	// Command is the program and its arguments, run without a shell. Every
	// "{port}" in it is replaced by the instance's port. Required.
	Command []string `yaml:"command"`
	// Instances is how many copies run, each on its own port. At least 1.
	Instances int `yaml:"instances"`
	// Ports is the range the instances' ports are taken from, "18000-18999";
	// it must hold at least Instances ports. Required.
	Ports string `yaml:"ports"`
	// Workdir is the instances' working directory. Default: ballast's own.
	Workdir string `yaml:"workdir"`
	// Env is added to the environment ballast passes on (and overrides it).
	Env map[string]string `yaml:"env"`
	// MaxConns caps each instance's concurrent requests. Default: workers ×
	// threads when the command is gunicorn (sync or gthread workers) or
	// uWSGI and says how many; else no cap.
	MaxConns int `yaml:"max_conns"`
	// StartTimeout bounds how long an instance may take to pass its first
	// health check. Default 60s.
	StartTimeout Duration `yaml:"start_timeout"`
	// StopTimeout bounds the wait for a draining instance's requests, and
	// again the grace between SIGTERM and SIGKILL. Default 10s.
	StopTimeout Duration `yaml:"stop_timeout"`
}

// Cluster is high availability of the ballast tier.
type Cluster struct {
	// VRRP holds a floating IP on one node of an active-passive group. Optional.
	VRRP *VRRP `yaml:"vrrp"`
	// Etcd shares pools, backends and registrations between active-active
	// nodes. Optional.
	Etcd *Etcd `yaml:"etcd"`
}

// VRRP is an active-passive floating IP group (RFC 5798).
type VRRP struct {
	// Interface is the network interface that advertises and holds the
	// virtual IPs. Required.
	Interface string `yaml:"interface"`
	// VirtualRouterID identifies the group, 1..255, the same on every node.
	VirtualRouterID int `yaml:"virtual_router_id"`
	// Priority is this node's claim, 1..255; the highest usable node is master.
	Priority int `yaml:"priority"`
	// AdvertInterval is the time between the master's advertisements,
	// 10ms..40.95s in steps of 10ms (it is sent in centiseconds). Default 1s.
	AdvertInterval Duration `yaml:"advert_interval"`
	// VirtualIPs are the floating addresses with their prefix length,
	// "192.0.2.100/24", all IPv4 or all IPv6. They must equal the peers' set.
	VirtualIPs []string `yaml:"virtual_ips"`
	// Preempt lets a node of higher priority take over from a lower master.
	// Default true.
	Preempt *bool `yaml:"preempt"`
	// PreemptDelay postpones a preemption after this node starts. Default 0.
	PreemptDelay Duration `yaml:"preempt_delay"`
	// TrackPools names pools that must have a healthy backend for this node
	// to hold the virtual IPs.
	TrackPools []string `yaml:"track_pools"`
	// UnicastPeers, when set, are the peers' IP addresses, advertised to by
	// unicast instead of multicast.
	UnicastPeers []string `yaml:"unicast_peers"`
}

// Etcd is active-active shared config and discovery.
type Etcd struct {
	// Endpoints are the etcd members, host:port or http(s)://host:port. At
	// least one.
	Endpoints []string `yaml:"endpoints"`
	// Prefix is prepended to every key ballast reads or writes. Default /ballast/.
	Prefix string `yaml:"prefix"`
}

// Duration is a time.Duration written in the config as "1.5s", "250ms", "1h".
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d as time.Duration does ("1m30s").
func (d Duration) String() string { return time.Duration(d).String() }

// Line returns the line of the field at path ("pools.app.algorithm"), or the
// line of its nearest parent that has one, or 0.
func (c *Config) Line(path string) int {
	for path != "" {
		if l, ok := c.lines[path]; ok {
			return l
		}
		path = parentPath(path)
	}
	return 0
}

// parentPath strips the last element of a field path: "a.b[2]" → "a.b", "a.b" → "a".
func parentPath(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		switch p[i] {
		case '.':
			return p[:i]
		case '[':
			return p[:i]
		}
	}
	return ""
}
