// Package metrics is ballast's Prometheus exposition (prometheus/client_golang).
//
// Two kinds of figures. Counters and gauges that ballast keeps anyway — a
// backend's requests by status class, failures, in-flight count, state,
// ejections, latency; a pool's queue length; health check results — are read
// from their atomics at scrape time by a Collector, so they cost the request
// path nothing more. Distributions that exist only for metrics — request
// duration, queue wait, retries per pool — are recorded by Observe, which the
// data path calls once per finished request: a lock-free map lookup and
// atomic histogram updates.
//
// Labels are bounded by the config: pool, backend address, status class,
// state, result. No path, host or client address ever becomes a label.
package metrics

import (
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"ballast/internal/accesslog"
	"ballast/internal/backend"
)

// Pool is what a scrape reads of one pool.
type Pool struct {
	Name     string
	Backends []*backend.Backend
	QueueLen int
	// Checks returns the active health check results of a backend; nil when
	// the pool has no active checks.
	Checks func(addr string) (passed, failed uint64)
	// Launch is the pool's launched processes; nil when ballast runs none.
	Launch *Launch
}

// Launch is what a launched pool's supervisor counts.
type Launch struct {
	// Restarts counts instance exits nobody asked for.
	Restarts uint64
	// States counts the instances by state (starting, running, backoff, stopping).
	States map[string]int
}

// launchStates are the instance states reported, each as 0 or more.
var launchStates = []string{"starting", "running", "backoff", "stopping"}

// Metrics holds ballast's metrics. Its methods are safe for concurrent use.
type Metrics struct {
	reg   *prometheus.Registry
	pools func() []Pool

	duration   *prometheus.HistogramVec
	queueWait  *prometheus.HistogramVec
	retries    *prometheus.CounterVec
	reloads    *prometheus.CounterVec
	configInfo *prometheus.GaugeVec
	vrrp       *prometheus.GaugeVec

	perPool atomic.Pointer[map[string]*poolObs] // immutable; replaced by SetPools
	mu      sync.Mutex                          // serialises SetPools and Reloaded
	hash    string                              // the config_info label in use
}

// poolObs are one pool's resolved observers: no label lookup per request.
type poolObs struct {
	duration, queueWait prometheus.Observer
	retries             prometheus.Counter
}

// Request duration buckets, seconds: from sub-millisecond proxying to slow
// app-server requests.
var durationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Queue wait buckets, seconds, up to beyond the longest sensible queue.timeout.
var queueBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// New returns ballast's metrics; pools is called at every scrape for the
// current pools.
func New(version string, pools func() []Pool) *Metrics {
	m := &Metrics{
		reg:   prometheus.NewRegistry(),
		pools: pools,
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ballast_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its response, by pool.",
			Buckets: durationBuckets,
		}, []string{"pool"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ballast_queue_wait_seconds",
			Help:    "Time requests waited in the pool's queue for a backend below max_conns (only requests that waited).",
			Buckets: queueBuckets,
		}, []string{"pool"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ballast_retries_total",
			Help: "Tries of requests on another backend after a failure, by pool.",
		}, []string{"pool"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ballast_config_reloads_total",
			Help: "Config reloads by result (ok, failed).",
		}, []string{"result"}),
		configInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ballast_config_info",
			Help: "The loaded config's hash (sha256 of the file), as a label; value 1.",
		}, []string{"hash"}),
		vrrp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ballast_vrrp_state",
			Help: "This node's VRRP state (cluster.vrrp): 1 for the current one of initialize, backup, master.",
		}, []string{"state"}),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "ballast_build_info",
		Help:        "ballast's version, as a label; value 1.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	build.Set(1)
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("failed")
	m.reg.MustRegister(m.duration, m.queueWait, m.retries, m.reloads, m.configInfo, m.vrrp, build,
		&collector{m: m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	empty := map[string]*poolObs{}
	m.perPool.Store(&empty)
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: nil})
}

// Registry returns the registry (tests gather from it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// SetPools resolves the per-pool observers for the configured pools, and
// drops the series of pools no longer configured. Called at start and on
// every reload.
func (m *Metrics) SetPools(names []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.perPool.Load()
	next := make(map[string]*poolObs, len(names))
	for _, n := range names {
		if o, ok := old[n]; ok {
			next[n] = o
			continue
		}
		next[n] = &poolObs{
			duration:  m.duration.WithLabelValues(n),
			queueWait: m.queueWait.WithLabelValues(n),
			retries:   m.retries.WithLabelValues(n),
		}
	}
	for n := range old {
		if _, ok := next[n]; !ok {
			m.duration.DeleteLabelValues(n)
			m.queueWait.DeleteLabelValues(n)
			m.retries.DeleteLabelValues(n)
		}
	}
	m.perPool.Store(&next)
}

// Observe records a finished request (proxy.Observer).
func (m *Metrics) Observe(e *accesslog.Entry) {
	o := (*m.perPool.Load())[e.Pool]
	if o == nil {
		return // no route matched, or a pool removed meanwhile
	}
	o.duration.Observe(e.Duration.Seconds())
	if e.Queued > 0 {
		o.queueWait.Observe(e.Queued.Seconds())
	}
	if e.Retries > 0 {
		o.retries.Add(float64(e.Retries))
	}
}

