package vrrp

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// keepalived is a keepalived process (VRRP subsystem only) in a namespace.
type keepalived struct {
	t       *testing.T
	cmd     *exec.Cmd
	out     *lockedBuffer
	exited  chan struct{}
	vrrpPID string // file where keepalived writes its VRRP child's PID
}

// startKeepalived runs keepalived in the foreground in role's namespace
// with VRRPv3, the test VRID, VIP and 100ms adverts, and the given priority.
func (tp *topo) startKeepalived(role string, priority int) *keepalived {
	t := tp.t
	t.Helper()
	path, err := exec.LookPath("keepalived")
	if err != nil {
		t.Skip("skipped: keepalived is not installed (apt-get install keepalived)")
	}
	dir := t.TempDir()
	conf := fmt.Sprintf(`global_defs {
    router_id ka-%s
    vrrp_version 3
}
vrrp_instance VI {
    state BACKUP
    interface %s
    virtual_router_id %d
    priority %d
    advert_int %.2f
    virtual_ipaddress {
        %s
    }
}
`, role, testIface, testVRID, priority, testAdvert.Seconds(), testVIPStr)
	cf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	k := &keepalived{t: t, out: &lockedBuffer{}, exited: make(chan struct{}), vrrpPID: filepath.Join(dir, "vrrp.pid")}
	k.cmd = exec.Command("ip", "netns", "exec", tp.ns[role], path,
		"--dont-fork", "--log-console", "--vrrp",
		"-f", cf, "-p", filepath.Join(dir, "keepalived.pid"), "-r", k.vrrpPID)
	k.cmd.Stdout, k.cmd.Stderr = k.out, k.out
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = k.cmd.Wait(); close(k.exited) }()
	t.Cleanup(func() {
		k.stop()
		if t.Failed() || testing.Verbose() {
			t.Logf("keepalived log:\n%s", k.out.String())
		}
	})
	return k
}

// stop sends SIGTERM to keepalived (by PID), as its service manager would,
// and waits; SIGKILL after 5 s. Its VRRP child is killed by PID too if it
// outlives its parent.
func (k *keepalived) stop() {
	select {
	case <-k.exited:
	default:
		_ = k.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-k.exited:
		case <-time.After(5 * time.Second):
			k.t.Errorf("keepalived (pid %d) ignored SIGTERM", k.cmd.Process.Pid)
			_ = k.cmd.Process.Signal(syscall.SIGKILL)
			<-k.exited
		}
	}
	if b, err := os.ReadFile(k.vrrpPID); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
			if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.HasPrefix(string(comm), "keepalived") {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// waitLog waits until keepalived's log contains s.
func (k *keepalived) waitLog(limit time.Duration, s string) {
	k.t.Helper()
	end := time.Now().Add(limit)
	for !strings.Contains(k.out.String(), s) {
		if time.Now().After(end) {
			k.t.Fatalf("keepalived log has no %q within %v:\n%s", s, limit, k.out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitAddr waits until role holds the VIP (want) or not and returns how long it took.
func (tp *topo) waitAddr(limit time.Duration, role string, want bool) time.Duration {
	tp.t.Helper()
	start := time.Now()
	for tp.hasAddr(role, testVIP4) != want {
		if time.Since(start) > limit {
			tp.t.Fatalf("VIP on %s: want %v within %v", role, want, limit)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

// TestKeepalivedInterop runs keepalived 2.x (VRRPv3) against the speaker:
// the higher priority wins in both directions, and each hands over to the
// other on a graceful stop (priority-0 advertisement understood both ways).
func TestKeepalivedInterop(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("keepalived"); err != nil {
		t.Skip("skipped: keepalived is not installed (apt-get install keepalived)")
	}
	t.Run("keepalived higher", func(t *testing.T) {
		tp := newTopo(t, map[string]string{"ka": "10.77.0.1/24", "go": "10.77.0.2/24"})
		k := tp.startKeepalived("ka", 200)
		g := tp.startNode("go", helperSpec{Priority: 100, Preempt: true})
		start := time.Now()
		k.waitLog(3*time.Second, "Entering MASTER STATE")
		g.waitEvent(time.Second, start, "state", "backup")
		time.Sleep(10 * testAdvert)
		if g.state() != "backup" || tp.hasAddr("go", testVIP4) || !tp.hasAddr("ka", testVIP4) {
			t.Fatalf("keepalived 200 vs ballast 100: ballast %s, VIP on keepalived %v",
				g.state(), tp.hasAddr("ka", testVIP4))
		}
		stopped := time.Now()
		k.stop() // keepalived sends priority 0 on SIGTERM
		e := g.waitEvent(2*time.Second, stopped, "state", "master")
		t.Logf("keepalived stopped -> ballast master after %v", e.at.Sub(stopped))
		tp.waitAddr(time.Second, "go", true)
	})
	t.Run("ballast higher", func(t *testing.T) {
		tp := newTopo(t, map[string]string{"ka": "10.77.0.1/24", "go": "10.77.0.2/24"})
		k := tp.startKeepalived("ka", 100)
		g := tp.startNode("go", helperSpec{Priority: 200, Preempt: true})
		start := time.Now()
		g.waitEvent(3*time.Second, start, "state", "master")
		k.waitLog(3*time.Second, "Entering BACKUP STATE")
		time.Sleep(10 * testAdvert)
		if g.state() != "master" || !tp.hasAddr("go", testVIP4) || tp.hasAddr("ka", testVIP4) ||
			strings.Contains(k.out.String(), "Entering MASTER STATE") {
			t.Fatalf("ballast 200 vs keepalived 100: ballast %s, VIP on keepalived %v, keepalived log:\n%s",
				g.state(), tp.hasAddr("ka", testVIP4), k.out.String())
		}
		if s := k.out.String(); strings.Contains(s, "checksum") || strings.Contains(s, "address") && strings.Contains(s, "mismatch") {
			t.Fatalf("keepalived complains about our adverts:\n%s", s)
		}
		g.send("stop")
		stopping := g.waitEvent(time.Second, start, "stopping", "")
		took := tp.waitAddr(2*time.Second, "ka", true)
		t.Logf("ballast stopped -> keepalived holds the VIP after ≤ %v (since %v)", took, time.Since(stopping.at))
		k.waitLog(time.Second, "Entering MASTER STATE")
	})
}
