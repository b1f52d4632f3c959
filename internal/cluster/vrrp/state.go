package vrrp

import (
	"net/netip"
	"time"
)

// State is a VRRP router state (RFC 5798 §6.4).
type State int32

// The three states of RFC 5798 §6.4.
const (
	// Initialize is the state before Start and after Stop.
	Initialize State = iota
	// Backup listens for the master and takes over when it goes silent.
	Backup
	// Master holds the virtual addresses and advertises.
	Master
)

// String returns the lower-case name of s.
func (s State) String() string {
	switch s {
	case Initialize:
		return "initialize"
	case Backup:
		return "backup"
	case Master:
		return "master"
	}
	return "unknown"
}

// Actions are the state machine's side effects, implemented by the caller
// (the Speaker on a real interface, a recorder in tests). They are called
// synchronously from the Machine's methods and must not call back into it.
type Actions interface {
	// SendAdvert sends one advertisement with the given priority and this
	// node's advertisement interval and addresses.
	SendAdvert(priority uint8)
	// AddVIPs configures the virtual addresses on the interface.
	AddVIPs()
	// RemoveVIPs removes the virtual addresses; removing an absent one is
	// not an error.
	RemoveVIPs()
	// GratuitousARP announces every virtual address once.
	GratuitousARP()
}

// Advert is an accepted advertisement as the state machine sees it.
type Advert struct {
	// Src is the sender's primary address (the IP source).
	Src netip.Addr
	// Priority is the sender's priority; 0 means it releases mastership.
	Priority uint8
	// Interval is the sender's advertisement interval.
	Interval time.Duration
}

// MachineConfig is what the state machine needs to know about this node.
type MachineConfig struct {
	// Priority is this node's priority, 1..255; 255 is the address owner,
	// which becomes master at once on start.
	Priority uint8
	// AdvertInterval is the time between this node's advertisements while
	// it is master.
	AdvertInterval time.Duration
	// Preempt lets this node, as a healthy backup, ignore a master of lower
	// priority and so take over from it after Master_Down_Interval.
	Preempt bool
	// PreemptDelay disables preemption for this long after Start.
	PreemptDelay time.Duration
	// Primary is this node's primary address, which breaks ties between two
	// masters of equal priority (the higher address wins).
	Primary netip.Addr
}

// Gratuitous ARP schedule on becoming master, as keepalived does it by
// default (garp_master_repeat 5, garp_master_refresh after garp_master_delay 5s).
const (
	garpRepeat = 5
	garpDelay  = 5 * time.Second
)

// Machine is the RFC 5798 §6.4 state machine for one virtual router.
//
// It is pure logic: every method takes the current time, side effects go
// out through Actions, and its timers are reported by Deadline for the
// caller to wake it with Tick. It is not safe for concurrent use; one
// goroutine (the Speaker's loop, or a test with a fake clock) drives it.
//
// Health: while unhealthy (SetHealthy(false)) the node never becomes master.
// It stays a silent backup — backups do not advertise, so there is no
// lowered priority on the wire — and keeps following the master's
// advertisements without preempting. A master that becomes unhealthy
// releases at once: a priority-0 advertisement (the backup takes over after
// Skew_Time), its addresses removed, then backup. If the master-down timer
// expires while unhealthy the node notes that there is no master; when it
// becomes healthy again it takes over after Skew_Time, unless a master
// appears first. A healthy node with Preempt takes over from a lower master
// as a backup normally does.
type Machine struct {
	cfg     MachineConfig
	act     Actions
	state   State
	healthy bool
	// noMaster: the master-down timer expired while unhealthy.
	noMaster            bool
	startedAt           time.Time
	masterAdverInterval time.Duration
	// Timers as deadlines; the zero time means stopped.
	adverTimer, masterDownTimer, garpTimer time.Time
}

// NewMachine returns a machine in Initialize; Start begins the protocol.
func NewMachine(cfg MachineConfig, act Actions) *Machine {
	return &Machine{cfg: cfg, act: act, healthy: true, masterAdverInterval: cfg.AdvertInterval}
}

// State returns the current state.
func (m *Machine) State() State { return m.state }

// Healthy reports the last value given to Start or SetHealthy.
func (m *Machine) Healthy() bool { return m.healthy }

// MasterAdverInterval is the advertisement interval of the current master
// as learnt from its advertisements (VRRPv3 backups adopt it).
func (m *Machine) MasterAdverInterval() time.Duration { return m.masterAdverInterval }

// SkewTime is ((256 − Priority) × Master_Adver_Interval) / 256.
func (m *Machine) SkewTime() time.Duration {
	return time.Duration(256-int64(m.cfg.Priority)) * m.masterAdverInterval / 256
}

// MasterDownInterval is 3 × Master_Adver_Interval + Skew_Time: how long a
// backup waits without advertisements before it takes over.
func (m *Machine) MasterDownInterval() time.Duration {
	return 3*m.masterAdverInterval + m.SkewTime()
}

