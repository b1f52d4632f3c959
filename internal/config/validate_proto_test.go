package config

import (
	"slices"
	"strings"
	"testing"
)

// TestValidateProtocols covers the rules that tie listeners to the pools they
// use: h2c pools only behind the net_http engine, no pool tls or h2c behind a
// tcp listener, no plaintext http health check of tls backends.
func TestValidateProtocols(t *testing.T) {
	const grpcPool = "pools:\n  grpc: {backend_protocol: h2c, backends: [{addr: \"127.0.0.1:9001\"}]}\n"
	tests := []struct {
		name string
		data string
		want []string
	}{
		{"h2c pool behind the native engine", "listeners:\n  - name: web\n    listen: \":80\"\n    routes: [{path_prefix: /x, pool: grpc}, {pool: grpc}]\n" + grpcPool,
			[]string{
				`t.yaml:4: listeners[0].routes[0].pool: pool "grpc" has backend_protocol h2c, which only the net_http engine speaks; listener "web" uses the native engine (give it tls, h2c: true or engine: net_http)`,
				`t.yaml:4: listeners[0].routes[1].pool: pool "grpc" has backend_protocol h2c, which only the net_http engine speaks; listener "web" uses the native engine (give it tls, h2c: true or engine: net_http)`,
			}},
		{"h2c pool behind engine net_http", "listeners: [{name: web, listen: \":80\", engine: net_http, routes: [{pool: grpc}]}]\n" + grpcPool, nil},
		{"h2c pool behind an h2c listener", "listeners: [{name: web, listen: \":80\", h2c: true, routes: [{pool: grpc}]}]\n" + grpcPool, nil},
		{"h2c pool behind a tls listener", "listeners: [{name: web, listen: \":443\", tls: {cert: c, key: k}, routes: [{pool: grpc}]}]\n" + grpcPool, nil},
		{"h2c pool behind redirect_https", "listeners: [{name: web, listen: \":80\", redirect_https: true, routes: [{pool: grpc}]}]\n" + grpcPool, nil},
		{"h2c pool behind tcp", "listeners: [{name: db, listen: \":80\", protocol: tcp, pool: grpc}]\n" + grpcPool,
			[]string{`t.yaml:1: listeners[0].pool: pool "grpc" has backend_protocol h2c, which a tcp listener does not use (it passes the bytes through as they are)`}},
		{"tls pool behind tcp", "listeners: [{name: db, listen: \":80\", protocol: tcp, pool: app}]\npools:\n  app: {tls: {ca: ca.pem}, backends: [{addr: \"127.0.0.1:9001\"}]}\n",
			[]string{`t.yaml:1: listeners[0].pool: pool "app" has tls, which a tcp listener does not use (it passes the bytes through as they are)`}},
		{"tls pool with an http check", "listeners: [{name: web, listen: \":80\", routes: [{pool: app}]}]\npools:\n  app:\n    tls: {server_name: app.internal}\n    health_check: {path: /healthz}\n    backends: [{addr: \"127.0.0.1:9001\"}]\n",
			[]string{`t.yaml:5: pools.app.health_check.type: an http health check speaks plaintext HTTP/1.1, which the backends of a pool with tls do not; use type: tcp`}},
		{"tls pool with a tcp check", "listeners: [{name: web, listen: \":80\", routes: [{pool: app}]}]\npools:\n  app:\n    tls: {insecure_skip_verify: true}\n    health_check: {type: tcp}\n    backends: [{addr: \"127.0.0.1:9001\"}]\n", nil},
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

func TestListenerNetHTTP(t *testing.T) {
	tests := []struct {
		l    Listener
		want bool
	}{
		{Listener{Protocol: ProtocolHTTP, Engine: EngineNative}, false},
		{Listener{Protocol: ProtocolHTTP, Engine: EngineNetHTTP}, true},
		{Listener{Protocol: ProtocolHTTP, Engine: EngineNative, TLS: &TLS{}}, true},
		{Listener{Protocol: ProtocolHTTP, Engine: EngineNative, H2C: true}, true},
		{Listener{Protocol: ProtocolHTTP, Engine: EngineNative, RedirectHTTPS: true}, true},
		{Listener{Protocol: ProtocolTCP}, false},
	}
	for i, tc := range tests {
		if got := tc.l.NetHTTP(); got != tc.want {
			t.Errorf("%d: %+v: NetHTTP() = %v, want %v", i, tc.l, got, tc.want)
		}
	}
}
