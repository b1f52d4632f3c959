package main

// Zero-downtime binary upgrade, as nginx does it: on SIGUSR2 the running
// process starts the binary now on disk with its own arguments and hands it
// every listening socket; the new process serves on them without binding
// again, so no connection is refused and none waits; once it reports ready,
// the old process stops accepting (the sockets stay open: new connections
// queue for the new process), drains like on SIGTERM and exits 0. A new
// process that fails or is not ready within upgradeTimeout is killed, and the
// old one serves on as if nothing happened.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"ballast/internal/server"
)

// The environment of a new process started by an upgrade.
const (
	// envListenFDs names the inherited listening sockets:
	// "NAME=FD,NAME=FD,…", descriptors numbered as the new process sees them,
	// names query-escaped (a listener's name may hold "," or "=").
	envListenFDs = "BALLAST_LISTEN_FDS"
	// envReadyFD is the descriptor on which the new process writes readyLine
	// once it serves on every listener, then closes it.
	envReadyFD = "BALLAST_UPGRADE_READY_FD"
)

const (
	// upgradeTimeout bounds how long the old process waits for the new one.
	upgradeTimeout = 30 * time.Second
	// acceptGrace is how long the old process, having stopped accepting,
	// waits before it drains: a client sends its request right after the
	// handshake, so this is ample for connections it accepted last.
	acceptGrace = 200 * time.Millisecond
	readyLine   = "ready\n"
)

// executablePath is the path this binary was started as, made absolute, so
// that an upgrade runs the file now at that path. os.Executable would name the
// running (possibly already replaced and deleted) file instead.
func executablePath() (string, error) {
	p, err := exec.LookPath(os.Args[0])
	if err != nil {
		return "", err
	}
	return filepath.Abs(p)
}

// takeInherited takes what an upgrading parent handed over: the listening
// sockets by listener name and the ready pipe, both nil when this process was
// not started by an upgrade. It removes both variables from the environment,
// so that this process's own upgrades start clean.
func takeInherited() (files map[string]*os.File, ready *os.File, err error) {
	listen, readyFD := os.Getenv(envListenFDs), os.Getenv(envReadyFD)
	os.Unsetenv(envListenFDs)
	os.Unsetenv(envReadyFD)
	fds, err := parseListenFDs(listen)
	if err != nil {
		return nil, nil, err
	}
	if readyFD != "" {
		fd, err := strconv.Atoi(readyFD)
		if err != nil || fd < 3 {
			return nil, nil, fmt.Errorf("%s=%q: not a file descriptor", envReadyFD, readyFD)
		}
		syscall.CloseOnExec(fd) // not for the processes this one starts
		ready = os.NewFile(uintptr(fd), "upgrade-ready")
	}
	if len(fds) > 0 {
		files = make(map[string]*os.File, len(fds))
		for name, fd := range fds {
			files[name] = os.NewFile(uintptr(fd), "listener "+name)
		}
	}
	return files, ready, nil
}

// formatListenFDs is the value of envListenFDs for sockets at the given
// descriptors, by name.
func formatListenFDs(fds map[string]int) string {
	items := make([]string, 0, len(fds))
	for _, name := range slices.Sorted(maps.Keys(fds)) {
		items = append(items, url.QueryEscape(name)+"="+strconv.Itoa(fds[name]))
	}
	return strings.Join(items, ",")
}

// parseListenFDs parses a value of envListenFDs: each name and descriptor
// once, descriptors above stderr.
func parseListenFDs(v string) (map[string]int, error) {
	fds := make(map[string]int)
	if v == "" {
		return fds, nil
	}
	seen := make(map[int]bool)
	for item := range strings.SplitSeq(v, ",") {
		esc, n, ok := strings.Cut(item, "=")
		name, nerr := url.QueryUnescape(esc)
		fd, err := strconv.Atoi(n)
		if !ok || nerr != nil || name == "" || err != nil || fd < 3 {
			return nil, fmt.Errorf("%s: %q is not NAME=FD", envListenFDs, item)
		}
		if _, dup := fds[name]; dup || seen[fd] {
			return nil, fmt.Errorf("%s: %q repeats a name or descriptor", envListenFDs, item)
		}
		fds[name], seen[fd] = fd, true
	}
	return fds, nil
}

