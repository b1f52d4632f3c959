package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"ballast/internal/admin"
	"ballast/internal/config"
	"ballast/internal/testutil"
)

// adminConfig is httpConfig with an admin listener (and extra top-level YAML).
func adminConfig(t *testing.T, top, pool string, backends ...string) (cfg, adminAddr string) {
	adminAddr = testutil.FreeAddr(t)
	return fmt.Sprintf("admin: {listen: %s}\n%s", adminAddr, top) + httpConfig(t, pool, backends...), adminAddr
}

// call sends a JSON request to the admin API and decodes the answer into out
// (when not nil); it returns the status.
func call(t *testing.T, method, url, token string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := testutil.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") && strings.Contains(url, "/api/") {
		t.Fatalf("%s %s: Content-Type %q, want JSON", method, url, ct)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, url, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode
}

func findBackend(st admin.State, pool, addr string) *admin.Backend {
	for _, p := range st.Pools {
		if p.Name == pool {
			for i := range p.Backends {
				if p.Backends[i].Addr == addr {
					return &p.Backends[i]
				}
			}
		}
	}
	return nil
}

// Add, drain and remove a backend through the API: each takes effect at once
// and shows in GET /api/v1/pools.
func TestAdminBackendLifecycle(t *testing.T) {
	bs, addrs := backends(t, 2)
	cfg, adm := adminConfig(t, "", "algorithm: round_robin", addrs[0])
	_, url := start(t, cfg)
	api := "http://" + adm + "/api/v1"

	var st admin.State
	if code := call(t, "GET", api+"/pools", "", nil, &st); code != 200 || findBackend(st, "app", addrs[0]) == nil {
		t.Fatalf("GET pools: %d %+v", code, st)
	}
	if st.ConfigHash == "" || len(st.Listeners) != 1 || st.Pools[0].Queue.Max != 1000 {
		t.Errorf("state: %+v", st)
	}
	var b admin.Backend
	if code := call(t, "POST", api+"/pools/app/backends", "", map[string]any{"addr": addrs[1], "weight": 1}, &b); code != 201 || b.State != "up" {
		t.Fatalf("add: %d %+v", code, b)
	}
	if got := count(hits(t, url+"/", 10)); got["b1"] != 5 {
		t.Fatalf("after add: %v, want b1 in rotation", got)
	}
	var e struct{ Error string }
	if code := call(t, "POST", api+"/pools/app/backends", "", map[string]any{"addr": addrs[1]}, &e); code != 409 || e.Error == "" {
		t.Errorf("add twice: %d %q, want 409 with an error", code, e.Error)
	}
	if code := call(t, "POST", api+"/pools/app/backends/"+addrs[0]+"/drain", "", nil, &b); code != 200 || b.State != "draining" {
		t.Fatalf("drain: %d %+v", code, b)
	}
	before := len(bs[0].Requests())
	if got := count(hits(t, url+"/", 6)); got["b1"] != 6 || len(bs[0].Requests()) != before {
		t.Fatalf("after drain: %v, want all on b1", got)
	}
	time.Sleep(3 * watchInterval) // let the watcher see the drain before the removal
	if code := call(t, "DELETE", api+"/pools/app/backends/"+addrs[0], "", nil, nil); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	call(t, "GET", api+"/pools/app", "", nil, &st.Pools[0])
	if len(st.Pools[0].Backends) != 1 || st.Pools[0].Backends[0].Addr != addrs[1] {
		t.Fatalf("after delete: %+v", st.Pools[0].Backends)
	}
	var evs struct {
		Events []admin.Event
		Next   uint64
	}
	testutil.WaitFor(t, 2*time.Second, "events", func() bool {
		call(t, "GET", api+"/events?since=0", "", nil, &evs)
		return len(evs.Events) >= 3
	})
	var kinds []string
	for _, ev := range evs.Events {
		kinds = append(kinds, ev.Backend+":"+ev.From+">"+ev.To)
	}
	joined := strings.Join(kinds, " ")
	for _, want := range []string{addrs[1] + ":added>up", addrs[0] + ":up>draining", addrs[0] + ":draining>removed"} {
		if !strings.Contains(joined, want) {
			t.Errorf("events %q lack %q", joined, want)
		}
	}
}

