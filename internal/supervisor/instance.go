package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"ballast/internal/backend"
)

// State is where an instance is in its life.
type State int32

// Instance states, as the admin API shows them.
const (
	StateStarting State = iota // spawned, not ready yet
	StateRunning               // ready, serving
	StateBackoff               // exited; waiting to be started again
	StateStopping              // draining, then being stopped
	StateStopped               // gone for good
)

func (s State) String() string {
	switch s {
	case StateStarting:
		return "starting"
	case StateRunning:
		return "running"
	case StateBackoff:
		return "backoff"
	case StateStopping:
		return "stopping"
	default:
		return "stopped"
	}
}

// Backoff bounds of a crashing instance's restarts: the first restart waits
// backoffMin, each crash in a row doubles it up to backoffMax (±20 % jitter),
// and an instance that stayed up for stableAfter starts from backoffMin again.
const (
	backoffMin  = 200 * time.Millisecond
	backoffMax  = 30 * time.Second
	stableAfter = 10 * time.Second
	// readyEvery is how often a starting instance is probed.
	readyEvery = 100 * time.Millisecond
)

// instance is one supervised copy of the command, on its own port, with its
// backend in the pool. Its goroutine (run) starts it, restarts it when it
// exits, and stops it when asked.
type instance struct {
	id   int
	spec Spec // what it runs (the pool's spec may change under it: see Supervisor)
	sup  *Supervisor
	log  *slog.Logger

	mu   sync.Mutex // guards port, b
	port int
	b    *backend.Backend

	state    atomic.Int32
	pid      atomic.Int64
	restarts atomic.Uint64 // exits that were not asked for
	crashes  atomic.Int32  // exits in a row without staying up for stableAfter
	lastExit atomic.Pointer[string]
	since    atomic.Int64 // unix nanoseconds of the last state change

	ready     chan struct{} // closed the first time the instance is ready
	readyOnce sync.Once
	stop      chan struct{} // closed to ask the instance to drain and stop
	stopOnce  sync.Once
	done      chan struct{} // closed when it has stopped and left the pool
}

func (in *instance) setState(s State) {
	in.state.Store(int32(s))
	in.since.Store(time.Now().UnixNano())
}

// backend returns the instance's backend and port.
func (in *instance) backend() (*backend.Backend, int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.b, in.port
}

// requestStop asks the instance to drain and stop; done closes when it has.
func (in *instance) requestStop() { in.stopOnce.Do(func() { close(in.stop) }) }

// run is the instance's goroutine: start, wait until ready, serve until the
// process exits (then back off and start again) or a stop is asked.
func (in *instance) run(ctx context.Context) {
	defer close(in.done)
	for {
		started := time.Now()
		stopped := in.runOnce(ctx)
		if stopped {
			in.setState(StateStopped)
			return
		}
		n := in.crashes.Add(1)
		if time.Since(started) >= stableAfter {
			in.crashes.Store(1)
			n = 1
		}
		in.restarts.Add(1)
		in.sup.restarts.Add(1)
		delay := backoff(int(n))
		in.setState(StateBackoff)
		in.log.Warn("instance will be restarted", "in", delay.Round(time.Millisecond).String(), "crashes_in_a_row", n)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-in.stop:
			t.Stop()
			in.leave()
			in.setState(StateStopped)
			return
		}
	}
}

// backoff is the wait before restart number n (1-based) of a crash loop.
func backoff(n int) time.Duration {
	d := backoffMin
	for i := 1; i < n && d < backoffMax; i++ {
		d *= 2
	}
	d = min(d, backoffMax)
	jitter := 0.8 + 0.4*rand.Float64()
	return time.Duration(float64(d) * jitter)
}

