package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"ballast/internal/accesslog"
	"ballast/internal/backend"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestMetrics(t *testing.T) {
	b1, b2 := backend.New("app", "127.0.0.1:1", 1), backend.New("app", "127.0.0.1:2", 1)
	b1.Acquire()
	b1.CountResponse(200)
	b1.CountResponse(503)
	b1.Release(true)
	b2.SetState(backend.StateDown)
	b2.CountResponse(0)
	m := New("v1", func() []Pool {
		return []Pool{{Name: "app", Backends: []*backend.Backend{b1, b2}, QueueLen: 3,
			Checks: func(addr string) (uint64, uint64) { return 7, 2 }}}
	})
	m.SetPools([]string{"app"})
	m.SetConfigHash("sha256:aa")
	m.Observe(&accesslog.Entry{Pool: "app", Duration: 3 * time.Millisecond, Queued: 20 * time.Millisecond, Retries: 2})
	m.Observe(&accesslog.Entry{Pool: "", Duration: time.Millisecond}) // no route: not counted
	m.Reloaded(false, "")
	m.Reloaded(true, "sha256:bb")

	out := scrape(t, m)
	for _, want := range []string{
		`ballast_backend_requests_total{backend="127.0.0.1:1",class="2xx",pool="app"} 1`,
		`ballast_backend_requests_total{backend="127.0.0.1:1",class="5xx",pool="app"} 1`,
		`ballast_backend_requests_total{backend="127.0.0.1:2",class="error",pool="app"} 1`,
		`ballast_backend_failures_total{backend="127.0.0.1:1",pool="app"} 1`,
		`ballast_backend_state{backend="127.0.0.1:2",pool="app",state="down"} 1`,
		`ballast_backend_state{backend="127.0.0.1:2",pool="app",state="up"} 0`,
		`ballast_health_checks_total{backend="127.0.0.1:1",pool="app",result="pass"} 7`,
		`ballast_queue_length{pool="app"} 3`,
		`ballast_request_duration_seconds_count{pool="app"} 1`,
		`ballast_request_duration_seconds_bucket{pool="app",le="0.005"} 1`,
		`ballast_queue_wait_seconds_count{pool="app"} 1`,
		`ballast_retries_total{pool="app"} 2`,
		`ballast_config_reloads_total{result="failed"} 1`,
		`ballast_config_reloads_total{result="ok"} 1`,
		`ballast_config_info{hash="sha256:bb"} 1`,
		`ballast_build_info{version="v1"} 1`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %s", want)
		}
	}
	if strings.Contains(out, `hash="sha256:aa"`) {
		t.Error("the old config hash is still exported")
	}
	// A pool removed by a reload loses its series.
	m.SetPools(nil)
	if out := scrape(t, m); strings.Contains(out, `ballast_request_duration_seconds_count{pool="app"}`) {
		t.Error("a removed pool's histogram is still exported")
	}
}

func BenchmarkObserve(b *testing.B) {
	m := New("v", func() []Pool { return nil })
	m.SetPools([]string{"app"})
	e := &accesslog.Entry{Pool: "app", Duration: 2 * time.Millisecond}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Observe(e)
		}
	})
}
