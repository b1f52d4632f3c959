// Package vrrp is a VRRPv3 speaker for IPv4 (RFC 5798): it holds a set of
// floating addresses on one node of an active-passive group and is
// interoperable with keepalived's VRRPv3 mode.
//
// The package has three layers, each testable on its own:
//
//   - packet.go: the advertisement's wire format and the receive-side drop
//     rules (TTL, checksum, VRID, address set).
//   - state.go: the RFC 5798 §6.4 state machine as pure logic. Time is passed
//     in and timers are reported as deadlines, so it runs under a fake clock.
//   - speaker.go and net_linux.go: the Speaker that ties the state machine to
//     a raw IP socket, netlink address changes and gratuitous ARP.
package vrrp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Protocol constants (RFC 5798 §5).
const (
	// IPProtocol is the IP protocol number of VRRP.
	IPProtocol = 112
	// Version is the only VRRP version this package speaks.
	Version = 3
	// TypeAdvertisement is the only VRRP packet type.
	TypeAdvertisement = 1
	// TTL is the IP TTL every advertisement is sent with; a receiver drops
	// any other value (the packet crossed a router).
	TTL = 255
	// headerLen is the fixed part of the message before the addresses.
	headerLen = 8
	// maxIntervalCS is the largest 12-bit Max Advert Interval, in centiseconds.
	maxIntervalCS = 0x0fff
)

// MulticastGroup is the IPv4 multicast group advertisements are sent to.
var MulticastGroup = netip.AddrFrom4([4]byte{224, 0, 0, 18})

// Errors that Decode and Filter.Check return. A received advertisement that
// fails any of them is dropped.
var (
	// ErrShort means the message is shorter than the 8-byte fixed header.
	ErrShort = errors.New("vrrp: packet too short")
	// ErrVersion means the version field is not 3.
	ErrVersion = errors.New("vrrp: unsupported version")
	// ErrType means the type field is not 1 (advertisement).
	ErrType = errors.New("vrrp: unknown packet type")
	// ErrCount means the length does not match the count of IPv4 addresses.
	ErrCount = errors.New("vrrp: address count does not match length")
	// ErrChecksum means the checksum over pseudo-header and message is wrong.
	ErrChecksum = errors.New("vrrp: bad checksum")
	// ErrInterval means the Max Advert Interval is zero.
	ErrInterval = errors.New("vrrp: zero advertisement interval")
	// ErrTTL means the IP TTL is not 255.
	ErrTTL = errors.New("vrrp: ip ttl is not 255")
	// ErrVRID means the advertisement is for another virtual router.
	ErrVRID = errors.New("vrrp: virtual router id is not ours")
	// ErrAddresses means the advertised address set differs from ours.
	ErrAddresses = errors.New("vrrp: address list differs from the configured set")
	// ErrSource means the advertisement came from an unexpected source: one
	// of our own addresses, or a host that is not a configured unicast peer.
	ErrSource = errors.New("vrrp: unexpected source address")
)

// Packet is a VRRPv3 advertisement for IPv4.
type Packet struct {
	// VRID is the virtual router identifier, 1..255.
	VRID uint8
	// Priority is the sender's priority; 0 means it is releasing mastership
	// and 255 that it owns the addresses.
	Priority uint8
	// IntervalCS is the Max Advert Interval in centiseconds (12 bits).
	IntervalCS uint16
	// Addrs are the virtual IPv4 addresses, without prefix length.
	Addrs []netip.Addr
}

// Interval returns the advertisement interval as a duration.
func (p *Packet) Interval() time.Duration {
	return time.Duration(p.IntervalCS) * 10 * time.Millisecond
}

// Len is the length of the encoded VRRP message (not counting the IP header).
func (p *Packet) Len() int { return headerLen + 4*len(p.Addrs) }

// Encode returns the wire form of p with its checksum computed over the IPv4
// pseudo-header of src and dst (dst is MulticastGroup or a unicast peer).
func (p *Packet) Encode(src, dst netip.Addr) ([]byte, error) {
	if len(p.Addrs) > 255 {
		return nil, fmt.Errorf("vrrp: %d addresses, at most 255", len(p.Addrs))
	}
	if p.IntervalCS == 0 || p.IntervalCS > maxIntervalCS {
		return nil, fmt.Errorf("vrrp: interval %d cs out of range 1..%d", p.IntervalCS, maxIntervalCS)
	}
	if !src.Is4() || !dst.Is4() {
		return nil, fmt.Errorf("vrrp: pseudo-header needs IPv4 addresses, got %v -> %v", src, dst)
	}
	b := make([]byte, p.Len())
	b[0] = Version<<4 | TypeAdvertisement
	b[1] = p.VRID
	b[2] = p.Priority
	b[3] = uint8(len(p.Addrs))
	binary.BigEndian.PutUint16(b[4:6], p.IntervalCS&maxIntervalCS)
	for i, a := range p.Addrs {
		if !a.Is4() {
			return nil, fmt.Errorf("vrrp: address %v is not IPv4", a)
		}
		a4 := a.As4()
		copy(b[headerLen+4*i:], a4[:])
	}
	binary.BigEndian.PutUint16(b[6:8], checksum(src, dst, b))
	return b, nil
}

