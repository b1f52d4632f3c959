package server

import (
	"context"
	"sync"
	"time"

	"ballast/internal/admin"
	"ballast/internal/backend"
	"ballast/internal/proxy"
)

// eventsKept is how many backend state changes the events log keeps.
const eventsKept = 200

// watchInterval is how often the watcher compares backend states.
const watchInterval = 100 * time.Millisecond

// events is the log of recent backend state changes the admin API and the
// dashboard show. A watcher samples every backend's state off the request
// path (the states are atomics that many places change: health checks,
// ejections, drains), so a change shows within watchInterval.
type events struct {
	mu   sync.Mutex
	ring []admin.Event // the last eventsKept, oldest first
	next uint64        // seq of the next event
	seen map[*backend.Backend]seenState
}

// seenState is a backend's pool and state at the last sample.
type seenState struct {
	pool string
	st   backend.State
}

// since returns the events with seq >= from and the next seq.
func (e *events) since(from uint64) ([]admin.Event, uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []admin.Event
	for _, ev := range e.ring {
		if ev.Seq >= from {
			out = append(out, ev)
		}
	}
	return out, e.next
}

func (e *events) add(ev admin.Event) {
	ev.Seq = e.next
	e.next++
	e.ring = append(e.ring, ev)
	if len(e.ring) > eventsKept {
		e.ring = append(e.ring[:0], e.ring[len(e.ring)-eventsKept:]...)
	}
}

// watch samples the backends' states until ctx is done.
func (s *Server) watch(ctx context.Context) {
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for {
		s.sample(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sample records every backend whose state changed since the last sample.
func (s *Server) sample(now time.Time) {
	type change struct {
		pool string
		up   *proxy.Upstream
		b    *backend.Backend
		st   backend.State
	}
	s.mu.Lock()
	var all []change
	for _, name := range s.cfg.PoolOrder {
		up, ok := s.ups[name]
		if !ok {
			continue
		}
		for _, b := range up.Pool.Snapshot().Backends {
			all = append(all, change{name, up, b, b.State()})
		}
	}
	monitors := make(map[string]*monitor, len(s.monitors))
	for k, v := range s.monitors {
		monitors[k] = v
	}
	if n := s.vrrp; n != nil {
		if h := s.vrrpHealthy(s.cfg); h != n.healthy {
			n.healthy = h
			n.speaker.SetHealthy(h)
			s.log.Info("vrrp: this node may hold the virtual IPs", "healthy", h)
		}
	}
	s.mu.Unlock()

	e := &s.events
	e.mu.Lock()
	defer e.mu.Unlock()
	first := e.seen == nil
	next := make(map[*backend.Backend]seenState, len(all))
	for _, c := range all {
		next[c.b] = seenState{c.pool, c.st}
		prev, known := e.seen[c.b]
		if first || known && prev.st == c.st {
			continue
		}
		from := prev.st.String()
		if !known {
			from = "added"
		}
		e.add(admin.Event{Time: now.UTC(), Pool: c.pool, Backend: c.b.Addr, From: from, To: c.st.String(),
			Reason: reason(c.st, monitors[c.pool], c.b)})
		if c.st == backend.StateUp && c.up != nil {
			c.up.KickQueue() // requests waiting for a slot may take one there now
		}
	}
	for b, prev := range e.seen {
		if _, ok := next[b]; !ok {
			e.add(admin.Event{Time: now.UTC(), Pool: prev.pool, Backend: b.Addr, From: prev.st.String(), To: "removed"})
		}
	}
	e.seen = next
}

// reason explains a new state as well as the watcher can.
func reason(st backend.State, m *monitor, b *backend.Backend) string {
	switch st {
	case backend.StateDown:
		if m != nil {
			return m.mon.LastError(b.Addr)
		}
	case backend.StateEjected:
		return "passive outlier detection"
	case backend.StateDraining:
		return "drain"
	}
	return ""
}
