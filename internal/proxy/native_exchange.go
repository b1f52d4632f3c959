package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"ballast/internal/balancer"
	"ballast/internal/h1"
)

// expectContinueWait (transport.go) also bounds how long the native engine
// waits for a backend's 100 Continue before sending the body anyway.

// serveOne reads, routes and proxies one request. It reports whether the
// client connection stays open for another.
func (cc *clientConn) serveOne() bool {
	obs := cc.n.d.loadObserver()
	if obs != nil {
		cc.logStart, cc.out.n = time.Now(), 0
	}
	cc.sent = 0
	if err := cc.readHead(); err != nil {
		cc.rejectRequest(err)
		if obs != nil && cc.sent != 0 {
			cc.meta = reqMeta{buf: cc.meta.buf[:0]}
			cc.observe(obs, &Attempt{}, 0)
		}
		return false
	}
	req := &cc.req
	cc.keepMeta()
	if bytes.Equal(req.Method, []byte("CONNECT")) {
		cc.writeError(405, false)
		if obs != nil {
			cc.observe(obs, &Attempt{}, 0)
		}
		return false
	}
	if max := cc.n.lim.MaxBodyBytes; max > 0 && req.ContentLength > max {
		// Refused before routing: no backend slot is taken, nothing is sent.
		cc.fail(ErrBodyTooLarge, "", false)
		cc.linger = true
		if obs != nil {
			cc.observe(obs, &Attempt{}, 0)
		}
		return false
	}
	// The per-request state lives in the connection, reused: nothing here
	// escapes to the heap per request.
	cc.setBalancerRequest()
	var err error
	cc.attempt, err = cc.n.d.Begin(context.Background(), &cc.breq)
	cc.breq = balancer.Request{} // drop the views of the read buffer
	if err != nil {
		// The body, if any, was not read: the connection cannot be reused.
		keep := req.KeepAlive && !req.Chunked && req.ContentLength == 0
		cc.br.Discard(cc.headLen)
		cc.fail(err, "", keep)
		if obs != nil {
			cc.observe(obs, &Attempt{}, 0)
		}
		return keep
	}
	cc.ex = exchange{cc: cc, a: &cc.attempt, req: req, resp: cc.ex.resp, replay: cc.ex.replay[:0], pre: cc.ex.pre[:0]}
	status, keep, err := cc.ex.run()
	cc.backend.Store(nil)
	cc.n.d.End(&cc.attempt, status, err)
	if obs != nil {
		cc.observe(obs, &cc.attempt, cc.ex.bodyIn)
	}
	cc.attempt = Attempt{}
	return keep && !cc.n.closing.Load()
}

// setBalancerRequest fills cc.breq, what routing and balancing see of cc.req.
// Its strings view the read buffer: the caller clears cc.breq once it has
// its pick.
func (cc *clientConn) setBalancerRequest() {
	req := &cc.req
	cc.breq = balancer.Request{
		ClientIP: cc.ip,
		Method:   unsafeString(req.Method),
		Host:     unsafeString(req.Host),
		Path:     unsafeString(req.Path),
		RawQuery: unsafeString(req.Query),
		Header:   (*reqHeader)(req),
	}
}

// rejectRequest answers a request that could not be parsed.
func (cc *clientConn) rejectRequest(err error) {
	switch {
	case errors.Is(err, h1.ErrHeaderTooLarge):
		cc.writeError(431, false)
	case errors.Is(err, h1.ErrUnsupportedTransferCoding):
		cc.writeError(501, false)
	case errors.Is(err, h1.ErrMalformed):
		cc.writeError(400, false)
	case isTimeout(err):
		cc.writeError(408, false)
	}
	// Anything else is the client closing or resetting: nothing to answer.
}

// fail answers with the status StatusFor chooses for err.
func (cc *clientConn) fail(err error, backendAddr string, keep bool) {
	status := StatusFor(err)
	if status == StatusClientClosed {
		return
	}
	if status >= 500 {
		cc.n.log.Warn("proxy error", "status", status, "method", string(cc.meta.method),
			"host", string(cc.meta.host), "path", string(cc.meta.path), "backend", backendAddr, "err", err)
	}
	cc.writeError(status, keep)
}