// SetVRRPState records this node's VRRP state ("" when it runs none).
func (m *Metrics) SetVRRPState(state string) {
	for _, st := range []string{"initialize", "backup", "master"} {
		if state == "" {
			m.vrrp.DeleteLabelValues(st)
			continue
		}
		v := 0.0
		if st == state {
			v = 1
		}
		m.vrrp.WithLabelValues(st).Set(v)
	}
}

// Reloaded counts a config reload; on success hash is the new config's.
func (m *Metrics) Reloaded(ok bool, hash string) {
	if !ok {
		m.reloads.WithLabelValues("failed").Inc()
		return
	}
	m.reloads.WithLabelValues("ok").Inc()
	m.SetConfigHash(hash)
}

// SetConfigHash sets the loaded config's hash (at start, and on reload).
func (m *Metrics) SetConfigHash(hash string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hash != "" && m.hash != hash {
		m.configInfo.DeleteLabelValues(m.hash)
	}
	m.hash = hash
	m.configInfo.WithLabelValues(hash).Set(1)
}

// collector reads the figures ballast keeps in its own atomics.
type collector struct{ m *Metrics }

var (
	descRequests = prometheus.NewDesc("ballast_backend_requests_total",
		"Exchanges with a backend by outcome: status class 1xx..5xx, or error (no response: connect error, reset, timeout).",
		[]string{"pool", "backend", "class"}, nil)
	descFailures = prometheus.NewDesc("ballast_backend_failures_total",
		"Failed exchanges with a backend (connect errors, resets, timeouts, 5xx).", []string{"pool", "backend"}, nil)
	descInFlight = prometheus.NewDesc("ballast_backend_in_flight",
		"Requests (or TCP connections) in progress on a backend.", []string{"pool", "backend"}, nil)
	descState = prometheus.NewDesc("ballast_backend_state",
		"A backend's state: 1 for the current one (up, down, ejected, draining, starting), 0 for the others.",
		[]string{"pool", "backend", "state"}, nil)
	descEjections = prometheus.NewDesc("ballast_backend_ejections_total",
		"Passive outlier ejections of a backend.", []string{"pool", "backend"}, nil)
	descLatency = prometheus.NewDesc("ballast_backend_latency_seconds",
		"A backend's recent response-header time (decaying average, time constant 10 s).", []string{"pool", "backend"}, nil)
	descChecks = prometheus.NewDesc("ballast_health_checks_total",
		"Active health check probes of a backend by result (pass, fail).", []string{"pool", "backend", "result"}, nil)
	descQueue = prometheus.NewDesc("ballast_queue_length",
		"Requests waiting in a pool's queue for a backend below max_conns.", []string{"pool"}, nil)
	descLaunchRestarts = prometheus.NewDesc("ballast_launch_restarts_total",
		"Exits of a launched pool's instances that nobody asked for (crashes); each is restarted with backoff.", []string{"pool"}, nil)
	descLaunchInstances = prometheus.NewDesc("ballast_launch_instances",
		"A launched pool's instances by state (starting, running, backoff: exited and waiting to restart, stopping).",
		[]string{"pool", "state"}, nil)
)

var classNames = [6]string{"error", "1xx", "2xx", "3xx", "4xx", "5xx"}

var states = []backend.State{backend.StateUp, backend.StateDown, backend.StateEjected, backend.StateDraining, backend.StateStarting}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRequests, descFailures, descInFlight, descState, descEjections,
		descLatency, descChecks, descQueue, descLaunchRestarts, descLaunchInstances} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.m.pools() {
		ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(p.QueueLen), p.Name)
		if l := p.Launch; l != nil {
			ch <- prometheus.MustNewConstMetric(descLaunchRestarts, prometheus.CounterValue, float64(l.Restarts), p.Name)
			for _, st := range launchStates {
				ch <- prometheus.MustNewConstMetric(descLaunchInstances, prometheus.GaugeValue, float64(l.States[st]), p.Name, st)
			}
		}
		for _, b := range p.Backends {
			for class, n := range b.Responses() {
				ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(n), p.Name, b.Addr, classNames[class])
			}
			ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(b.Failures()), p.Name, b.Addr)
			ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(b.InFlight()), p.Name, b.Addr)
			cur := b.State()
			for _, s := range states {
				v := 0.0
				if s == cur {
					v = 1
				}
				ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, p.Name, b.Addr, s.String())
			}
			ch <- prometheus.MustNewConstMetric(descEjections, prometheus.CounterValue, float64(b.Ejections()), p.Name, b.Addr)
			ch <- prometheus.MustNewConstMetric(descLatency, prometheus.GaugeValue, b.Latency().Seconds(), p.Name, b.Addr)
			if p.Checks != nil {
				pass, fail := p.Checks(b.Addr)
				ch <- prometheus.MustNewConstMetric(descChecks, prometheus.CounterValue, float64(pass), p.Name, b.Addr, "pass")
				ch <- prometheus.MustNewConstMetric(descChecks, prometheus.CounterValue, float64(fail), p.Name, b.Addr, "fail")
			}
		}
	}
}
