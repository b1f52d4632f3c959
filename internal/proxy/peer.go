package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// peerOpen reports whether an idle connection has not been closed by its
// peer: a non-blocking peek that sees neither data nor end of stream. It
// costs one system call and never waits.
func peerOpen(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		// Below TLS: a backend done with the connection sends a close_notify
		// alert (bytes: "not in step") or just a FIN; both mean closed.
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := true
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case n == 0 && rerr == nil: // end of stream: the peer closed
			open = false
		case rerr != nil && !errors.Is(rerr, syscall.EAGAIN):
			open = false // reset, or another error
		case n > 0: // unsolicited bytes on an idle connection: not in step
			open = false
		}
		return true // never wait
	})
	return err == nil && open
}
