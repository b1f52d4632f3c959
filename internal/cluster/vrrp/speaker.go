package vrrp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// link is the network under a Speaker: on Linux a raw IP socket for
// protocol 112, netlink for addresses and an AF_PACKET socket for ARP.
type link interface {
	// Primary is the interface's primary IPv4 address.
	Primary() netip.Addr
	// ReadAdvert blocks for the next packet of protocol 112 and returns its
	// IP TTL, source, destination and payload (a slice of b).
	ReadAdvert(b []byte) (ttl int, src, dst netip.Addr, msg []byte, err error)
	// WriteAdvert sends msg from Primary to dst with TTL 255.
	WriteAdvert(dst netip.Addr, msg []byte) error
	// AddAddr adds p to the interface; an address already there is fine.
	AddAddr(p netip.Prefix) error
	// DelAddr removes p from the interface; an absent address is fine.
	DelAddr(p netip.Prefix) error
	// GratuitousARP broadcasts an ARP announcement of a from the
	// interface's MAC address.
	GratuitousARP(a netip.Addr) error
	// Close releases the sockets and unblocks ReadAdvert.
	Close() error
}

// Speaker runs one VRRPv3 virtual router on a network interface.
//
// Create it with New, run it with Run; SetHealthy, State and IsMaster are
// safe to call from any goroutine at any time.
type Speaker struct {
	cfg      Config
	log      *slog.Logger
	healthy  atomic.Bool
	healthCh chan struct{} // wakes Run after SetHealthy; capacity 1
	state    atomic.Int32
	open     func(Config) (link, error)
}

// New checks cfg and returns a Speaker. It touches no network; Run does.
// The speaker starts healthy.
func New(cfg Config, log *slog.Logger) (*Speaker, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Speaker{
		cfg:      cfg,
		log:      log.With("vrrp_iface", cfg.Interface, "vrid", cfg.VRID),
		healthCh: make(chan struct{}, 1),
		open:     openLink,
	}
	s.healthy.Store(true)
	return s, nil
}

// SetHealthy tells the speaker whether this node may hold the virtual
// addresses (its tracked pools have a healthy backend). An unhealthy node
// never becomes master; a master that becomes unhealthy hands over at once.
// See Machine for the details.
func (s *Speaker) SetHealthy(healthy bool) {
	s.healthy.Store(healthy)
	select {
	case s.healthCh <- struct{}{}:
	default: // Run is already due to read the latest value
	}
}

// State returns the current state: "initialize", "backup" or "master".
func (s *Speaker) State() string { return State(s.state.Load()).String() }

// IsMaster reports whether this node holds the virtual addresses.
func (s *Speaker) IsMaster() bool { return State(s.state.Load()) == Master }

// Run speaks VRRP until ctx ends, then releases cleanly: as master it sends
// a priority-0 advertisement, and in every state it removes the virtual
// addresses before returning nil. It returns an error when the interface
// cannot be set up or the socket fails.
func (s *Speaker) Run(ctx context.Context) error {
	l, err := s.open(s.cfg)
	if err != nil {
		return fmt.Errorf("vrrp: interface %q: %w", s.cfg.Interface, err)
	}
	primary := l.Primary()
	filter := NewFilter(uint8(s.cfg.VRID), s.cfg.vipAddrs(), primary, s.cfg.UnicastPeers)
	act := &linkActions{l: l, cfg: s.cfg, primary: primary, log: s.log}
	m := NewMachine(MachineConfig{
		Priority:       uint8(s.cfg.Priority),
		AdvertInterval: s.cfg.AdvertInterval,
		Preempt:        s.cfg.Preempt,
		PreemptDelay:   s.cfg.PreemptDelay,
		Primary:        primary,
	}, act)

	adverts := make(chan Advert, 16)
	readErr := make(chan error, 1)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		readErr <- s.read(l, filter, adverts)
	}()
	defer func() { l.Close(); <-readDone }()

	s.log.Info("vrrp starting", "primary", primary, "priority", s.cfg.Priority,
		"advert_interval", s.cfg.AdvertInterval, "unicast_peers", len(s.cfg.UnicastPeers))
	m.Start(time.Now(), s.healthy.Load())
	s.publish(m)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if d := m.Deadline(); d.IsZero() {
			timer.Stop()
		} else {
			timer.Reset(time.Until(d))
		}
		select {
		case <-ctx.Done():
			m.Stop(time.Now())
			s.publish(m)
			return nil
		case err := <-readErr:
			m.Stop(time.Now())
			s.publish(m)
			return fmt.Errorf("vrrp: interface %q: receive: %w", s.cfg.Interface, err)
		case a := <-adverts:
			m.Receive(time.Now(), a)
		case <-s.healthCh:
			h := s.healthy.Load()
			if h != m.Healthy() {
				s.log.Info("vrrp health changed", "healthy", h)
			}
			m.SetHealthy(time.Now(), h)
		case now := <-timer.C:
			m.Tick(now)
		}
		s.publish(m)
	}
}

