package main

import (
	"strings"
	"testing"
	"time"

	"ballast/internal/admin"
)

// printStatus lists a launched pool's instances under the backends table.
func TestPrintStatusLaunch(t *testing.T) {
	since := time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)
	st := &admin.State{Version: "v", ConfigHash: "sha256:0123456789abcdef", Pools: []admin.Pool{{
		Name:     "app",
		Backends: []admin.Backend{{Addr: "127.0.0.1:18000", State: "up", Weight: 1, MaxConns: 2}},
		Launch: &admin.Launch{Command: []string{"gunicorn", "-w", "2", "app:app"}, MaxConns: 2, Restarts: 3,
			Instances: []admin.Instance{{ID: 4, PID: 4242, Addr: "127.0.0.1:18000", State: "backoff", Since: since,
				Restarts: 3, LastExit: "exit status 1"}}},
	}}}
	var b strings.Builder
	printStatus(&b, st)
	out := b.String()
	for _, want := range []string{
		"app launches gunicorn -w 2 app:app (max_conns 2; 3 unexpected exits)",
		"4         4242  127.0.0.1:18000  backoff  2026-11-25T02:00:00Z  3         exit status 1",
		"0/2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}
