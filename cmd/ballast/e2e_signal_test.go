package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ballast/internal/testutil"
)

// TestE2EGracefulStop: on SIGTERM or SIGINT ballast stops accepting at once,
// lets the request in flight finish with its whole body, then exits 0.
func TestE2EGracefulStop(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			testGracefulStop(t, sig)
		})
	}
}

func testGracefulStop(t *testing.T, sig syscall.Signal) {
	body := bytes.Repeat([]byte("drain me fully\n"), 64<<10) // ~1 MiB
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	backend := testutil.NewBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-release:
		case <-time.After(30 * time.Second): // never hang the test
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // before the backend closes, on every path

	dir := t.TempDir()
	listen := testutil.FreeAddr(t)
	writeFile(t, filepath.Join(dir, "ballast.yaml"), httpConfig(listen, backend.Addr()))
	p := startBallast(t, dir, "run", "-c", "ballast.yaml")
	p.waitListening(listen)

	type result struct {
		status int
		body   []byte
		err    error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := testutil.Client().Get("http://" + listen + "/slow")
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		res <- result{resp.StatusCode, b, err}
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the backend")
	}

	sent := time.Now()
	p.signal(sig)

	// New connections are refused promptly. A dial that lands in the accept
	// queue just as the socket closes is reset instead: the listener is still
	// going away, so keep probing.
	refusedAfter := time.Duration(-1)
	for i := 0; i < 200; i++ { // 200 × ≥10ms: bounded at a few seconds
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			c.Close()
		} else if errors.Is(err, syscall.ECONNREFUSED) {
			refusedAfter = time.Since(sent)
			break
		} else if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("dial after %v: %v, want connection refused", sig, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if refusedAfter < 0 {
		t.Fatalf("ballast still accepts connections %v after %v", time.Since(sent).Round(time.Millisecond), sig)
	}
	if refusedAfter > time.Second {
		t.Errorf("new connections refused only %v after %v, want under 1s", refusedAfter, sig)
	}

	// Still draining: the process waits for the request in flight.
	time.Sleep(200 * time.Millisecond)
	if p.exited() {
		t.Fatalf("ballast exited with a request in flight; stderr:\n%s", p.stderr.String())
	}
	select {
	case r := <-res:
		t.Fatalf("the request in flight ended before the backend answered: %+v", r)
	default:
	}

	released := time.Now()
	free()
	var r result
	select {
	case r = <-res:
	case <-time.After(10 * time.Second):
		t.Fatal("the request in flight did not complete")
	}
	if r.err != nil || r.status != http.StatusOK || !bytes.Equal(r.body, body) {
		t.Fatalf("request in flight: status %d, %d of %d body bytes, err %v", r.status, len(r.body), len(body), r.err)
	}
	if code := p.wait(5 * time.Second); code != 0 {
		t.Errorf("exit code after %v = %d, want 0; stderr:\n%s", sig, code, p.stderr.String())
	}
	t.Logf("%v: new connections refused after %v; exited %v after the last response was released",
		sig, refusedAfter.Round(time.Millisecond), time.Since(released).Round(time.Millisecond))
	if out := p.stderr.String(); !strings.Contains(out, "ballast stopped") {
		t.Errorf("stderr lacks %q:\n%s", "ballast stopped", out)
	}
}

// TestE2EShutdownTimeout: a request still in flight when shutdown_timeout
// runs out is cut off, and the process still exits 0, soon after the timeout.
func TestE2EShutdownTimeout(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	backend := testutil.NewBackend(t, "stuck", func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-release:
		case <-time.After(30 * time.Second):
		}
	})
	t.Cleanup(func() { close(release) })
	dir := t.TempDir()
	listen := testutil.FreeAddr(t)
	cfg := strings.Replace(httpConfig(listen, backend.Addr()), "shutdown_timeout: 10s", "shutdown_timeout: 1s", 1)
	writeFile(t, filepath.Join(dir, "ballast.yaml"), cfg)
	p := startBallast(t, dir, "run", "-c", "ballast.yaml")
	p.waitListening(listen)

	errc := make(chan error, 1)
	go func() {
		resp, err := testutil.Client().Get("http://" + listen + "/")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				err = fmt.Errorf("got a complete %d response", resp.StatusCode)
			}
		}
		errc <- err
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the backend")
	}
	sent := time.Now()
	p.signal(syscall.SIGTERM)
	code := p.wait(10 * time.Second)
	took := time.Since(sent)
	if code != 0 {
		t.Errorf("exit code = %d, want 0", code)
	}
	if took < time.Second || took > 3*time.Second {
		t.Errorf("exited %v after SIGTERM, want just after shutdown_timeout (1s)", took.Round(time.Millisecond))
	}
	select {
	case err := <-errc:
		t.Logf("exited %v after SIGTERM; the request cut off: %v", took.Round(time.Millisecond), err)
	case <-time.After(5 * time.Second):
		t.Error("the cut-off request did not end")
	}
	p.waitStderr(time.Second, "shutdown timeout")
}

