package vrrp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The namespace tests build, per test, a private link: a "switch"
// namespace holding a bridge, and one namespace per node with a veth
// "eth0" plugged into the bridge and an address in 10.77.0.0/24. Nothing
// touches the host's own network; everything is deleted in t.Cleanup.

const (
	testIface   = "eth0"
	testVRID    = 51
	testVIPStr  = "10.77.0.100/24"
	testTCPPort = 7777
	testAdvert  = 100 * time.Millisecond
)

var nsSeq atomic.Int32 // makes namespace names unique within this process

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root (creates network namespaces, raw sockets, netlink address changes)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipped: needs the ip command (iproute2) to create namespaces")
	}
}

// topo is one test's private network.
type topo struct {
	t    *testing.T
	ns   map[string]string     // role -> namespace name
	addr map[string]netip.Addr // role -> address on eth0
}

// newTopo creates the switch and a namespace per role with the given
// address; roles are short names such as "a", "b", "client".
func newTopo(t *testing.T, roles map[string]string) *topo {
	t.Helper()
	requireRoot(t)
	tp := &topo{t: t, ns: map[string]string{}, addr: map[string]netip.Addr{}}
	prefix := fmt.Sprintf("bvrrp%d-%d-", os.Getpid(), nsSeq.Add(1))
	sw := prefix + "sw"
	tp.netnsAdd(sw)
	tp.ip("-n", sw, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	tp.ip("-n", sw, "link", "set", "br0", "up")
	names := make([]string, 0, len(roles))
	for r := range roles {
		names = append(names, r)
	}
	slices.Sort(names)
	for i, role := range names {
		ns := prefix + role
		tp.netnsAdd(ns)
		tp.ns[role] = ns
		tp.addr[role] = netip.MustParsePrefix(roles[role]).Addr()
		port := fmt.Sprintf("p%d", i)
		tp.ip("-n", sw, "link", "add", port, "type", "veth", "peer", "name", testIface, "netns", ns)
		tp.ip("-n", sw, "link", "set", port, "master", "br0", "up")
		tp.ip("-n", ns, "addr", "add", roles[role], "dev", testIface)
		tp.ip("-n", ns, "link", "set", testIface, "up")
		tp.ip("-n", ns, "link", "set", "lo", "up")
	}
	return tp
}

func (tp *topo) netnsAdd(name string) {
	tp.t.Helper()
	tp.ip("netns", "add", name)
	tp.t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			tp.t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
}

func (tp *topo) ip(args ...string) {
	tp.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		tp.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// inNetns runs fn on an OS thread switched into namespace ns, so sockets fn
// creates live there. The thread is discarded if it cannot switch back.
func inNetns(ns string, fn func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns back: %w", err) // thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	return <-errc
}

// hasAddr reports whether role's eth0 holds a, read with netlink (the net
// package's interface listing) inside role's namespace.
func (tp *topo) hasAddr(role string, a netip.Addr) bool {
	tp.t.Helper()
	var found bool
	var lerr error
	err := inNetns(tp.ns[role], func() {
		ifi, err := net.InterfaceByName(testIface)
		if err != nil {
			lerr = err
			return
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			lerr = err
			return
		}
		for _, ad := range addrs {
			if n, ok := ad.(*net.IPNet); ok {
				if ip, _ := netip.AddrFromSlice(n.IP.To4()); ip == a {
					ones, _ := n.Mask.Size()
					found = ones == netip.MustParsePrefix(testVIPStr).Bits()
				}
			}
		}
	})
	if err = errorsJoin(err, lerr); err != nil {
		tp.t.Fatalf("addresses in %s: %v", role, err)
	}
	return found
}

// hello connects from role "client" to addr:testTCPPort and returns the
// name the node's hello server answers with.
func (tp *topo) hello(addr netip.Addr) (string, error) {
	var line string
	var derr error
	err := inNetns(tp.ns["client"], func() {
		c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(addr, testTCPPort).String(), time.Second)
		if err != nil {
			derr = err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		line, derr = bufio.NewReader(c).ReadString('\n')
	})
	return strings.TrimSpace(line), errorsJoin(err, derr)
}

func errorsJoin(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// node is a helper process running one speaker in a namespace.
type proc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *lockedBuffer

	mu     sync.Mutex
	events []event
	exited chan struct{}
}

type event struct {
	kind, arg string    // "state master", "stopping", "exited <nil>"
	at        time.Time // the helper's clock (same host)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startNode runs the test binary as a VRRP node inside role's namespace.
func (tp *topo) startNode(role string, hs helperSpec) *proc {
	t := tp.t
	t.Helper()
	hs.Name = role
	if hs.Interface == "" {
		hs.Interface = testIface
	}
	if hs.VRID == 0 {
		hs.VRID = testVRID
	}
	if hs.AdvertMS == 0 {
		hs.AdvertMS = int(testAdvert / time.Millisecond)
	}
	if hs.VIPs == nil {
		hs.VIPs = []string{testVIPStr}
	}
	hs.TCPPort = testTCPPort
	spec, err := json.Marshal(hs)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, name: role, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command("ip", "netns", "exec", tp.ns[role], exe)
	p.cmd.Env = append(os.Environ(), helperEnv+"="+string(spec))
	p.cmd.Stderr = p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.record(sc.Text())
		}
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("node %s log:\n%s", role, p.stderr.String())
		}
	})
	return p
}

