package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"ballast/internal/testutil"
)

// launchConfig is a one-listener config whose pool app launches command
// (YAML flow list) instances times.
func launchConfig(t *testing.T, command string, instances int, extra string) string {
	lo := 20000 + int(time.Now().UnixNano()%120)*100 // below the ephemeral ports
	return fmt.Sprintf(`shutdown_timeout: 5s
listeners:
  - name: web
    listen: %s
    engine: %s
    routes:
      - pool: app
pools:
  app:
    algorithm: least_conn
    retries: {attempts: 2}
    health_check: {path: /healthz, interval: 1s, timeout: 1s}
    launch:
      command: %s
      instances: %d
      ports: %d-%d
%s`, testutil.FreeAddr(t), testEngine(), command, instances, lo, lo+99, extra)
}

// launchApps are the app servers the launch tests run: Python's standard
// library, and Flask under Debian's gunicorn (sync workers).
func launchApps(t *testing.T) map[string]string {
	apps := map[string]string{
		"stdlib": `["python3", "testdata/app.py", "app", "{port}"]`,
	}
	if _, err := exec.LookPath("gunicorn"); err == nil {
		dir, _ := filepath.Abs("../../examples/flask-gunicorn")
		apps["gunicorn"] = `["gunicorn", "-w", "2", "-b", "127.0.0.1:{port}", "--chdir", "` + dir + `", "app:app"]`
	} else {
		t.Log("gunicorn not installed (Debian: apt-get install gunicorn python3-flask): its case is skipped")
	}
	// uvicorn from Debian's python3-uvicorn: the python3 on PATH may be
	// another interpreter (pyenv, a venv) that lacks it.
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(py, "-c", "import uvicorn").Run() == nil {
			dir, _ := filepath.Abs("../../examples/asgi-uvicorn")
			apps["uvicorn"] = `["` + py + `", "-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}", "--app-dir", "` + dir + `", "app:app"]`
			break
		}
	}
	if apps["uvicorn"] == "" {
		t.Log("uvicorn not installed (Debian: apt-get install python3-uvicorn): its case is skipped")
	}
	return apps
}

// launchedPIDs returns the pids of pool app's instances.
func launchedPIDs(s *Server) []int {
	var pids []int
	for _, p := range (control{s}).State().Pools {
		if p.Launch != nil {
			for _, in := range p.Launch.Instances {
				pids = append(pids, in.PID)
			}
		}
	}
	return pids
}

