package vrrp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// netlinkTimeout bounds the wait for the kernel's answer to one request.
const netlinkTimeout = 2 // seconds

// addrRequest sends one RTM_NEWADDR or RTM_DELADDR request for the IPv4
// prefix p on interface ifindex and waits for the kernel's acknowledgement.
// The returned error wraps the kernel's errno (EEXIST, EADDRNOTAVAIL...).
func addrRequest(msgType uint16, flags uint16, ifindex int, p netip.Prefix) error {
	if !p.Addr().Is4() {
		return fmt.Errorf("netlink: %v is not IPv4", p)
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink bind: %w", err)
	}
	tv := unix.Timeval{Sec: netlinkTimeout}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("netlink timeout: %w", err)
	}

	const seq = 1
	a4 := p.Addr().As4()
	ne := binary.NativeEndian
	b := make([]byte, 0, unix.SizeofNlMsghdr+unix.SizeofIfAddrmsg+2*(unix.SizeofRtAttr+4))
	b = ne.AppendUint32(b, uint32(cap(b))) // nlmsg_len
	b = ne.AppendUint16(b, msgType)
	b = ne.AppendUint16(b, unix.NLM_F_REQUEST|unix.NLM_F_ACK|flags)
	b = ne.AppendUint32(b, seq)
	b = ne.AppendUint32(b, 0) // pid: the kernel
	// struct ifaddrmsg
	b = append(b, unix.AF_INET, uint8(p.Bits()), 0, unix.RT_SCOPE_UNIVERSE)
	b = ne.AppendUint32(b, uint32(ifindex))
	for _, typ := range []uint16{unix.IFA_LOCAL, unix.IFA_ADDRESS} {
		b = ne.AppendUint16(b, unix.SizeofRtAttr+4)
		b = ne.AppendUint16(b, typ)
		b = append(b, a4[:]...)
	}
	if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}

	buf := make([]byte, 8192)
	for range 16 { // the ack is the first answer; skip at most a few strays
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		for msg := buf[:n]; len(msg) >= unix.SizeofNlMsghdr; {
			l := int(ne.Uint32(msg[0:4]))
			if l < unix.SizeofNlMsghdr || l > len(msg) {
				return fmt.Errorf("netlink: malformed answer")
			}
			typ, gotSeq := ne.Uint16(msg[4:6]), ne.Uint32(msg[8:12])
			if typ == unix.NLMSG_ERROR && gotSeq == seq && l >= unix.SizeofNlMsghdr+4 {
				if errno := -int32(ne.Uint32(msg[16:20])); errno != 0 {
					return syscall.Errno(errno)
				}
				return nil
			}
			next := (l + 3) &^ 3 // messages are 4-byte aligned
			if next > len(msg) {
				break
			}
			msg = msg[next:]
		}
	}
	return fmt.Errorf("netlink: no acknowledgement")
}
