package proxy

import (
	"context"
	"net"
	"sync"
)

// connSet tracks connections that outlive http.Server's own bookkeeping — raw
// tunnels after an Upgrade, TCP-mode connections — so that a shutdown can wait
// for them and then close what is left. Only connection start and end touch
// its lock, never the bytes in between.
type connSet struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// add tracks c; it returns false (and does not track c) once shutdown began.
// Every successful add is paired with one done.
func (s *connSet) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[net.Conn]struct{})
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

// done stops tracking c.
func (s *connSet) done(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// shutdown refuses new connections, waits until the tracked ones end or ctx
// is done, then closes those still open — calling abort first, when given,
// so a handler blocked elsewhere (on a backend) wakes too — and waits for
// their handlers. It reports whether it had to close any.
func (s *connSet) shutdown(ctx context.Context, abort func()) bool {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	idle := make(chan struct{})
	go func() { s.wg.Wait(); close(idle) }()
	select {
	case <-idle:
		return false
	case <-ctx.Done():
	}
	if abort != nil {
		abort()
	}
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	<-idle
	return true
}