// Decode parses and validates one VRRPv3 message (the IP payload) received
// from src for dst. It checks the version, type, length against the address
// count, a non-zero interval and the checksum; the receiver's own rules
// (TTL, VRID, address set) are Filter's.
func Decode(b []byte, src, dst netip.Addr) (*Packet, error) {
	if len(b) < headerLen {
		return nil, fmt.Errorf("%w: %d bytes", ErrShort, len(b))
	}
	if v := b[0] >> 4; v != Version {
		return nil, fmt.Errorf("%w: %d", ErrVersion, v)
	}
	if t := b[0] & 0x0f; t != TypeAdvertisement {
		return nil, fmt.Errorf("%w: %d", ErrType, t)
	}
	n := int(b[3])
	if len(b) != headerLen+4*n {
		return nil, fmt.Errorf("%w: %d addresses in %d bytes", ErrCount, n, len(b))
	}
	if !src.Is4() || !dst.Is4() {
		return nil, fmt.Errorf("%w: not IPv4: %v -> %v", ErrChecksum, src, dst)
	}
	if checksum(src, dst, b) != 0 {
		return nil, ErrChecksum
	}
	p := &Packet{
		VRID:       b[1],
		Priority:   b[2],
		IntervalCS: binary.BigEndian.Uint16(b[4:6]) & maxIntervalCS,
		Addrs:      make([]netip.Addr, n),
	}
	if p.IntervalCS == 0 {
		return nil, ErrInterval
	}
	for i := range n {
		p.Addrs[i] = netip.AddrFrom4([4]byte(b[headerLen+4*i : headerLen+4*i+4]))
	}
	return p, nil
}

// checksum is the Internet checksum (RFC 1071) of the IPv4 pseudo-header
// (source, destination, zero, protocol 112, VRRP length) followed by msg.
// Over a message whose checksum field is set it returns 0 when it is right.
func checksum(src, dst netip.Addr, msg []byte) uint16 {
	s4, d4 := src.As4(), dst.As4()
	var sum uint32
	add := func(b []byte) {
		for len(b) >= 2 {
			sum += uint32(b[0])<<8 | uint32(b[1])
			b = b[2:]
		}
		if len(b) == 1 {
			sum += uint32(b[0]) << 8
		}
	}
	add(s4[:])
	add(d4[:])
	sum += IPProtocol
	sum += uint32(len(msg))
	add(msg)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// Filter holds what a receiver checks beyond the wire format. The zero
// value is not useful; build it with NewFilter.
type Filter struct {
	vrid  uint8
	addrs []netip.Addr // sorted
	local netip.Addr   // our primary address: our own packets are dropped
	peers []netip.Addr // unicast mode: the only accepted sources; nil = any
}

// NewFilter returns the receive filter for virtual router vrid holding addrs.
// local is this node's primary address; peers, when not empty, are the only
// sources accepted (unicast mode).
func NewFilter(vrid uint8, addrs []netip.Addr, local netip.Addr, peers []netip.Addr) *Filter {
	s := slices.Clone(addrs)
	slices.SortFunc(s, netip.Addr.Compare)
	return &Filter{vrid: vrid, addrs: slices.Compact(s), local: local, peers: slices.Clone(peers)}
}

// Check decodes a received message and applies the drop rules of RFC 5798
// §7.1 that keepalived also applies: IP TTL must be 255, the checksum must
// hold, the VRID must be ours and the advertised address set must equal the
// configured one. Our own packets and, in unicast mode, packets from hosts
// that are not peers are dropped too. The error says why a packet is dropped.
func (f *Filter) Check(ttl int, src, dst netip.Addr, msg []byte) (*Packet, error) {
	if ttl != TTL {
		return nil, fmt.Errorf("%w: %d", ErrTTL, ttl)
	}
	if src == f.local || (len(f.peers) > 0 && !slices.Contains(f.peers, src)) {
		return nil, fmt.Errorf("%w: %v", ErrSource, src)
	}
	p, err := Decode(msg, src, dst)
	if err != nil {
		return nil, err
	}
	if p.VRID != f.vrid {
		return nil, fmt.Errorf("%w: %d", ErrVRID, p.VRID)
	}
	got := slices.Clone(p.Addrs)
	slices.SortFunc(got, netip.Addr.Compare)
	if !slices.Equal(got, f.addrs) {
		return nil, fmt.Errorf("%w: %v", ErrAddresses, p.Addrs)
	}
	return p, nil
}