func (p *proc) record(line string) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return
	}
	e := event{kind: f[0], at: time.Now()}
	switch f[0] {
	case "state":
		if len(f) == 3 {
			e.arg = f[1]
			if ns, err := strconv.ParseInt(f[2], 10, 64); err == nil {
				e.at = time.Unix(0, ns)
			}
		}
	case "stopping":
		if ns, err := strconv.ParseInt(f[1], 10, 64); err == nil && len(f) == 2 {
			e.at = time.Unix(0, ns)
		}
	default:
		e.arg = strings.Join(f[1:], " ")
	}
	p.mu.Lock()
	p.events = append(p.events, e)
	p.mu.Unlock()
}

// state is the last state the node reported ("" before any).
func (p *proc) state() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.events) - 1; i >= 0; i-- {
		if p.events[i].kind == "state" {
			return p.events[i].arg
		}
	}
	return ""
}

// waitEvent waits for the first event of kind (and arg, if not empty) at or
// after since and returns it.
func (p *proc) waitEvent(limit time.Duration, since time.Time, kind, arg string) event {
	p.t.Helper()
	end := time.Now().Add(limit)
	for {
		p.mu.Lock()
		for _, e := range p.events {
			if e.kind == kind && (arg == "" || e.arg == arg) && !e.at.Before(since) {
				p.mu.Unlock()
				return e
			}
		}
		p.mu.Unlock()
		if time.Now().After(end) {
			p.t.Fatalf("node %s: no %q %q within %v; log:\n%s", p.name, kind, arg, limit, p.stderr.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (p *proc) send(cmd string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, cmd+"\n"); err != nil {
		p.t.Fatalf("node %s: %s: %v", p.name, cmd, err)
	}
}

// kill sends SIGKILL to the node's process (by PID) and waits for it.
func (p *proc) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		p.t.Errorf("node %s (pid %d) did not die", p.name, p.cmd.Process.Pid)
	}
}

// waitExit waits for a graceful exit and returns the helper's last line.
func (p *proc) waitExit(limit time.Duration) string {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(limit):
		p.t.Fatalf("node %s did not exit within %v", p.name, limit)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.events) - 1; i >= 0; i-- {
		if p.events[i].kind == "exited" {
			return p.events[i].arg
		}
	}
	return "(no exit line)"
}

var testVIP4 = netip.MustParsePrefix(testVIPStr).Addr()

func twoNodes(t *testing.T) *topo {
	return newTopo(t, map[string]string{"a": "10.77.0.1/24", "b": "10.77.0.2/24", "client": "10.77.0.10/24"})
}

