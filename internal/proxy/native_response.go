package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"ballast/internal/h1"
)

// readResponseHead reads and parses the backend's next response header block
// into ex.resp. It returns io.EOF (unwrapped) only when the backend closed
// before sending a single byte: the sign of a stale keep-alive connection.
func (ex *exchange) readResponseHead() error {
	br := ex.bc.br
	for {
		if br.Buffered() > 0 {
			buf, _ := br.Peek(br.Buffered())
			k, err := h1.ParseResponse(buf, ex.cc.meta.method, &ex.resp)
			if err == nil {
				ex.respHeadLen = k
				return nil
			}
			if !errors.Is(err, h1.ErrIncomplete) {
				return errors.Join(ErrBadResponse, err)
			}
			if br.Buffered() >= br.Size() {
				return errors.Join(ErrBadResponse, h1.ErrHeaderTooLarge)
			}
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			if br.Buffered() > 0 && errors.Is(err, io.EOF) {
				return errors.Join(ErrBadResponse, io.ErrUnexpectedEOF)
			}
			return err
		}
	}
}

// relayResponse reads the backend's response — passing informational ones
// on to the client — and relays the final one.
func (ex *exchange) relayResponse() (int, bool, error) {
	bc := ex.bc
	// One deadline for the final response, informational ones included: a
	// backend sending 1xx forever must not hold the client past it.
	if d := ex.a.Upstream.Timeouts.ResponseHeader; d > 0 {
		bc.rd.set(bc.c, time.Now().Add(d), d/8)
	}
	for {
		err := ex.readResponseHead()
		if err != nil {
			return ex.broken(err, false)
		}
		st := ex.resp.Status
		if st >= 500 && ex.replay != nil &&
			ex.a.Upstream.RetryAllowed(FailStatus, st, ex.cc.meta.method) {
			// run may send the request elsewhere, or relay this after all.
			return st, false, &failedExchange{kind: FailStatus, status: st,
				err: fmt.Errorf("backend answered %d", st)}
		}
		if st >= 200 || st == http.StatusSwitchingProtocols {
			return ex.relayParsed()
		}
		if ex.interims++; ex.interims > maxInterim {
			return ex.broken(errors.Join(ErrBadResponse, fmt.Errorf("more than %d informational responses", maxInterim)), false)
		}
		if st == http.StatusContinue { // a stray 100: dropped
			bc.br.Discard(ex.respHeadLen)
			continue
		}
		if err := ex.forwardInterim(); err != nil {
			return 0, false, err
		}
	}
}

// maxInterim bounds the informational (1xx) responses before the final one.
const maxInterim = 1024

// forwardInterim passes an informational response (103 Early Hints) on to an
// HTTP/1.1 client (HTTP/1.0 clients do not know 1xx) and consumes it.
func (ex *exchange) forwardInterim() error {
	cc, bc := ex.cc, ex.bc
	if cc.req.Minor == 1 {
		cc.scratch = appendResponseHead(cc.scratch[:0], &ex.resp, frameNone, 0, "", true, 1)
		cc.bw.Write(cc.scratch)
		if err := cc.bw.Flush(); err != nil {
			bc.c.Close()
			return errors.Join(ErrClientGone, err)
		}
	}
	bc.br.Discard(ex.respHeadLen)
	return nil
}

// relayParsed relays the final response whose head is in ex.resp.
func (ex *exchange) relayParsed() (int, bool, error) {
	cc, bc, resp, req := ex.cc, ex.bc, &ex.resp, ex.req
	cc.n.d.Responded(ex.a)
	if resp.Status == http.StatusSwitchingProtocols {
		bc.rd.set(bc.c, time.Time{}, 0)
		cc.sent = resp.Status
		return ex.switchProtocols()
	}

	if resp.Coded {
		// A transfer coding other than chunked (gzip) would be lost in
		// re-framing, and the client would take coded bytes for the content.
		bc.c.Close()
		err := errors.Join(ErrBadResponse, fmt.Errorf("unsupported transfer coding %q", resp.Header("Transfer-Encoding")))
		cc.fail(err, ex.a.Backend.Addr, false)
		return 0, false, err
	}
	framing := frameLength
	switch {
	case resp.Bodyless:
		framing = frameNone
	case resp.Chunked || resp.UntilClose:
		framing = frameChunked
		if req.Minor == 0 {
			framing = frameClose
		}
	}
	// The response-header deadline must not cut a body that streams; one
	// that is already whole in the buffer needs no change (the next request
	// on this connection sets its own deadline).
	if framing != frameNone && (resp.Chunked || resp.UntilClose || resp.ContentLength > int64(bc.br.Buffered()-ex.respHeadLen)) {
		bc.rd.set(bc.c, time.Time{}, 0)
	}
	keep := req.KeepAlive && ex.bodySent && framing != frameClose && !cc.n.closing.Load()
	cc.sent = resp.Status
	cc.scratch = appendResponseHead(cc.scratch[:0], resp, framing, resp.ContentLength, ex.a.SetCookie, keep, req.Minor)
	bc.br.Discard(ex.respHeadLen)
	if _, err := cc.bw.Write(cc.scratch); err != nil {
		bc.c.Close()
		return resp.Status, false, errors.Join(ErrClientGone, err)
	}

	var rerr, werr error
	switch {
	case framing == frameNone:
	case !resp.Chunked && !resp.UntilClose:
		rerr, werr = ex.copyFixed(resp.ContentLength)
	default:
		rerr, werr = ex.copyStream(framing == frameChunked)
	}
	if werr == nil && rerr == nil {
		werr = cc.bw.Flush()
	}
	switch {
	case werr != nil:
		bc.c.Close()
		return resp.Status, false, errors.Join(ErrClientGone, werr)
	case rerr != nil:
		// The backend broke off mid-body: end the client connection without
		// completing the response, so it is never taken for a whole one.
		bc.c.Close()
		cc.bw.Flush()
		cc.n.log.Warn("backend response body broke off", "backend", ex.a.Backend.Addr, "err", rerr)
		return resp.Status, false, errors.Join(ErrBadResponse, rerr)
	}
	// Reuse only a connection in step: bytes beyond the response (a body on a
	// HEAD response, junk after a body) would be read as the next response.
	if resp.KeepAlive && !resp.UntilClose && ex.bodySent && bc.br.Buffered() == 0 {
		ex.a.Upstream.conns.idle(ex.a.Backend.Addr).put(bc, time.Now())
	} else {
		bc.c.Close()
	}
	return resp.Status, keep, nil
}