// runOnce starts the process once and follows it: it reports true when the
// instance was stopped on request (and has left the pool), false when the
// process exited, could not start, or never became ready.
func (in *instance) runOnce(ctx context.Context) (stopped bool) {
	in.setState(StateStarting)
	if err := in.ensurePort(); err != nil {
		in.exited(err.Error())
		return false
	}
	b, port := in.backend()
	b.SetState(backend.StateStarting)
	argv := in.spec.argv(port)
	p, err := in.sup.sp.start(argv, in.spec.Workdir, environ(in.spec.Env), in.log)
	if err != nil {
		in.log.Error("instance did not start", "err", err, "command", argv)
		in.exited("start: " + err.Error())
		return false
	}
	in.pid.Store(int64(p.pid))
	in.log.Info("instance started", "pid", p.pid, "port", port)

	// Starting: probe until ready; it gets no traffic meanwhile.
	spec := in.sup.currentSpec()
	deadline := time.NewTimer(spec.StartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(readyEvery)
	defer tick.Stop()
	probe := probeFunc(spec.Ready)
	for ready := false; !ready; {
		select {
		case <-p.done:
			in.died(p, b)
			return false
		case <-in.stop:
			in.terminate(p, spec.StopTimeout)
			in.leave()
			return true
		case <-deadline.C:
			in.log.Error("instance not ready in time; killing it", "start_timeout", spec.StartTimeout.String())
			in.terminate(p, spec.StopTimeout)
			in.exited("not ready within start_timeout " + spec.StartTimeout.String())
			b.SetState(backend.StateDown)
			return false
		case <-tick.C:
			ready = probe(ctx, b.Addr) == nil
		}
	}
	b.CompareAndSwapState(backend.StateStarting, backend.StateUp)
	in.setState(StateRunning)
	in.readyOnce.Do(func() { close(in.ready) })
	in.sup.changed()
	in.log.Info("instance ready", "pid", p.pid, "backend", b.Addr)

	select {
	case <-p.done:
		in.died(p, b)
		in.sup.changed()
		return false
	case <-in.stop:
		in.drainAndStop(p, b)
		return true
	}
}

// drainAndStop takes the instance out of rotation, lets its requests in
// flight finish, then stops the process (SIGTERM, grace, SIGKILL) and takes
// the backend out of the pool. Stopping only a drained process matters: an
// app server's graceful stop may reset connections still waiting in its
// listen backlog.
func (in *instance) drainAndStop(p *process, b *backend.Backend) {
	in.setState(StateStopping)
	spec := in.sup.currentSpec()
	b.SetState(backend.StateDraining)
	ctx, cancel := context.WithTimeout(context.Background(), spec.StopTimeout)
	err := b.WaitIdle(ctx)
	cancel()
	if err != nil {
		in.log.Warn("instance still busy after stop_timeout; stopping it anyway", "in_flight", b.InFlight())
	}
	in.terminate(p, spec.StopTimeout)
	in.leave()
}

// terminate sends SIGTERM to the process group, waits up to grace for the
// process to exit, then SIGKILLs the group.
func (in *instance) terminate(p *process, grace time.Duration) {
	p.signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	select {
	case <-p.done:
		t.Stop()
	case <-t.C:
		in.log.Warn("instance did not stop in time; killing it", "pid", p.pid, "stop_timeout", grace.String())
		p.signal(syscall.SIGKILL)
		<-p.done
	}
	p.signal(syscall.SIGKILL) // workers left behind by their parent
	in.log.Info("instance stopped", "pid", p.pid, "exit", exitReason(p.err))
}

// died handles the unasked-for exit of p: the backend goes down at once, and
// workers the process left behind (they would hold its port) are killed.
func (in *instance) died(p *process, b *backend.Backend) {
	in.exited(exitReason(p.err))
	b.SetState(backend.StateDown)
	p.signal(syscall.SIGKILL)
}

// exited records an exit that nobody asked for.
func (in *instance) exited(reason string) {
	in.lastExit.Store(&reason)
	in.log.Warn("instance exited", "reason", reason)
}

// leave takes the instance's backend out of the pool.
func (in *instance) leave() {
	b, _ := in.backend()
	in.sup.pool.Leave(b)
	in.sup.disown(b)
}

// ensurePort makes sure the instance's port is still free before a restart;
// if something else took it, the instance moves to another free port (and a
// new backend address).
func (in *instance) ensurePort() error {
	in.mu.Lock()
	port, old := in.port, in.b
	in.mu.Unlock()
	if portFree(port) {
		return nil
	}
	np, err := in.sup.ports.take(in.sup.currentSpec())
	if err != nil {
		return fmt.Errorf("port %d is taken and %w", port, err)
	}
	in.log.Warn("instance port taken by another process; moving", "port", port, "new_port", np)
	in.sup.pool.Leave(old)
	in.sup.disown(old)
	in.sup.ports.release(port)
	nb := in.sup.newBackend(in.spec.addr(np))
	in.mu.Lock()
	in.port, in.b = np, nb
	in.mu.Unlock()
	return in.sup.join(nb)
}

// exitReason words a process's exit status.
func exitReason(err error) string {
	if err == nil {
		return "exit status 0"
	}
	var ee interface{ Sys() any }
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by " + unix.SignalName(ws.Signal())
		}
	}
	return err.Error()
}
