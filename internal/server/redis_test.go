package server

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ballast/internal/backend"
	"ballast/internal/testutil"
)

// redisServer is a redis-server process of the test's own, on 127.0.0.1.
type redisServer struct {
	cmd    *exec.Cmd
	port   string
	log    string        // its log file
	exited chan struct{} // closed once the process has exited and been reaped
}

// startRedis starts redis-server on a free port, without persistence, in its
// own directory, and waits until it answers PING. It is killed when the test
// ends, if the test has not killed it already.
func startRedis(t *testing.T, server, cli string) *redisServer {
	t.Helper()
	dir := t.TempDir()
	_, port, _ := net.SplitHostPort(testutil.FreeAddr(t))
	r := &redisServer{port: port, log: filepath.Join(dir, "redis.log"), exited: make(chan struct{})}
	r.cmd = exec.Command(server, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", r.log)
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.cmd.Wait(); close(r.exited) }()
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		<-r.exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := exec.Command(cli, "-h", "127.0.0.1", "-p", port, "PING").Output()
		if strings.TrimSpace(string(out)) == "PONG" {
			return r
		}
		select {
		case <-r.exited:
			log, _ := os.ReadFile(r.log)
			t.Fatalf("redis-server on port %s exited:\n%s", port, log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on port %s not answering after 10 s", port)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A real Redis behind a tcp listener, driven by the real redis-cli: commands
// on one connection, a 1,000-command pipeline, a 1 MiB value both ways, and
// a killed Redis that new connections avoid while redis-cli keeps working.
func TestRedisBehindTCPListener(t *testing.T) {
	server, err1 := exec.LookPath("redis-server")
	cli, err2 := exec.LookPath("redis-cli")
	if err1 != nil || err2 != nil {
		t.Skip("redis-server or redis-cli not installed (Debian: apt-get install redis-server redis-tools; scripts/test.sh installs them when run as root)")
	}
	r0, r1 := startRedis(t, server, cli), startRedis(t, server, cli)
	cfg, _ := tcpConfig(t, "", "algorithm: round_robin\nhealth_check: {type: tcp, interval: 100ms, timeout: 100ms, rise: 1, fall: 2}",
		backendAt("127.0.0.1:"+r0.port), backendAt("127.0.0.1:"+r1.port))
	s, _ := start(t, cfg)
	host, port, _ := net.SplitHostPort(s.Addr("db").String())

	// redis runs redis-cli against ballast; each run is one connection.
	redis := func(stdin []byte, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, cli, append([]string{"-h", host, "-p", port}, args...)...)
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Fatalf("redis-cli %s: %v\nstdout: %.300s\nstderr: %s", strings.Join(args, " "), err, out, stderr.Bytes())
		}
		return string(out)
	}

	t.Run("commands on one connection", func(t *testing.T) {
		if got := redis([]byte("SET greeting hello\nGET greeting\nDEL greeting\n")); got != "OK\nhello\n1\n" {
			t.Fatalf("got %q", got)
		}
	})

	t.Run("round robin over both", func(t *testing.T) {
		seen := map[string]int{}
		for range 4 {
			seen[strings.Fields(redis(nil, "CONFIG", "GET", "port"))[1]]++
		}
		if seen[r0.port] != 2 || seen[r1.port] != 2 {
			t.Fatalf("connections per redis port: %v", seen)
		}
	})

	t.Run("pipeline of 1000 commands", func(t *testing.T) {
		var resp bytes.Buffer
		for i := range 1000 {
			k, v := fmt.Sprint("pipe:", i), fmt.Sprint("value-", i)
			fmt.Fprintf(&resp, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(k), k, len(v), v)
		}
		if got := redis(resp.Bytes(), "--pipe"); !strings.Contains(got, "errors: 0, replies: 1000") {
			t.Fatalf("--pipe: %s", got)
		}
		// And 1,000 commands in a row on one connection, each waiting for
		// its answer.
		lines := strings.Fields(redis(nil, "-r", "1000", "INCR", "counter"))
		if len(lines) != 1000 || lines[999] != "1000" {
			t.Fatalf("-r 1000 INCR: %d answers, last %q", len(lines), lines[len(lines)-1])
		}
	})

	t.Run("1 MiB value", func(t *testing.T) {
		const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
		rng := rand.New(rand.NewPCG(1, 2))
		v := make([]byte, 1<<20)
		for i := range v {
			v[i] = letters[rng.IntN(len(letters))]
		}
		got := redis([]byte("SET big " + string(v) + "\nGET big\n"))
		if got != "OK\n"+string(v)+"\n" {
			t.Fatalf("1 MiB round trip: got %d bytes, want %d", len(got), len(v)+4)
		}
	})

	t.Run("one redis killed", func(t *testing.T) {
		if err := r0.cmd.Process.Kill(); err != nil { // SIGKILL to its PID
			t.Fatal(err)
		}
		// A connection the kernel accepted for it in the instant before it
		// died is reset, as it would be without ballast: start once it is
		// gone (its sockets are closed before it can be reaped).
		select {
		case <-r0.exited:
		case <-time.After(5 * time.Second):
			t.Fatal("killed redis-server did not exit")
		}
		// At once, before the health check notices: a refused connect goes
		// to the other one.
		for i := range 4 {
			if got := redis(nil, "CONFIG", "GET", "port"); strings.Fields(got)[1] != r1.port {
				t.Fatalf("connection %d after the kill: %q", i, got)
			}
		}
		b := s.Pool("db").Backend("127.0.0.1:" + r0.port)
		testutil.WaitFor(t, 3*time.Second, "killed redis marked down", func() bool { return b.State() == backend.StateDown })
		failures := b.Failures()
		for i := range 6 {
			if got := redis([]byte("SET after kill\nGET after\nCONFIG GET port\n")); got != "OK\nkill\nport\n"+r1.port+"\n" {
				t.Fatalf("connection %d once marked down: %q", i, got)
			}
		}
		if b.Failures() != failures {
			t.Fatalf("the killed redis was still tried once marked down")
		}
	})
}
