package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"ballast/internal/testutil"
)

// runInherited starts a server for yaml that inherits files and waits until
// it serves. stop ends it and waits for Run; the test's end does too.
func runInherited(t *testing.T, yaml string, files map[string]*os.File) (s *Server, stop func()) {
	t.Helper()
	s, err := New(parse(t, yaml), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	s.Inherit(files)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = s.Run(ctx)
	}()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("server did not stop")
		}
	}
	t.Cleanup(stop)
	select {
	case <-s.Ready():
	case <-done:
		t.Fatalf("Run: %v", runErr)
	case <-time.After(5 * time.Second):
		t.Fatal("server did not become ready")
	}
	return s, stop
}

// boundSocket binds 127.0.0.1:0 and returns the listener with a duplicate of
// its descriptor, as a parent process would hand it over.
func boundSocket(t *testing.T) (net.Listener, *os.File) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	return ln, f
}

// withListen is yaml with its first listener's address replaced by addr.
func withListen(t *testing.T, yaml, addr string) string {
	t.Helper()
	i := strings.Index(yaml, "listen: ")
	j := strings.Index(yaml[i:], "\n")
	if i < 0 || j < 0 {
		t.Fatalf("no listen address in\n%s", yaml)
	}
	return yaml[:i] + "listen: " + addr + yaml[i+j:]
}

// refused reports whether a connection to addr is refused: nothing listens.
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// An inherited socket is served as it is: the test's own listener holds the
// address, so the bind Run would otherwise do fails with EADDRINUSE
// (TestAddressInUseIsAClearError), and the server serves on it.
func TestInheritedSocketServedWithoutBinding(t *testing.T) {
	be := testutil.NewBackend(t, "b0", nil)
	held, f := boundSocket(t)
	yaml := withListen(t, httpConfig(t, "", be.Addr()), held.Addr().String())
	s, _ := runInherited(t, yaml, map[string]*os.File{"web": f})

	if got := s.Addr("web").String(); got != held.Addr().String() {
		t.Fatalf("web listens on %s, want the inherited %s", got, held.Addr())
	}
	url := "http://" + held.Addr().String() + "/"
	if status, _, body := testutil.Get(t, testutil.Client(), url); status != 200 || body != "b0\n" {
		t.Fatalf("through the inherited socket: %d %q", status, body)
	}
	// The server holds its own descriptor of the socket: it serves on after
	// the giver closes its copy.
	held.Close()
	if status, _, body := testutil.Get(t, testutil.Client(), url); status != 200 || body != "b0\n" {
		t.Fatalf("after the giver closed its copy: %d %q", status, body)
	}
}

// An inherited socket that no listener takes — its name is unknown or its
// listener's address changed — is closed once Run has bound everything, and
// the listener whose address changed binds its new one.
func TestInheritedSocketNotUsedIsClosed(t *testing.T) {
	be := testutil.NewBackend(t, "b0", nil)
	for _, tc := range []struct {
		name string // the inherited socket's key
	}{
		{"web"},     // the config's listener "web" moved to another address
		{"retired"}, // no listener of that name any more
	} {
		t.Run(tc.name, func(t *testing.T) {
			old, f := boundSocket(t)
			oldAddr := old.Addr().String()
			old.Close() // the server's descriptor is now the only one
			yaml := httpConfig(t, "", be.Addr())
			s, _ := runInherited(t, yaml, map[string]*os.File{tc.name: f})

			if !refused(oldAddr) {
				t.Errorf("the unused inherited socket %s still accepts", oldAddr)
			}
			url := "http://" + s.Addr("web").String() + "/"
			if s.Addr("web").String() == oldAddr {
				t.Fatalf("web kept the inherited socket %s though its address changed", oldAddr)
			}
			if status, _, body := testutil.Get(t, testutil.Client(), url); status != 200 || body != "b0\n" {
				t.Fatalf("web on its new address: %d %q", status, body)
			}
			if tc.name == "retired" && s.Addr("retired") != nil {
				t.Error("the unused inherited socket is still among the listeners")
			}
		})
	}
}

// The admin listener's inherited socket is kept for the admin listener,
// bound after the others. One that nothing takes is closed with the server,
// like any listener: a leftover placeholder is harmless.
func TestInheritedAdminSocketLeftOver(t *testing.T) {
	be := testutil.NewBackend(t, "b0", nil)
	held, f := boundSocket(t)
	addr := held.Addr().String()
	held.Close()
	yaml := "admin:\n  listen: " + testutil.FreeAddr(t) + "\n" + httpConfig(t, "", be.Addr())
	s, stop := runInherited(t, yaml, map[string]*os.File{adminSocket: f})
	if status, _, body := testutil.Get(t, testutil.Client(), "http://"+s.Addr("web").String()+"/"); status != 200 || body != "b0\n" {
		t.Fatalf("web: %d %q", status, body)
	}
	stop()
	if !refused(addr) {
		t.Errorf("the inherited admin socket %s still accepts after the server stopped", addr)
	}
}

