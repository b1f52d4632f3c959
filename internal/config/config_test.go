package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// exampleYAML is the config file of CONTRACT.md, verbatim, plus the pools api
// and pg that its routes refer to.
const exampleYAML = `admin:                         # optional; admin API, /metrics and the dashboard
  listen: 127.0.0.1:9901
  token_file: admin.token      # optional; if set, every admin request needs "Authorization: Bearer <token>"

shutdown_timeout: 30s

listeners:
  - name: web
    listen: 127.0.0.1:8080
    protocol: http             # http | tcp
    tls: {cert: cert.pem, key: key.pem}   # optional; enables HTTPS (and HTTP/2 by ALPN)
    routes:                    # http: first match wins
      - host: api.example.com  # optional
        path_prefix: /api      # optional
        pool: api
      - pool: app
  - name: db
    listen: 127.0.0.1:5433
    protocol: tcp
    pool: pg                   # tcp: every connection goes to this pool

pools:
  app:
    algorithm: least_conn      # see the table below
    hash_on: header:X-User     # for the hash algorithms: source_ip | path | uri | header:NAME | cookie:NAME | query:NAME
    sticky: {cookie: ballast_app, ttl: 1h}   # optional session persistence, on top of any algorithm
    backends:
      - addr: 127.0.0.1:8001
        weight: 3              # default 1
        max_conns: 4           # optional; requests beyond it wait in the pool queue (see queue)
        backup: false          # backup backends get traffic only when no primary is up
    queue: {max: 1000, timeout: 5s}   # waiting room when every backend is at max_conns
    health_check:
      type: http               # http | tcp | none
      path: /healthz
      interval: 2s
      timeout: 1s
      rise: 2                  # consecutive passes to mark up
      fall: 3                  # consecutive failures to mark down
      expect_status: 200-399
    passive:                   # outlier detection from live traffic
      consecutive_failures: 5
      eject_for: 30s
    retries: {attempts: 2, on: [connect_failure, "502", "503", "504"], idempotent_only: true}
    timeouts: {connect: 2s, response_header: 30s, idle: 90s}
    slow_start: 30s            # optional; a recovered backend's share ramps up over this time
    launch:                    # optional; ballast starts and supervises the backends itself
      command: ["gunicorn", "-w", "2", "-b", "127.0.0.1:{port}", "app:app"]
      instances: 3
      ports: 18000-18999
      workdir: examples/flask
      env: {APP_ENV: prod}
  api:                         # not in CONTRACT.md: the routes above need pools api and pg
    backends:
      - addr: 127.0.0.1:8101
      - addr: localhost:8102
        weight: 2
    retries: {attempts: 0}
  pg:
    algorithm: consistent_hash
    hash_on: source_ip
    backends: [{addr: "127.0.0.1:5432"}]

cluster:                       # optional; high availability of the ballast tier itself
  vrrp:                        # active-passive floating IP, VRRPv3 (RFC 5798), keepalived-compatible
    interface: eth0
    virtual_router_id: 51      # 1..255, the same on every node of the group
    priority: 150              # 1..255; the highest usable node holds the virtual IPs
    advert_interval: 100ms     # 10ms..40.95s, sent in centiseconds
    virtual_ips: [192.0.2.100/24]   # must equal the peers' set exactly (keepalived checks it)
    preempt: true
    preempt_delay: 0s
    track_pools: [app]         # do not hold the virtual IPs while these pools have no healthy backend
    unicast_peers: []          # optional, instead of multicast
  etcd:                        # active-active: shared pools, backends and registrations
    endpoints: [127.0.0.1:2379]
    prefix: /ballast/
`

