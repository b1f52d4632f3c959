package config

import (
	"slices"
	"strings"
	"testing"
)

func TestValidatePool(t *testing.T) {
	tests := []struct {
		name string
		body string // pool app's body, from line 7
		want []string
	}{
		{"valid minimal pool", backend0, nil},
		{"weight 0", "backends: [{addr: \"127.0.0.1:1\", weight: 0}]\n",
			[]string{"t.yaml:7: pools.app.backends[0].weight: weight must be between 1 and 1000"}},
		{"negative weight", "backends:\n  - addr: 127.0.0.1:1\n    weight: -1\n",
			[]string{"t.yaml:9: pools.app.backends[0].weight: weight must be between 1 and 1000"}},
		{"weight 1001", "backends: [{addr: \"127.0.0.1:1\", weight: 1001}]\n",
			[]string{"t.yaml:7: pools.app.backends[0].weight: weight must be between 1 and 1000"}},
		{"negative max_conns", "backends: [{addr: \"127.0.0.1:1\", max_conns: -1}]\n",
			[]string{"t.yaml:7: pools.app.backends[0].max_conns: max_conns must be between 0 (no limit) and 1000000"}},
		{"no backends", "backends: []\n",
			[]string{"t.yaml:7: pools.app.backends: at least one backend is required (or launch)"}},
		{"backend without host", "backends: [{addr: \":8001\"}]\n",
			[]string{`t.yaml:7: pools.app.backends[0].addr: address ":8001" needs a host`}},
		{"backend port out of range", "backends: [{addr: \"127.0.0.1:70000\"}]\n",
			[]string{`t.yaml:7: pools.app.backends[0].addr: invalid port "70000" in "127.0.0.1:70000" (want 1..65535)`}},
		{"backend named port", "backends: [{addr: \"localhost:http\"}]\n",
			[]string{`t.yaml:7: pools.app.backends[0].addr: invalid port "http" in "localhost:http" (want 1..65535)`}},
		{"backend bad IPv4", "backends: [{addr: \"300.1.1.1:80\"}]\n",
			[]string{`t.yaml:7: pools.app.backends[0].addr: invalid host "300.1.1.1" in "300.1.1.1:80"`}},
		{"backend IPv6 and hostname", "backends: [{addr: \"[::1]:80\"}, {addr: \"app-1.internal:80\"}]\n", nil},
		{"missing addr", "backends: [{weight: 2}]\n",
			[]string{"t.yaml:7: pools.app.backends[0].addr: addr is required"}},
		{"hash_on with least_conn is allowed", backend0 + "algorithm: least_conn\nhash_on: header:X-User\n", nil},
		{"consistent_hash on a cookie", backend0 + "algorithm: consistent_hash\nhash_on: cookie:sid\n", nil},
		{"hash_on without name", backend0 + "algorithm: consistent_hash\nhash_on: \"header:\"\n",
			[]string{"t.yaml:9: pools.app.hash_on: hash_on header needs a name, like header:NAME"}},
		{"hash_on bad header", backend0 + "algorithm: consistent_hash\nhash_on: \"header:X User\"\n",
			[]string{`t.yaml:9: pools.app.hash_on: invalid header name "X User" in hash_on`}},
		{"hash_on unknown", backend0 + "algorithm: consistent_hash\nhash_on: body\n",
			[]string{`t.yaml:9: pools.app.hash_on: invalid hash_on "body" (valid: source_ip, path, uri, header:NAME, cookie:NAME, query:NAME)`}},
		{"hash_on source_ip with name", backend0 + "algorithm: consistent_hash\nhash_on: source_ip:x\n",
			[]string{`t.yaml:9: pools.app.hash_on: hash_on "source_ip" takes no name`}},
		{"sticky without cookie", backend0 + "sticky: {ttl: 1h}\n",
			[]string{"t.yaml:8: pools.app.sticky.cookie: cookie is required"}},
		{"sticky bad cookie", backend0 + "sticky: {cookie: \"a;b\"}\n",
			[]string{`t.yaml:8: pools.app.sticky.cookie: cookie must be a valid cookie name, got "a;b"`}},
		{"sticky negative ttl", backend0 + "sticky: {cookie: s, ttl: -1s}\n",
			[]string{"t.yaml:8: pools.app.sticky.ttl: ttl must not be negative"}},
		{"queue max 0 is no queue", backend0 + "queue: {max: 0}\n", nil},
		{"queue negative max", backend0 + "queue: {max: -1}\n",
			[]string{"t.yaml:8: pools.app.queue.max: max must be >= 0"}},
		{"queue zero timeout", backend0 + "queue: {timeout: 0s}\n",
			[]string{"t.yaml:8: pools.app.queue.timeout: timeout must be > 0"}},
		{"health type", backend0 + "health_check: {type: grpc}\n",
			[]string{`t.yaml:8: pools.app.health_check.type: type must be http, tcp or none, got "grpc"`}},
		{"health path", backend0 + "health_check: {path: healthz}\n",
			[]string{"t.yaml:8: pools.app.health_check.path: path must start with /"}},
		{"health path ignored for tcp", backend0 + "health_check: {type: tcp, path: x}\n", nil},
		{"health status too high", backend0 + "health_check: {expect_status: 600}\n",
			[]string{`t.yaml:8: pools.app.health_check.expect_status: invalid expect_status "600" (want NNN or NNN-NNN within 100-599)`}},
		{"health status reversed", backend0 + "health_check: {expect_status: 399-200}\n",
			[]string{`t.yaml:8: pools.app.health_check.expect_status: invalid expect_status "399-200" (want NNN or NNN-NNN within 100-599)`}},
		{"health single status", backend0 + "health_check: {expect_status: 204}\n", nil},
		{"health fall 0", backend0 + "health_check:\n  fall: 0\n",
			[]string{"t.yaml:9: pools.app.health_check.fall: fall must be >= 1"}},
		{"health zero interval", backend0 + "health_check:\n  interval: 0s\n",
			[]string{"t.yaml:9: pools.app.health_check.interval: interval must be > 0"}},
		{"passive", backend0 + "passive:\n  consecutive_failures: 0\n  eject_for: 0s\n  max_ejected_percent: 101\n", []string{
			"t.yaml:9: pools.app.passive.consecutive_failures: consecutive_failures must be >= 1",
			"t.yaml:10: pools.app.passive.eject_for: eject_for must be > 0",
			"t.yaml:11: pools.app.passive.max_ejected_percent: max_ejected_percent must be between 0 and 100",
		}},
		{"retry on unquoted codes", backend0 + "retries: {on: [502, timeout, reset]}\n", nil},
		{"retry on 4xx", backend0 + "retries:\n  on: [connect_failure, 499]\n",
			[]string{`t.yaml:9: pools.app.retries.on[1]: unknown retry condition "499" (valid: connect_failure, timeout, reset, or a status code 500-599)`}},
		{"negative attempts", backend0 + "retries: {attempts: -1}\n",
			[]string{"t.yaml:8: pools.app.retries.attempts: attempts must be between 0 and 10"}},
		{"timeouts", backend0 + "timeouts:\n  connect: 0s\n  response_header: -1s\n", []string{
			"t.yaml:9: pools.app.timeouts.connect: connect must be > 0",
			"t.yaml:10: pools.app.timeouts.response_header: response_header must not be negative",
		}},
		{"negative slow_start", backend0 + "slow_start: -30s\n",
			[]string{"t.yaml:8: pools.app.slow_start: slow_start must not be negative"}},
		{"launch instead of backends", "launch: {command: [app, \"--port={port}\"], instances: 2, ports: 9000-9001}\n", nil},
		{"launch without {port}", "launch: {command: [app], instances: 1, ports: 9000-9001}\n",
			[]string{"t.yaml:7: pools.app.launch.command: command must contain {port}, where each instance gets its port"}},
		{"launch without command", "launch: {instances: 1, ports: 9000-9001}\n",
			[]string{"t.yaml:7: pools.app.launch.command: command is required"}},
		{"launch zero instances", "launch:\n  command: [app, \"{port}\"]\n  instances: 0\n  ports: 9000-9001\n",
			[]string{"t.yaml:9: pools.app.launch.instances: instances must be >= 1"}},
		{"launch port 0", "launch:\n  command: [app, \"{port}\"]\n  instances: 1\n  ports: 0-10\n",
			[]string{`t.yaml:10: pools.app.launch.ports: invalid ports "0-10" (want A-B with 1 <= A <= B <= 65535)`}},
		{"launch single port", "launch:\n  command: [app, \"{port}\"]\n  instances: 1\n  ports: 9000\n",
			[]string{`t.yaml:10: pools.app.launch.ports: invalid ports "9000" (want A-B with 1 <= A <= B <= 65535)`}},
		{"launch too few ports", "launch:\n  command: [app, \"{port}\"]\n  instances: 3\n  ports: 9000-9001\n",
			[]string{"t.yaml:10: pools.app.launch.ports: ports 9000-9001 has 2 ports, fewer than instances (3)"}},
		{"launch timeouts and max_conns", "launch: {command: [app, \"{port}\"], instances: 1, ports: 9000-9001, max_conns: -1, start_timeout: 0s, stop_timeout: -1s}\n",
			[]string{
				"t.yaml:7: pools.app.launch.max_conns: max_conns must be between 0 and 1000000",
				"t.yaml:7: pools.app.launch.start_timeout: start_timeout must be > 0",
				"t.yaml:7: pools.app.launch.stop_timeout: stop_timeout must not be negative",
			}},
		{"queue admission", backend0 + "queue: {admission: lifo}\n",
			[]string{`t.yaml:8: pools.app.queue.admission: unknown admission "lifo": want adaptive or fifo`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := problemStrings(t, poolConfig(tc.body))
			if !slices.Equal(got, tc.want) {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// pools is a valid pools section for the listener and cluster tests.
const pools = "pools:\n  app: {backends: [{addr: \"127.0.0.1:9001\"}]}\n"

func TestValidateListeners(t *testing.T) {
	tests := []struct {
		name string
		data string
		want []string
	}{
		{"no listeners", pools, []string{"t.yaml: listeners: at least one listener is required"}},
		{"no pools", "listeners: [{name: db, listen: \":5432\", protocol: tcp, pool: app}]\n", []string{
			"t.yaml: pools: at least one pool is required",
			`t.yaml:1: listeners[0].pool: undefined pool "app"`,
		}},
		{"bad pool name", "listeners: [{name: db, listen: \":5432\", protocol: tcp, pool: a b}]\npools:\n  a b: {backends: [{addr: \"127.0.0.1:1\"}]}\n",
			[]string{`t.yaml:3: pools.a b: invalid pool name "a b" (use letters, digits, '_', '.' and '-')`}},
		{"listener problems", `listeners:
  - name: a
    listen: "127.0.0.1:0"
    routes: [{pool: app}]
  - listen: "bad host!:80"
    protocol: udp
  - name: a
    listen: localhost:8080
    routes: [{pool: app}]
  - name: c
    listen: LOCALHOST:8080
    protocol: tcp
    routes: [{pool: app}]
    tls: {cert: c.pem, key: k.pem}
` + pools, []string{
			`t.yaml:3: listeners[0].listen: invalid port "0" in "127.0.0.1:0" (want 1..65535)`,
			`t.yaml:5: listeners[1].name: name is required`,
			`t.yaml:5: listeners[1].listen: invalid host "bad host!" in "bad host!:80"`,
			`t.yaml:6: listeners[1].protocol: protocol must be http or tcp, got "udp"`,
			`t.yaml:7: listeners[2].name: duplicate listener name "a" (first at line 2)`,
			`t.yaml:10: listeners[3].pool: pool is required`,
			`t.yaml:11: listeners[3].listen: duplicate listen address localhost:8080 (first at line 8)`,
			`t.yaml:13: listeners[3].routes: routes only apply to http listeners (a tcp listener uses pool)`,
			`t.yaml:14: listeners[3].tls: tls only applies to http listeners`,
		}},
		{"http listener problems", `listeners:
  - name: web
    listen: "[::1]:8443"
    pool: app
    tls: {cert: c.pem}
    routes:
      - path_prefix: api
        host: "api.example.com/v1"
        pool: app
      - {}
      - {pool: app}
` + pools, []string{
			`t.yaml:4: listeners[0].pool: pool only applies to tcp listeners (an http listener uses routes)`,
			`t.yaml:5: listeners[0].tls.key: tls needs both cert and key; key is missing`,
			`t.yaml:7: listeners[0].routes[0].path_prefix: path_prefix must start with /`,
			`t.yaml:8: listeners[0].routes[0].host: invalid host "api.example.com/v1" (a bare host name, like api.example.com)`,
			`t.yaml:10: listeners[0].routes[1].pool: pool is required`,
			`t.yaml:11: listeners[0].routes[2]: route is unreachable: routes[1] before it matches every request`,
		}},
		{"http listener without routes", "listeners: [{name: web, listen: \":80\"}]\n" + pools,
			[]string{"t.yaml:1: listeners[0].routes: an http listener needs at least one route"}},
		{"admin", "admin: {listen: \":8080\"}\nlisteners: [{name: web, listen: \":8080\", routes: [{pool: app}]}]\n" + pools,
			[]string{"t.yaml:1: admin.listen: address :8080 is also used by listeners[0] (line 2)"}},
		{"admin without listen", "admin: {token_file: t}\nlisteners: [{name: web, listen: \":80\", routes: [{pool: app}]}]\n" + pools,
			[]string{"t.yaml:1: admin.listen: listen is required"}},
		{"redirect_https without routes", "listeners: [{name: web, listen: \":80\", redirect_https: true}]\n" + pools, nil},
		{"tls listener options", "listeners: [{name: web, listen: \":443\", tls: {cert: c, key: k, min_version: \"1.1\", certs: [{cert: c2}]}, h2c: true, redirect_https: true, routes: [{pool: app}]}]\n" + pools,
			[]string{
				`t.yaml:1: listeners[0].tls.certs[0]: each of certs needs both cert and key`,
				`t.yaml:1: listeners[0].tls.min_version: min_version must be "1.2" or "1.3", got "1.1"`,
				`t.yaml:1: listeners[0].redirect_https: redirect_https applies to plaintext listeners (this one has tls)`,
				`t.yaml:1: listeners[0].h2c: h2c applies to plaintext listeners (a tls listener has HTTP/2 by ALPN)`,
			}},
		{"limits", "listeners:\n  - {name: web, listen: \":80\", routes: [{pool: app}], limits: {max_header_bytes: 10, max_conns: -1, read_header_timeout: 0s}}\n  - {name: db, listen: \":5432\", protocol: tcp, pool: app, h2c: true, limits: {max_body_bytes: 5}}\n" + pools,
			[]string{
				`t.yaml:2: listeners[0].limits.max_header_bytes: max_header_bytes must be between 1024 and 1048576`,
				`t.yaml:2: listeners[0].limits.read_header_timeout: read_header_timeout must be > 0`,
				`t.yaml:2: listeners[0].limits.max_conns: max_conns must be >= 0`,
				`t.yaml:3: listeners[1].h2c: h2c only applies to http listeners`,
				`t.yaml:3: listeners[1].limits.max_body_bytes: max_body_bytes only applies to http listeners`,
			}},
		{"backend_protocol", "listeners: [{name: web, listen: \":80\", routes: [{pool: app}]}]\npools:\n  app: {backend_protocol: h3, backends: [{addr: \"127.0.0.1:9001\"}]}\n",
			[]string{`t.yaml:3: pools.app.backend_protocol: backend_protocol must be http1 or h2c, got "h3"`}},
		{"shutdown_timeout", "shutdown_timeout: 0s\nlisteners: [{name: web, listen: \":80\", routes: [{pool: app}]}]\n" + pools,
			[]string{"t.yaml:1: shutdown_timeout: shutdown_timeout must be > 0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := problemStrings(t, tc.data)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestValidateCluster(t *testing.T) {
	const head = "listeners: [{name: web, listen: \":80\", routes: [{pool: app}]}]\n" + pools + "cluster:\n"
	tests := []struct {
		name string
		body string // from line 5
		want []string
	}{
		{"valid vrrp", "  vrrp: {interface: eth0, virtual_router_id: 1, priority: 255, virtual_ips: [\"192.0.2.1/24\"]}\n", nil},
		{"vrrp problems", `  vrrp:
    virtual_router_id: 0
    priority: 256
    advert_interval: 5ms
    virtual_ips: [192.0.2.1/24, 192.0.2.300/24, "2001:db8::1/64"]
    preempt_delay: -1s
    track_pools: [app, web]
    unicast_peers: [192.0.2.2, peer]
`, []string{
			"t.yaml:5: cluster.vrrp.interface: interface is required",
			"t.yaml:6: cluster.vrrp.virtual_router_id: virtual_router_id must be between 1 and 255",
			"t.yaml:7: cluster.vrrp.priority: priority must be between 1 and 255",
			"t.yaml:8: cluster.vrrp.advert_interval: advert_interval must be between 10ms and 40.95s",
			`t.yaml:9: cluster.vrrp.virtual_ips[1]: invalid virtual ip "192.0.2.300/24" (want an address with its prefix length, like 192.0.2.100/24)`,
			"t.yaml:9: cluster.vrrp.virtual_ips[2]: virtual ip 2001:db8::1/64: IPv6 is not supported yet (ballast speaks VRRPv3 over IPv4)",
			"t.yaml:10: cluster.vrrp.preempt_delay: preempt_delay must not be negative",
			`t.yaml:11: cluster.vrrp.track_pools[1]: undefined pool "web"`,
			`t.yaml:12: cluster.vrrp.unicast_peers[1]: invalid unicast peer "peer" (want an IP address)`,
		}},
		{"vrrp interval not in centiseconds", "  vrrp: {interface: eth0, virtual_router_id: 1, priority: 1, virtual_ips: [10.0.0.1/8], advert_interval: 15ms}\n",
			[]string{"t.yaml:5: cluster.vrrp.advert_interval: advert_interval must be a multiple of 10ms (it is sent in centiseconds)"}},
		{"vrrp without ips", "  vrrp: {interface: eth0, virtual_router_id: 1, priority: 1}\n",
			[]string{"t.yaml:5: cluster.vrrp.virtual_ips: at least one virtual ip is required"}},
		{"etcd urls", "  etcd: {endpoints: [\"https://etcd-1:2379\", \"10.0.0.1:2379\"]}\n", nil},
		{"etcd problems", "  etcd:\n    endpoints: [\"ftp://x\", \"etcd\"]\n", []string{
			`t.yaml:6: cluster.etcd.endpoints[0]: invalid etcd endpoint "ftp://x" (want host:port or http(s)://host:port)`,
			`t.yaml:6: cluster.etcd.endpoints[1]: invalid address "etcd" (want host:port, like 127.0.0.1:8080)`,
		}},
		{"etcd without endpoints", "  etcd: {prefix: /x/}\n",
			[]string{"t.yaml:5: cluster.etcd.endpoints: at least one etcd endpoint is required"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := problemStrings(t, head+tc.body)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestValidateInCode covers a Config built in code: no file, no lines, and
// problems still in a stable order.
func TestValidateLaunchPortsOverlap(t *testing.T) {
	text := "listeners:\n  - {name: web, listen: \":80\", routes: [{path_prefix: /b, pool: b}, {path_prefix: /c, pool: c}, {pool: a}]}\npools:\n" +
		"  a: {launch: {command: [app, \"{port}\"], instances: 1, ports: 9000-9100}}\n" +
		"  b: {launch: {command: [app, \"{port}\"], instances: 1, ports: 9100-9200}}\n" +
		"  c: {launch: {command: [app, \"{port}\"], instances: 1, ports: 9201-9300}}\n"
	got, _ := problemStrings(t, text)
	want := []string{`t.yaml:5: pools.b.launch.ports: ports 9100-9200 overlap those of pool "a" (9000-9100): give each launched pool its own range`}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestValidateInCode(t *testing.T) {
	c := &Config{
		Listeners: []Listener{{Name: "web", Listen: ":80", Routes: []Route{{Pool: "b"}}}},
		Pools:     map[string]*Pool{"b": {Backends: []Backend{{Addr: "x:1", Weight: 0}}}, "a": {}},
	}
	applyDefaults(c)
	want := []string{
		"pools.a.backends: at least one backend is required (or launch)",
		"pools.b.backends[0].weight: weight must be between 1 and 1000",
	}
	c.Pools["b"].Backends[0].Weight = 0
	var got []string
	for _, p := range c.Validate() {
		got = append(got, p.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
