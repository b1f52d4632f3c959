package main

// End-to-end tests: they build the real ballast binary once (without -race, so
// its memory figures are those users see) and drive it as a user would, with
// real backends on 127.0.0.1, real signals and real config files.

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ballastBin is the path of the binary TestMain builds.
var ballastBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	flag.Parse()
	dir, err := os.MkdirTemp("", "ballast-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ballastBin = filepath.Join(dir, "ballast")
	start := time.Now()
	build := exec.Command("go", "build", "-o", ballastBin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build: %v\n%s", err, out)
		return 1
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "e2e: built %s in %v\n", ballastBin, time.Since(start).Round(time.Millisecond))
	}
	return m.Run()
}

// syncBuffer is a bytes.Buffer safe for the os/exec copier goroutine and the
// test reading it at the same time.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is one running ballast process.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout syncBuffer
	stderr syncBuffer
	done   chan struct{} // closed when the process has exited and its output is read
	err    error         // Wait's result, valid once done is closed
}

// startBallast starts the binary with args in dir ("" for the test's working
// directory). The process is killed by its PID when the test ends, if it is
// still running.
func startBallast(t *testing.T, dir string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, done: make(chan struct{})}
	p.cmd = exec.Command(ballastBin, args...)
	p.cmd.Dir = dir
	p.cmd.Stdout = &p.stdout
	p.cmd.Stderr = &p.stderr
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start ballast: %v", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			p.cmd.Process.Kill() // by PID: only the process this test started
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Errorf("ballast (pid %d) did not exit after SIGKILL", p.cmd.Process.Pid)
			}
		}
		if t.Failed() {
			t.Logf("ballast %v stderr:\n%s", args, p.stderr.String())
		}
	})
	return p
}

// pid is the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process.
func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("send %v to ballast: %v", sig, err)
	}
}

// wait waits up to timeout for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("ballast did not exit within %v; stderr:\n%s", timeout, p.stderr.String())
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode() // -1 when killed by a signal
	}
	p.t.Fatalf("wait for ballast: %v", p.err)
	return -1
}

// waitListening waits until addr accepts TCP connections, failing the test if
// the process exits first or it takes longer than 10s.
func (p *proc) waitListening(addr string) {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if p.exited() {
			p.t.Fatalf("ballast exited before listening on %s; stderr:\n%s", addr, p.stderr.String())
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("ballast not listening on %s after 10s: %v; stderr:\n%s", addr, err, p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitStderr waits up to timeout for the process's stderr to contain every
// one of subs.
func (p *proc) waitStderr(timeout time.Duration, subs ...string) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := p.stderr.String()
		missing := ""
		for _, s := range subs {
			if !strings.Contains(out, s) {
				missing = s
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("ballast stderr lacks %q after %v:\n%s", missing, timeout, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runBallast runs the binary to completion (at most 30s) and returns its exit
// code, stdout and stderr.
func runBallast(t *testing.T, dir string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	p := startBallast(t, dir, args...)
	code = p.wait(30 * time.Second)
	return code, p.stdout.String(), p.stderr.String()
}

// writeFile writes a file atomically (temp file and rename), so a process
// reading it on SIGHUP never sees half of it.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// httpConfig is a config with one HTTP listener on listen routing everything
// to pool "app" with the given backends.
func httpConfig(listen string, backends ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "shutdown_timeout: 10s\nlisteners:\n  - name: web\n    listen: %s\n    routes:\n      - pool: app\npools:\n  app:\n    algorithm: round_robin\n    backends:\n", listen)
	for _, a := range backends {
		fmt.Fprintf(&b, "      - addr: %s\n", a)
	}
	return b.String()
}

// lines splits output into its non-empty lines.
func lines(s string) []string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}
