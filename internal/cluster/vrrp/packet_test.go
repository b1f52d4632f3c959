package vrrp

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"
)

var (
	srcA = netip.MustParseAddr("10.0.0.1")
	vip1 = netip.MustParseAddr("10.0.0.100")
	vip2 = netip.MustParseAddr("10.0.0.101")
)

func mustEncode(t testing.TB, p *Packet, src, dst netip.Addr) []byte {
	t.Helper()
	b, err := p.Encode(src, dst)
	if err != nil {
		t.Fatalf("Encode(%+v): %v", p, err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	for _, dst := range []netip.Addr{MulticastGroup, netip.MustParseAddr("10.0.0.2")} {
		p := &Packet{VRID: 51, Priority: 150, IntervalCS: 100, Addrs: []netip.Addr{vip1, vip2}}
		b := mustEncode(t, p, srcA, dst)
		if len(b) != 8+4*2 {
			t.Fatalf("encoded %d bytes, want 16", len(b))
		}
		got, err := Decode(b, srcA, dst)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		if got.VRID != 51 || got.Priority != 150 || got.IntervalCS != 100 || !slices.Equal(got.Addrs, p.Addrs) {
			t.Fatalf("round trip: got %+v, want %+v", got, p)
		}
		if got.Interval() != time.Second {
			t.Fatalf("Interval() = %v, want 1s", got.Interval())
		}
		// The pseudo-header binds the checksum to the destination.
		other := netip.MustParseAddr("10.0.0.3")
		if _, err := Decode(b, srcA, other); !errors.Is(err, ErrChecksum) {
			t.Fatalf("Decode with another destination: err = %v, want ErrChecksum", err)
		}
	}
}

// TestChecksumHandComputed checks the checksum against one worked out by
// hand, word by word (RFC 1071 one's complement sum):
//
//	pseudo-header: 0a00 0001 (10.0.0.1)  e000 0012 (224.0.0.18)  0070 (0, 112)  000c (length 12)
//	message:       3133 (v3 type 1, VRID 51)  6401 (priority 100, 1 address)
//	               0064 (interval 100 cs)  0000 (checksum)  0a00 0064 (10.0.0.100)
//	sum = 0x18a8b, folded 0x8a8c, complemented 0x7573.
func TestChecksumHandComputed(t *testing.T) {
	p := &Packet{VRID: 51, Priority: 100, IntervalCS: 100, Addrs: []netip.Addr{vip1}}
	b := mustEncode(t, p, srcA, MulticastGroup)
	want := []byte{0x31, 0x33, 0x64, 0x01, 0x00, 0x64, 0x75, 0x73, 10, 0, 0, 100}
	if !slices.Equal(b, want) {
		t.Fatalf("encoded % x\nwant        % x", b, want)
	}
}

// TestKeepalivedCapture decodes an advertisement captured from keepalived
// 2.2.7 (vrrp_version 3, advert_int 0.1, VRID 51, priority 100, one VIP
// 10.77.9.100) as read from a raw socket, IP header included, and checks
// that Encode produces the same bytes.
func TestKeepalivedCapture(t *testing.T) {
	pkt, _ := hex.DecodeString("45c0002000010000ff70c74c0a4d0901e000001231336401000a63330a4d0964")
	ip, msg := pkt[:20], pkt[20:]
	if got := int(binary.BigEndian.Uint16(ip[2:4])); got != 20+8+4*1 {
		t.Fatalf("keepalived IP total length %d", got) // documents the 20+8+4n fact
	}
	src := netip.AddrFrom4([4]byte(ip[12:16]))
	dst := netip.AddrFrom4([4]byte(ip[16:20]))
	f := NewFilter(51, []netip.Addr{netip.MustParseAddr("10.77.9.100")}, netip.MustParseAddr("10.77.9.2"), nil)
	p, err := f.Check(int(ip[8]), src, dst, msg)
	if err != nil {
		t.Fatalf("keepalived advert rejected: %v", err)
	}
	if p.Priority != 100 || p.Interval() != 100*time.Millisecond {
		t.Fatalf("decoded %+v", p)
	}
	if b := mustEncode(t, p, src, dst); !slices.Equal(b, msg) {
		t.Fatalf("re-encoded % x, keepalived sent % x", b, msg)
	}
}

func TestDecodeErrors(t *testing.T) {
	good := mustEncode(t, &Packet{VRID: 1, Priority: 100, IntervalCS: 100, Addrs: []netip.Addr{vip1}}, srcA, MulticastGroup)
	// fix recomputes the checksum after a field was changed, so that only
	// the field under test is wrong.
	fix := func(b []byte) []byte {
		b[6], b[7] = 0, 0
		binary.BigEndian.PutUint16(b[6:8], checksum(srcA, MulticastGroup, b))
		return b
	}
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"short header", good[:7], ErrShort},
		{"version 2", fix(append([]byte{0x21}, good[1:]...)), ErrVersion},
		{"type 2", fix(append([]byte{0x32}, good[1:]...)), ErrType},
		{"count larger than payload", fix(append(slices.Clone(good[:3]), append([]byte{2}, good[4:]...)...)), ErrCount},
		{"truncated address", good[:10], ErrCount},
		{"trailing bytes", fix(append(slices.Clone(good), 0, 0, 0, 0)), ErrCount},
		{"bad checksum", append(slices.Clone(good[:7]), append([]byte{good[7] ^ 1}, good[8:]...)...), ErrChecksum},
		{"zero interval", fix(append(slices.Clone(good[:4]), append([]byte{0xf0, 0}, good[6:]...)...)), ErrInterval},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Decode(tt.b, srcA, MulticastGroup); !errors.Is(err, tt.want) {
				t.Fatalf("Decode: err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		name string
		p    Packet
		src  netip.Addr
	}{
		{"zero interval", Packet{VRID: 1, IntervalCS: 0, Addrs: []netip.Addr{vip1}}, srcA},
		{"interval over 12 bits", Packet{VRID: 1, IntervalCS: 4096, Addrs: []netip.Addr{vip1}}, srcA},
		{"ipv6 address", Packet{VRID: 1, IntervalCS: 1, Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::1")}}, srcA},
		{"ipv6 source", Packet{VRID: 1, IntervalCS: 1, Addrs: []netip.Addr{vip1}}, netip.MustParseAddr("2001:db8::1")},
		{"256 addresses", Packet{VRID: 1, IntervalCS: 1, Addrs: make([]netip.Addr, 256)}, srcA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.p.Encode(tt.src, MulticastGroup); err == nil {
				t.Fatal("Encode accepted an invalid packet")
			}
		})
	}
}

func TestFilterDropRules(t *testing.T) {
	local := netip.MustParseAddr("10.0.0.2")
	f := NewFilter(51, []netip.Addr{vip2, vip1}, local, nil)
	enc := func(vrid uint8, addrs ...netip.Addr) []byte {
		return mustEncode(t, &Packet{VRID: vrid, Priority: 100, IntervalCS: 10, Addrs: addrs}, srcA, MulticastGroup)
	}
	good := enc(51, vip1, vip2)
	corrupt := slices.Clone(good)
	corrupt[len(corrupt)-1] ^= 0xff
	tests := []struct {
		name string
		ttl  int
		src  netip.Addr
		msg  []byte
		want error // nil: accepted
	}{
		{"accepted", 255, srcA, good, nil},
		{"accepted in another order", 255, srcA, enc(51, vip2, vip1), nil},
		{"ttl 254 (crossed a router)", 254, srcA, good, ErrTTL},
		{"ttl 1", 1, srcA, good, ErrTTL},
		{"bad checksum", 255, srcA, corrupt, ErrChecksum},
		{"vrid not ours", 255, srcA, enc(52, vip1, vip2), ErrVRID},
		{"address missing", 255, srcA, enc(51, vip1), ErrAddresses},
		{"extra address", 255, srcA, enc(51, vip1, vip2, netip.MustParseAddr("10.0.0.102")), ErrAddresses},
		{"other address", 255, srcA, enc(51, vip1, netip.MustParseAddr("10.0.0.102")), ErrAddresses},
		{"duplicate address", 255, srcA, enc(51, vip1, vip1), ErrAddresses},
		{"our own packet", 255, local, mustEncode(t, &Packet{VRID: 51, Priority: 1, IntervalCS: 10, Addrs: []netip.Addr{vip1, vip2}}, local, MulticastGroup), ErrSource},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := f.Check(tt.ttl, tt.src, MulticastGroup, tt.msg)
			if tt.want == nil {
				if err != nil || p == nil {
					t.Fatalf("Check rejected a good advert: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) || p != nil {
				t.Fatalf("Check: err = %v, want %v", err, tt.want)
			}
		})
	}

	t.Run("unicast: only peers", func(t *testing.T) {
		peer := netip.MustParseAddr("10.0.0.3")
		uf := NewFilter(51, []netip.Addr{vip1, vip2}, local, []netip.Addr{peer})
		fromPeer := mustEncode(t, &Packet{VRID: 51, Priority: 100, IntervalCS: 10, Addrs: []netip.Addr{vip1, vip2}}, peer, local)
		if _, err := uf.Check(255, peer, local, fromPeer); err != nil {
			t.Fatalf("advert from a peer rejected: %v", err)
		}
		fromOther := mustEncode(t, &Packet{VRID: 51, Priority: 100, IntervalCS: 10, Addrs: []netip.Addr{vip1, vip2}}, srcA, local)
		if _, err := uf.Check(255, srcA, local, fromOther); !errors.Is(err, ErrSource) {
			t.Fatalf("advert from a non-peer: err = %v, want ErrSource", err)
		}
	})
}

// FuzzDecode checks that Decode never panics and that whatever it accepts
// encodes back to the same bytes.
func FuzzDecode(f *testing.F) {
	for _, n := range []int{0, 1, 3} {
		addrs := make([]netip.Addr, n)
		for i := range addrs {
			addrs[i] = netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})
		}
		b, err := (&Packet{VRID: 7, Priority: 200, IntervalCS: 100, Addrs: addrs}).Encode(srcA, MulticastGroup)
		if err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0x31, 0x33, 0x64, 0x01, 0x00, 0x64, 0x75, 0x73, 10, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Decode(b, srcA, MulticastGroup)
		if err != nil {
			return
		}
		out, err := p.Encode(srcA, MulticastGroup)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", p, err)
		}
		// The reserved bits are ignored on receipt and sent as zero, so
		// compare with them cleared; the checksum then differs too.
		want := slices.Clone(b)
		want[4] &= 0x0f
		want[6], want[7] = 0, 0
		binary.BigEndian.PutUint16(want[6:8], checksum(srcA, MulticastGroup, want))
		if !slices.Equal(out, want) {
			t.Fatalf("re-encoded % x, want % x", out, want)
		}
	})
}
