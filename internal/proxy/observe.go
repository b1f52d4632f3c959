package proxy

import (
	"net"
	"time"

	"ballast/internal/accesslog"
)

// Observer is told of every request a listener answered, once it is done:
// the metrics and the access log. It runs on the request path, so it must not
// block; the entry's strings are valid only during the call.
type Observer interface {
	Observe(e *accesslog.Entry)
}

// SetObserver sets (nil: removes) the listener's observer.
func (d *Dispatcher) SetObserver(o Observer) {
	if o == nil {
		d.observer.Store(nil)
		return
	}
	d.observer.Store(&o)
}

// loadObserver returns the observer, or nil: one atomic load per request.
func (d *Dispatcher) loadObserver() Observer {
	if p := d.observer.Load(); p != nil {
		return *p
	}
	return nil
}

// fillAttempt copies what the attempt knows into e.
func fillAttempt(e *accesslog.Entry, a *Attempt) {
	if a.Upstream == nil {
		return
	}
	e.Pool = a.Upstream.Pool.Name()
	e.Backend = a.Backend.Addr
	e.Retries = a.Retries
	e.Queued = a.Queued
	if !a.responded.IsZero() {
		e.TTFB = a.responded.Sub(e.Time)
	}
}

// countingConn is a client connection's write side for the native engine: it
// counts the bytes written, and with a write timeout moves the write deadline
// before each write (by more than slack only), so that a client that takes no
// bytes for that long is cut off while one that keeps reading never is.
type countingConn struct {
	net.Conn
	n       int64
	timeout time.Duration
	slack   time.Duration
	wd      writeDeadline
}

func (c *countingConn) Write(p []byte) (int, error) {
	if c.timeout > 0 {
		c.wd.set(c.Conn, time.Now().Add(c.timeout), c.slack)
	}
	k, err := c.Conn.Write(p)
	c.n += int64(k)
	return k, err
}

// clearDeadline removes the write deadline: a tunnel's bytes are written to
// the connection directly, and may stop for as long as the peers like.
func (c *countingConn) clearDeadline() { c.wd.set(c.Conn, time.Time{}, 0) }

// observe reports the request cc just finished to obs. a may be the zero
// Attempt (no backend was chosen); bodyIn is the request body's length.
func (cc *clientConn) observe(obs Observer, a *Attempt, bodyIn int64) {
	e := &cc.entry
	m := &cc.meta
	*e = accesslog.Entry{
		Time:      cc.logStart,
		Client:    cc.ip,
		Method:    unsafeString(m.method),
		Host:      unsafeString(m.host),
		Path:      unsafeString(m.path),
		Status:    cc.sent,
		BytesIn:   int64(cc.headLen) + bodyIn,
		BytesOut:  cc.out.n,
		Duration:  time.Since(cc.logStart),
		RequestID: unsafeString(m.id),
	}
	fillAttempt(e, a)
	obs.Observe(e)
	*e = accesslog.Entry{}
}