// writeError writes a short plain-text error response.
func (cc *clientConn) writeError(status int, keep bool) {
	cc.sent = status
	body := errorBody(status)
	bw := cc.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(status))
	bw.WriteByte(' ')
	bw.WriteString(statusText(status))
	bw.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n")
	if status == http.StatusServiceUnavailable {
		bw.WriteString("Retry-After: " + retryAfterSeconds + "\r\n")
	}
	bw.WriteString("Content-Length: ")
	bw.WriteString(strconv.Itoa(len(body)))
	if !keep {
		bw.WriteString("\r\nConnection: close")
	}
	bw.WriteString("\r\n\r\n")
	bw.WriteString(body)
	bw.Flush()
}

// exchange is one request's trip to a backend and back.
type exchange struct {
	cc  *clientConn
	a   *Attempt
	req *h1.Request
	bc  *bconn

	tried       Tried       // backends this request was sent to, or tried to be
	bodySent    bool        // the request body (if any) went out completely
	bodyIn      int64       // request body bytes read from the client
	interims    int         // informational responses read (forwarded or dropped)
	headGone    bool        // the request head's bytes in the read buffer were overwritten
	replay      []byte      // the whole request (head and body) kept for a retry; nil if none
	pre         []byte      // a chunked body's head and first chunks, read before sending (preread)
	preDone     bool        // pre holds the whole body
	resp        h1.Response // reused across exchanges: its Headers keep their capacity
	respHeadLen int
}

// failedExchange is a failure of the backend before any of its response went
// to the client, which the client has not been answered for yet: run decides
// whether to retry it or to answer it.
type failedExchange struct {
	kind   FailureKind
	status int  // FailStatus: the backend's status; its head is in ex.resp
	stale  bool // a reused connection that turned out to be closed
	unsent bool // the request head was not (completely) written
	err    error
}

func (f *failedExchange) Error() string { return f.err.Error() }
func (f *failedExchange) Unwrap() error { return f.err }

// run proxies the request, retrying it on other backends as the pool's retry
// policy allows. It returns the backend's status (0 if none), whether the
// client connection may serve another request, and the failure.
func (ex *exchange) run() (int, bool, error) {
	cc, req := ex.cc, ex.req
	hasBody := req.Chunked || req.ContentLength > 0
	idempotent := Idempotent(cc.meta.method)
	if ex.a.Upstream.mayRetrySent(unsafeString(cc.meta.method)) &&
		(!hasBody || !req.Chunked && req.ContentLength <= MaxRetryBody && !req.Expect100) {
		if err := ex.keepForReplay(hasBody); err != nil {
			return 0, false, err
		}
	} else {
		ex.replay = nil
		// Past this point the body is read from cc.br, which may move the
		// header bytes that ex.req points into: only cc.meta and ex.req's
		// numbers and flags are used after the request head has been built.
		cc.br.Discard(cc.headLen)
		if req.Chunked && !req.Expect100 && cc.n.lim.MaxBodyBytes > 0 {
			if err := ex.preread(); err != nil {
				return ex.prereadFailed(err)
			}
		}
	}
	ex.tried = Tried{}
	ex.tried.Add(ex.a.Backend)
	pooled := true
	for {
		var f *failedExchange
		bc, err := ex.connect(pooled)
		if err != nil {
			f = &failedExchange{kind: FailConnect, unsent: true, err: err}
		} else {
			ex.bc = bc
			cc.backend.Store(bc)
			status, keep, err := ex.roundTrip(hasBody)
			// Not errors.As: its target would escape, an allocation per
			// request. broken and relayResponse return it unwrapped.
			var isFailed bool
			if f, isFailed = err.(*failedExchange); !isFailed {
				return status, keep, err
			}
			// A reused keep-alive connection the backend had already closed
			// fails before any response byte: the classic race with short
			// backend keep-alive timeouts. Sending the request again on a
			// fresh connection is safe when it never went out, or when it is
			// idempotent and can be sent whole again.
			if f.stale && pooled && (f.unsent || idempotent && (!hasBody || ex.replay != nil)) {
				pooled = false
				continue
			}
		}
		next, ok := ex.retry(f)
		if !ok {
			if f.kind == FailStatus {
				return ex.relayParsed()
			}
			cc.fail(f.err, ex.a.Backend.Addr, false)
			return 0, false, f.err
		}
		cc.n.log.Warn("retrying on another backend", "backend", ex.a.Backend.Addr,
			"next", next.Backend.Addr, "status", f.status, "err", f.err)
		if f.kind == FailStatus {
			ex.bc.c.Close() // the unread rest of the refused response
		}
		cc.n.d.End(ex.a, f.status, f.err)
		*ex.a = next
		pooled = true
	}
}

