package health

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"ballast/internal/backend"
)

func TestOutliers(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, active := range []bool{false, true} {
		bs := []*backend.Backend{backend.New("p", "a:1", 1), backend.New("p", "b:1", 1)}
		o := NewOutliers("p", PassiveConfig{ConsecutiveFailures: 2, EjectFor: 30 * time.Millisecond, MaxEjectedPercent: 50, Active: active},
			func() []*backend.Backend { return bs }, nil, log)
		fail := func(b *backend.Backend) { b.Acquire(); b.Release(true); o.Report(b, true) }
		ok := func(b *backend.Backend) { b.Acquire(); b.Release(false); o.Report(b, false) }

		a := bs[0]
		fail(a)
		ok(a) // a success ends the streak
		fail(a)
		if a.State() != backend.StateUp {
			t.Fatalf("ejected after failures that were not in a row")
		}
		fail(a)
		if a.State() != backend.StateEjected {
			t.Fatalf("not ejected after 2 failures in a row: %v", a.State())
		}
		fail(bs[1])
		fail(bs[1])
		if bs[1].State() != backend.StateUp {
			t.Fatal("ejected beyond max_ejected_percent")
		}
		want := backend.StateUp
		if active {
			want = backend.StateDown // returns through the active check
		}
		deadline := time.Now().Add(2 * time.Second)
		for a.State() == backend.StateEjected && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if a.State() != want {
			t.Fatalf("active=%v: state after ejection %v, want %v", active, a.State(), want)
		}
	}
}

// Stopping the timers ends no ejection afterwards: nothing of a stopped
// server runs on.
func TestTimersStop(t *testing.T) {
	bs := []*backend.Backend{backend.New("p", "a:1", 1), backend.New("p", "b:1", 1)}
	var ts Timers
	o := NewOutliers("p", PassiveConfig{ConsecutiveFailures: 1, EjectFor: 20 * time.Millisecond, MaxEjectedPercent: 50},
		func() []*backend.Backend { return bs }, &ts, nil)
	if !o.Eject(bs[0], "connection refused") {
		t.Fatal("Eject did not eject")
	}
	ts.Stop()
	time.Sleep(60 * time.Millisecond)
	if st := bs[0].State(); st != backend.StateEjected {
		t.Fatalf("state %s after Stop, want still ejected (no readmission ran)", st)
	}
}