// copyFixed relays a body of known length. It returns the read (backend) and
// write (client) errors separately.
func (ex *exchange) copyFixed(n int64) (rerr, werr error) {
	cc, br := ex.cc, ex.bc.br
	if n <= int64(br.Buffered()) { // the whole body came with the head
		b, _ := br.Peek(int(n))
		_, werr = cc.bw.Write(b)
		br.Discard(int(n))
		return nil, werr
	}
	bp := cc.n.bodyBufs.Get().(*[]byte)
	defer cc.n.bodyBufs.Put(bp)
	cc.fixed.Reset(br, n)
	return copySplit(cc.bw, &cc.fixed, *bp)
}

// copyStream relays a chunked or close-delimited body, re-framed as chunked
// (HTTP/1.1 clients) or raw until close (HTTP/1.0 clients), flushing whenever
// the backend has nothing more buffered so that streams flow at once.
func (ex *exchange) copyStream(chunkOut bool) (rerr, werr error) {
	cc, br, resp := ex.cc, ex.bc.br, &ex.resp
	var src io.Reader = br
	if resp.Chunked {
		cc.chunked.Reset(br)
		src = &cc.chunked
	}
	bp := cc.n.bodyBufs.Get().(*[]byte)
	defer cc.n.bodyBufs.Put(bp)
	buf := (*bp)[:len(*bp)-32]
	for {
		k, err := src.Read(buf)
		if k > 0 {
			if chunkOut {
				werr = writeChunk(cc.bw, buf[:k])
			} else {
				_, werr = cc.bw.Write(buf[:k])
			}
			if werr == nil && br.Buffered() == 0 {
				werr = cc.bw.Flush()
			}
			if werr != nil {
				return nil, werr
			}
		}
		if err == io.EOF {
			if chunkOut {
				var trailers []byte
				if resp.Chunked {
					trailers = cc.chunked.Trailers()
				}
				cc.scratch = h1.AppendLastChunk(cc.scratch[:0], trailers)
				_, werr = cc.bw.Write(cc.scratch)
			}
			return nil, werr
		}
		if err != nil {
			return err, nil
		}
	}
}

// writeChunk writes p as one chunk of a chunked body, without copying p
// anywhere but into w's buffer (or straight through it when p is large).
func writeChunk(w *bufio.Writer, p []byte) error {
	var hdr [20]byte
	h := strconv.AppendUint(hdr[:0], uint64(len(p)), 16)
	h = append(h, '\r', '\n')
	w.Write(h)
	w.Write(p)
	_, err := w.WriteString("\r\n")
	return err
}

// switchProtocols finishes an Upgrade: the 101 goes to the client, then bytes
// flow raw both ways until either side closes.
func (ex *exchange) switchProtocols() (int, bool, error) {
	cc, bc, resp := ex.cc, ex.bc, &ex.resp
	if ex.cc.meta.upgrade == nil || resp.Upgrade == nil || !hasToken(ex.cc.meta.upgrade, resp.Upgrade) {
		bc.c.Close()
		err := errors.Join(ErrBadResponse, errors.New("101 Switching Protocols without a matching upgrade request"))
		cc.fail(err, ex.a.Backend.Addr, false)
		return 0, false, err
	}
	cc.scratch = appendSwitchHead(cc.scratch[:0], resp)
	bc.br.Discard(ex.respHeadLen)
	cc.bw.Write(cc.scratch)
	if err := cc.bw.Flush(); err != nil {
		bc.c.Close()
		return resp.Status, false, errors.Join(ErrClientGone, err)
	}
	cc.out.clearDeadline()
	done := make(chan struct{})
	go func() {
		io.Copy(bc.c, cc.br) // what the client sent early is in cc.br first
		bc.c.Close()
		cc.c.Close()
		close(done)
	}()
	io.Copy(cc.c, bc.br)
	bc.c.Close()
	cc.c.Close()
	<-done
	return resp.Status, false, nil
}

// isReset reports a connection reset or broken pipe.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// statusText is the reason phrase of ballast's own responses.
func statusText(status int) string { return http.StatusText(status) }
