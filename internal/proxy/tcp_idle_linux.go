package proxy

import (
	"io"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// traffic needs no state on Linux: the kernel keeps it.
type traffic struct{}

func (*traffic) start() {}

// source returns what the copy from c reads: c itself, so that io.Copy between
// two *net.TCPConn splices (net.TCPConn.ReadFrom, via spliceFrom).
func (w *idleWatch) source(c net.Conn) io.Reader { return c }

// quiet returns how long neither connection has sent or received data.
func (w *idleWatch) quiet() time.Duration { return min(quietFor(w.a), quietFor(w.b)) }

// quietFor returns how long c has neither sent nor received a data segment,
// from the kernel's TCP_INFO (tcpi_last_data_sent and tcpi_last_data_recv,
// in milliseconds). It returns 0, "not quiet", when it cannot tell (not a TCP
// socket, or already closed), so that a watch never closes a connection
// early.
func quietFor(c net.Conn) time.Duration {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	var ms uint32
	cerr := rc.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err == nil {
			ms = min(info.Last_data_sent, info.Last_data_recv)
		}
	})
	if cerr != nil {
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}