// reportReady writes readyLine to the upgrading parent once the server
// serves, then closes the pipe; if ctx ends first it just closes it.
// parentGone closes once the process that started this one (pid ppid) has
// exited: this process then has another parent.
func parentGone(ctx context.Context, ppid int) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for os.Getppid() == ppid {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		close(done)
	}()
	return done
}

// launchedReady closes once srv serves and the processes of its launched
// pools are ready: only then may the old process stop accepting, or the
// launched pools would have nothing to send requests to.
func launchedReady(ctx context.Context, srv *server.Server) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		select {
		case <-srv.Ready():
		case <-ctx.Done():
			return
		}
		select {
		case <-srv.LaunchReady():
			close(done)
		case <-ctx.Done():
		}
	}()
	return done
}

func reportReady(ctx context.Context, ready <-chan struct{}, f *os.File, log *slog.Logger) {
	defer f.Close()
	select {
	case <-ready:
	case <-ctx.Done():
		return
	}
	if _, err := io.WriteString(f, readyLine); err != nil {
		log.Error("upgrade: cannot tell the old process we are ready", "err", err)
	}
}

// upgrader performs binary upgrades of a running server.
type upgrader struct {
	exe     string // the binary to start; "" if it could not be resolved
	exeErr  error  // why exe is ""
	args    []string
	srv     *server.Server
	log     *slog.Logger
	pidFile string // "" for none
}

// onSIGUSR2 performs an upgrade on every SIGUSR2 until ctx is done (see
// run). The returned wait blocks, once ctx is done, until no upgrade is in
// progress. SIGUSR2 stays caught until the process exits: its default action
// would end the process.
func (u *upgrader) onSIGUSR2(ctx context.Context, stop context.CancelFunc) (wait func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		u.run(ctx, sigs, stop)
	}()
	return func() { <-done }
}

// run performs an upgrade on every signal from sigs, one at a time, until ctx
// is done; a successful upgrade calls stop, which ends ctx and with it this
// process. It returns once no upgrade is in progress.
func (u *upgrader) run(ctx context.Context, sigs <-chan os.Signal, stop context.CancelFunc) {
	var busy chan struct{} // closed when the upgrade in progress ends; nil if none
	for {
		select {
		case <-ctx.Done():
			if busy != nil {
				<-busy
			}
			return
		case <-busy:
			busy = nil
		case <-sigs:
			if busy != nil {
				u.log.Warn("upgrade already in progress: SIGUSR2 ignored")
				continue
			}
			busy = make(chan struct{})
			go func() {
				defer close(busy)
				u.upgrade(ctx, stop)
			}()
		}
	}
}

// upgrade starts the new process and, once it is ready, stops this one; on
// failure it logs why and changes nothing.
func (u *upgrader) upgrade(ctx context.Context, stop context.CancelFunc) {
	u.log.Info("upgrade: starting a new process", "exe", u.exe)
	pid, err := u.start(ctx)
	if err != nil {
		u.log.Error("upgrade failed", "err", err)
		if u.pidFile != "" {
			// The new process may have replaced it before it failed.
			if err := writePIDFile(u.pidFile); err != nil {
				u.log.Error("pid file", "err", err)
			}
		}
		return
	}
	u.log.Info("upgrade: new process ready", "pid", pid)
	// New connections now go to the new process only. Those accepted just
	// before get a moment to send their request: the drain serves requests
	// in flight but closes connections still waiting for one.
	u.srv.StopAccepting()
	select {
	case <-time.After(acceptGrace):
	case <-ctx.Done():
	}
	stop()
}

