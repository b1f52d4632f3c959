package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// demoPorts are the fixed ports examples/demo uses: ballast, its admin API,
// then the first app processes.
var demoPorts = []string{"127.0.0.1:8080", "127.0.0.1:9090", "127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"}

// TestE2EDemo runs the README's demo script as a user would and checks that
// ballast rotates across the three Python processes it launched, then replaces
// them with a rolling restart. It uses fixed ports, so it
// is deliberately not parallel: Go runs it while no parallel test is running.
func TestE2EDemo(t *testing.T) {
	for _, tool := range []string{"bash", "python3", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the demo needs %s, which is not installed: %v", tool, err)
		}
	}
	waitDemoPortsFree(t)
	out, err := runDemo(t)
	if err != nil {
		t.Fatalf("the demo: %v; output:\n%s", err, out)
	}

	var ports, pids []string
	for _, m := range demoResponse.FindAllStringSubmatch(out, -1) {
		pids = append(pids, m[1])
		ports = append(ports, m[2])
	}
	if len(ports) != 9 {
		t.Fatalf("want 9 responses from the app processes (6, a rolling restart, 3), got %d: %q", len(ports), ports)
	}
	// Round robin: three different processes in a row, then the same cycle again.
	if ports[0] == ports[1] || ports[1] == ports[2] || ports[0] == ports[2] {
		t.Errorf("the first three responses are not three different processes: %q", ports)
	}
	for i := 3; i < 6; i++ {
		if ports[i] != ports[i-3] || pids[i] != pids[i-3] {
			t.Errorf("response %d from %s/%s, want %s/%s (rotation)", i, pids[i], ports[i], pids[i-3], ports[i-3])
		}
	}
	// After the rolling restart, three new processes answer.
	for i := 6; i < 9; i++ {
		for j := range 3 {
			if pids[i] == pids[j] {
				t.Errorf("response %d after the rolling restart from old process %s", i, pids[i])
			}
		}
	}

	// The script stops what it started: the fixed ports are free again.
	waitDemoPortsFree(t)
}

// waitDemoPortsFree waits up to 2s for the demo's fixed ports to be free.
func waitDemoPortsFree(t *testing.T) {
	t.Helper()
	for _, addr := range demoPorts {
		for i := 0; ; i++ {
			ln, err := net.Listen("tcp", addr)
			if err == nil {
				ln.Close()
				break
			}
			if i == 100 { // 100 × 20ms
				t.Fatalf("the demo needs %s free: %v", addr, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// demoResponse is one answer of a demo backend, as the script prints it.
var demoResponse = regexp.MustCompile(`(?m)^hello from pid (\d+) \(port (90(?:0[1-9]|10))\) path=/$`)

// runDemo runs examples/demo/run.sh --once (at most 2 minutes) and returns its
// combined output and how it failed, if it did.
func runDemo(t *testing.T) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "../../examples/demo/run.sh", "--once")
	// Its own process group, so that on timeout the backends and ballast it
	// started go with it: killed by the group of the PID this test started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out

	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }) // the script's children, if any are left
	err := cmd.Wait()
	elapsed := time.Since(start)
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return out.String(), fmt.Errorf("did not finish within 2 minutes")
	case errors.As(err, &ee):
		return out.String(), fmt.Errorf("exit code %d", ee.ExitCode())
	case err != nil:
		return out.String(), err
	}
	t.Logf("demo finished in %v:\n%s", elapsed.Round(time.Millisecond), out.String())
	return out.String(), nil
}