func TestParseContractExample(t *testing.T) {
	c, err := Parse("ballast.yaml", []byte(exampleYAML))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	app, api, pg := c.Pools["app"], c.Pools["api"], c.Pools["pg"]
	checks := []struct {
		name      string
		got, want any
	}{
		{"file", c.File, "ballast.yaml"},
		{"pool order", c.PoolOrder, []string{"app", "api", "pg"}},
		{"admin", *c.Admin, Admin{Listen: "127.0.0.1:9901", TokenFile: "admin.token"}},
		{"shutdown_timeout", c.ShutdownTimeout.D(), 30 * time.Second},
		{"tls", *c.Listeners[0].TLS, TLS{Cert: "cert.pem", Key: "key.pem", MinVersion: DefaultTLSMinVersion}},
		{"default limits", c.Listeners[0].Limits, Limits{MaxConns: DefaultMaxClientConns, MaxHeaderBytes: DefaultMaxHeaderBytes,
			ReadHeaderTimeout: Duration(DefaultReadHeaderTimeout), IdleTimeout: Duration(DefaultHTTPIdleTimeout), WriteTimeout: Duration(DefaultWriteTimeout)}},
		{"tcp idle default", c.Listeners[1].Limits.IdleTimeout, Duration(DefaultTCPIdleTimeout)},
		{"routes", c.Listeners[0].Routes, []Route{{Host: "api.example.com", PathPrefix: "/api", Pool: "api"}, {Pool: "app"}}},
		{"tcp listener", c.Listeners[1].Pool, "pg"},
		{"app backend", app.Backends[0], Backend{Addr: "127.0.0.1:8001", Weight: 3, MaxConns: 4}},
		{"app sticky", *app.Sticky, Sticky{Cookie: "ballast_app", TTL: Duration(time.Hour)}},
		{"app health", *app.HealthCheck, HealthCheck{Type: "http", Path: "/healthz", Interval: Duration(2 * time.Second),
			Timeout: Duration(time.Second), Rise: 2, Fall: 3, ExpectStatus: "200-399"}},
		{"app passive defaulted max_ejected_percent", app.Passive.MaxEjectedPercent, DefaultMaxEjectedPercent},
		{"app retries on", app.Retries.On, []string{"connect_failure", "502", "503", "504"}},
		{"app launch", app.Launch.Command[4], "127.0.0.1:{port}"},
		{"app launch env", app.Launch.Env, map[string]string{"APP_ENV": "prod"}},
		{"api default algorithm", api.Algorithm, DefaultAlgorithm},
		{"api default weight", api.Backends[0].Weight, DefaultWeight},
		{"api explicit weight", api.Backends[1].Weight, 2},
		{"api explicit zero attempts kept", api.Retries.Attempts, 0},
		{"api default retry on", api.Retries.On, []string{DefaultRetryOn}},
		{"api default idempotent_only", *api.Retries.IdempotentOnly, DefaultIdempotentOnly},
		{"api default timeouts", api.Timeouts, Timeouts{Connect: Duration(DefaultConnectTimeout),
			ResponseHeader: Duration(DefaultResponseHeaderTimeout), Idle: Duration(DefaultIdleTimeout)}},
		{"api absent sections stay nil", api.HealthCheck == nil && api.Passive == nil, true},
		{"api default queue", *api.Queue, Queue{Max: DefaultQueueMax, Timeout: Duration(DefaultQueueTimeout), Admission: AdmissionAdaptive}},
		{"api default retry budget", api.Retries.Budget, DefaultRetryBudget},
		{"pg hash_on", pg.HashOn, "source_ip"},
		{"vrrp", c.Cluster.VRRP.AdvertInterval.D(), 100 * time.Millisecond},
		{"vrrp preempt", *c.Cluster.VRRP.Preempt, true},
		{"vrrp unicast peers", c.Cluster.VRRP.UnicastPeers, []string{}},
		{"etcd", *c.Cluster.Etcd, Etcd{Endpoints: []string{"127.0.0.1:2379"}, Prefix: "/ballast/"}},
		{"line of a backend weight", c.Line("pools.app.backends[0].weight"), 29},
		{"line of a flow mapping field", c.Line("pools.app.timeouts.idle"), 45},
		{"line of a list item", c.Line("listeners[1]"), 17},
		{"line of a missing field falls back to its parent", c.Line("pools.api.backends[1].max_conns"), 56},
	}
	for _, tc := range checks {
		t.Run(tc.name, func(t *testing.T) {
			if !reflect.DeepEqual(tc.got, tc.want) {
				t.Errorf("got %#v, want %#v", tc.got, tc.want)
			}
		})
	}
}

// brokenYAML has one or more problems on most lines; TestParseReportsEveryProblem
// lists them all.
const brokenYAML = `admin:
  listen: 127.0.0.1:9901
  tokn_file: admin.token
shutdown_timeout: 30
listeners:
  - name: web
    listen: 127.0.0.1
    routes:
      - path_prefix: /api
        pool: nope
      - pool: app
  - name: web
    listen: 127.0.0.1:8081
    protocol: tcp
pools:
  app:
    algorithm: fastest
    backends:
      - addr: 127.0.0.1:8001
      - addr: 127.0.0.1:8001
        weight: 0
    timeouts: {connect: 2 seconds, idle: 90s}
    health_check:
      interval: 1s
      timeout: 2s
      rise: 0
  ring:
    algorithm: consistent_hash
    backends: [{addr: "10.0.0.1:80", weight: abc}]
    retries: {attempts: 11, on: [connect_failure, teapot]}
    backup: true
  ring:
    backends: []
`

