package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"ballast/internal/backend"
	"ballast/internal/health"
)

// Pool is where a supervisor's instances serve; its owner implements it.
type Pool interface {
	// Join adds b, in state starting, to the pool.
	Join(b *backend.Backend) error
	// Leave takes b out of the pool (a no-op if it is not there).
	Leave(b *backend.Backend)
}

// ErrNotReady: a replacement instance did not become ready, so a rolling
// restart (or a scale-up) stopped; the instances it would have replaced keep
// serving.
var ErrNotReady = errors.New("instance did not become ready")

// Supervisor runs one pool's instances.
type Supervisor struct {
	name string
	pool Pool
	log  *slog.Logger
	sp   *spawner

	ctx    context.Context
	cancel context.CancelFunc
	ops    chan op
	opsEnd chan struct{}  // closed when the ops goroutine has returned
	wg     sync.WaitGroup // every instance's goroutine
	ports  ports

	mu     sync.Mutex // guards spec, insts, nextID, owned
	spec   Spec
	insts  []*instance // the current set, oldest first
	nextID int
	owned  map[*backend.Backend]struct{}

	restarts atomic.Uint64
	onChange atomic.Pointer[func()]
	ready    chan struct{} // closed once the first set is ready (or has given up)
}

// op is one operation on the instance set; they run one at a time.
type op struct {
	do    func() error
	reply chan error
}

// New returns a supervisor for the pool name running spec; Start starts it.
func New(name string, spec Spec, p Pool, log *slog.Logger) *Supervisor {
	s := &Supervisor{
		name: name, pool: p, log: log.With("pool", name),
		spec: spec, owned: make(map[*backend.Backend]struct{}),
		ops: make(chan op), opsEnd: make(chan struct{}), ready: make(chan struct{}),
	}
	s.ports.used = make(map[int]bool)
	return s
}

// OnChange sets a function called (from the supervisor's goroutines, with no
// lock held) after an instance became ready or went down.
func (s *Supervisor) OnChange(f func()) { s.onChange.Store(&f) }

func (s *Supervisor) changed() {
	if f := s.onChange.Load(); f != nil {
		(*f)()
	}
}

// Start launches the instances and returns their backends, in state
// starting, for the caller to add to the pool itself — at once, so that
// requests arriving before the first instance is ready find it starting and
// wait for it (the caller may hold the lock Pool.Join takes). Ready closes
// when all of them are ready (or the start timeout passed). ctx bounds the
// supervisor's life, but Stop is what stops the processes.
func (s *Supervisor) Start(ctx context.Context) []*backend.Backend {
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.sp = newSpawner()
	spec := s.currentSpec()
	var first []*instance
	var bs []*backend.Backend
	for range spec.Instances {
		in, err := s.prepare(spec)
		if err != nil {
			s.log.Error("instance not launched", "err", err)
			break
		}
		s.mu.Lock()
		s.owned[in.b] = struct{}{}
		s.mu.Unlock()
		first = append(first, in)
		bs = append(bs, in.b)
	}
	for _, in := range first {
		s.wg.Go(func() { in.run(s.ctx) })
	}
	go s.loop()
	go func() {
		_ = s.submit(context.Background(), func() error {
			defer close(s.ready)
			var errs []error
			for _, in := range first {
				errs = append(errs, s.awaitReady(in, spec))
			}
			return errors.Join(append(errs, s.scale(s.currentSpec()))...)
		})
	}()
	return bs
}

// Ready is closed once the first instances are ready, or have had their
// start_timeout to become so.
func (s *Supervisor) Ready() <-chan struct{} { return s.ready }

// loop runs the operations one at a time until Stop.
func (s *Supervisor) loop() {
	defer close(s.opsEnd)
	for {
		select {
		case o := <-s.ops:
			o.reply <- o.do()
		case <-s.ctx.Done():
			return
		}
	}
}

// submit runs do on the operations goroutine and waits for it (or ctx).
func (s *Supervisor) submit(ctx context.Context, do func() error) error {
	o := op{do: do, reply: make(chan error, 1)}
	select {
	case s.ops <- o:
	case <-s.ctx.Done():
		return errors.New("supervisor stopped")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-o.reply:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w (the operation goes on)", ctx.Err())
	}
}