// publish makes the machine's state visible to State and IsMaster and
// reports a change.
func (s *Speaker) publish(m *Machine) {
	st := m.State()
	if old := State(s.state.Swap(int32(st))); old != st {
		s.log.Info("vrrp state changed", "from", old.String(), "to", st.String(),
			"master_adver_interval", m.MasterAdverInterval())
		if s.cfg.OnStateChange != nil {
			s.cfg.OnStateChange(st)
		}
	}
}

// read delivers accepted advertisements until the link is closed (nil) or
// fails (the error). Dropped packets are logged at debug level.
func (s *Speaker) read(l link, f *Filter, out chan<- Advert) error {
	buf := make([]byte, 1500)
	for {
		ttl, src, dst, msg, err := l.ReadAdvert(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		p, err := f.Check(ttl, src, dst, msg)
		if err != nil {
			s.log.Debug("vrrp advert dropped", "src", src, "reason", err)
			continue
		}
		select {
		case out <- Advert{Src: src, Priority: p.Priority, Interval: p.Interval()}:
		default:
			s.log.Warn("vrrp advert dropped: receive queue full", "src", src)
		}
	}
}

// linkActions carries out the Machine's actions on a link. Failures are
// logged: the protocol carries on and the next event retries.
type linkActions struct {
	l       link
	cfg     Config
	primary netip.Addr
	log     *slog.Logger
}

var _ Actions = (*linkActions)(nil)

func (a *linkActions) SendAdvert(priority uint8) {
	p := Packet{
		VRID:       uint8(a.cfg.VRID),
		Priority:   priority,
		IntervalCS: uint16(a.cfg.AdvertInterval / (10 * time.Millisecond)),
		Addrs:      a.cfg.vipAddrs(),
	}
	dsts := a.cfg.UnicastPeers
	if len(dsts) == 0 {
		dsts = []netip.Addr{MulticastGroup}
	}
	for _, dst := range dsts {
		b, err := p.Encode(a.primary, dst)
		if err == nil {
			err = a.l.WriteAdvert(dst, b)
		}
		if err != nil {
			a.log.Warn("vrrp advert not sent", "dst", dst, "priority", priority, "err", err)
		}
	}
}

func (a *linkActions) AddVIPs() {
	for _, p := range a.cfg.VirtualIPs {
		if err := a.l.AddAddr(p); err != nil {
			a.log.Error("vrrp virtual ip not added", "vip", p, "err", err)
		}
	}
}

func (a *linkActions) RemoveVIPs() {
	for _, p := range a.cfg.VirtualIPs {
		if err := a.l.DelAddr(p); err != nil {
			a.log.Error("vrrp virtual ip not removed", "vip", p, "err", err)
		}
	}
}

func (a *linkActions) GratuitousARP() {
	for _, p := range a.cfg.VirtualIPs {
		if err := a.l.GratuitousARP(p.Addr()); err != nil {
			a.log.Warn("vrrp gratuitous arp not sent", "vip", p.Addr(), "err", err)
		}
	}
}