func TestParseReportsEveryProblem(t *testing.T) {
	want := []string{
		`bad.yaml:3: admin.tokn_file: unknown field (did you mean "token_file"?)`,
		`bad.yaml:4: shutdown_timeout: duration 30 needs a unit, like 30s or 30ms`,
		`bad.yaml:7: listeners[0].listen: invalid address "127.0.0.1" (want host:port, like 127.0.0.1:8080)`,
		`bad.yaml:10: listeners[0].routes[0].pool: undefined pool "nope"`,
		`bad.yaml:12: listeners[1].name: duplicate listener name "web" (first at line 6)`,
		`bad.yaml:12: listeners[1].pool: pool is required`,
		`bad.yaml:17: pools.app.algorithm: unknown algorithm "fastest" (valid: round_robin, weighted_round_robin, ` +
			`least_conn, weighted_least_conn, least_time, p2c, random, ip_hash, consistent_hash)`,
		`bad.yaml:20: pools.app.backends[1].addr: duplicate backend 127.0.0.1:8001 (first at line 19)`,
		`bad.yaml:21: pools.app.backends[1].weight: weight must be between 1 and 1000`,
		`bad.yaml:22: pools.app.timeouts.connect: invalid duration "2 seconds" (use a number with a unit: 250ms, 5s, 1m, 1h)`,
		`bad.yaml:25: pools.app.health_check.timeout: timeout (2s) must not exceed interval (1s)`,
		`bad.yaml:26: pools.app.health_check.rise: rise must be >= 1`,
		`bad.yaml:28: pools.ring.algorithm: consistent_hash needs hash_on`,
		`bad.yaml:29: pools.ring.backends[0].weight: expected an integer, got "abc"`,
		`bad.yaml:30: pools.ring.retries.attempts: attempts must be between 0 and 10`,
		`bad.yaml:30: pools.ring.retries.on[1]: unknown retry condition "teapot" ` +
			`(valid: connect_failure, timeout, reset, or a status code 500-599)`,
		`bad.yaml:31: pools.ring.backup: unknown field (valid: algorithm, hash_on, sticky, backends, queue, ` +
			`health_check, passive, retries, timeouts, slow_start, launch, tls, backend_protocol)`,
		`bad.yaml:32: pools.ring: duplicate key (first at line 27)`,
	}
	c, err := Parse("bad.yaml", []byte(brokenYAML))
	if c != nil {
		t.Errorf("Parse returned a config along with problems")
	}
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Parse error %v is not Problems", err)
	}
	if got := strings.Split(ps.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestParseWholeFileProblems(t *testing.T) {
	tests := []struct {
		name, data, want string
	}{
		{"empty file", "", "f.yaml: config file is empty"},
		{"only comments", "# nothing\n\n", "f.yaml: config file is empty"},
		{"empty document", "---\n", "f.yaml:1: config file is empty"},
		{"mapping value in a scalar", "listeners:\n  - name: web\n    listen: 127.0.0.1:80: x\n",
			"f.yaml:3: yaml: mapping values are not allowed in this context"},
		{"unclosed flow list", "pools: [a\nlisteners: []\n", "f.yaml:1: yaml: did not find expected ',' or ']'"},
		{"tab indentation", "\tlisteners: []\n", "f.yaml: yaml: found character that cannot start any token"},
		{"second document", "listeners: []\n---\npools: {}\n", "f.yaml:2: only one yaml document is allowed"},
		{"not a mapping", "- a\n- b\n", "f.yaml:1: expected a mapping, got a list"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tc.data))
			if err == nil || err.Error() != tc.want {
				t.Errorf("got %v, want %s", err, tc.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	t.Run("missing file", func(t *testing.T) {
		_, err := Load(filepath.Join(dir, "nope.yaml"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("got %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("names the file", func(t *testing.T) {
		path := writeFile(t, dir, "bad.yaml", brokenYAML)
		_, err := Load(path)
		if err == nil || !strings.HasPrefix(err.Error(), path+":3: ") {
			t.Errorf("got %v, want problems prefixed with %s:3:", err, path)
		}
	})
	t.Run("valid", func(t *testing.T) {
		c, err := Load(writeFile(t, dir, "ok.yaml", exampleYAML))
		if err != nil || len(c.Pools) != 3 {
			t.Errorf("got %v, %v", c, err)
		}
	})
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{File: "a.yaml", Line: 3, Path: "pools.app", Msg: "bad"}, "a.yaml:3: pools.app: bad"},
		{Problem{File: "a.yaml", Line: 3, Msg: "bad"}, "a.yaml:3: bad"},
		{Problem{File: "a.yaml", Msg: "bad"}, "a.yaml: bad"},
		{Problem{Path: "pools", Msg: "bad"}, "pools: bad"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.p.String(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzParse checks that no input makes Parse panic, and that a config it
// accepts passes Validate again unchanged. (aliasBomb is left out of the
// seeds: its mutants each take the whole node budget, which stalls the
// fuzzer's minimization; TestAliasBomb covers it.)
func FuzzParse(f *testing.F) {
	seeds := []string{exampleYAML, brokenYAML, "", "a: &a [*a]", "pools: {p: &p {<<: *p}}", "x: &a {k: v}\npools: {<<: [*a, *a]}"}
	for _, seed := range seeds {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err == nil {
			if ps := c.Validate(); ps != nil {
				t.Fatalf("accepted config fails Validate: %v", ps)
			}
			return
		}
		var ps Problems
		if !errors.As(err, &ps) || len(ps) == 0 {
			t.Fatalf("error %v is not a non-empty Problems", err)
		}
	})
}

func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Every config shipped in examples/ loads without a problem.
func TestExampleConfigsLoad(t *testing.T) {
	files, err := filepath.Glob("../../examples/*/*.yaml")
	if err != nil || len(files) < 4 {
		t.Fatalf("example configs: %v %v", files, err)
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
