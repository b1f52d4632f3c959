package proxy

import (
	"context"
	"net"
	"sync"
)

// connSet tracks the connections an engine serves itself — native HTTP
// connections, raw tunnels after an Upgrade, TCP-mode connections — each with
// a value of the engine's (its per-connection state), so that a shutdown can
// reach them, wait for them, and close what is left. Only connection start and
// end touch its lock, never the bytes in between.
type connSet[T any] struct {
	mu     sync.Mutex
	conns  map[net.Conn]T
	closed bool
	wg     sync.WaitGroup
}

// add tracks c; it returns false (and does not track c) once shutdown began.
// Every successful add is paired with one done.
func (s *connSet[T]) add(c net.Conn, v T) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[net.Conn]T)
	}
	s.conns[c] = v
	s.wg.Add(1)
	return true
}

// done stops tracking c.
func (s *connSet[T]) done(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// shutdown refuses new connections, waits until the tracked ones end or ctx
// is done, then closes those still open — calling abort first, when given,
// so a handler blocked elsewhere (on a backend) wakes too — and waits for
// their handlers. It reports whether it had to close any.
func (s *connSet[T]) shutdown(ctx context.Context, abort func()) bool {
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

// each calls f for every tracked connection's value, holding the lock: f must
// be quick and must not call back into s.
func (s *connSet[T]) each(f func(T)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.conns {
		f(v)
	}
}
