package main

import (
	"net"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"ballast/internal/testutil"
)

// brokenConfig has one of each kind of problem: a bad duration, a malformed
// listen address, an unknown field, a route to an undefined pool, an unknown
// algorithm, a duplicate backend, a zero weight, consistent_hash without
// hash_on.
const brokenConfig = `shutdown_timeout: 30 parsecs
listeners:
  - name: web
    listen: 127.0.0.1
    protocl: http
    routes:
      - path_prefix: /api
        pool: nowhere
      - pool: app
pools:
  app:
    algorithm: fastest
    backends:
      - addr: 127.0.0.1:8001
      - addr: 127.0.0.1:8001
      - addr: 127.0.0.1:8002
        weight: 0
  hashed:
    algorithm: consistent_hash
    backends:
      - addr: 127.0.0.1:8003
`

// brokenProblems is what ballast must print for brokenConfig saved as
// broken.yaml: every problem, one per line, in line order.
var brokenProblems = []string{
	`broken.yaml:1: shutdown_timeout: invalid duration "30 parsecs" (use a number with a unit: 250ms, 5s, 1m, 1h)`,
	`broken.yaml:4: listeners[0].listen: invalid address "127.0.0.1" (want host:port, like 127.0.0.1:8080)`,
	`broken.yaml:5: listeners[0].protocl: unknown field (did you mean "protocol"?)`,
	`broken.yaml:8: listeners[0].routes[0].pool: undefined pool "nowhere"`,
	`broken.yaml:12: pools.app.algorithm: unknown algorithm "fastest" (valid: round_robin, weighted_round_robin, least_conn, weighted_least_conn, least_time, p2c, random, ip_hash, consistent_hash)`,
	`broken.yaml:15: pools.app.backends[1].addr: duplicate backend 127.0.0.1:8001 (first at line 14)`,
	`broken.yaml:17: pools.app.backends[2].weight: weight must be between 1 and 1000`,
	`broken.yaml:19: pools.hashed.algorithm: consistent_hash needs hash_on`,
}

func TestE2EValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "broken.yaml"), brokenConfig)

	code, stdout, stderr := runBallast(t, dir, "validate", "-c", "broken.yaml")
	if code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	if stdout != "" {
		t.Errorf("stdout = %q, want nothing", stdout)
	}
	if got := lines(stderr); !slices.Equal(got, brokenProblems) {
		t.Errorf("stderr lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(brokenProblems, "\n"))
	}
}

func TestE2EValidateAcceptsGoodConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "good.yaml"), httpConfig("127.0.0.1:8080", "127.0.0.1:8001", "127.0.0.1:8002"))

	code, stdout, stderr := runBallast(t, dir, "validate", "-c", "good.yaml")
	if code != 0 || stdout != "good.yaml: ok\n" || stderr != "" {
		t.Errorf("validate good.yaml: exit %d, stdout %q, stderr %q; want 0, %q, nothing", code, stdout, stderr, "good.yaml: ok\n")
	}
}

// TestE2ERunRejectsBrokenConfig: run validates the whole file before it binds
// anything, and prints exactly what validate prints. The listener's port is
// held by the test so that a premature bind would show up as a bind error.
func TestE2ERunRejectsBrokenConfig(t *testing.T) {
	t.Parallel()
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	dir := t.TempDir()
	cfg := strings.Replace(brokenConfig, "listen: 127.0.0.1\n", "listen: "+held.Addr().String()+"\n", 1)
	writeFile(t, filepath.Join(dir, "broken.yaml"), cfg)
	want := slices.Delete(slices.Clone(brokenProblems), 1, 2) // the listen address is fine here

	code, stdout, stderr := runBallast(t, dir, "run", "-c", "broken.yaml")
	if code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	if got := lines(stderr); !slices.Equal(got, want) {
		t.Errorf("stderr lines:\n%s\nwant exactly:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if stdout != "" {
		t.Errorf("stdout = %q, want nothing", stdout)
	}
}

func TestE2EVersion(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runBallast(t, "", "version")
	if code != 0 || stderr != "" {
		t.Fatalf("version: exit %d, stderr %q", code, stderr)
	}
	re := regexp.MustCompile(`^ballast (\S+) commit (\S+)( \(modified\))? (go\S+) (\S+/\S+)\n$`)
	m := re.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("version output %q does not match %s", stdout, re)
	}
	if m[4] != runtime.Version() {
		t.Errorf("go version = %q, want %q (the toolchain that built it)", m[4], runtime.Version())
	}
	if want := runtime.GOOS + "/" + runtime.GOARCH; m[5] != want {
		t.Errorf("platform = %q, want %q", m[5], want)
	}
	t.Logf("ballast version: %s", strings.TrimSpace(stdout))
}

func TestE2EUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want string // on stderr, besides the usage text
	}{
		{"unknown command", []string{"frobnicate"}, `ballast: unknown command "frobnicate"`},
		{"no command", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runBallast(t, "", tc.args...)
			if code != 2 {
				t.Errorf("exit code = %d, want 2", code)
			}
			if !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "usage: ballast <command>") {
				t.Errorf("stderr = %q, want %q and the usage", stderr, tc.want)
			}
			for _, cmd := range []string{"run -c FILE", "validate -c FILE", "version"} {
				if !strings.Contains(stderr, cmd) {
					t.Errorf("usage does not mention %q:\n%s", cmd, stderr)
				}
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
		})
	}
}

// TestE2EListenAddressInUse: a port another process holds is a one-line error
// naming the address and the cause, exit 1, and no Go stack trace.
func TestE2EListenAddressInUse(t *testing.T) {
	t.Parallel()
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	addr := held.Addr().String()
	dir := t.TempDir()
	backend := testutil.NewBackend(t, "a", nil)
	writeFile(t, filepath.Join(dir, "busy.yaml"), httpConfig(addr, backend.Addr()))

	code, stdout, stderr := runBallast(t, dir, "run", "-c", "busy.yaml")
	if code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	out := stdout + stderr
	if strings.Contains(out, "goroutine") || strings.Contains(out, "panic") {
		t.Errorf("output has a Go stack trace:\n%s", out)
	}
	var errLines []string
	for _, l := range lines(out) {
		if strings.Contains(l, "cannot listen on") {
			errLines = append(errLines, l)
		}
	}
	if len(errLines) != 1 {
		t.Fatalf("want exactly one line with %q, got %d; output:\n%s", "cannot listen on", len(errLines), out)
	}
	l := errLines[0]
	if !strings.Contains(l, addr) || !strings.Contains(l, "address already in use") {
		t.Errorf("error line %q does not name %s and %q", l, addr, "address already in use")
	}
	if all := lines(stderr); all[len(all)-1] != l {
		t.Errorf("the bind error should be the last thing printed; stderr:\n%s", stderr)
	}
	t.Logf("bind error: %s", l)
}
