package config

import (
	"strconv"
	"time"
)

// Defaults. applyDefaults is the only place they are applied. A number,
// duration or bool takes its default only when its key is absent (or null), so
// an explicit 0 keeps its meaning (retries attempts: 0 = no retries, queue
// max: 0 = no queue) or is reported by Validate (weight: 0). A string takes
// its default when empty. Optional sections (health_check, passive, retries)
// are filled in only when present; queue and timeouts always are.
const (
	// DefaultShutdownTimeout is how long a stop waits for in-flight requests.
	DefaultShutdownTimeout = 30 * time.Second
	// DefaultProtocol is a listener's protocol.
	DefaultProtocol = ProtocolHTTP
	// DefaultEngine is a plaintext http listener's HTTP engine. TLS listeners
	// always use net/http, for HTTP/2.
	DefaultEngine = EngineNative
	// DefaultAlgorithm is a pool's balancing algorithm.
	DefaultAlgorithm = "round_robin"
	// DefaultWeight is a backend's weight.
	DefaultWeight = 1
	// DefaultMaxClientConns caps a listener's concurrent client connections.
	DefaultMaxClientConns = 10000
	// DefaultMaxHeaderBytes caps a request header block.
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultReadHeaderTimeout bounds the arrival of a request header.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultHTTPIdleTimeout closes an idle client keep-alive connection.
	DefaultHTTPIdleTimeout = 120 * time.Second
	// DefaultTCPIdleTimeout closes a tcp connection with no traffic.
	DefaultTCPIdleTimeout = time.Hour
	// DefaultWriteTimeout disconnects a client that reads nothing.
	DefaultWriteTimeout = 60 * time.Second
	// DefaultTLSMinVersion is the oldest TLS version accepted.
	DefaultTLSMinVersion = "1.2"
	// DefaultBackendProtocol is how ballast speaks HTTP to backends.
	DefaultBackendProtocol = BackendHTTP1
	// DefaultAccessLogOutput is where an access_log section without output writes.
	DefaultAccessLogOutput = "stdout"
	// DefaultQueueMax is how many requests a pool queue holds.
	DefaultQueueMax = 1000
	// DefaultQueueTimeout is how long a request may wait in a pool queue.
	DefaultQueueTimeout = 5 * time.Second
	// DefaultLaunchStartTimeout bounds a launched instance's start.
	DefaultLaunchStartTimeout = 60 * time.Second
	// DefaultLaunchStopTimeout is a launched instance's drain bound and stop grace.
	DefaultLaunchStopTimeout = 10 * time.Second
	// DefaultHealthCheckType is the active health check's kind.
	DefaultHealthCheckType = "http"
	// DefaultHealthCheckPath is the http health check's request path.
	DefaultHealthCheckPath = "/"
	// DefaultHealthCheckInterval is the time between probes of one backend.
	DefaultHealthCheckInterval = 2 * time.Second
	// DefaultHealthCheckTimeout bounds one probe.
	DefaultHealthCheckTimeout = 1 * time.Second
	// DefaultRise is how many consecutive passing probes mark a backend up.
	DefaultRise = 2
	// DefaultFall is how many consecutive failing probes mark a backend down.
	DefaultFall = 3
	// DefaultExpectStatus is the range of http statuses a probe accepts.
	DefaultExpectStatus = "200-399"
	// DefaultConsecutiveFailures is how many live failures in a row eject a backend.
	DefaultConsecutiveFailures = 5
	// DefaultEjectFor is the length of a backend's first ejection.
	DefaultEjectFor = 30 * time.Second
	// DefaultMaxEjectedPercent caps the share of a pool that may be ejected.
	DefaultMaxEjectedPercent = 50
	// DefaultRetryAttempts is how many retries follow a failed first try.
	DefaultRetryAttempts = 2
	// DefaultRetryOn is the one retry condition used when `on` is absent.
	DefaultRetryOn = RetryConnectFailure
	// DefaultRetryBudget is the percentage of recent requests that may be retries.
	DefaultRetryBudget = 20
	// DefaultIdempotentOnly restricts retries of sent requests to idempotent methods.
	DefaultIdempotentOnly = true
	// DefaultConnectTimeout bounds dialing a backend.
	DefaultConnectTimeout = 2 * time.Second
	// DefaultResponseHeaderTimeout bounds the wait for a backend's response header.
	DefaultResponseHeaderTimeout = 30 * time.Second
	// DefaultIdleTimeout is how long an unused backend connection is kept.
	DefaultIdleTimeout = 90 * time.Second
	// DefaultAdvertInterval is the VRRP advertisement interval.
	DefaultAdvertInterval = 1 * time.Second
	// DefaultPreempt lets a higher-priority VRRP node take the virtual IPs back.
	DefaultPreempt = true
	// DefaultEtcdPrefix is the key prefix of everything ballast keeps in etcd.
	DefaultEtcdPrefix = "/ballast/"
)

