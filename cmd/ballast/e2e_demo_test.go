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

// demoPorts are the fixed ports examples/demo uses: ballast, then the backends.
var demoPorts = []string{"127.0.0.1:8080", "127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"}

// TestE2EDemo runs the README's demo script as a user would and checks that
// ballast rotates across its three Python backends. It uses fixed ports, so it
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

	var names []string
	for _, m := range demoResponse.FindAllStringSubmatch(out, -1) {
		if m[1][len(m[1])-1] != m[2][len(m[2])-1] {
			t.Errorf("%s answered from port %s", m[1], m[2])
		}
		names = append(names, m[1])
	}
	if len(names) != 6 {
		t.Fatalf("want 6 responses from the backends, got %d: %q", len(names), names)
	}
	// Round robin: three different backends in a row, then the same cycle again.
	if names[0] == names[1] || names[1] == names[2] || names[0] == names[2] {
		t.Errorf("the first three responses are not three different backends: %q", names)
	}
	for i := 3; i < len(names); i++ {
		if names[i] != names[i-3] {
			t.Errorf("response %d from %s, want %s (rotation): %q", i, names[i], names[i-3], names)
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
var demoResponse = regexp.MustCompile(`(?m)^hello from (backend-[123]) \(port (900[123])\) path=/ x-forwarded-for=127\.0\.0\.1$`)

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
