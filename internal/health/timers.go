package health

import (
	"sync"
	"time"
)

// Timers holds the pending ends of ejections. One set serves a server's
// outlier detection across reloads (a reload rebuilds Outliers, but an
// ejection made before it must still end), and Stop cancels them all when the
// server stops, so that nothing of it runs after Run has returned.
type Timers struct {
	mu      sync.Mutex
	pending map[*time.Timer]struct{}
	stopped bool
}

// afterFunc runs f after d, unless Stop comes first.
func (ts *Timers) afterFunc(d time.Duration, f func()) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.stopped {
		return
	}
	if ts.pending == nil {
		ts.pending = make(map[*time.Timer]struct{})
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		ts.mu.Lock()
		_, ok := ts.pending[t]
		delete(ts.pending, t)
		ts.mu.Unlock()
		if ok {
			f()
		}
	})
	ts.pending[t] = struct{}{}
}

// Stop cancels every pending timer; later ones never start.
func (ts *Timers) Stop() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.stopped = true
	for t := range ts.pending {
		t.Stop()
	}
	ts.pending = nil
}
