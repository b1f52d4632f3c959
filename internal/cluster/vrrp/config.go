package vrrp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Config is one virtual router. The caller converts it from the user's
// configuration (internal/config.VRRP) and applies that schema's defaults.
type Config struct {
	// Interface is the network interface that sends and receives the
	// advertisements and holds the virtual addresses. Its first IPv4
	// address that is not a virtual one is the primary address: the
	// advertisements' source and the tie-breaker between equal priorities.
	Interface string
	// VRID is the virtual router identifier, 1..255, the same on every node
	// of the group and unique on the link.
	VRID int
	// Priority is this node's claim, 1..255; the highest usable node is
	// master. 255 means the node owns the addresses and is master at once.
	Priority int
	// AdvertInterval is the time between the master's advertisements,
	// 10ms..40.95s in steps of 10ms (it is sent in centiseconds). Zero means
	// 1s. Backups adopt the master's interval.
	AdvertInterval time.Duration
	// VirtualIPs are the floating IPv4 addresses with their prefix length;
	// 1..255 of them. They must equal the peers' set: advertisements that
	// list another set are dropped (as keepalived does).
	VirtualIPs []netip.Prefix
	// Preempt lets this node take over from a master of lower priority.
	// The zero value is false; the user-facing default (true) is applied
	// by the caller.
	Preempt bool
	// PreemptDelay disables preemption for this long after Run starts.
	PreemptDelay time.Duration
	// UnicastPeers, when set, are the other nodes' IPv4 addresses.
	// Advertisements go to each of them instead of 224.0.0.18, and only
	// advertisements from them are accepted.
	UnicastPeers []netip.Addr
	// OnStateChange, when set, is called from Run's goroutine after every
	// state change, with the new state. It must not block.
	OnStateChange func(State)
}

const (
	minInterval     = 10 * time.Millisecond
	maxInterval     = maxIntervalCS * 10 * time.Millisecond
	defaultInterval = time.Second
)

// withDefaults returns cfg with zero values replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.AdvertInterval == 0 {
		c.AdvertInterval = defaultInterval
	}
	return c
}

// validate returns every problem with c at once.
func (c Config) validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("vrrp: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Interface == "" {
		bad("interface", "required")
	}
	if c.VRID < 1 || c.VRID > 255 {
		bad("virtual_router_id", "%d out of range 1..255", c.VRID)
	}
	if c.Priority < 1 || c.Priority > 255 {
		bad("priority", "%d out of range 1..255", c.Priority)
	}
	if c.AdvertInterval < minInterval || c.AdvertInterval > maxInterval || c.AdvertInterval%minInterval != 0 {
		bad("advert_interval", "%v must be 10ms..40.95s in steps of 10ms", c.AdvertInterval)
	}
	if c.PreemptDelay < 0 {
		bad("preempt_delay", "%v is negative", c.PreemptDelay)
	}
	if len(c.VirtualIPs) == 0 || len(c.VirtualIPs) > 255 {
		bad("virtual_ips", "%d addresses, want 1..255", len(c.VirtualIPs))
	}
	seen := map[netip.Addr]bool{}
	for i, p := range c.VirtualIPs {
		switch {
		case !p.IsValid() || !p.Addr().Is4():
			bad(fmt.Sprintf("virtual_ips[%d]", i), "%v is not an IPv4 prefix (IPv6 is not supported)", p)
		case seen[p.Addr()]:
			bad(fmt.Sprintf("virtual_ips[%d]", i), "%v is listed twice", p.Addr())
		}
		seen[p.Addr()] = true
	}
	for i, a := range c.UnicastPeers {
		if !a.Is4() {
			bad(fmt.Sprintf("unicast_peers[%d]", i), "%v is not an IPv4 address", a)
		} else if slices.Contains(c.UnicastPeers[:i], a) {
			bad(fmt.Sprintf("unicast_peers[%d]", i), "%v is listed twice", a)
		}
	}
	return errors.Join(errs...)
}

// vipAddrs returns the virtual addresses without prefix length.
func (c Config) vipAddrs() []netip.Addr {
	out := make([]netip.Addr, len(c.VirtualIPs))
	for i, p := range c.VirtualIPs {
		out[i] = p.Addr()
	}
	return out
}