// applyDefaults fills in every default. Parse calls it after decoding and
// before validation; it uses c.lines to tell an absent key from an explicit zero.
func applyDefaults(c *Config) {
	if a := c.AccessLog; a != nil && a.Output == "" {
		a.Output = DefaultAccessLogOutput
	}
	setDuration(c, "shutdown_timeout", &c.ShutdownTimeout, DefaultShutdownTimeout)
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.Protocol == "" {
			l.Protocol = DefaultProtocol
		}
		if l.Engine == "" && l.Protocol == ProtocolHTTP {
			l.Engine = DefaultEngine
		}
		limitsDefaults(c, "listeners["+strconv.Itoa(i)+"].limits", l)
		if t := l.TLS; t != nil && t.MinVersion == "" {
			t.MinVersion = DefaultTLSMinVersion
		}
	}
	for name, p := range c.Pools {
		if p != nil {
			poolDefaults(c, "pools."+name, p)
		}
	}
	if c.Cluster != nil && c.Cluster.VRRP != nil {
		v := c.Cluster.VRRP
		setDuration(c, "cluster.vrrp.advert_interval", &v.AdvertInterval, DefaultAdvertInterval)
		setBool(&v.Preempt, DefaultPreempt)
	}
	if c.Cluster != nil && c.Cluster.Etcd != nil && c.Cluster.Etcd.Prefix == "" {
		c.Cluster.Etcd.Prefix = DefaultEtcdPrefix
	}
}

// poolDefaults fills in the defaults of the pool at path.
func poolDefaults(c *Config, path string, p *Pool) {
	if p.Algorithm == "" {
		p.Algorithm = DefaultAlgorithm
	}
	for i := range p.Backends {
		setInt(c, path+".backends["+strconv.Itoa(i)+"].weight", &p.Backends[i].Weight, DefaultWeight)
	}
	if p.Queue == nil {
		p.Queue = &Queue{}
	}
	if q := p.Queue; q != nil {
		setInt(c, path+".queue.max", &q.Max, DefaultQueueMax)
		setDuration(c, path+".queue.timeout", &q.Timeout, DefaultQueueTimeout)
		if q.Admission == "" {
			q.Admission = AdmissionAdaptive
		}
	}
	if h := p.HealthCheck; h != nil {
		healthDefaults(c, path+".health_check", h)
	}
	if ps := p.Passive; ps != nil {
		setInt(c, path+".passive.consecutive_failures", &ps.ConsecutiveFailures, DefaultConsecutiveFailures)
		setDuration(c, path+".passive.eject_for", &ps.EjectFor, DefaultEjectFor)
		setInt(c, path+".passive.max_ejected_percent", &ps.MaxEjectedPercent, DefaultMaxEjectedPercent)
	}
	if r := p.Retries; r != nil {
		setInt(c, path+".retries.attempts", &r.Attempts, DefaultRetryAttempts)
		if r.On == nil && !c.has(path+".retries.on") {
			r.On = []string{DefaultRetryOn}
		}
		setBool(&r.IdempotentOnly, DefaultIdempotentOnly)
		setInt(c, path+".retries.budget", &r.Budget, DefaultRetryBudget)
	}
	if p.BackendProtocol == "" {
		p.BackendProtocol = DefaultBackendProtocol
	}
	if l := p.Launch; l != nil {
		setDuration(c, path+".launch.start_timeout", &l.StartTimeout, DefaultLaunchStartTimeout)
		setDuration(c, path+".launch.stop_timeout", &l.StopTimeout, DefaultLaunchStopTimeout)
	}
	t := &p.Timeouts
	setDuration(c, path+".timeouts.connect", &t.Connect, DefaultConnectTimeout)
	setDuration(c, path+".timeouts.response_header", &t.ResponseHeader, DefaultResponseHeaderTimeout)
	setDuration(c, path+".timeouts.idle", &t.Idle, DefaultIdleTimeout)
}

// healthDefaults fills in the defaults of a present health_check at path.
func healthDefaults(c *Config, path string, h *HealthCheck) {
	if h.Type == "" {
		h.Type = DefaultHealthCheckType
	}
	if h.Path == "" {
		h.Path = DefaultHealthCheckPath
	}
	if h.ExpectStatus == "" {
		h.ExpectStatus = DefaultExpectStatus
	}
	setDuration(c, path+".interval", &h.Interval, DefaultHealthCheckInterval)
	setDuration(c, path+".timeout", &h.Timeout, DefaultHealthCheckTimeout)
	setInt(c, path+".rise", &h.Rise, DefaultRise)
	setInt(c, path+".fall", &h.Fall, DefaultFall)
}

// has reports whether the key at path was written with a non-null value.
func (c *Config) has(path string) bool {
	_, ok := c.lines[path]
	return ok && !c.nulls[path]
}

// setInt sets *v to def unless the key at path was written.
func setInt(c *Config, path string, v *int, def int) {
	if !c.has(path) && *v == 0 {
		*v = def
	}
}

// setDuration sets *v to def unless the key at path was written.
func setDuration(c *Config, path string, v *Duration, def time.Duration) {
	if !c.has(path) && *v == 0 {
		*v = Duration(def)
	}
}

// setBool sets an unset optional bool to def.
func setBool(v **bool, def bool) {
	if *v == nil {
		*v = &def
	}
}

// limitsDefaults fills a listener's limits; the idle timeout's default
// depends on the protocol.
func limitsDefaults(c *Config, path string, l *Listener) {
	lim := &l.Limits
	setInt(c, path+".max_conns", &lim.MaxConns, DefaultMaxClientConns)
	setInt(c, path+".max_header_bytes", &lim.MaxHeaderBytes, DefaultMaxHeaderBytes)
	setDuration(c, path+".read_header_timeout", &lim.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	idle := DefaultHTTPIdleTimeout
	if l.Protocol == ProtocolTCP {
		idle = DefaultTCPIdleTimeout
	}
	setDuration(c, path+".idle_timeout", &lim.IdleTimeout, idle)
	setDuration(c, path+".write_timeout", &lim.WriteTimeout, DefaultWriteTimeout)
}