// keepForReplay builds the request head (and reads a body of known, small
// length) into ex.replay, so that the request can be sent again whole.
func (ex *exchange) keepForReplay(hasBody bool) error {
	cc := ex.cc
	hi := headInfo{clientIP: cc.ip, backendAddr: ex.a.Backend.Addr}
	ex.replay = appendRequestHead(ex.replay[:0], ex.req, &hi)
	cc.meta.setID(hi.requestID)
	cc.br.Discard(cc.headLen)
	if !hasBody {
		return nil
	}
	n := int(ex.req.ContentLength)
	ex.replay = slices.Grow(ex.replay, n)
	body := ex.replay[len(ex.replay) : len(ex.replay)+n]
	ex.headGone = n > cc.br.Buffered()
	if _, err := io.ReadFull(cc.br, body); err != nil {
		err = errors.Join(ErrClientGone, err)
		if isTimeout(err) {
			cc.writeError(408, false)
		}
		return err
	}
	ex.replay = ex.replay[:len(ex.replay)+n]
	ex.bodyIn = int64(n)
	return nil
}

// retry starts the next attempt after f, on a backend not tried yet, if the
// retry policy and budget allow it.
func (ex *exchange) retry(f *failedExchange) (Attempt, bool) {
	cc := ex.cc
	fl := Failure{Kind: f.kind, Status: f.status, Err: f.err}
	if f.kind != FailConnect && ex.interims > 0 {
		return Attempt{}, false // the client already has part of this answer
	}
	if f.kind != FailConnect {
		fl.Replayable = ex.replay != nil && ex.a.Upstream.RetryAllowed(f.kind, f.status, cc.meta.method)
		if !fl.Replayable {
			return Attempt{}, false
		}
	}
	if ex.headGone {
		// The balancer cannot see the header any more: it picks by client
		// address, or the first untried usable backend.
		cc.breq = balancer.Request{ClientIP: cc.ip}
	} else {
		cc.setBalancerRequest()
	}
	next, err := cc.n.d.Retry(ex.a, &cc.breq, &ex.tried, fl)
	cc.breq = balancer.Request{}
	return next, err == nil
}

// connect takes an idle connection to the backend (when pooled is true) or
// dials a new one. A pooled connection is first checked (one non-blocking
// peek) for a close or for bytes the backend sent while it was idle: a
// request with a body or a non-idempotent one cannot be sent again safely
// once it went out, and stray bytes would be taken for the next response.
func (ex *exchange) connect(pooled bool) (*bconn, error) {
	up := ex.a.Upstream
	if pooled {
		idle := up.conns.idle(ex.a.Backend.Addr)
		for {
			bc := idle.get(time.Now(), up.Timeouts.Idle)
			if bc == nil {
				break
			}
			// Every reuse is checked, idempotent requests too: a backend
			// that sent bytes after its response (or closed) while the
			// connection sat idle would answer the next request with them.
			if bc.pk.peerOpen() {
				return bc, nil
			}
			bc.c.Close()
		}
	}
	// TCP, and the TLS handshake when the pool has tls, within timeouts.connect.
	c, err := up.transport.dial(context.Background(), ex.a.Backend.Addr)
	if err != nil {
		return nil, errors.Join(ErrConnect, err)
	}
	br := bufio.NewReaderSize(c, backendReadBuf)
	return &bconn{c: c, br: br, pk: newPeeker(c)}, nil
}