// waitHello waits until the client reaches want on the VIP.
func (tp *topo) waitHello(limit time.Duration, want string) {
	tp.t.Helper()
	end := time.Now().Add(limit)
	var got string
	var err error
	for time.Now().Before(end) {
		if got, err = tp.hello(testVIP4); err == nil && got == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	tp.t.Fatalf("client to %v: got %q (%v), want %q", testVIP4, got, err, want)
}

// TestNetnsElectionAndCrashFailover: the higher priority becomes master and
// holds the VIP; after a SIGKILL of its process the backup takes over
// within 3 × advert + skew (+ margin), and the client then reaches it.
func TestNetnsElectionAndCrashFailover(t *testing.T) {
	tp := twoNodes(t)
	a := tp.startNode("a", helperSpec{Priority: 200, Preempt: true})
	b := tp.startNode("b", helperSpec{Priority: 100, Preempt: true})
	start := time.Now()
	a.waitEvent(3*time.Second, start, "state", "master")
	b.waitEvent(time.Second, start, "state", "backup")
	time.Sleep(3 * testAdvert) // let b hear a few adverts
	if b.state() != "backup" || !tp.hasAddr("a", testVIP4) || tp.hasAddr("b", testVIP4) {
		t.Fatalf("election: a %s, b %s; VIP on a %v, on b %v", a.state(), b.state(),
			tp.hasAddr("a", testVIP4), tp.hasAddr("b", testVIP4))
	}
	tp.waitHello(2*time.Second, "a")

	killed := time.Now()
	if err := syscall.Kill(a.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e := b.waitEvent(2*time.Second, killed, "state", "master")
	took := e.at.Sub(killed)
	// Master_Down_Interval = 3 × 100ms + (156 × 100ms)/256 ≈ 361ms after a's last advert.
	t.Logf("crash failover (SIGKILL of the master, advert 100ms, backup priority 100): %v", took)
	if took > 420*time.Millisecond {
		t.Errorf("failover after SIGKILL took %v, want < 420ms", took)
	}
	if !tp.hasAddr("b", testVIP4) {
		t.Fatal("new master b does not hold the VIP")
	}
	tp.waitHello(2*time.Second, "b")
}

// TestNetnsGracefulHandover: a master stopped by ctx cancel sends priority
// 0 and removes the VIP; the backup takes over after its skew time.
func TestNetnsGracefulHandover(t *testing.T) {
	tp := twoNodes(t)
	a := tp.startNode("a", helperSpec{Priority: 200, Preempt: true})
	b := tp.startNode("b", helperSpec{Priority: 100, Preempt: true})
	start := time.Now()
	a.waitEvent(3*time.Second, start, "state", "master")
	b.waitEvent(time.Second, start, "state", "backup")
	time.Sleep(3 * testAdvert)
	tp.waitHello(2*time.Second, "a")

	a.send("stop")
	stopping := a.waitEvent(time.Second, start, "stopping", "")
	e := b.waitEvent(2*time.Second, start, "state", "master")
	took := e.at.Sub(stopping.at)
	t.Logf("graceful handover (priority-0 advert, advert 100ms, backup priority 100, skew 61ms): %v", took)
	if took > 100*time.Millisecond {
		t.Errorf("graceful handover took %v, want < 100ms", took)
	}
	if got := a.waitExit(2 * time.Second); got != "<nil>" {
		t.Fatalf("a exited with %s", got)
	}
	if tp.hasAddr("a", testVIP4) {
		t.Fatal("a kept the VIP after a graceful stop")
	}
	if !tp.hasAddr("b", testVIP4) {
		t.Fatal("b does not hold the VIP")
	}
	tp.waitHello(2*time.Second, "b")
}

// TestNetnsUnhealthyNodeDoesNotTakeVIP: the higher-priority node started
// unhealthy leaves the VIP to the lower one; healthy again it preempts;
// unhealthy again it hands back at once.
func TestNetnsUnhealthyNodeDoesNotTakeVIP(t *testing.T) {
	tp := twoNodes(t)
	a := tp.startNode("a", helperSpec{Priority: 200, Preempt: true, Unhealthy: true})
	b := tp.startNode("b", helperSpec{Priority: 100, Preempt: true})
	start := time.Now()
	b.waitEvent(3*time.Second, start, "state", "master")
	time.Sleep(10 * testAdvert)
	if a.state() != "backup" || tp.hasAddr("a", testVIP4) || !tp.hasAddr("b", testVIP4) {
		t.Fatalf("unhealthy a: state %s, VIP on a %v; want b master", a.state(), tp.hasAddr("a", testVIP4))
	}
	tp.waitHello(2*time.Second, "b")

	healthy := time.Now()
	a.send("healthy")
	a.waitEvent(2*time.Second, healthy, "state", "master")
	b.waitEvent(time.Second, healthy, "state", "backup")
	tp.waitHello(2*time.Second, "a")

	unhealthy := time.Now()
	a.send("unhealthy")
	e := b.waitEvent(2*time.Second, unhealthy, "state", "master")
	t.Logf("handover on health loss: %v", e.at.Sub(unhealthy))
	if tp.hasAddr("a", testVIP4) {
		t.Fatal("unhealthy a kept the VIP")
	}
	tp.waitHello(2*time.Second, "b")
}

// TestNetnsUnicast: the same election and handover with unicast peers
// instead of multicast.
func TestNetnsUnicast(t *testing.T) {
	tp := twoNodes(t)
	a := tp.startNode("a", helperSpec{Priority: 200, Preempt: true, Peers: []string{"10.77.0.2"}})
	b := tp.startNode("b", helperSpec{Priority: 100, Preempt: true, Peers: []string{"10.77.0.1"}})
	start := time.Now()
	a.waitEvent(3*time.Second, start, "state", "master")
	time.Sleep(5 * testAdvert)
	if b.state() != "backup" || tp.hasAddr("b", testVIP4) {
		t.Fatalf("unicast election: b %s", b.state())
	}
	a.send("stop")
	stopping := a.waitEvent(time.Second, start, "stopping", "")
	e := b.waitEvent(2*time.Second, start, "state", "master")
	t.Logf("unicast graceful handover: %v", e.at.Sub(stopping.at))
	tp.waitHello(2*time.Second, "b")
}
