package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"ballast/internal/accesslog"
	"ballast/internal/balancer"
	"ballast/internal/h1"
)

// Buffers of the native engine's client side.
const (
	// nativeReadBuf is a client connection's read buffer while it is busy.
	nativeReadBuf = 16 << 10
	// nativeWriteBuf is a client connection's write buffer while it is busy.
	nativeWriteBuf = 16 << 10
	// nativeIdleBuf is what an idle keep-alive connection keeps: the first
	// bytes of its next request land here, so an idle connection holds no
	// big buffer.
	nativeIdleBuf = 512
)

// Native is ballast's own HTTP/1.1 engine for plaintext listeners: strict
// parsing (package h1), one goroutine per client connection, keep-alive
// connections to backends reused without extra goroutines, bodies streamed
// through pooled buffers, no allocation per request in the steady state.
// Routing, balancing and accounting are the Dispatcher's, as for every engine.
type Native struct {
	d   *Dispatcher
	log *slog.Logger

	lim        ClientLimits
	maxHeader  int           // lim's header cap in effect
	idleSlack  time.Duration // how far the idle deadline may drift
	writeSlack time.Duration // how far the write deadline may drift

	conns    connSet[*clientConn]
	closing  atomic.Bool
	states   sync.Pool // *reqState
	readers  sync.Pool // *bufio.Reader of nativeReadBuf
	writers  sync.Pool // *bufio.Writer of nativeWriteBuf
	bodyBufs sync.Pool // *[]byte of copyBufSize
}

// NewNative returns the native engine for a listener whose clients are held
// to lim.
func NewNative(d *Dispatcher, log *slog.Logger, lim ClientLimits) *Native {
	n := &Native{d: d, log: log, lim: lim, maxHeader: lim.headerCap(),
		idleSlack: timerSlack(lim.IdleTimeout), writeSlack: timerSlack(lim.WriteTimeout)}
	n.states.New = func() any { return new(reqState) }
	n.readers.New = func() any { return bufio.NewReaderSize(nil, nativeReadBuf) }
	n.writers.New = func() any { return bufio.NewWriterSize(nil, nativeWriteBuf) }
	n.bodyBufs.New = func() any { b := make([]byte, copyBufSize); return &b }
	return n
}

// Serve accepts connections on ln until it is closed.
func (n *Native) Serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond) // out of file descriptors: back off
				continue
			}
			return err
		}
		cc := &clientConn{n: n, c: c, ip: remoteIP(c), fresh: true,
			out: countingConn{Conn: c, timeout: n.lim.WriteTimeout, slack: n.writeSlack}}
		if !n.conns.add(c, cc) {
			c.Close()
			continue
		}
		go func() {
			defer n.conns.done(c)
			cc.serve()
		}()
	}
}

// Shutdown closes idle keep-alive connections at once, lets busy ones finish
// their current exchange (answering with "Connection: close"), and waits for
// them until ctx is done; then it closes the rest (and the backend
// connections they wait on), and reports whether it had to. The caller closes
// the listener first.
func (n *Native) Shutdown(ctx context.Context) bool {
	n.closing.Store(true)
	n.conns.each((*clientConn).wakeIfIdle)
	return n.conns.shutdown(ctx, func() {
		n.conns.each(func(cc *clientConn) {
			if bc := cc.backend.Load(); bc != nil {
				bc.c.Close()
			}
		})
	})
}

// remoteIP is the client's address, read without formatting and parsing it.
func remoteIP(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	return clientAddr(c.RemoteAddr().String())
}

// clientConn is one client connection served by the native engine.
type clientConn struct {
	n   *Native
	c   net.Conn
	out countingConn // c's write side: the access log's bytes out, the write deadline
	ip  netip.Addr

	fresh  bool // no request began on the connection yet
	linger bool // answered early, with part of the request unread: close with lingerClose

	idle    atomic.Bool           // waiting for the next request
	backend atomic.Pointer[bconn] // the backend connection of the exchange in progress

	// The first bytes of each request are read into first, so that an idle
	// connection needs no pooled buffer; src then replays them before reading
	// on from the connection.
	first [nativeIdleBuf]byte
	src   prefixReader

	br *bufio.Reader
	bw *bufio.Writer
	rd readDeadline

	// The state of the request being served: pooled like br and bw, so that
	// an idle connection holds none of it. Its fields are promoted (cc.req).
	*reqState
}

// reqState is what serving one request needs, reused from request to request
// through a pool: no allocation per request, and none kept while idle.
type reqState struct {
	headStart time.Time // when the connection (first request) or a header that did not come in one read began
	req       h1.Request
	headLen   int    // length of req's header block in br
	scratch   []byte // reused for building header blocks and chunk frames
	fixed     h1.FixedReader
	chunked   h1.ChunkedReader
	breq      balancer.Request // what routing and balancing see of req
	meta      reqMeta          // copies of req's fields still needed once the body is read
	attempt   Attempt
	// For the observer (metrics, access log): when the request began, the
	// status sent to the client (0: none), the entry handed to it.
	logStart time.Time
	sent     int
	entry    accesslog.Entry
	ex       exchange
}

