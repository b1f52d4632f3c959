// Package supervisor runs a launched pool's backends: it starts the app-server
// processes (gunicorn, uvicorn, ...), tells the pool when each is ready,
// restarts the ones that crash with a capped, jittered backoff, replaces them
// one at a time on a rolling restart, and stops them — drained first — when
// the pool or ballast goes away.
//
// The supervisor never touches the request path: it changes a backend's state
// (starting, up, draining, down) and adds it to or removes it from the pool
// through the small Pool interface its owner implements.
package supervisor

import (
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Spec is what a launched pool runs.
type Spec struct {
	// Command is the program and its arguments; "{port}" is replaced by the
	// instance's port.
	Command []string
	// Instances is how many copies run.
	Instances int
	// PortLo and PortHi bound the ports the instances get (inclusive).
	PortLo, PortHi int
	// Workdir is the instances' working directory ("" = ballast's).
	Workdir string
	// Env is added to ballast's environment.
	Env map[string]string
	// MaxConns is each instance's concurrency limit (0 = none).
	MaxConns int
	// StartTimeout bounds how long an instance may take to become ready.
	StartTimeout time.Duration
	// StopTimeout is the grace between SIGTERM and SIGKILL, and the bound on
	// waiting for a draining instance's requests.
	StopTimeout time.Duration
	// Ready probes an instance's address; nil means a TCP connect.
	Ready func(addr string) error
}

// SameProcess reports whether instances of s and o run the same thing
// (command, workdir, env): if not, a reload replaces them one at a time.
func (s Spec) SameProcess(o Spec) bool {
	return slices.Equal(s.Command, o.Command) && s.Workdir == o.Workdir && maps.Equal(s.Env, o.Env)
}

// argv returns the command with {port} replaced.
func (s Spec) argv(port int) []string {
	p := strconv.Itoa(port)
	out := make([]string, len(s.Command))
	for i, a := range s.Command {
		out[i] = strings.ReplaceAll(a, "{port}", p)
	}
	return out
}

// host is the address ballast dials an instance on: the host written before
// ":{port}" in the command ("127.0.0.1:{port}", "[::1]:{port}"), with a
// wildcard or none meaning 127.0.0.1.
func (s Spec) host() string {
	for i, a := range s.Command {
		if a == "--host" && i+1 < len(s.Command) { // uvicorn, hypercorn: --host H --port {port}
			return wildcard(s.Command[i+1])
		}
		if h, ok := strings.CutPrefix(a, "--host="); ok {
			return wildcard(h)
		}
	}
	for _, a := range s.Command {
		i := strings.Index(a, ":{port}")
		if i < 0 {
			continue
		}
		h := a[:i]
		if j := strings.LastIndexAny(h, "=/"); j >= 0 { // --bind=HOST:{port}, tcp://HOST:{port}
			h = h[j+1:]
		}
		return wildcard(h)
	}
	return "127.0.0.1"
}

// wildcard maps a listen-on-everything host to the loopback address to dial.
func wildcard(h string) string {
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	switch h {
	case "", "0.0.0.0", "*":
		return "127.0.0.1"
	case "::":
		return "::1"
	}
	return h
}

// addr is the instance's backend address for port.
func (s Spec) addr(port int) string { return net.JoinHostPort(s.host(), strconv.Itoa(port)) }

// WorkerSlots tells how many requests one instance of command serves at once,
// when the command says so: gunicorn's sync and gthread workers serve
// workers × threads (-w/--workers, --threads; WEB_CONCURRENCY is gunicorn's
// default worker count), uWSGI processes × threads (-p/--processes,
// --threads). It returns 0 and a reason when it cannot tell (another server,
// an async worker class, a config file that may set the counts).
func WorkerSlots(command []string, env func(string) string) (int, string) {
	if len(command) == 0 {
		return 0, "no command"
	}
	args := command[1:]
	prog := filepath.Base(command[0])
	if strings.HasPrefix(prog, "python") && len(args) >= 2 && args[0] == "-m" {
		prog, args = args[1], args[2:]
	}
	switch prog {
	case "gunicorn":
		return gunicornSlots(args, env)
	case "uwsgi":
		return uwsgiSlots(args)
	}
	return 0, prog + " is not gunicorn or uwsgi"
}

func gunicornSlots(args []string, env func(string) string) (int, string) {
	workers, threads := 1, 1
	if v, err := strconv.Atoi(env("WEB_CONCURRENCY")); err == nil && v > 0 {
		workers = v
	}
	if env("GUNICORN_CMD_ARGS") != "" {
		return 0, "GUNICORN_CMD_ARGS may set the worker count"
	}
	for i := 0; i < len(args); i++ {
		name, val, ok := flag(args, &i, "-w", "--workers", "--threads", "-k", "--worker-class", "-c", "--config")
		if !ok {
			continue
		}
		switch name {
		case "-w", "--workers", "--threads":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 {
				return 0, name + " " + val + " is not a count"
			}
			if name == "--threads" {
				threads = n
			} else {
				workers = n
			}
		case "-k", "--worker-class":
			switch strings.TrimPrefix(val, "gunicorn.workers.") {
			case "sync", "gthread", "sync.SyncWorker", "gthread.ThreadWorker":
			default:
				return 0, "worker class " + val + " is not sync or gthread"
			}
		case "-c", "--config":
			return 0, "the config file " + val + " may set the worker count"
		}
	}
	return workers * threads, ""
}

func uwsgiSlots(args []string) (int, string) {
	procs, threads := 1, 1
	for i := 0; i < len(args); i++ {
		name, val, ok := flag(args, &i, "-p", "--processes", "--workers", "--threads", "--ini", "--async", "--gevent")
		if !ok {
			continue
		}
		switch name {
		case "--ini":
			return 0, "the ini file " + val + " may set the process count"
		case "--async", "--gevent":
			return 0, name + " serves many requests per process"
		}
		n, err := strconv.Atoi(val)
		if err != nil || n < 1 {
			return 0, name + " " + val + " is not a count"
		}
		if name == "--threads" {
			threads = n
		} else {
			procs = n
		}
	}
	return procs * threads, ""
}

// flag reads the option at args[*i] if it is one of names, in any of the forms
// "-w 3", "-w3" (one-letter names), "--workers 3", "--workers=3", advancing *i
// past its value.
func flag(args []string, i *int, names ...string) (name, val string, ok bool) {
	a := args[*i]
	for _, n := range names {
		switch {
		case a == n:
			if *i+1 < len(args) {
				*i++
				return n, args[*i], true
			}
			return n, "", true
		case strings.HasPrefix(n, "--") && strings.HasPrefix(a, n+"="):
			return n, a[len(n)+1:], true
		case len(n) == 2 && strings.HasPrefix(a, n) && len(a) > 2 && a[2] != '-':
			return n, a[2:], true
		}
	}
	return "", "", false
}
