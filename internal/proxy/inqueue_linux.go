package proxy

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// inQueue returns how many bytes c's socket has received that no one has read
// yet: what the client has sent beyond what ballast has read. 0 when it
// cannot tell.
func inQueue(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	rc.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ); err == nil {
			n = v
		}
	})
	return n
}
