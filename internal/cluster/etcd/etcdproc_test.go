package etcd

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Real etcd members for the tests: Debian's etcd-server package (etcd 3.4,
// /usr/bin/etcd). Every member runs on free 127.0.0.1 ports with its own data
// dir and is stopped by PID at cleanup.

// etcdBinary returns the etcd server's path, or skips the test saying how to
// get it.
func etcdBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("etcd"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/etcd"); err == nil {
		return "/usr/bin/etcd"
	}
	t.Skip("SKIP: needs a real etcd server: install Debian's etcd-server package (apt-get install etcd-server)")
	return ""
}

// member is one etcd server process.
type member struct {
	t         *testing.T
	bin       string
	name      string
	dataDir   string
	clientURL string // http://127.0.0.1:port, or https:// with TLS
	peerURL   string
	cluster   string   // --initial-cluster
	extra     []string // more flags (TLS)
	health    *http.Client
	logPath   string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	runs int
}

// memberOpts change how members are started.
type memberOpts struct {
	tls        *testPKI // serve clients over TLS, verify client certificates
	clientPort int      // fixed client port (single member only); 0 = free
}

// freePorts returns n currently free TCP ports on 127.0.0.1.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// startCluster starts n members forming one cluster and waits until every
// one reports healthy. A port taken by someone else between choosing and
// binding makes it try again with new ports (3 times at most).
func startCluster(t *testing.T, n int, o memberOpts) []*member {
	t.Helper()
	bin := etcdBinary(t)
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		ms := newMembers(t, bin, n, o)
		for _, m := range ms {
			if err := m.start(); err != nil {
				t.Fatal(err)
			}
		}
		lastErr = nil
		for _, m := range ms {
			if err := m.waitHealthy(20 * time.Second); err != nil {
				lastErr = err
				break
			}
		}
		if lastErr == nil {
			return ms
		}
		inUse := false
		for _, m := range ms {
			m.kill()
			inUse = inUse || strings.Contains(m.logTail(), "address already in use")
		}
		if !inUse || o.clientPort != 0 {
			break
		}
		t.Logf("etcd: a port was taken meanwhile; trying again (%v)", lastErr)
	}
	t.Fatalf("etcd cluster of %d did not start: %v", n, lastErr)
	return nil
}

// newMembers prepares (does not start) n members with free ports.
func newMembers(t *testing.T, bin string, n int, o memberOpts) []*member {
	ports := freePorts(t, 2*n)
	if o.clientPort != 0 {
		ports[0] = o.clientPort
	}
	scheme := "http"
	if o.tls != nil {
		scheme = "https"
	}
	dir := t.TempDir()
	ms := make([]*member, n)
	var cluster []string
	for i := range n {
		m := &member{
			t:         t,
			bin:       bin,
			name:      fmt.Sprintf("m%d", i),
			clientURL: fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[2*i]),
			peerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			health:    &http.Client{Timeout: time.Second},
		}
		// etcd creates the data dir itself, with the 0700 it insists on.
		m.dataDir = filepath.Join(dir, m.name+".etcd")
		m.logPath = filepath.Join(dir, m.name+".log")
		if o.tls != nil {
			m.extra = []string{
				"--cert-file", o.tls.serverCert, "--key-file", o.tls.serverKey,
				"--trusted-ca-file", o.tls.caFile, "--client-cert-auth",
			}
			m.health.Transport = &http.Transport{TLSClientConfig: o.tls.clientTLS(t)}
		}
		cluster = append(cluster, m.name+"="+m.peerURL)
		ms[i] = m
	}
	for _, m := range ms {
		m.cluster = strings.Join(cluster, ",")
	}
	t.Cleanup(func() {
		for _, m := range ms {
			m.stop()
			if t.Failed() {
				t.Logf("etcd member %s log (tail):\n%s", m.name, m.logTail())
			}
		}
	})
	return ms
}

// start runs the member's process (again, after a kill: same ports, same data).
func (m *member) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	args := []string{
		"--name", m.name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", m.clientURL,
		"--advertise-client-urls", m.clientURL,
		"--listen-peer-urls", m.peerURL,
		"--initial-advertise-peer-urls", m.peerURL,
		"--initial-cluster", m.cluster,
		"--initial-cluster-state", "new",
		"--initial-cluster-token", "ballast-test",
		"--logger", "zap",
		"--log-outputs", "stderr",
	}
	args = append(args, m.extra...)
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(m.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") { // the flags above say everything
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start etcd %s: %w", m.name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	m.cmd, m.done = cmd, done
	m.runs++
	return nil
}

// waitHealthy polls GET /health until etcd says it is serving with a leader.
func (m *member) waitHealthy(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-m.exited():
			return fmt.Errorf("etcd %s exited while starting", m.name)
		default:
		}
		resp, err := m.health.Get(m.clientURL + "/health")
		if err == nil {
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			resp.Body.Close()
			if strings.Contains(b.String(), `"health":"true"`) {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("etcd %s not healthy after %v", m.name, limit)
}

// exited returns a channel closed once the current process has exited.
func (m *member) exited() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.done
}

// kill ends the process with SIGKILL (a crash) and waits for it.
func (m *member) kill() {
	m.signal(syscall.SIGKILL, 5*time.Second)
}

// stop ends the process with SIGTERM, then SIGKILL after 5s.
func (m *member) stop() {
	if !m.signal(syscall.SIGTERM, 5*time.Second) {
		m.kill()
	}
}

// signal sends sig to the member's PID and waits up to limit for it to exit.
func (m *member) signal(sig syscall.Signal, limit time.Duration) bool {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.mu.Unlock()
	if cmd == nil {
		return true
	}
	select {
	case <-done:
		return true
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return true
	case <-time.After(limit):
		return false
	}
}

// logTail is the end of the member's output, for failure reports.
func (m *member) logTail() string {
	b, _ := os.ReadFile(m.logPath)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// endpoints lists the members' client URLs.
func endpoints(ms ...*member) []string {
	var eps []string
	for _, m := range ms {
		eps = append(eps, m.clientURL)
	}
	return eps
}

// testLogger logs through t, so a failing test shows the store's story.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// openStore opens a Store on eps and closes it at cleanup.
func openStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waitSnapshot reads ch until a Snapshot satisfies ok, or fails the test
// after limit. It returns that Snapshot and how long it took.
func waitSnapshot(t *testing.T, ch <-chan Snapshot, limit time.Duration, what string, ok func(Snapshot) bool) (Snapshot, time.Duration) {
	t.Helper()
	start := time.Now()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	var last Snapshot
	for {
		select {
		case snap, open := <-ch:
			if !open {
				t.Fatalf("%s: watch channel closed", what)
			}
			last = snap
			if ok(snap) {
				return snap, time.Since(start)
			}
		case <-timer.C:
			t.Fatalf("%s: not seen within %v; last snapshot: %+v", what, limit, last)
		}
	}
}

// find returns pool's backend addr in snap.
func find(snap Snapshot, pool, addr string) (Backend, bool) {
	for _, b := range snap.Pools[pool] {
		if b.Addr == addr {
			return b, true
		}
	}
	return Backend{}, false
}

// waitFor polls cond every 20ms until it holds or limit passes; it returns
// the time it took and whether cond held.
func waitFor(limit time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < limit {
		if cond() {
			return time.Since(start), true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start), cond()
}

// clientTLS is the TLS config of a client holding the test client certificate.
func (p *testPKI) clientTLS(t *testing.T) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(p.clientCert, p.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{cert}}
}
