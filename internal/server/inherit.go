package server

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"sync"
	"time"
)

// Listening sockets handed over by a parent process, for a binary upgrade
// without a refused connection: the new process accepts on the very sockets
// the old one bound, and the old one stops accepting once the new one is
// ready. They wait in s.inherited until Run binds its listeners (and the
// admin listener) through listen; Run then closes those no listener took.

// adminSocket is the admin listener's key in Inherit and ListenerFiles.
const adminSocket = "admin"

// Inherit gives the server listening sockets to use instead of binding, keyed
// by listener name (the admin listener's key is "admin"). Call it before Run.
// A socket is used by the listener of that name if its address is the one the
// config names; otherwise, or when no listener has that name, it is closed
// once Run has bound every listener. Inherit takes ownership of the files: it
// closes them (the sockets stay open in the listeners made from them).
func (s *Server) Inherit(files map[string]*os.File) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(files)) {
		f := files[name]
		if s.running {
			s.log.Error("inherited socket ignored: the server is already running", "listener", name)
			f.Close()
			continue
		}
		ln, err := fileListener(f)
		if err != nil {
			s.log.Error("inherited socket unusable", "listener", name, "err", err)
			continue
		}
		if old, ok := s.inherited[name]; ok {
			old.Close()
		}
		if s.inherited == nil {
			s.inherited = make(map[string]*net.TCPListener)
		}
		s.inherited[name] = ln
		s.log.Info("inherited socket", "listener", name, "addr", ln.Addr().String())
	}
}

// fileListener makes a TCP listener of f, which it closes.
func fileListener(f *os.File) (*net.TCPListener, error) {
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("not a TCP socket: %s", ln.Addr())
	}
	return tl, nil
}

// listen returns the socket for the listener name on addr: the inherited one
// of that name if its address is addr, else the socket of a running listener
// bound to addr (runningSocket), else a freshly bound one. An inherited socket
// is used at most once. The caller holds s.mu.
func (s *Server) listen(name, addr string) (net.Listener, error) {
	var ln *net.TCPListener
	if in, ok := s.inherited[name]; ok {
		delete(s.inherited, name)
		if sameAddr(in.Addr(), addr) {
			ln = in
		} else {
			s.log.Warn("inherited socket not used: address changed", "listener", name,
				"inherited", in.Addr().String(), "listen", addr)
			in.Close()
		}
	}
	if ln == nil && name != adminSocket {
		ln = s.runningSocket(name, addr)
	}
	if ln == nil {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		ln = l.(*net.TCPListener)
	}
	return newGatedListener(ln), nil
}

// runningSocket returns a duplicate of the socket of a running listener bound
// to addr, or nil. A listener that a reload rebuilds on its address (its
// engine, protocol or limits changed) takes the socket over this way: binding
// it again would fail while the old listener drains, and no connection is
// refused in between. The old listener closes only its own descriptor when it
// shuts down. The caller holds s.mu.
func (s *Server) runningSocket(name, addr string) *net.TCPListener {
	for _, l := range s.listeners {
		if !sameAddr(l.ln.Addr(), addr) {
			continue
		}
		f, err := socketFile(l.ln)
		if err == nil {
			var ln *net.TCPListener
			if ln, err = fileListener(f); err == nil {
				s.log.Info("socket taken over from the running listener", "listener", name,
					"from", l.cfg.Name, "addr", ln.Addr().String())
				return ln
			}
		}
		s.log.Warn("socket of the running listener not taken over", "listener", name,
			"from", l.cfg.Name, "err", err)
		return nil
	}
	return nil
}

// closeInherited closes the inherited sockets no listener took. Run calls it
// once every listener is bound. The caller holds s.mu.
func (s *Server) closeInherited() {
	for name, ln := range s.inherited {
		s.log.Warn("inherited socket not used: no listener of that name", "listener", name,
			"addr", ln.Addr().String())
		ln.Close()
		delete(s.inherited, name)
	}
}

// sameAddr reports whether the bound address a is what binding addr gives:
// the same port and IP, any unspecified IP (0.0.0.0, ::, none) matching any
// other, since Go binds them all as one dual-stack socket.
func sameAddr(a net.Addr, addr string) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	want, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return false
	}
	unspecified := func(ip net.IP) bool { return len(ip) == 0 || ip.IsUnspecified() }
	return ta.Port == want.Port &&
		(ta.IP.Equal(want.IP) || unspecified(ta.IP) && unspecified(want.IP))
}

// ListenerFiles returns a duplicate of every listening socket, keyed by
// listener name (an inherited socket not taken yet under its own key), for
// handing to a new process: ballast's binary upgrade. The caller closes the
// files; the server keeps serving on its own descriptors.
func (s *Server) ListenerFiles() (map[string]*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return nil, errors.New("server is not running")
	}
	files := make(map[string]*os.File, len(s.listeners))
	for name, l := range s.listeners {
		f, err := socketFile(l.ln)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, fmt.Errorf("listener %q: %w", name, err)
		}
		files[name] = f
	}
	if s.admin != nil {
		f, err := socketFile(s.admin.ln)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, fmt.Errorf("admin listener: %w", err)
		}
		files[adminSocket] = f
	}
	return files, nil
}

// socketFile duplicates ln's descriptor.
func socketFile(ln net.Listener) (*os.File, error) {
	switch l := ln.(type) {
	case *gatedListener:
		return l.File()
	case *net.TCPListener:
		return l.File()
	}
	return nil, fmt.Errorf("not a TCP socket: %T", ln)
}

// StopAccepting makes every listener stop accepting connections while its
// socket stays open, so that new connections wait in the kernel's queue for
// the other process holding the socket — the new one of a binary upgrade.
// Connections already accepted are served on. The caller then ends Run's
// context to drain them; waiting a moment first lets a connection accepted
// just now send its first request, which a drain would otherwise cut (it
// closes connections that wait for a request).
func (s *Server) StopAccepting() {
	s.mu.Lock()
	var gates []*gatedListener
	for _, l := range s.listeners {
		if g, ok := l.ln.(*gatedListener); ok {
			gates = append(gates, g)
		}
	}
	s.mu.Unlock()
	for _, g := range gates {
		g.stop() // waits for the Accept in progress: not under s.mu
	}
}

// gatedListener is a TCP listener whose accepting can stop without closing
// the socket (StopAccepting). It costs a read lock per accepted connection,
// nothing per request.
type gatedListener struct {
	*net.TCPListener
	mu        sync.RWMutex  // held for reading by Accept while it waits
	stopped   bool          // under mu
	closed    chan struct{} // closed by Close
	closeOnce sync.Once
}

func newGatedListener(ln *net.TCPListener) *gatedListener {
	return &gatedListener{TCPListener: ln, closed: make(chan struct{})}
}

// Accept waits for the next connection; once stopped, until Close.
func (l *gatedListener) Accept() (net.Conn, error) {
	for {
		l.mu.RLock()
		if l.stopped {
			l.mu.RUnlock()
			<-l.closed
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed}
		}
		c, err := l.TCPListener.Accept()
		l.mu.RUnlock()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue // woken by stop, the only one to set a deadline: park
		}
		return c, err
	}
}

// stop makes Accept return no more connections once it returns. A
// connection the kernel hands to the Accept in progress meanwhile is still
// returned, and served.
func (l *gatedListener) stop() {
	l.TCPListener.SetDeadline(time.Unix(1, 0)) // wakes the Accept in progress,
	l.mu.Lock()                                // which then lets go of mu
	l.stopped = true
	l.mu.Unlock()
}

// Close closes the socket (this process's descriptor of it).
func (l *gatedListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.TCPListener.Close()
}