// Restart replaces every instance, one at a time: start a new one, wait until
// it is ready, then drain and stop an old one. It returns when done, or with
// the first error (the old instances not yet replaced keep serving).
func (s *Supervisor) Restart(ctx context.Context) error {
	return s.submit(ctx, func() error { return s.roll(s.currentSpec(), nil) })
}

// Apply makes the supervisor run spec: instances whose command, workdir or
// env differ from it, or whose port is outside its range, are replaced one at
// a time; then the count is scaled up or down. It returns at once; the work
// is logged. Applied twice in a row, the later spec wins.
func (s *Supervisor) Apply(spec Spec) {
	s.mu.Lock()
	s.spec = spec
	insts := slices.Clone(s.insts)
	s.mu.Unlock()
	for _, in := range insts {
		if b, _ := in.backend(); b != nil {
			b.SetMaxConns(spec.MaxConns)
		}
	}
	go func() {
		err := s.submit(context.Background(), func() error {
			spec := s.currentSpec() // the latest, whichever Apply this operation came from
			if err := s.roll(spec, func(in *instance) bool {
				_, port := in.backend()
				return !in.spec.SameProcess(spec) || port < spec.PortLo || port > spec.PortHi
			}); err != nil {
				return err
			}
			return s.scale(spec)
		})
		if err != nil {
			s.log.Error("launch change not applied", "err", err)
		}
	}()
}

// Stop drains and stops every instance (all at once) and ends the supervisor.
func (s *Supervisor) Stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	<-s.opsEnd // no instance is launched after this
	s.mu.Lock()
	insts := slices.Clone(s.insts)
	s.mu.Unlock()
	for _, in := range insts {
		in.requestStop()
	}
	s.wg.Wait()
	s.sp.close()
}

// roll replaces the instances that match (all when match is nil), one at a
// time, by new ones running spec.
func (s *Supervisor) roll(spec Spec, match func(*instance) bool) error {
	s.mu.Lock()
	olds := slices.Clone(s.insts)
	s.mu.Unlock()
	n := 0
	for _, old := range olds {
		if match != nil && !match(old) {
			continue
		}
		fresh, err := s.launch(spec)
		if err != nil {
			return err
		}
		if err := s.awaitReady(fresh, spec); err != nil {
			s.retire(fresh)
			return err
		}
		s.retire(old)
		n++
	}
	if n > 0 {
		s.log.Info("rolling restart done", "replaced", n)
	}
	return nil
}

// scale starts or stops instances until spec.Instances run. New instances
// start together and it waits until each is ready; extra ones (the newest)
// are drained and stopped one at a time.
func (s *Supervisor) scale(spec Spec) error {
	s.mu.Lock()
	have := len(s.insts)
	s.mu.Unlock()
	var fresh []*instance
	for ; have < spec.Instances; have++ {
		in, err := s.launch(spec)
		if err != nil {
			return err
		}
		fresh = append(fresh, in)
	}
	var errs []error
	for _, in := range fresh {
		errs = append(errs, s.awaitReady(in, spec)) // one that is not keeps trying, with backoff
	}
	for ; have > spec.Instances; have-- {
		s.mu.Lock()
		last := s.insts[len(s.insts)-1]
		s.mu.Unlock()
		s.retire(last)
	}
	return errors.Join(errs...)
}

// awaitReady waits until in is ready; it gives up after the start timeout
// when in keeps crashing.
func (s *Supervisor) awaitReady(in *instance, spec Spec) error {
	t := time.NewTimer(spec.StartTimeout)
	defer t.Stop()
	select {
	case <-in.ready:
		return nil
	case <-t.C:
	case <-s.ctx.Done():
		return errors.New("supervisor stopped")
	}
	why := "not ready within start_timeout " + spec.StartTimeout.String()
	if r := in.lastExit.Load(); r != nil {
		why += "; last exit: " + *r
	}
	return fmt.Errorf("instance %d: %w: %s", in.id, ErrNotReady, why)
}

// launch adds an instance running spec on a free port to the pool and
// starts it.
func (s *Supervisor) launch(spec Spec) (*instance, error) {
	if s.ctx.Err() != nil {
		return nil, errors.New("supervisor stopped")
	}
	in, err := s.prepare(spec)
	if err != nil {
		return nil, err
	}
	if err := s.join(in.b); err != nil {
		s.mu.Lock()
		s.insts = slices.DeleteFunc(s.insts, func(x *instance) bool { return x == in })
		s.mu.Unlock()
		s.ports.release(in.port)
		return nil, err
	}
	s.wg.Go(func() { in.run(s.ctx) })
	return in, nil
}