// roundTrip sends the request on ex.bc and relays the response.
func (ex *exchange) roundTrip(hasBody bool) (int, bool, error) {
	cc, bc := ex.cc, ex.bc
	if ex.replay != nil {
		// Kept whole for a retry: head and body go out in one write.
		if _, err := bc.c.Write(ex.replay); err != nil {
			return ex.broken(err, true)
		}
		ex.bodySent = true
		return ex.relayResponse()
	}
	if len(ex.pre) > 0 {
		// The head and the body's first chunks go out in one write, and the
		// rest of the body streams after them.
		if _, err := bc.c.Write(ex.pre); err != nil {
			return ex.broken(err, true)
		}
		ex.headGone = true
		if !ex.preDone {
			if err := ex.sendBody(); err != nil {
				return ex.bodyFailed(err)
			}
		}
		ex.bodySent = true
		return ex.relayResponse()
	}
	hi := headInfo{clientIP: cc.ip, backendAddr: ex.a.Backend.Addr, requestID: cc.meta.id}
	head := appendRequestHead(cc.scratch[:0], ex.req, &hi)
	cc.meta.setID(hi.requestID)
	cc.scratch = head[:0]

	// A small body already in the read buffer goes out with the head, in one
	// write; otherwise the head goes alone and the body streams after it.
	inline := !ex.req.Chunked && ex.req.ContentLength > 0 && !ex.req.Expect100 &&
		ex.req.ContentLength <= int64(cc.br.Buffered()) && ex.req.ContentLength <= copyBufSize
	if inline {
		ex.bodyIn = ex.req.ContentLength
		body, _ := cc.br.Peek(int(ex.req.ContentLength))
		head = append(head, body...)
		cc.scratch = head[:0]
		cc.br.Discard(len(body))
	}
	if _, err := bc.c.Write(head); err != nil {
		return ex.broken(err, true)
	}
	ex.bodySent = !hasBody || inline

	if hasBody && !inline {
		ex.headGone = true
		if ex.req.Expect100 {
			return ex.expectContinue()
		}
		if err := ex.sendBody(); err != nil {
			return ex.bodyFailed(err)
		}
	}
	return ex.relayResponse()
}

// expectContinue waits (briefly) for the backend's verdict before the client
// sends its body: a 100 is passed to the client and the body follows; a final
// status is relayed and the unread body ends the client connection.
func (ex *exchange) expectContinue() (int, bool, error) {
	bc := ex.bc
	bc.rd.set(bc.c, time.Now().Add(expectContinueWait), 0)
	_, err := bc.br.Peek(1)
	bc.rd.set(bc.c, time.Time{}, 0)
	if err == nil {
		// Something came: read the whole head within response_header, passing
		// informational responses other than 100 on to the client.
		for {
			if d := ex.a.Upstream.Timeouts.ResponseHeader; d > 0 {
				bc.rd.set(bc.c, time.Now().Add(d), 0)
			}
			if err := ex.readResponseHead(); err != nil {
				return ex.broken(err, false)
			}
			st := ex.resp.Status
			if st == http.StatusContinue || st >= 200 || st == http.StatusSwitchingProtocols {
				break
			}
			if err := ex.forwardInterim(); err != nil {
				return 0, false, err
			}
		}
		if ex.resp.Status != http.StatusContinue {
			return ex.relayParsed()
		}
		bc.rd.set(bc.c, time.Time{}, 0)
		bc.br.Discard(ex.respHeadLen)
		ex.cc.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if err := ex.cc.bw.Flush(); err != nil {
			bc.c.Close()
			return 0, false, errors.Join(ErrClientGone, err)
		}
	} else if !isTimeout(err) {
		return ex.broken(err, false)
	}
	if err := ex.sendBody(); err != nil {
		return ex.bodyFailed(err)
	}
	return ex.relayResponse()
}

