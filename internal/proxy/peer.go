package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// peeker checks an idle connection for a close or stray bytes from its peer:
// a non-blocking peek that must see neither data nor end of stream. It costs
// one system call, never waits, and allocates nothing per check (the raw
// connection and the callback are resolved once, when the connection is made).
type peeker struct {
	raw  syscall.RawConn // nil: the connection has no file descriptor
	fn   func(fd uintptr) bool
	b    [1]byte
	open bool
}

// newPeeker prepares the checks of c (below TLS: a backend done with the
// connection sends a close_notify alert — bytes, "not in step" — or just a
// FIN; both mean closed).
func newPeeker(c net.Conn) *peeker {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	p := &peeker{}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			p.raw = raw
		}
	}
	p.fn = p.peek
	return p
}

func (p *peeker) peek(fd uintptr) bool {
	n, _, err := syscall.Recvfrom(int(fd), p.b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case n == 0 && err == nil: // end of stream: the peer closed
		p.open = false
	case err != nil && !errors.Is(err, syscall.EAGAIN):
		p.open = false // reset, or another error
	case n > 0: // unsolicited bytes on an idle connection: not in step
		p.open = false
	}
	return true // never wait
}

// peerOpen reports whether the connection is still open and quiet.
func (p *peeker) peerOpen() bool {
	if p.raw == nil {
		return true
	}
	p.open = true
	err := p.raw.Read(p.fn)
	return err == nil && p.open
}