// Every error is JSON with a fitting status.
func TestAdminErrors(t *testing.T) {
	_, addrs := backends(t, 1)
	cfg, adm := adminConfig(t, "", "", addrs[0])
	start(t, cfg)
	api := "http://" + adm + "/api/v1"
	for _, tc := range []struct {
		method, path string
		body         any
		want         int
	}{
		{"GET", "/pools/nope", nil, 404},
		{"POST", "/pools/nope/backends", map[string]any{"addr": "127.0.0.1:1"}, 404},
		{"POST", "/pools/app/backends", map[string]any{"addr": "nonsense"}, 400},
		{"POST", "/pools/app/backends", map[string]any{"addr": "127.0.0.1:1", "weight": 5000}, 400},
		{"POST", "/pools/app/backends", map[string]any{"address": "127.0.0.1:1"}, 400},
		{"POST", "/pools/app/backends/127.0.0.1:9/drain", nil, 404},
		{"DELETE", "/pools/app/backends/127.0.0.1:9", nil, 404},
		{"POST", "/pools/app/restart", nil, 409},
		{"DELETE", "/pools", nil, 405},
		{"GET", "/nothing", nil, 404},
		{"GET", "/events?since=x", nil, 400},
	} {
		var e struct{ Error string }
		if code := call(t, tc.method, api+tc.path, "", tc.body, &e); code != tc.want || e.Error == "" {
			t.Errorf("%s %s: %d %q, want %d with an error message", tc.method, tc.path, code, e.Error, tc.want)
		}
	}
}

// With token_file every request needs the token; without one the admin
// listener refuses a non-loopback address.
func TestAdminToken(t *testing.T) {
	_, addrs := backends(t, 1)
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("s3cret\n"), 0o600)
	cfg, adm := adminConfig(t, "", "", addrs[0])
	cfg = strings.Replace(cfg, "admin: {listen: "+adm+"}", "admin: {listen: "+adm+", token_file: "+tok+"}", 1)
	start(t, cfg)
	base := "http://" + adm
	var e struct{ Error string }
	for _, tc := range []struct{ path, token string }{{"/api/v1/pools", ""}, {"/api/v1/pools", "wrong"}, {"/metrics", ""}, {"/", ""}} {
		if code := call(t, "GET", base+tc.path, tc.token, nil, &e); code != 401 || e.Error == "" {
			t.Errorf("GET %s with token %q: %d, want 401 with an error", tc.path, tc.token, code)
		}
	}
	if code := call(t, "GET", base+"/api/v1/pools", "s3cret", nil, nil); code != 200 {
		t.Errorf("with the token: %d", code)
	}

	open, _ := adminConfig(t, "", "", addrs[0])
	open = strings.Replace(open, "admin: {listen: 127.0.0.1:", "admin: {listen: 0.0.0.0:", 1)
	s, err := New(parse(t, open), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	err = s.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not a loopback address") || !strings.Contains(err.Error(), "token_file") {
		t.Fatalf("Run with a public admin address and no token: %v", err)
	}
}