// sendBody streams the request body from the client to the backend.
func (ex *exchange) sendBody() error {
	cc, bc := ex.cc, ex.bc
	bp := cc.n.bodyBufs.Get().(*[]byte)
	defer cc.n.bodyBufs.Put(bp)
	buf := *bp
	if !ex.req.Chunked {
		cc.fixed.Reset(cc.br, ex.req.ContentLength)
		rerr, werr := copySplit(bc.c, &cc.fixed, buf)
		ex.bodyIn = ex.req.ContentLength - cc.fixed.Remaining()
		if werr != nil {
			return &writeError{werr}
		} else if rerr != nil {
			return rerr
		}
		ex.bodySent = true
		return nil
	}
	if len(ex.pre) == 0 { // else preread began the body
		cc.chunked.Reset(cc.br)
	}
	max := cc.n.lim.MaxBodyBytes
	for {
		k, rerr := cc.chunked.Read(buf[:len(buf)-32])
		ex.bodyIn += int64(k)
		if max > 0 && ex.bodyIn > max {
			return ErrBodyTooLarge
		}
		if k > 0 {
			cc.scratch = h1.AppendChunk(cc.scratch[:0], buf[:k])
			if _, err := bc.c.Write(cc.scratch); err != nil {
				return &writeError{err}
			}
		}
		if rerr == io.EOF {
			cc.scratch = h1.AppendLastChunk(cc.scratch[:0], cc.chunked.Trailers())
			if _, err := bc.c.Write(cc.scratch); err != nil {
				return &writeError{err}
			}
			ex.bodySent = true
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// writeError marks a failure to write to the other side of a copy (the
// backend, for request bodies), as opposed to reading from the client.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// bodyFailed handles a request body that did not go through: a broken client
// upload (bad chunking, early close) or a backend that stopped reading — in
// which case it may already have answered, and that answer is relayed.
func (ex *exchange) bodyFailed(err error) (int, bool, error) {
	var we *writeError
	if errors.As(err, &we) {
		// The backend closed while we were sending: it may have answered
		// (413, 401); if not, relayResponse answers for it.
		status, _, rerr := ex.relayResponse()
		return status, false, rerr
	}
	ex.bc.c.Close()
	switch {
	case errors.Is(err, ErrBodyTooLarge):
		// Part of the body went to the backend: closing both connections is
		// the only way to tell both that the request is void.
		return 0, false, err
	case errors.Is(err, h1.ErrMalformed):
		ex.cc.writeError(400, false)
		return 0, false, errors.Join(ErrBadRequest, err)
	}
	return 0, false, errors.Join(ErrClientGone, err)
}

// preread builds the request head and reads the part of a chunked body the
// client has sent so far (read, or waiting in the socket), up to one buffer,
// into ex.pre, so that a body already past max_body_bytes gets 413 before
// anything is sent to a backend. It does not wait for more: a client that
// sends a little (or nothing) and waits for an answer is forwarded at once.
// The head is built first: reading the body may move the header bytes in the
// read buffer.
func (ex *exchange) preread() error {
	cc := ex.cc
	hi := headInfo{clientIP: cc.ip, backendAddr: ex.a.Backend.Addr}
	ex.pre = appendRequestHead(ex.pre[:0], ex.req, &hi)
	cc.meta.setID(hi.requestID)
	bp := cc.n.bodyBufs.Get().(*[]byte)
	defer cc.n.bodyBufs.Put(bp)
	buf := (*bp)[:len(*bp)-32]
	cc.chunked.Reset(cc.br)
	for len(ex.pre) < copyBufSize && (cc.br.Buffered() > 0 || inQueue(cc.c) > 0) {
		k, err := cc.chunked.Read(buf)
		ex.bodyIn += int64(k)
		if ex.bodyIn > cc.n.lim.MaxBodyBytes {
			return ErrBodyTooLarge
		}
		if k > 0 {
			ex.pre = h1.AppendChunk(ex.pre, buf[:k])
		}
		if err == io.EOF {
			ex.pre = h1.AppendLastChunk(ex.pre, cc.chunked.Trailers())
			ex.preDone = true
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil // the rest is not here yet: it streams
}

// prereadFailed answers a chunked body that preread could not take: 413 over
// the cap, 400 malformed; nothing was sent to a backend.
func (ex *exchange) prereadFailed(err error) (int, bool, error) {
	cc := ex.cc
	switch {
	case errors.Is(err, ErrBodyTooLarge):
		cc.fail(err, "", false)
		cc.linger = true
		return 0, false, err
	case errors.Is(err, h1.ErrMalformed):
		cc.writeError(400, false)
		return 0, false, errors.Join(ErrBadRequest, err)
	}
	return 0, false, errors.Join(ErrClientGone, err)
}

// broken handles a failure of the backend connection before a response
// arrived: it closes the connection and returns a *failedExchange for run,
// which retries the request or answers the client. unsent marks a failure
// while writing the request.
func (ex *exchange) broken(err error, unsent bool) (int, bool, error) {
	bc := ex.bc
	bc.c.Close()
	f := &failedExchange{kind: FailReset, unsent: unsent, err: classifyNative(err)}
	// Once a 1xx went to the client the request was surely received: no
	// transparent resend.
	f.stale = bc.reused && ex.interims == 0 && (unsent || isConnClosed(err))
	if errors.Is(f.err, ErrResponseTimeout) {
		f.kind = FailTimeout
	}
	return 0, false, f
}

// isConnClosed reports the errors of a connection the peer already closed.
func isConnClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err)
}

// classifyNative turns a backend-side error of the native engine into a
// sentinel for StatusFor.
func classifyNative(err error) error {
	switch {
	case errors.Is(err, ErrConnect), errors.Is(err, ErrResponseTimeout), errors.Is(err, ErrBadResponse):
		return err
	case isTimeout(err):
		return errors.Join(ErrResponseTimeout, err)
	}
	return errors.Join(ErrBadResponse, err)
}