// A reload after an inherited start binds its new listeners itself, and a
// listener that stays keeps the inherited socket.
func TestReloadAfterInherit(t *testing.T) {
	be := testutil.NewBackend(t, "b0", nil)
	held, f := boundSocket(t)
	yaml := withListen(t, httpConfig(t, "", be.Addr()), held.Addr().String())
	s, _ := runInherited(t, yaml, map[string]*os.File{"web": f})

	apiAddr := testutil.FreeAddr(t)
	next := strings.Replace(yaml, "pools:\n",
		fmt.Sprintf("  - name: api\n    listen: %s\n    routes:\n      - pool: app\npools:\n", apiAddr), 1)
	if err := s.Reload(parse(t, next)); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{held.Addr().String(), apiAddr} {
		if status, _, body := testutil.Get(t, testutil.Client(), "http://"+addr+"/"); status != 200 || body != "b0\n" {
			t.Fatalf("%s after reload: %d %q", addr, status, body)
		}
	}
	if got := s.Addr("web").String(); got != held.Addr().String() {
		t.Errorf("web moved to %s on reload", got)
	}
}

// ListenerFiles hands out working duplicates: a second server started on
// them serves on the same addresses, and keeps serving — without one refused
// connection — after the first one has stopped. This is the binary upgrade,
// in one process.
func TestListenerFilesHandOver(t *testing.T) {
	be := testutil.NewBackend(t, "b0", nil)
	yaml := httpConfig(t, "", be.Addr())
	old, cancel, done := run(t, yaml)
	addr := old.Addr("web").String()
	url := "http://" + addr + "/"

	files, err := old.ListenerFiles()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files["web"] == nil {
		t.Fatalf("ListenerFiles = %v, want web only", files)
	}
	next, _ := runInherited(t, yaml, files)
	if got := next.Addr("web").String(); got != addr {
		t.Fatalf("the new server listens on %s, want %s", got, addr)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the old server did not stop")
	}
	if _, err := old.ListenerFiles(); err == nil {
		t.Error("ListenerFiles of a stopped server succeeded")
	}
	for i := range 20 {
		if status, _, body := testutil.Get(t, testutil.Client(), url); status != 200 || body != "b0\n" {
			t.Fatalf("request %d after the old server stopped: %d %q", i, status, body)
		}
	}
}

// StopAccepting leaves new connections in the socket's queue for the next
// process, while the connections already accepted are served on; Run still
// drains and returns afterwards.
func TestStopAcceptingLeavesConnectionsQueued(t *testing.T) {
	a := testutil.NewBackend(t, "a", nil)
	b := testutil.NewBackend(t, "b", nil)
	yaml := httpConfig(t, "", a.Addr())
	old, cancel, done := run(t, yaml)
	addr := old.Addr("web").String()
	kept := testutil.Client() // one keep-alive connection, accepted before the stop
	if _, _, body := testutil.Get(t, kept, "http://"+addr+"/"); body != "a\n" {
		t.Fatalf("before the stop: %q", body)
	}
	files, err := old.ListenerFiles()
	if err != nil {
		t.Fatal(err)
	}
	old.StopAccepting()

	queued, err := net.DialTimeout("tcp", addr, time.Second) // the kernel completes the handshake
	if err != nil {
		t.Fatalf("dial after StopAccepting: %v", err)
	}
	defer queued.Close()
	fmt.Fprintf(queued, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	queued.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := queued.Read(make([]byte, 1)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a connection made after StopAccepting was answered (%d bytes, %v)", n, err)
	}
	if _, _, body := testutil.Get(t, kept, "http://"+addr+"/"); body != "a\n" {
		t.Fatalf("the connection accepted before the stop, after it: %q", body)
	}

	runInherited(t, strings.Replace(yaml, a.Addr(), b.Addr(), 1), files)
	queued.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := io.ReadAll(queued)
	if err != nil || !strings.HasPrefix(string(resp), "HTTP/1.1 200") || !strings.HasSuffix(string(resp), "\r\n\r\nb\n") {
		t.Fatalf("the queued connection, once the new server runs: %q, %v", resp, err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after StopAccepting and cancel")
	}
}

func TestSameAddr(t *testing.T) {
	for _, tc := range []struct {
		bound, listen string
		want          bool
	}{
		{"127.0.0.1:8080", "127.0.0.1:8080", true},
		{"127.0.0.1:8080", "127.0.0.1:8081", false},
		{"127.0.0.1:8080", "127.0.0.2:8080", false},
		{"[::1]:8080", "[::1]:8080", true},
		{"[::1]:8080", "127.0.0.1:8080", false},
		{"[::]:8080", "0.0.0.0:8080", true}, // Go binds 0.0.0.0 as dual-stack ::
		{"[::]:8080", ":8080", true},
		{"0.0.0.0:8080", "[::]:8080", true},
		{"[::]:8080", "127.0.0.1:8080", false},
		{"127.0.0.1:8080", "not an address", false},
	} {
		t.Run(tc.bound+"="+tc.listen, func(t *testing.T) {
			a, err := net.ResolveTCPAddr("tcp", tc.bound)
			if err != nil {
				t.Fatal(err)
			}
			if got := sameAddr(a, tc.listen); got != tc.want {
				t.Errorf("sameAddr(%s, %q) = %v, want %v", tc.bound, tc.listen, got, tc.want)
			}
		})
	}
}