// Deadline returns the earliest running timer, or the zero time when none
// runs. The caller calls Tick at (or after) that time.
func (m *Machine) Deadline() time.Time {
	var d time.Time
	for _, t := range []time.Time{m.masterDownTimer, m.adverTimer, m.garpTimer} {
		if !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	return d
}

// Start is the Startup event. Addresses left behind by a crashed run are
// removed first; then the address owner (priority 255) becomes master at
// once if healthy, and any other node becomes backup and waits
// Master_Down_Interval for a master.
func (m *Machine) Start(now time.Time, healthy bool) {
	if m.state != Initialize {
		return
	}
	m.healthy = healthy
	m.noMaster = false
	m.startedAt = now
	m.act.RemoveVIPs()
	if m.cfg.Priority == 255 && healthy {
		m.becomeMaster(now)
		return
	}
	m.becomeBackup(now, m.cfg.AdvertInterval)
}

// Stop is the Shutdown event: a master sends a priority-0 advertisement so
// that a backup takes over after Skew_Time. The addresses are removed in
// every state (removing absent ones is harmless) and the machine returns to
// Initialize with no timer running.
func (m *Machine) Stop(now time.Time) {
	if m.state == Master {
		m.act.SendAdvert(0)
	}
	if m.state != Initialize {
		m.act.RemoveVIPs()
	}
	m.state = Initialize
	m.stopTimers()
}

// Tick fires every timer whose deadline is not after now.
func (m *Machine) Tick(now time.Time) {
	if expired(m.masterDownTimer, now) {
		m.masterDownTimer = time.Time{}
		if m.state == Backup {
			if m.healthy {
				m.becomeMaster(now)
			} else {
				m.noMaster = true
			}
		}
	}
	if expired(m.adverTimer, now) && m.state == Master {
		m.act.SendAdvert(m.cfg.Priority)
		m.adverTimer = now.Add(m.cfg.AdvertInterval)
	}
	if expired(m.garpTimer, now) {
		m.garpTimer = time.Time{}
		if m.state == Master {
			m.garp()
		}
	}
}

// Receive handles an advertisement that passed the receive Filter.
func (m *Machine) Receive(now time.Time, a Advert) {
	switch m.state {
	case Backup:
		switch {
		case a.Priority == 0:
			// The master is leaving: take over after Skew_Time only, so
			// that the backup of highest priority answers first.
			m.noMaster = false
			m.masterDownTimer = now.Add(m.SkewTime())
		case !m.preempting(now) || a.Priority >= m.cfg.Priority:
			m.noMaster = false
			m.masterAdverInterval = a.Interval
			m.masterDownTimer = now.Add(m.MasterDownInterval())
		default:
			// A lower master while we preempt: ignore it, so the
			// master-down timer expires and we take over.
		}
	case Master:
		switch {
		case a.Priority == 0:
			// Another master left: assert ourselves at once.
			m.act.SendAdvert(m.cfg.Priority)
			m.adverTimer = now.Add(m.cfg.AdvertInterval)
		case a.Priority > m.cfg.Priority ||
			(a.Priority == m.cfg.Priority && a.Src.Compare(m.cfg.Primary) > 0):
			m.act.RemoveVIPs()
			m.becomeBackup(now, a.Interval)
		}
	}
}

// SetHealthy records whether this node may be master (its tracked pools
// have a healthy backend). See Machine for what each change does.
func (m *Machine) SetHealthy(now time.Time, healthy bool) {
	if healthy == m.healthy {
		return
	}
	m.healthy = healthy
	switch {
	case m.state == Master && !healthy:
		m.act.SendAdvert(0)
		m.act.RemoveVIPs()
		m.becomeBackup(now, m.cfg.AdvertInterval)
	case m.state == Backup && healthy && m.noMaster:
		m.noMaster = false
		m.masterDownTimer = now.Add(m.SkewTime())
	}
}

// becomeMaster adds the addresses, advertises, and announces the addresses
// with gratuitous ARP now and once more garpDelay later.
func (m *Machine) becomeMaster(now time.Time) {
	m.state = Master
	m.noMaster = false
	m.masterDownTimer = time.Time{}
	m.act.AddVIPs()
	m.act.SendAdvert(m.cfg.Priority)
	m.garp()
	m.adverTimer = now.Add(m.cfg.AdvertInterval)
	m.garpTimer = now.Add(garpDelay)
}

// becomeBackup starts waiting for a master that advertises every interval.
func (m *Machine) becomeBackup(now time.Time, interval time.Duration) {
	m.state = Backup
	m.stopTimers()
	m.masterAdverInterval = interval
	m.masterDownTimer = now.Add(m.MasterDownInterval())
}

func (m *Machine) garp() {
	for range garpRepeat {
		m.act.GratuitousARP()
	}
}

// preempting reports whether a backup ignores a master of lower priority.
func (m *Machine) preempting(now time.Time) bool {
	return m.cfg.Preempt && m.healthy && !now.Before(m.startedAt.Add(m.cfg.PreemptDelay))
}

func (m *Machine) stopTimers() {
	m.adverTimer, m.masterDownTimer, m.garpTimer = time.Time{}, time.Time{}, time.Time{}
}

func expired(t, now time.Time) bool { return !t.IsZero() && !now.Before(t) }