// TestE2EReloadOnSIGHUP: SIGHUP applies a changed config in place; a broken
// config is rejected whole, every problem is logged, and the process keeps
// serving the previous config.
func TestE2EReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	a := testutil.NewBackend(t, "backend-a", nil)
	b := testutil.NewBackend(t, "backend-b", nil)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "ballast.yaml")
	listen := testutil.FreeAddr(t)
	url := "http://" + listen + "/"
	c := testutil.Client()

	writeFile(t, cfgPath, httpConfig(listen, a.Addr()))
	p := startBallast(t, dir, "run", "-c", "ballast.yaml")
	p.waitListening(listen)
	expectOnly(t, c, url, "backend-a\n")

	// A changed backend list: traffic moves to the new backend.
	writeFile(t, cfgPath, httpConfig(listen, b.Addr()))
	p.signal(syscall.SIGHUP)
	testutil.WaitFor(t, 5*time.Second, "traffic to move to backend-b", func() bool {
		_, _, body := testutil.Get(t, c, url)
		return body == "backend-b\n"
	})
	expectOnly(t, c, url, "backend-b\n")
	p.waitStderr(5*time.Second, `msg="config reloaded"`)

	// A broken config: rejected, every problem logged, the old config serves.
	writeFile(t, cfgPath, brokenConfig)
	code, _, problems := runBallast(t, dir, "validate", "-c", "ballast.yaml")
	if code != 1 || len(lines(problems)) != len(brokenProblems) {
		t.Fatalf("validate of the broken config: exit %d, problems:\n%s", code, problems)
	}
	var want []string
	for _, l := range lines(problems) {
		want = append(want, `msg="reload rejected" problem=`+strconv.Quote(l))
	}
	p.signal(syscall.SIGHUP)
	p.waitStderr(5*time.Second, want...)
	if p.exited() {
		t.Fatalf("ballast exited on a broken reload; stderr:\n%s", p.stderr.String())
	}
	expectOnly(t, c, url, "backend-b\n")
	if n := strings.Count(p.stderr.String(), `msg="config reloaded"`); n != 1 {
		t.Errorf("%d successful reloads logged, want 1", n)
	}

	// A later good config still reloads: the rejection left nothing stuck.
	writeFile(t, cfgPath, httpConfig(listen, a.Addr()))
	p.signal(syscall.SIGHUP)
	testutil.WaitFor(t, 5*time.Second, "traffic to move back to backend-a", func() bool {
		_, _, body := testutil.Get(t, c, url)
		return body == "backend-a\n"
	})
	expectOnly(t, c, url, "backend-a\n")

	p.signal(syscall.SIGTERM)
	if code := p.wait(10 * time.Second); code != 0 {
		t.Errorf("exit code = %d, want 0", code)
	}
}

// expectOnly sends ten requests and fails unless each is a 200 with body want.
func expectOnly(t *testing.T, c *http.Client, url, want string) {
	t.Helper()
	for i := range 10 {
		status, _, body := testutil.Get(t, c, url)
		if status != http.StatusOK || body != want {
			t.Fatalf("request %d: %d %q, want 200 %q", i, status, body, want)
		}
	}
}

// TestE2EGracefulStopTwoSecondRequest: a request that takes 2 s, in flight
// when SIGTERM arrives, completes; then ballast exits 0.
func TestE2EGracefulStopTwoSecondRequest(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 1)
	backend := testutil.NewBackend(t, "two-seconds", func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		time.Sleep(2 * time.Second)
		io.WriteString(w, "done after 2s\n")
	})
	dir := t.TempDir()
	listen := testutil.FreeAddr(t)
	writeFile(t, filepath.Join(dir, "ballast.yaml"), httpConfig(listen, backend.Addr()))
	p := startBallast(t, dir, "run", "-c", "ballast.yaml")
	p.waitListening(listen)

	type result struct {
		status int
		body   string
		err    error
	}
	res := make(chan result, 1)
	begin := time.Now()
	go func() {
		resp, err := testutil.Client().Get("http://" + listen + "/")
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		res <- result{resp.StatusCode, string(b), err}
	}()
	<-started
	p.signal(syscall.SIGTERM)
	r := <-res
	if r.err != nil || r.status != http.StatusOK || r.body != "done after 2s\n" {
		t.Fatalf("the 2 s request in flight at SIGTERM: %+v", r)
	}
	if code := p.wait(5 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	t.Logf("2 s request completed after %v; ballast exited 0", time.Since(begin).Round(time.Millisecond))
}
