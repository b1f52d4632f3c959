package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"ballast/internal/config"
	"ballast/internal/testutil"
)

// testLogger sends the server's log to the test's log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// start runs a server for the YAML config text until the test ends and
// returns it with the base URL of its first listener.
func start(t *testing.T, yaml string) (*Server, string) {
	t.Helper()
	s, cancel, done := run(t, yaml)
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("server did not stop")
		}
	})
	return s, "http://" + s.Addr(s.cfg.Listeners[0].Name).String()
}

// parse parses a config text, failing the test on any problem.
func parse(t *testing.T, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(text))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, text)
	}
	return cfg
}

// run starts a server for the YAML config text and waits until it serves.
// The caller stops it with cancel; done then yields Run's result.
func run(t *testing.T, yaml string) (s *Server, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	s, err = New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-errc:
		cancel()
		t.Fatalf("Run: %v", err)
	case <-time.After(5 * time.Second):
		cancel()
		t.Fatal("server did not become ready")
	}
	return s, cancel, errc
}

// testEngine is the HTTP engine the tests' plaintext listeners use:
// BALLAST_TEST_ENGINE (native or net_http; scripts/test.sh runs this
// package once with each), default native.
func testEngine() string {
	if e := os.Getenv("BALLAST_TEST_ENGINE"); e != "" {
		return e
	}
	return "native"
}

// httpConfig is a one-listener, one-pool config; pool is the indented YAML of
// pool "app" without its backends.
func httpConfig(t *testing.T, pool string, backends ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "shutdown_timeout: 5s\nlisteners:\n  - name: web\n    listen: %s\n    engine: %s\n    routes:\n      - pool: app\npools:\n  app:\n", testutil.FreeAddr(t), testEngine())
	if pool != "" {
		for line := range strings.SplitSeq(strings.TrimSpace(pool), "\n") {
			fmt.Fprintf(&b, "    %s\n", strings.TrimSpace(line))
		}
	}
	b.WriteString("    backends:\n")
	for _, a := range backends {
		fmt.Fprintf(&b, "      - addr: %s\n", a)
	}
	return b.String()
}

// rawBackend accepts connections and, for each request header it reads,
// writes response verbatim; it records the raw request headers.
type rawBackend struct {
	ln       net.Listener
	requests chan string
}

func newRawBackend(t *testing.T, response string) *rawBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rb := &rawBackend{ln: ln, requests: make(chan string, 16)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				var head strings.Builder
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					head.WriteString(line)
					if line == "\r\n" {
						break
					}
				}
				rb.requests <- head.String()
				io.WriteString(c, response)
			}()
		}
	}()
	return rb
}

func (rb *rawBackend) Addr() string { return rb.ln.Addr().String() }
