package proxy

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// ClientLimits bound what an HTTP engine accepts from the clients of one
// listener: the listener's limits section (the config applies its defaults).
// A zero duration or MaxBodyBytes means no limit. The cap on client
// connections (max_conns) is not here: the server enforces it around accept,
// for every engine alike.
type ClientLimits struct {
	// MaxHeaderBytes caps a request's header block (request line included):
	// beyond it the client gets 431. 0 means DefaultMaxHeaderBytes. Go's
	// net/http server, which the net_http engine and TLS listeners use, lets
	// up to 4 KiB more through.
	MaxHeaderBytes int
	// MaxBodyBytes caps a request body. A Content-Length above it gets 413
	// before the request is routed. A chunked body gets 413 if what the client
	// has sent when it is forwarded (for net/http: the first read) is already
	// past the cap, and nothing is sent; if it passes the cap later, the
	// request has been partly forwarded, so both connections are aborted (the
	// backend sees a truncated body, the client no response). An HTTP/2 body
	// without content-length is forwarded at once, so it is aborted.
	MaxBodyBytes int64
	// ReadHeaderTimeout bounds how long a client may take to send a request
	// header: from the connection's start for its first request, from the
	// request's first byte for the next ones. Beyond it the native engine
	// answers 408; net/http closes the connection without an answer.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive client connection that sends no new
	// request for this long.
	IdleTimeout time.Duration
	// WriteTimeout disconnects a client that takes no response bytes for
	// this long. It is measured from each write, not from the start of the
	// response, so a long response that keeps flowing is never cut.
	WriteTimeout time.Duration
}

// DefaultMaxHeaderBytes is the header cap of ClientLimits that set none.
const DefaultMaxHeaderBytes = 64 << 10

// headerCap is the header cap in effect.
func (l *ClientLimits) headerCap() int {
	if l.MaxHeaderBytes > 0 {
		return l.MaxHeaderBytes
	}
	return DefaultMaxHeaderBytes
}

// Lingering after an early answer (413 to a client still sending its body):
// closing a socket with unread input makes the kernel send a reset, which can
// destroy the answer before the client reads it. So the write side is shut
// (a FIN follows the answer) and what the client still sends is read and
// dropped, for at most lingerTime and lingerBytes.
const (
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 256 << 10
)

// lingerClose prepares c's close after an early answer; the caller closes c.
func lingerClose(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(lingerTime))
	io.CopyN(io.Discard, c, lingerBytes)
}

// writeDeadline is readDeadline for writes.
type writeDeadline struct{ deadline }

// set moves the write deadline to at (zero: none) unless it is already within slack of it.
func (d *writeDeadline) set(c net.Conn, at time.Time, slack time.Duration) {
	if d.due(at, slack) {
		c.SetWriteDeadline(at)
	}
}

// timerSlack is how far a deadline of timeout d may drift before it is moved:
// deadlineSlack, or an eighth of d for short timeouts, so that a deadline is
// never much earlier than it should be.
func timerSlack(d time.Duration) time.Duration { return min(deadlineSlack, d/8) }

// cappedBody is a request body of unknown length under max_body_bytes for the
// net/http engine: the bytes read before the request was forwarded (pre),
// then the rest, failing with ErrBodyTooLarge once the whole passes the cap.
// The transport reads it from its own goroutine; over may be read by others.
type cappedBody struct {
	pre  []byte
	r    io.Reader
	left int64 // bytes the rest may still bring
	over atomic.Bool
}

func (c *cappedBody) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		k := copy(p, c.pre)
		c.pre = c.pre[k:]
		return k, nil
	}
	if c.over.Load() {
		return 0, ErrBodyTooLarge
	}
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1] // one byte more than allowed shows the excess
	}
	k, err := c.r.Read(p)
	c.left -= int64(k)
	if c.left < 0 {
		c.over.Store(true)
		return 0, ErrBodyTooLarge
	}
	return k, err
}

// prereadBody reads the first bytes of a body of unknown length — what one
// read brings: what the client has sent so far, up to the cap plus one byte —
// so that a body already past the cap gets 413 before anything is forwarded.
// It returns the body to forward in r's place.
func prereadBody(r io.Reader, max int64) (*cappedBody, error) {
	buf := make([]byte, min(max+1, copyBufSize))
	var k int
	var err error
	for k == 0 && err == nil {
		k, err = r.Read(buf)
	}
	if int64(k) > max {
		return nil, ErrBodyTooLarge
	}
	if err != nil && err != io.EOF {
		return nil, err
	}
	return &cappedBody{pre: buf[:k], r: r, left: max - int64(k)}, nil
}

// passed reports whether the body went past the cap (false for a nil c: a
// body without a cap).
func (c *cappedBody) passed() bool { return c != nil && c.over.Load() }

// blame marks the failure of a relay whose request body went past the cap
// meanwhile (the transport then closed the backend connection): the client's
// doing, not the backend's, and the client connection is aborted.
func (c *cappedBody) blame(status int, abort bool, err error) (int, bool, error) {
	if err != nil && c.passed() {
		return status, true, errors.Join(ErrBodyTooLarge, err)
	}
	return status, abort, err
}
