package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one process the harness started, in its own process group (so a
// Ctrl-C on the terminal reaches the harness, which then stops it in order).
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

var (
	procsMu      sync.Mutex
	procs        = map[int]*proc{}
	shuttingDown bool
	pgidFile     string // every started process group is appended here for run.sh's trap
)

// startProc starts argv with stdout and stderr going to logPath.
func startProc(name, logPath string, argv []string, env []string) (*proc, error) {
	procsMu.Lock()
	defer procsMu.Unlock()
	if shuttingDown {
		return nil, fmt.Errorf("shutting down")
	}
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	pid := cmd.Process.Pid
	procs[pid] = p
	writePgids()
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	pid := p.pid()
	if !p.exited() {
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-p.done
		}
	}
	// Leftovers of the group (e.g. an nginx worker whose master was killed).
	if len(groupMembers(pid)) > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	procsMu.Lock()
	delete(procs, pid)
	writePgids()
	procsMu.Unlock()
}

// writePgids records the process groups still running (procsMu held), so that
// run.sh's trap can stop them should the harness itself be killed.
func writePgids() {
	if pgidFile == "" {
		return
	}
	var b strings.Builder
	for pid, p := range procs {
		fmt.Fprintf(&b, "%d %s\n", pid, filepath.Base(p.cmd.Path))
	}
	tmp := pgidFile + ".tmp"
	if os.WriteFile(tmp, []byte(b.String()), 0o644) == nil {
		_ = os.Rename(tmp, pgidFile)
	}
}

// stopAll stops every process still running; no new one starts afterwards.
func stopAll() {
	procsMu.Lock()
	shuttingDown = true
	list := make([]*proc, 0, len(procs))
	for _, p := range procs {
		list = append(list, p)
	}
	procsMu.Unlock()
	var wg sync.WaitGroup
	for _, p := range list {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop(3 * time.Second) }()
	}
	wg.Wait()
}

// logTail returns the last lines of a process's log, for error messages.
func (p *proc) logTail(n int) string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// procStat is what the harness reads from /proc/PID/stat.
type procStat struct {
	pid, ppid, pgid int
	ticks           int64 // utime + stime
}

func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): ppid is field 4, pgrp 5, utime 14, stime 15.
	if len(f) < 13 {
		return procStat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	pgid, _ := strconv.Atoi(f[2])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return procStat{pid: pid, ppid: ppid, pgid: pgid, ticks: ut + st}, true
}

func allStats() []procStat {
	ents, _ := os.ReadDir("/proc")
	var out []procStat
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(pid); ok {
			out = append(out, st)
		}
	}
	return out
}

// tree returns root and all its descendants (nginx master and workers).
func tree(root int) []procStat {
	all := allStats()
	kids := map[int][]procStat{}
	var rootSt procStat
	found := false
	for _, st := range all {
		kids[st.ppid] = append(kids[st.ppid], st)
		if st.pid == root {
			rootSt, found = st, true
		}
	}
	if !found {
		return nil
	}
	out := []procStat{rootSt}
	for i := 0; i < len(out); i++ {
		out = append(out, kids[out[i].pid]...)
	}
	return out
}

func groupMembers(pgid int) []int {
	var out []int
	for _, st := range allStats() {
		if st.pgid == pgid {
			out = append(out, st.pid)
		}
	}
	return out
}

// cpuTicks is utime+stime summed over the process tree of root.
func cpuTicks(root int) int64 {
	var t int64
	for _, st := range tree(root) {
		t += st.ticks
	}
	return t
}

// rssKiB is VmRSS summed over the process tree of root, and the process count.
func rssKiB(root int) (int64, int) {
	var total int64
	ps := tree(root)
	for _, st := range ps {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(st.pid), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "VmRSS:") {
				f := strings.Fields(line)
				if len(f) >= 2 {
					v, _ := strconv.ParseInt(f[1], 10, 64)
					total += v
				}
			}
		}
	}
	return total, len(ps)
}

// machineBusyTicks is the CPU time all processes used, from /proc/stat.
func machineBusyTicks() int64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	// cpu user nice system idle iowait irq softirq steal ...: count user..softirq
	// without idle and iowait (steal is time the hypervisor gave elsewhere).
	var t int64
	for i, v := range f {
		if i == 0 || i == 4 || i == 5 || i > 7 {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		t += n
	}
	return t
}

// originTicks is the CPU time of both origins' process trees.
func originTicks() int64 {
	var t int64
	for _, p := range origins {
		t += cpuTicks(p.pid())
	}
	return t
}