// waitLaunched waits until pool app has n instances, all running and up.
func waitLaunched(t *testing.T, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := (control{s}).State()
		running, up := 0, 0
		for _, p := range st.Pools {
			if p.Launch == nil {
				continue
			}
			for _, in := range p.Launch.Instances {
				if in.State == "running" {
					running++
				}
			}
			for _, b := range p.Backends {
				if b.State == "up" {
					up++
				}
			}
			if running == n && up == n && len(p.Launch.Instances) == n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("launched pool not at %d running instances: %+v", n, st.Pools)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// openLoad sends GETs to url+"/" at getRate per second and POSTs of a 2 KiB
// body to url+"/echo" at postRate, each on its schedule whatever the others
// do, until ctx ends (bounded by max requests).
type openLoad struct {
	mu     sync.Mutex
	failed []string
	get    []time.Duration
	post   []time.Duration
}

func runOpenLoad(ctx context.Context, url string, getRate, postRate, max int) *openLoad {
	r := &openLoad{}
	tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	body := bytes.Repeat([]byte("p"), 2048)
	var wg sync.WaitGroup
	send := func(post bool) {
		start := time.Now()
		var resp *http.Response
		var err error
		if post {
			resp, err = c.Post(url+"/echo", "application/octet-stream", bytes.NewReader(body))
		} else {
			resp, err = c.Get(url + "/")
		}
		var got []byte
		if err == nil {
			got, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		d := time.Since(start)
		r.mu.Lock()
		defer r.mu.Unlock()
		switch {
		case err != nil:
			r.failed = append(r.failed, err.Error())
		case resp.StatusCode != http.StatusOK:
			r.failed = append(r.failed, fmt.Sprintf("status %d: %s", resp.StatusCode, got))
		case post && !strings.Contains(string(got), "2048"):
			r.failed = append(r.failed, fmt.Sprintf("POST echoed %q", got))
		case post:
			r.post = append(r.post, d)
		default:
			r.get = append(r.get, d)
		}
	}
	tick := time.NewTicker(time.Second / time.Duration(getRate+postRate))
	defer tick.Stop()
	for i := 0; i < max; i++ {
		select {
		case <-ctx.Done():
			wg.Wait()
			return r
		case <-tick.C:
		}
		post := postRate > 0 && i%((getRate+postRate)/postRate) == 0
		wg.Go(func() { send(post) })
	}
	wg.Wait()
	return r
}

// TestLaunchRollingRestartUnderLoad replaces every instance of a launched pool
// through the admin API while GETs and POSTs keep coming: none may fail, and
// every instance must be new afterwards.
func TestLaunchRollingRestartUnderLoad(t *testing.T) {
	for name, command := range launchApps(t) {
		t.Run(name, func(t *testing.T) {
			s, url := start(t, launchConfig(t, command, 3, ""))
			waitLaunched(t, s, 3)
			before := launchedPIDs(s)

			ctx, cancel := context.WithCancel(context.Background())
			res := make(chan *openLoad, 1)
			go func() { res <- runOpenLoad(ctx, url, 130, 20, 20000) }()
			time.Sleep(time.Second)
			began := time.Now()
			rctx, rcancel := context.WithTimeout(context.Background(), 60*time.Second)
			err := (control{s}).RestartPool(rctx, "app")
			rcancel()
			took := time.Since(began)
			time.Sleep(time.Second)
			cancel()
			r := <-res
			if err != nil {
				t.Fatalf("restart: %v", err)
			}
			after := launchedPIDs(s)
			for _, p := range after {
				for _, q := range before {
					if p == q {
						t.Fatalf("pid %d survived the rolling restart (before %v, after %v)", p, before, after)
					}
				}
			}
			t.Logf("%s: rolling restart of 3 instances took %v; %d GETs (p50 %v, p99 %v, max %v), %d POSTs (p50 %v, p99 %v, max %v), %d failed",
				name, took.Round(time.Millisecond),
				len(r.get), percentile(r.get, 50), percentile(r.get, 99), percentile(r.get, 100),
				len(r.post), percentile(r.post, 50), percentile(r.post, 99), percentile(r.post, 100), len(r.failed))
			if len(r.failed) > 0 {
				t.Fatalf("%d requests failed during the rolling restart, first: %v", len(r.failed), r.failed[:min(5, len(r.failed))])
			}
			if len(r.post) == 0 || len(r.get) == 0 {
				t.Fatal("no load was sent")
			}
		})
	}
}

// TestLaunchReloadScalesAndRolls changes the launch section on reload: more
// instances start without touching the running ones; a changed env replaces
// every instance; fewer instances stop the extra ones.
func TestLaunchReloadScalesAndRolls(t *testing.T) {
	cmd := `["python3", "testdata/app.py", "app", "{port}"]`
	text := launchConfig(t, cmd, 1, "")
	s, _ := start(t, text)
	waitLaunched(t, s, 1)
	first := launchedPIDs(s)[0]

	if err := s.Reload(parse(t, strings.Replace(text, "instances: 1", "instances: 3", 1))); err != nil {
		t.Fatal(err)
	}
	waitLaunched(t, s, 3)
	if launchedPIDs(s)[0] != first {
		t.Fatal("scaling up replaced the running instance")
	}
	changed := strings.Replace(text, "instances: 1", "instances: 2", 1) + "      env: {APP_VERSION: \"2\"}\n"
	if err := s.Reload(parse(t, changed)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		pids := launchedPIDs(s)
		if len(pids) == 2 && pids[0] != first {
			waitLaunched(t, s, 2)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("env change not rolled out: pids %v", pids)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if l := s.metricsPools()[0].Launch; l == nil || l.States["running"] != 2 {
		t.Fatalf("metrics of the launched pool: %+v", l)
	}
	st, _ := json.Marshal((control{s}).State().Pools[0].Launch)
	t.Logf("after the reloads: %s", st)
}

// TestLaunchRequestsWaitForFirstInstance: requests that arrive while the
// launched instances are still starting (ballast just started, or took over
// from the process it upgrades) wait in the queue for the first one to be
// ready, instead of getting 503.
func TestLaunchRequestsWaitForFirstInstance(t *testing.T) {
	s, url := start(t, launchConfig(t, `["python3", "testdata/app.py", "app", "{port}"]`, 2, ""))
	if st := (control{s}).State().Pools[0].Backends; len(st) > 0 && st[0].State == "up" {
		t.Log("an instance was up before the first request; the wait is not exercised this time")
	}
	c := &http.Client{Timeout: 10 * time.Second}
	start := time.Now()
	resp, err := c.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("first request while starting: %d, want 200 after waiting", resp.StatusCode)
	}
	t.Logf("answered after %v", time.Since(start).Round(time.Millisecond))
}
