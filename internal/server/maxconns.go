package server

import (
	"net"
	"sync"
	"sync/atomic"
)

// maxConnsListener caps a listener's open client connections (limits.max_conns)
// for every engine alike: Accept takes a slot before it accepts, and a
// connection gives its slot back when it is closed. While every slot is taken
// Accept does not call accept(2), so new connections wait in the kernel's
// backlog — never accepted and then dropped — until one closes. The slots are
// a counting semaphore (a buffered channel): one send and one receive per
// connection, nothing per request.
type maxConnsListener struct {
	net.Listener
	slots chan struct{}
	// gone is closed when the socket is closed, so that an Accept waiting for
	// a slot returns: the gated listener's (server shutdown closes that one
	// directly), or this listener's own.
	gone      <-chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// limitConns returns ln capped at max open connections; max 0 returns ln.
func limitConns(ln net.Listener, max int) net.Listener {
	if max <= 0 {
		return ln
	}
	l := &maxConnsListener{Listener: ln, slots: make(chan struct{}, max), done: make(chan struct{})}
	if g, ok := ln.(*gatedListener); ok {
		l.gone = g.closed
	}
	return l
}

// Accept waits for a free slot, then for a connection.
func (l *maxConnsListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.gone:
		return nil, l.closedError()
	case <-l.done:
		return nil, l.closedError()
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		return &slotTCPConn{TCPConn: tc, slot: slot{slots: l.slots}}, nil
	}
	return &slotConn{Conn: c, slot: slot{slots: l.slots}}, nil
}

// Close closes the socket and wakes an Accept waiting for a slot.
func (l *maxConnsListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

func (l *maxConnsListener) closedError() error {
	return &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed}
}

// slot is the share of max_conns one connection holds.
type slot struct {
	slots chan struct{}
	freed atomic.Bool
}

// free gives the slot back, once however often the connection is closed.
func (s *slot) free() {
	if s.freed.CompareAndSwap(false, true) {
		<-s.slots
	}
}

// slotTCPConn is an accepted TCP connection holding a slot. It embeds
// *net.TCPConn, so what the engines look for on one is still there:
// CloseWrite (half-close), ReadFrom and WriteTo (splice), SyscallConn.
type slotTCPConn struct {
	*net.TCPConn
	slot slot
}

func (c *slotTCPConn) Close() error {
	err := c.TCPConn.Close()
	c.slot.free()
	return err
}

// slotConn is slotTCPConn for any other connection.
type slotConn struct {
	net.Conn
	slot slot
}

func (c *slotConn) Close() error {
	err := c.Conn.Close()
	c.slot.free()
	return err
}
