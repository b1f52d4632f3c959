package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"ballast/internal/config"
	"ballast/internal/testutil"
)

// SIGTERM semantics: Run's context ends, in-flight requests finish, new
// connections are refused, Run returns.
func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	release := make(chan struct{})
	be := testutil.NewBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "finished\n")
	})
	s, cancel, done := run(t, httpConfig(t, "", be.Addr()))
	url := "http://" + s.Addr("web").String()

	result := make(chan string, 1)
	go func() {
		_, _, body := testutil.Get(t, testutil.Client(), url+"/")
		result <- body
	}()
	testutil.WaitFor(t, 5*time.Second, "request in flight", func() bool {
		return s.Pool("app").Backend(be.Addr()).InFlight() == 1
	})
	cancel()
	time.Sleep(100 * time.Millisecond)
	if _, err := net.DialTimeout("tcp", s.Addr("web").String(), time.Second); err == nil {
		t.Error("new connection accepted after shutdown began")
	}
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) with a request in flight", err)
	default:
	}
	close(release)
	if got := <-result; got != "finished\n" {
		t.Fatalf("in-flight request got %q", got)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the last request")
	}
}

func TestAddressInUseIsAClearError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	yaml := fmt.Sprintf("listeners:\n  - name: web\n    listen: %s\n    routes: [{pool: app}]\npools:\n  app:\n    backends: [{addr: 127.0.0.1:1}]\n", ln.Addr())
	cfg, err := config.Parse("t.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	err = s.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), `listener "web": cannot listen on `+ln.Addr().String()) ||
		!strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("err = %v", err)
	}
}

// A reload changes the backends in place: traffic follows at once, the
// listener keeps its socket, and a backend present before and after keeps its
// counters.
func TestReloadSwapsPoolsKeepingState(t *testing.T) {
	_, addrs := backends(t, 3)
	text := httpConfig(t, "", addrs[0], addrs[1])
	s, url := start(t, text)
	hits(t, url+"/", 4)
	kept := s.Pool("app").Backend(addrs[1])
	before := kept.Requests()

	next := strings.Replace(text, "      - addr: "+addrs[0]+"\n", "      - addr: "+addrs[2]+"\n", 1)
	cfg, err := config.Parse("t.yaml", []byte(next))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	c := count(hits(t, url+"/", 10))
	if c["b0"] != 0 || c["b1"] != 5 || c["b2"] != 5 {
		t.Fatalf("after reload: %v", c)
	}
	if s.Pool("app").Backend(addrs[1]) != kept || kept.Requests() != before+5 {
		t.Fatalf("backend state not kept across reload")
	}
}

func TestTCPListener(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				// Echo until the client half-closes, then say goodbye: proves
				// the half-close travels through the proxy.
				io.Copy(c, c)
				io.WriteString(c, "bye\n")
				c.Close()
			}()
		}
	}()
	yaml := fmt.Sprintf("listeners:\n  - name: db\n    listen: %s\n    protocol: tcp\n    pool: echo\npools:\n  echo:\n    backends:\n      - addr: %s\n      - addr: %s\n",
		testutil.FreeAddr(t), testutil.FreeAddr(t), echo.Addr())
	s, _ := start(t, yaml)

	for i := range 4 { // the first backend refuses: every connection still succeeds
		c, err := net.Dial("tcp", s.Addr("db").String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		msg := fmt.Sprintf("ping %d\n", i)
		io.WriteString(c, msg)
		c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != msg+"bye\n" {
			t.Fatalf("connection %d: got %q, %v", i, got, err)
		}
	}
}

// An open WebSocket holds shutdown up to shutdown_timeout, no longer: then it
// is closed and Run returns.
func TestShutdownClosesTunnelsAfterTimeout(t *testing.T) {
	be := testutil.NewBackend(t, "ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.Read(r.Context()) // until the proxy closes the tunnel
	})
	text := strings.Replace(httpConfig(t, "", be.Addr()), "shutdown_timeout: 5s", "shutdown_timeout: 500ms", 1)
	s, cancel, done := run(t, text)

	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	ws, _, err := websocket.Dial(dctx, "ws://"+s.Addr("web").String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()

	began := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return: the tunnel held shutdown past its timeout")
	}
	if d := time.Since(began); d < 400*time.Millisecond {
		t.Fatalf("tunnel closed after %v, before shutdown_timeout", d)
	}
	if _, _, err := ws.Read(dctx); err == nil {
		t.Fatal("tunnel still open after shutdown")
	}
}