// wakeIfIdle makes an idle connection's pending read return, so that it
// notices the shutdown and closes.
func (cc *clientConn) wakeIfIdle() {
	if cc.idle.Load() {
		cc.c.SetReadDeadline(time.Unix(1, 0))
	}
}

// serve runs the connection's request loop.
func (cc *clientConn) serve() {
	defer cc.close()
	defer cc.release()
	for {
		if !cc.awaitRequest() {
			return
		}
		if !cc.serveOne() {
			return
		}
		if cc.n.closing.Load() {
			return
		}
	}
}

// close closes the connection, lingering first after an early answer.
func (cc *clientConn) close() {
	if cc.linger {
		lingerClose(cc.c)
	}
	cc.c.Close()
}

// awaitRequest waits for the first bytes of the next request without holding
// a pooled buffer, then takes one. It reports false when the connection is
// done (closed, idle timeout, shutdown).
func (cc *clientConn) awaitRequest() bool {
	if cc.br != nil && cc.br.Buffered() > 0 {
		cc.headStart = time.Time{}
		return true // a pipelined request is already here
	}
	cc.release()
	cc.idle.Store(true)
	// A request's first byte must come within idle_timeout. A new
	// connection's first request must also come whole within
	// read_header_timeout of the connection's start, so that a client that
	// opens connections and trickles bytes holds none for long; later
	// requests get read_header_timeout from their first byte (readHead).
	var headStart time.Time
	rht, idle := cc.n.lim.ReadHeaderTimeout, cc.n.lim.IdleTimeout
	switch {
	case cc.fresh && rht > 0:
		headStart = time.Now()
		wait := rht
		if idle > 0 {
			wait = min(wait, idle)
		}
		cc.rd.set(cc.c, headStart.Add(wait), 0)
	case idle > 0:
		cc.rd.set(cc.c, time.Now().Add(idle), cc.n.idleSlack)
	}
	cc.fresh = false
	// Checked after the deadline is set: a shutdown that starts now either is
	// seen here or moves the deadline (wakeIfIdle) after it was set.
	if cc.n.closing.Load() {
		return false
	}
	k, err := cc.c.Read(cc.first[:])
	cc.idle.Store(false)
	if k == 0 || err != nil && !errors.Is(err, io.EOF) {
		return false
	}
	if !headStart.IsZero() {
		cc.rd.set(cc.c, headStart.Add(rht), 0) // moves only if idle_timeout was the shorter
	}
	cc.reqState = cc.n.states.Get().(*reqState)
	cc.headStart = headStart
	cc.src = prefixReader{prefix: cc.first[:k], r: cc.c}
	cc.br = cc.n.readers.Get().(*bufio.Reader)
	cc.br.Reset(&cc.src)
	cc.bw = cc.n.writers.Get().(*bufio.Writer)
	cc.bw.Reset(&cc.out)
	return true
}

// release returns the connection's pooled buffers and request state while it
// is idle.
func (cc *clientConn) release() {
	if rs := cc.reqState; rs != nil {
		rs.trim()
		cc.n.states.Put(rs)
		cc.reqState = nil
	}
	if cc.br != nil {
		if cc.br.Size() == nativeReadBuf { // a grown one (growReader) is left to the GC
			cc.br.Reset(nil)
			cc.n.readers.Put(cc.br)
		}
		cc.br = nil
	}
	if cc.bw != nil {
		cc.bw.Reset(nil)
		cc.n.writers.Put(cc.bw)
		cc.bw = nil
	}
}

// maxPooledScratch bounds the scratch and meta buffers a pooled reqState keeps.
const maxPooledScratch = 4 << 10

// maxPooledHeaders bounds the parsed-header slices a pooled reqState keeps.
const maxPooledHeaders = 32

// trim drops what one large request made large, and every reference into a
// connection's buffers, before the state goes back to the pool.
func (rs *reqState) trim() {
	scratch, meta := rs.scratch, rs.meta
	reqHeaders, respHeaders := rs.req.Headers[:0], rs.ex.resp.Headers[:0]
	if cap(scratch) > maxPooledScratch {
		scratch = nil
	}
	if cap(meta.buf) > maxPooledScratch {
		meta = reqMeta{}
	}
	if cap(reqHeaders) > maxPooledHeaders {
		reqHeaders = nil
	}
	if cap(respHeaders) > maxPooledHeaders {
		respHeaders = nil
	}
	*rs = reqState{scratch: scratch[:0], meta: reqMeta{buf: meta.buf[:0]}}
	rs.req.Headers = reqHeaders
	rs.ex.resp.Headers = respHeaders
}

