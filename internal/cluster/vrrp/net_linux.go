package vrrp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// ipTOS is the IP TOS of advertisements: precedence "internetwork control",
// as keepalived sends them.
const ipTOS = 0xc0

// linuxLink is a link on a Linux interface.
type linuxLink struct {
	ifi     *net.Interface
	primary netip.Addr
	pc      net.PacketConn
	raw     *ipv4.RawConn
	arpFD   int // AF_PACKET socket, -1 when the interface has no Ethernet address
	once    sync.Once
}

var _ link = (*linuxLink)(nil)

// openLink opens the sockets for cfg on cfg.Interface: a raw IPv4 socket
// for protocol 112 bound to the interface, with the IP header included both
// ways (so the TTL of received packets is read from their header and ours
// is set to 255), multicast loop off, joined to 224.0.0.18 unless unicast
// peers are set; and an AF_PACKET socket for gratuitous ARP.
func openLink(cfg Config) (link, error) {
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, err
	}
	primary, err := primaryAddr(ifi, cfg.vipAddrs())
	if err != nil {
		return nil, err
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifi.Name)
		})
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(context.Background(), fmt.Sprintf("ip4:%d", IPProtocol), "0.0.0.0")
	if err != nil {
		return nil, fmt.Errorf("raw socket (needs CAP_NET_RAW): %w", err)
	}
	l := &linuxLink{ifi: ifi, primary: primary, pc: pc, arpFD: -1}
	if err := l.setup(cfg); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func (l *linuxLink) setup(cfg Config) error {
	raw, err := ipv4.NewRawConn(l.pc)
	if err != nil {
		return fmt.Errorf("raw socket: %w", err)
	}
	l.raw = raw
	if err := raw.SetMulticastInterface(l.ifi); err != nil {
		return fmt.Errorf("multicast interface: %w", err)
	}
	if err := raw.SetMulticastLoopback(false); err != nil {
		return fmt.Errorf("multicast loop: %w", err)
	}
	if err := raw.SetMulticastTTL(TTL); err != nil {
		return fmt.Errorf("multicast ttl: %w", err)
	}
	if len(cfg.UnicastPeers) == 0 {
		group := &net.IPAddr{IP: net.IP(MulticastGroup.AsSlice())}
		if err := raw.JoinGroup(l.ifi, group); err != nil {
			return fmt.Errorf("join %v: %w", MulticastGroup, err)
		}
	}
	if len(l.ifi.HardwareAddr) == 6 {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		l.arpFD = fd
	}
	return nil
}

// primaryAddr returns the first IPv4 address of ifi that is not one of vips.
func primaryAddr(ifi *net.Interface, vips []netip.Addr) (netip.Addr, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, err
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if ip = ip.Unmap(); ok && ip.Is4() && !slices.Contains(vips, ip) {
			return ip, nil
		}
	}
	return netip.Addr{}, errors.New("no IPv4 address other than the virtual ones")
}

func (l *linuxLink) Primary() netip.Addr { return l.primary }

func (l *linuxLink) ReadAdvert(b []byte) (int, netip.Addr, netip.Addr, []byte, error) {
	h, p, _, err := l.raw.ReadFrom(b)
	if err != nil {
		return 0, netip.Addr{}, netip.Addr{}, nil, err
	}
	src, _ := netip.AddrFromSlice(h.Src.To4())
	dst, _ := netip.AddrFromSlice(h.Dst.To4())
	// The payload ends where the IP total length says, not at the read's
	// end (there is no link padding on a raw socket, but be exact).
	if n := h.TotalLen - h.Len; n >= 0 && n < len(p) {
		p = p[:n]
	}
	return h.TTL, src, dst, p, nil
}

func (l *linuxLink) WriteAdvert(dst netip.Addr, msg []byte) error {
	h := &ipv4.Header{
		Version:  ipv4.Version,
		Len:      ipv4.HeaderLen,
		TOS:      ipTOS,
		TotalLen: ipv4.HeaderLen + len(msg),
		TTL:      TTL,
		Protocol: IPProtocol,
		Src:      net.IP(l.primary.AsSlice()),
		Dst:      net.IP(dst.AsSlice()),
	}
	return l.raw.WriteTo(h, msg, nil)
}

func (l *linuxLink) AddAddr(p netip.Prefix) error {
	err := addrRequest(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL, l.ifi.Index, p)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}

func (l *linuxLink) DelAddr(p netip.Prefix) error {
	err := addrRequest(unix.RTM_DELADDR, 0, l.ifi.Index, p)
	if errors.Is(err, unix.EADDRNOTAVAIL) {
		return nil
	}
	return err
}

// GratuitousARP sends what keepalived sends: a broadcast ARP request from
// the interface's MAC whose sender and target protocol address are both a
// and whose target hardware address is the broadcast address.
func (l *linuxLink) GratuitousARP(a netip.Addr) error {
	if l.arpFD < 0 {
		return fmt.Errorf("interface %s has no Ethernet address", l.ifi.Name)
	}
	bcast := [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	mac := l.ifi.HardwareAddr
	ip := a.As4()
	f := make([]byte, 0, 42)
	f = append(f, bcast[:]...)                   // Ethernet destination
	f = append(f, mac...)                        // Ethernet source
	f = binary.BigEndian.AppendUint16(f, 0x0806) // EtherType ARP
	f = binary.BigEndian.AppendUint16(f, 1)      // hardware type Ethernet
	f = binary.BigEndian.AppendUint16(f, 0x0800) // protocol type IPv4
	f = append(f, 6, 4)                          // address lengths
	f = binary.BigEndian.AppendUint16(f, 1)      // request
	f = append(f, mac...)                        // sender MAC
	f = append(f, ip[:]...)                      // sender IP
	f = append(f, bcast[:]...)                   // target MAC
	f = append(f, ip[:]...)                      // target IP
	sa := &unix.SockaddrLinklayer{
		Protocol: htons(unix.ETH_P_ARP),
		Ifindex:  l.ifi.Index,
		Halen:    6,
	}
	copy(sa.Addr[:], bcast[:])
	return unix.Sendto(l.arpFD, f, 0, sa)
}

func (l *linuxLink) Close() error {
	var err error
	l.once.Do(func() {
		err = l.pc.Close()
		if l.arpFD >= 0 {
			err = errors.Join(err, unix.Close(l.arpFD))
		}
	})
	return err
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