// /metrics shows the request path's figures.
func TestAdminMetrics(t *testing.T) {
	_, addrs := backends(t, 2)
	cfg, adm := adminConfig(t, "", "", addrs...)
	_, url := start(t, cfg)
	hits(t, url+"/", 10)
	scrape := func() string {
		resp, err := http.Get("http://" + adm + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	// A request is observed just after its response went out: the last one
	// may still be on its way.
	var out string
	testutil.WaitFor(t, 2*time.Second, "ten requests in the histogram", func() bool {
		out = scrape()
		return strings.Contains(out, `ballast_request_duration_seconds_count{pool="app"} 10`+"\n")
	})
	for _, want := range []string{
		`ballast_backend_requests_total{backend="` + addrs[0] + `",class="2xx",pool="app"} 5`,
		`ballast_backend_state{backend="` + addrs[1] + `",pool="app",state="up"} 1`,
		`ballast_config_info{hash="sha256:`,
		`ballast_queue_length{pool="app"} 0`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// The access log gets one JSON line per request, without cookie or
// authorization values.
func TestAccessLog(t *testing.T) {
	_, addrs := backends(t, 1)
	logFile := filepath.Join(t.TempDir(), "access.log")
	cfg := "access_log: {output: " + logFile + "}\n" + httpConfig(t, "", addrs[0])
	s, url := start(t, cfg)
	c := testutil.Client()
	req, _ := http.NewRequest("POST", url+"/path/x?q=secret", strings.NewReader("hello"))
	req.Header.Set("Cookie", "session=topsecret")
	req.Header.Set("Authorization", "Bearer topsecret")
	req.Header.Set("X-Request-Id", "rid-1")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	testutil.Get(t, c, url+"/two")
	var lines []string
	testutil.WaitFor(t, 3*time.Second, "two access log lines", func() bool {
		b, _ := os.ReadFile(logFile)
		lines = strings.Split(strings.TrimSpace(string(b)), "\n")
		return len(lines) >= 2
	})
	var e map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
		t.Fatalf("line %q: %v", lines[0], err)
	}
	want := map[string]any{"method": "POST", "path": "/path/x", "status": 200.0, "pool": "app", "backend": addrs[0],
		"request_id": "rid-1", "listener": "web", "client": "127.0.0.1", "retries": 0.0}
	for k, v := range want {
		if e[k] != v {
			t.Errorf("%s = %v, want %v (line %s)", k, e[k], v, lines[0])
		}
	}
	if in, _ := e["bytes_in"].(float64); in < 5 {
		t.Errorf("bytes_in %v, want at least the body's 5", e["bytes_in"])
	}
	if out, _ := e["bytes_out"].(float64); out < 3 {
		t.Errorf("bytes_out %v", e["bytes_out"])
	}
	if strings.Contains(lines[0], "topsecret") || strings.Contains(lines[0], "secret") {
		t.Errorf("a secret reached the access log: %s", lines[0])
	}
	_ = s
}

// Twenty reloads under load, with a WebSocket open: no request fails, the
// WebSocket stays open, a bad config is rejected and changes nothing.
func TestReloadUnderLoad(t *testing.T) {
	bs, addrs := backends(t, 3)
	ws := testutil.NewBackend(t, "ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			c.Write(r.Context(), typ, msg)
		}
	})
	_ = bs
	dir := t.TempDir()
	file := filepath.Join(dir, "ballast.yaml")
	listen := testutil.FreeAddr(t)
	adm := testutil.FreeAddr(t)
	write := func(n int) {
		var b strings.Builder
		fmt.Fprintf(&b, "admin: {listen: %s}\nlisteners:\n  - name: web\n    listen: %s\n    engine: %s\n    routes:\n      - path_prefix: /ws\n        pool: ws\n      - pool: app\npools:\n  ws:\n    backends: [{addr: %s}]\n  app:\n    algorithm: round_robin\n    backends:\n", adm, listen, testEngine(), ws.Addr())
		for i, a := range addrs {
			fmt.Fprintf(&b, "      - {addr: %s, weight: %d}\n", a, 1+(n+i)%3)
		}
		os.WriteFile(file, []byte(b.String()), 0o644)
	}
	write(0)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-s.Ready()

	dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer dcancel()
	conn, _, err := websocket.Dial(dctx, "ws://"+listen+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()

	lctx, lcancel := context.WithTimeout(context.Background(), 30*time.Second)
	var res *loadResult
	var wg sync.WaitGroup
	wg.Go(func() { res = load(lctx, "http://"+listen+"/", 16, 100000) })
	api := "http://" + adm + "/api/v1/reload"
	for i := 1; i <= 20; i++ {
		write(i)
		var r map[string]string
		if code := call(t, "POST", api, "", nil, &r); code != 200 || r["config_hash"] == "" {
			t.Fatalf("reload %d: %d %v", i, code, r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	os.WriteFile(file, []byte("listeners: [oops\n"), 0o644)
	var bad struct {
		Error    string
		Problems []string
	}
	if code := call(t, "POST", api, "", nil, &bad); code != 400 || len(bad.Problems) == 0 || !strings.Contains(bad.Problems[0], "ballast.yaml:") {
		t.Errorf("bad reload: %d %+v, want 400 naming FILE:LINE", code, bad)
	}
	time.Sleep(200 * time.Millisecond)
	lcancel()
	wg.Wait()
	if err := conn.Write(dctx, websocket.MessageText, []byte("still here")); err != nil {
		t.Fatalf("WebSocket after 20 reloads: %v", err)
	}
	if _, msg, err := conn.Read(dctx); err != nil || string(msg) != "still here" {
		t.Fatalf("WebSocket echo after reloads: %q %v", msg, err)
	}
	t.Logf("reload test: 20 reloads, %d requests, %d failed", res.ok+len(res.failed), len(res.failed))
	if len(res.failed) > 0 {
		t.Fatalf("%d requests failed during reloads: %v", len(res.failed), res.failed[:min(5, len(res.failed))])
	}
	if res.ok < 100 {
		t.Fatalf("only %d requests: the load did not run", res.ok)
	}
	resp, err := http.Get("http://" + adm + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`ballast_config_reloads_total{result="ok"} 20`, `ballast_config_reloads_total{result="failed"} 1`} {
		if !strings.Contains(string(m), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