// start starts the new process with this one's listening sockets and waits
// until it reports ready. On failure the new process is no longer running.
func (u *upgrader) start(ctx context.Context) (pid int, err error) {
	if u.exe == "" {
		return 0, fmt.Errorf("executable path unknown: %w", u.exeErr)
	}
	files, err := u.srv.ListenerFiles()
	if err != nil {
		return 0, fmt.Errorf("listening sockets: %w", err)
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	r, w, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("ready pipe: %w", err)
	}
	defer r.Close()
	proc, err := u.spawn(files, w)
	w.Close() // the new process has its own; ours would hide its exit
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", u.exe, err)
	}

	readyc := make(chan error, 1)
	go func() { readyc <- awaitReady(r) }()
	timer := time.NewTimer(upgradeTimeout)
	defer timer.Stop()
	kill := func() string {
		proc.Kill() // by PID: the process started above
		st, err := proc.Wait()
		if err != nil {
			return err.Error()
		}
		return st.String()
	}
	var status string
	select {
	case err = <-readyc:
		if err == nil {
			pid := proc.Pid
			proc.Release() // it runs on; it is no longer ours to wait for
			return pid, nil
		}
		status = kill()
	case <-timer.C:
		err = fmt.Errorf("not ready within %v", upgradeTimeout)
		status = kill()
		<-readyc // ends: the new process and with it the pipe's write end are gone
	case <-ctx.Done():
		err = errors.New("this process is stopping")
		status = kill()
		<-readyc
	}
	return 0, fmt.Errorf("new process (pid %d): %w (%s)", proc.Pid, err, status)
}

// spawn starts u.exe with u.args, this process's stdout and stderr, the
// listening sockets and the ready pipe's write end, and the environment that
// names them. It hands raw descriptors to syscall.ForkExec rather than
// *os.File to exec.Cmd: os.StartProcess calls File.Fd, which puts the
// descriptor in blocking mode — and with it this process's own listening
// socket, the same open file description (golang/go#29277) — so that an
// Accept could hang in the kernel, out of reach of deadlines and Close.
func (u *upgrader) spawn(files map[string]*os.File, ready *os.File) (*os.Process, error) {
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devNull.Close()
	in, err := rawFD(devNull)
	if err != nil {
		return nil, err
	}
	fds := []uintptr{in, 1, 2}
	child := make(map[string]int, len(files)) // descriptors as the new process sees them
	for _, name := range slices.Sorted(maps.Keys(files)) {
		fd, err := rawFD(files[name])
		if err != nil {
			return nil, fmt.Errorf("listener %q: %w", name, err)
		}
		child[name] = len(fds)
		fds = append(fds, fd)
	}
	fd, err := rawFD(ready)
	if err != nil {
		return nil, err
	}
	env := append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, envListenFDs+"=") || strings.HasPrefix(kv, envReadyFD+"=")
	}),
		envListenFDs+"="+formatListenFDs(child),
		envReadyFD+"="+strconv.Itoa(len(fds)))
	fds = append(fds, fd)
	pid, err := syscall.ForkExec(u.exe, append([]string{u.exe}, u.args...), &syscall.ProcAttr{Env: env, Files: fds})
	if err != nil {
		return nil, err
	}
	return os.FindProcess(pid)
}

// rawFD is f's descriptor, read without File.Fd's switch to blocking mode.
// It stays valid while f is open.
func rawFD(f *os.File) (uintptr, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var fd uintptr
	if err := rc.Control(func(s uintptr) { fd = s }); err != nil {
		return 0, err
	}
	return fd, nil
}

// awaitReady reads the new process's ready line.
func awaitReady(r io.Reader) error {
	buf := make([]byte, len(readyLine))
	_, err := io.ReadFull(r, buf)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("exited before it was ready")
	case err != nil:
		return err
	case string(buf) != readyLine:
		return fmt.Errorf("unexpected ready message %q", buf)
	}
	return nil
}

// writePIDFile writes this process's id to path, atomically (a temporary file
// renamed), so that a reader never sees a partial number.
func writePIDFile(path string) error {
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// removePIDFile removes path if it still holds this process's id: after an
// upgrade it names the new process, which must keep it.
func removePIDFile(path string) {
	b, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		os.Remove(path)
	}
}