// prepare takes a free port and makes an instance running spec on it, with
// its backend (starting); it is in the set, not yet in the pool nor started.
func (s *Supervisor) prepare(spec Spec) (*instance, error) {
	port, err := s.ports.take(spec)
	if err != nil {
		return nil, err
	}
	b := s.newBackend(spec.addr(port))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	in := &instance{id: s.nextID, spec: spec, sup: s, port: port, b: b,
		ready: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	in.log = s.log.With("instance", in.id)
	in.setState(StateStarting)
	s.insts = append(s.insts, in)
	return in, nil
}

// retire drains and stops in and waits until it is gone.
func (s *Supervisor) retire(in *instance) {
	in.requestStop()
	<-in.done
	s.mu.Lock()
	s.insts = slices.DeleteFunc(s.insts, func(x *instance) bool { return x == in })
	s.mu.Unlock()
	_, port := in.backend()
	s.ports.release(port)
}

func (s *Supervisor) newBackend(addr string) *backend.Backend {
	b := backend.New(s.name, addr, 1)
	b.SetMaxConns(s.currentSpec().MaxConns)
	b.SetState(backend.StateStarting)
	return b
}

// join adds b to the pool as one of the supervisor's own.
func (s *Supervisor) join(b *backend.Backend) error {
	s.mu.Lock()
	s.owned[b] = struct{}{}
	s.mu.Unlock()
	if err := s.pool.Join(b); err != nil {
		s.disown(b)
		return err
	}
	return nil
}

func (s *Supervisor) disown(b *backend.Backend) {
	s.mu.Lock()
	delete(s.owned, b)
	s.mu.Unlock()
}

// Owns reports whether b is one of the supervisor's instances' backends
// (what a reload must keep in the pool).
func (s *Supervisor) Owns(b *backend.Backend) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.owned[b]
	return ok
}

// Spec returns what the supervisor runs now (the latest Apply).
func (s *Supervisor) Spec() Spec { return s.currentSpec() }

func (s *Supervisor) currentSpec() Spec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spec
}

// Instance is one instance as the admin API shows it.
type Instance struct {
	ID       int
	PID      int
	Port     int
	Addr     string
	State    string
	Restarts uint64
	LastExit string
	Since    time.Time
}

// Status lists the instances.
func (s *Supervisor) Status() []Instance {
	s.mu.Lock()
	insts := slices.Clone(s.insts)
	s.mu.Unlock()
	out := make([]Instance, 0, len(insts))
	for _, in := range insts {
		b, port := in.backend()
		i := Instance{ID: in.id, PID: int(in.pid.Load()), Port: port, Addr: b.Addr,
			State: State(in.state.Load()).String(), Restarts: in.restarts.Load(),
			Since: time.Unix(0, in.since.Load()).UTC()}
		if r := in.lastExit.Load(); r != nil {
			i.LastExit = *r
		}
		out = append(out, i)
	}
	return out
}

// Restarts counts the instance exits nobody asked for, since start.
func (s *Supervisor) Restarts() uint64 { return s.restarts.Load() }

// ports hands out the instances' ports: each one free when taken (nothing
// listens on it) and not held by another instance.
type ports struct {
	mu   sync.Mutex
	used map[int]bool
	next int
}

func (p *ports) take(spec Spec) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := spec.PortHi - spec.PortLo + 1
	if p.next < spec.PortLo || p.next > spec.PortHi {
		p.next = spec.PortLo
	}
	for range n {
		port := p.next
		p.next++
		if p.next > spec.PortHi {
			p.next = spec.PortLo
		}
		if !p.used[port] && portFree(port) {
			p.used[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port in %d-%d", spec.PortLo, spec.PortHi)
}

func (p *ports) release(port int) {
	p.mu.Lock()
	delete(p.used, port)
	p.mu.Unlock()
}

// portFree reports whether nothing listens on port, on any address.
func portFree(port int) bool {
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// probeFunc turns a readiness check into a probe with a timeout.
func probeFunc(ready func(string) error) func(context.Context, string) error {
	if ready != nil {
		return func(_ context.Context, addr string) error { return ready(addr) }
	}
	tcp := health.NewTCPChecker()
	return func(ctx context.Context, addr string) error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return tcp.Check(ctx, addr)
	}
}
