package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"ballast/internal/admin/uitest"
	"ballast/internal/testutil"
)

// pyBackend runs internal/server/testdata/app.py (a small app of Python's
// standard library) as a real process on a free port.
func pyBackend(t *testing.T, name string) (addr string, kill func()) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed (scripts/test.sh installs it)")
	}
	addr = testutil.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("python3", "../../internal/server/testdata/app.py", name, port)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	kill = func() {
		cmd.Process.Kill() // by PID: the process this test started
		<-done
	}
	t.Cleanup(kill)
	testutil.WaitFor(t, 10*time.Second, "backend "+name+" listening", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr, kill
}

// The dashboard of a real ballast, in headless Chromium: it loads without a
// console message, shows every backend, and shows a killed backend as down
// within 3 seconds. `ballast status` prints the same state.
func TestE2EDashboardShowsBackendDown(t *testing.T) {
	b1, _ := pyBackend(t, "backend-1")
	b2, kill2 := pyBackend(t, "backend-2")
	dir := t.TempDir()
	listen, adm := testutil.FreeAddr(t), testutil.FreeAddr(t)
	writeFile(t, filepath.Join(dir, "ballast.yaml"), fmt.Sprintf(`admin: {listen: %s}
listeners:
  - name: web
    listen: %s
    routes: [{pool: app}]
pools:
  app:
    algorithm: least_conn
    health_check: {path: /healthz, interval: 500ms, timeout: 250ms, rise: 2, fall: 2}
    backends:
      - addr: %s
      - addr: %s
`, adm, listen, b1, b2))
	p := startBallast(t, dir, "run", "-c", "ballast.yaml")
	p.waitListening(listen)
	p.waitListening(adm)

	// Some traffic, so that the charts and counters move.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		c := testutil.Client()
		for i := 0; i < 100000 && ctx.Err() == nil; i++ {
			if resp, err := c.Get("http://" + listen + "/"); err == nil {
				resp.Body.Close()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	browser := uitest.Browser(t)
	tab := uitest.Open(t, browser, "about:blank")
	tab.Do(t, chromedp.EmulateViewport(1280, 800), chromedp.Navigate("http://"+adm+"/"))
	tab.WaitPolled(t, 2)
	row := func(addr string) string {
		return fmt.Sprintf(`document.querySelector('tr[data-pool="app"][data-backend=%q]')`, addr)
	}
	for _, a := range []string{b1, b2} {
		if s := uitest.Eval[string](t, tab, row(a)+`?.dataset.state ?? ""`); s != "up" {
			t.Fatalf("backend %s shows %q, want up", a, s)
		}
	}
	if shot := os.Getenv("BALLAST_SCREENSHOT_E2E"); shot != "" {
		time.Sleep(30 * time.Second) // let the charts fill a little
	}

	killed := time.Now()
	kill2()
	tab.WaitFor(t, 3*time.Second, row(b2)+`?.dataset.state === "down"`)
	shown := time.Since(killed)
	t.Logf("dashboard: killed backend shown down after %v", shown.Round(time.Millisecond))
	tab.WaitFor(t, 3*time.Second, `document.body.textContent.includes("`+b2+`")`)

	code, out, errOut := runBallast(t, dir, "status", "-c", "ballast.yaml")
	if code != 0 {
		t.Fatalf("ballast status: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"POOL", "app", b1, b2, "down", "up", "queue 0/1000"} {
		if !strings.Contains(out, want) {
			t.Errorf("ballast status lacks %q:\n%s", want, out)
		}
	}
	t.Logf("ballast status:\n%s", out)

	if shot := os.Getenv("BALLAST_SCREENSHOT_E2E"); shot != "" {
		time.Sleep(3 * time.Second)
		sctx, scancel := context.WithTimeout(tab.Ctx, 20*time.Second)
		defer scancel()
		png, err := chromedp.Run(sctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(shot, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tab.NoConsoleMessages(t)
}
