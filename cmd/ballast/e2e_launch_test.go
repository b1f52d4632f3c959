package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ballast/internal/admin"
	"ballast/internal/testutil"
)

// groupMembers returns the pids of every process whose process group is one of
// pgids (read from /proc).
func groupMembers(t *testing.T, pgids []int) []int {
	t.Helper()
	want := map[int]bool{}
	for _, g := range pgids {
		want[g] = true
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces; split after ')'.
		s := string(stat)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 3 || f[0] == "Z" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); want[g] {
			out = append(out, pid)
		}
	}
	return out
}

// launchedInstances asks the admin API for pool app's instances.
func launchedInstances(admAddr string) ([]admin.Instance, error) {
	resp, err := http.Get("http://" + admAddr + "/api/v1/pools/app")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var p admin.Pool
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		return nil, err
	}
	if p.Launch == nil {
		return nil, fmt.Errorf("pool app has no launch section in the API")
	}
	return p.Launch.Instances, nil
}

// TestE2ELaunchNoOrphans runs app servers under ballast and checks that none
// survives ballast: neither a graceful stop (SIGTERM: drained, then stopped)
// nor ballast killed with SIGKILL (the parent-death signal stops them, and a
// gunicorn master stops its workers).
func TestE2ELaunchNoOrphans(t *testing.T) {
	command := `["python3", "` + mustAbs(t, "../../internal/server/testdata/app.py") + `", "app", "{port}"]`
	if _, err := exec.LookPath("gunicorn"); err == nil {
		command = `["gunicorn", "-w", "2", "-b", "127.0.0.1:{port}", "--chdir", "` + mustAbs(t, "../../examples/flask-gunicorn") + `", "app:app"]`
	} else {
		t.Log("gunicorn not installed: running the standard-library app instead")
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			adm := testutil.FreeAddr(t)
			lo := 21000 + int(time.Now().UnixNano()%100)*100
			writeFile(t, filepath.Join(dir, "ballast.yaml"), fmt.Sprintf(`admin: {listen: %s}
listeners:
  - {name: web, listen: %s, routes: [{pool: app}]}
pools:
  app:
    health_check: {path: /healthz, interval: 1s}
    launch:
      command: %s
      instances: 2
      ports: %d-%d
`, adm, testutil.FreeAddr(t), command, lo, lo+99))
			p := startBallast(t, dir, "run", "-c", "ballast.yaml")
			var pgids []int
			deadline := time.Now().Add(30 * time.Second)
			for len(pgids) < 2 {
				if time.Now().After(deadline) {
					t.Fatal("the instances did not start")
				}
				time.Sleep(100 * time.Millisecond)
				ins, err := launchedInstances(adm)
				if err != nil {
					continue
				}
				pgids = pgids[:0]
				for _, in := range ins {
					if in.State == "running" {
						pgids = append(pgids, in.PID)
					}
				}
			}
			members := groupMembers(t, pgids)
			t.Logf("instances %v: %d processes in their groups", pgids, len(members))
			if len(members) < 2 {
				t.Fatalf("processes of groups %v: %v", pgids, members)
			}
			// Whatever happens, stop what this test started.
			t.Cleanup(func() {
				for _, pid := range groupMembers(t, pgids) {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			})
			start := time.Now()
			p.signal(sig)
			p.wait(20 * time.Second)
			for left := groupMembers(t, pgids); len(left) > 0; left = groupMembers(t, pgids) {
				if time.Since(start) > 15*time.Second {
					t.Fatalf("after ballast got %v: processes %v still running", sig, left)
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("%v: all %d processes gone %v after the signal", sig, len(members), time.Since(start).Round(time.Millisecond))
		})
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