// readHead reads one request header block into cc.req. The returned bytes
// back cc.req's slices and stay valid until the body has been read.
func (cc *clientConn) readHead() error {
	for {
		buf, _ := cc.br.Peek(cc.br.Buffered())
		k, err := h1.ParseRequest(buf, &cc.req)
		if err == nil {
			if k > cc.n.maxHeader { // complete, but in a read buffer larger than the cap
				return h1.ErrHeaderTooLarge
			}
			cc.headLen = k
			// The header is in. A body (or a tunnel) is read without a
			// deadline; otherwise the idle deadline may stay, as nothing is
			// read from the client until the next request.
			if cc.req.Chunked || cc.req.ContentLength > 0 || cc.req.Upgrade != nil {
				cc.rd.set(cc.c, time.Time{}, 0)
			}
			return nil
		}
		if !errors.Is(err, h1.ErrIncomplete) {
			return err
		}
		// Most requests arrive whole in one read. One that does not must
		// complete within read_header_timeout (slow-header attacks).
		if rht := cc.n.lim.ReadHeaderTimeout; cc.headStart.IsZero() && rht > 0 {
			cc.headStart = time.Now()
			cc.rd.set(cc.c, cc.headStart.Add(rht), 0)
		}
		if cc.br.Buffered() >= cc.n.maxHeader {
			return h1.ErrHeaderTooLarge
		}
		if cc.br.Buffered() >= cc.br.Size() {
			cc.growReader()
		}
		if _, err := cc.br.Peek(cc.br.Buffered() + 1); err != nil {
			return err
		}
	}
}

// reqMeta keeps copies of the request fields that are needed after its body
// has been read (which can move the header bytes in the read buffer). The
// copies go into one buffer reused across requests: no allocation.
type reqMeta struct {
	buf     []byte
	method  []byte
	host    []byte
	path    []byte
	upgrade []byte // nil when the request asks for no upgrade
	// id is the X-Request-Id the backend got (the client's, or generated
	// once and kept for every try), in idBuf; nil until the head is built.
	id    []byte
	idBuf [maxRequestIDLen]byte
}

// setID keeps the request id written into a request head.
func (m *reqMeta) setID(id []byte) { m.id = m.idBuf[:copy(m.idBuf[:], id)] }

// keepMeta copies the fields of cc.req that reqMeta keeps.
func (cc *clientConn) keepMeta() {
	m, r := &cc.meta, &cc.req
	m.buf = append(m.buf[:0], r.Method...)
	m.buf = append(m.buf, r.Host...)
	m.buf = append(m.buf, r.Path...)
	m.buf = append(m.buf, r.Upgrade...)
	i, j, k := len(r.Method), len(r.Method)+len(r.Host), len(r.Method)+len(r.Host)+len(r.Path)
	m.method, m.host, m.path = m.buf[:i:i], m.buf[i:j:j], m.buf[j:k:k]
	m.upgrade, m.id = nil, nil
	if r.Upgrade != nil {
		m.upgrade = m.buf[k:]
	}
}

// deadlineSlack is how far a client's idle deadline may drift before it is
// moved: each move costs a runtime timer update, and keep-alive requests that
// come quicker than this need none.
const deadlineSlack = time.Second

// deadline tracks one of a connection's deadlines so that it is changed only
// when it must move by more than a slack.
type deadline struct{ at time.Time }

// due records at (zero: none) and reports whether the connection's deadline
// must be set to it: not when it is already within slack of it.
func (d *deadline) due(at time.Time, slack time.Duration) bool {
	switch {
	case at.IsZero() && d.at.IsZero():
		return false
	case !at.IsZero() && !d.at.IsZero() && at.Sub(d.at).Abs() <= slack:
		return false
	}
	d.at = at
	return true
}

// readDeadline tracks a connection's read deadline (see deadline).
type readDeadline struct{ deadline }

// set moves the read deadline to at (zero: none) unless it is already within slack of it.
func (d *readDeadline) set(c net.Conn, at time.Time, slack time.Duration) {
	if d.due(at, slack) {
		c.SetReadDeadline(at)
	}
}

// growReader moves a header block that outgrew the read buffer into one the
// size of the header cap. Rare (header blocks over 16 KiB), so it may allocate.
func (cc *clientConn) growReader() {
	buffered, _ := cc.br.Peek(cc.br.Buffered())
	prefix := append(append([]byte(nil), buffered...), cc.src.prefix...)
	cc.src = prefixReader{prefix: prefix, r: cc.c}
	cc.br.Reset(nil)
	cc.n.readers.Put(cc.br)
	cc.br = bufio.NewReaderSize(&cc.src, cc.n.maxHeader)
}

// prefixReader reads prefix first, then from r.
type prefixReader struct {
	prefix []byte
	r      io.Reader
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		k := copy(b, p.prefix)
		p.prefix = p.prefix[k:]
		return k, nil
	}
	return p.r.Read(b)
}

// reqHeader lets balancers read the parsed request's header fields.
type reqHeader h1.Request

// Get returns the first value of the named field. The string shares the
// connection's read buffer: it is valid only during the Pick it is used in.
func (h *reqHeader) Get(name string) string {
	return unsafeString((*h1.Request)(h).Header(name))
}

// unsafeString views b as a string without copying. Only for strings that do
// not outlive b's next modification: routing and balancing of one request.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

var _ balancer.Header = (*reqHeader)(nil)

// isTimeout reports a deadline that passed.
func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}
