package proxy

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"ballast/internal/accesslog"
	"ballast/internal/balancer"
)

// Handler is the net/http engine of one HTTP listener: it parses nothing itself
// (net/http does), asks the Dispatcher where each request goes, and moves the
// request and response bodies, streaming, in both directions.
type Handler struct {
	d       *Dispatcher
	log     *slog.Logger
	tls     bool
	lim     ClientLimits
	tunnels connSet[struct{}] // raw tunnels after an Upgrade
	bufs    sync.Pool         // *[]byte copy buffers, kept per processor: lock-free in the common case
}

// NewHandler returns the engine for a listener; tls says whether clients
// arrive over TLS (for X-Forwarded-Proto). Of lim it enforces the body cap and
// the write timeout; the http.Server it runs in enforces the rest (the
// server's WriteTimeout should be lim's too: it covers the server's own
// writes, and the handler moves the deadline on as it writes).
func NewHandler(d *Dispatcher, log *slog.Logger, tls bool, lim ClientLimits) *Handler {
	h := &Handler{d: d, log: log, tls: tls, lim: lim}
	h.bufs.New = func() any { b := make([]byte, copyBufSize); return &b }
	return h
}

// ServeHTTP proxies one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := checkTarget(r); err != nil {
		h.fail(w, r, err, "")
		return
	}
	clientIP := clientAddr(r.RemoteAddr)
	breq := balancer.Request{
		ClientIP: clientIP,
		Method:   r.Method,
		Host:     r.Host,
		Path:     r.URL.Path,
		RawQuery: r.URL.RawQuery,
		Header:   r.Header,
	}
	var obs Observer
	var cw *countingWriter
	var cb *countingBody
	var start time.Time
	if obs = h.d.loadObserver(); obs != nil {
		start = time.Now()
		cw = &countingWriter{ResponseWriter: w}
		w = cw
		if r.Body != nil && r.Body != http.NoBody {
			// Counted on a copy of the request: the server's own must keep
			// its body, whose type tells it whether a 100 Continue went out.
			cb = &countingBody{ReadCloser: r.Body}
			r2 := *r
			r2.Body = cb
			r = &r2
		}
	}
	if h.lim.WriteTimeout > 0 {
		// The server's WriteTimeout runs from the request header; the handler
		// takes over: no deadline while a backend is asked, a fresh one
		// before each write to the client.
		http.NewResponseController(w).SetWriteDeadline(time.Time{})
	}
	if max := h.lim.MaxBodyBytes; max > 0 && r.ContentLength > max {
		// Refused before routing: no backend slot is taken, nothing is sent.
		h.fail(w, r, ErrBodyTooLarge, "")
		if obs != nil {
			h.observe(obs, r, start, cw, cb, &Attempt{}, 0)
		}
		return
	}
	a, err := h.d.Begin(r.Context(), &breq)
	if err != nil {
		h.fail(w, r, err, "")
		if obs != nil {
			h.observe(obs, r, start, cw, cb, &a, 0)
		}
		return
	}
	status, abort, err := h.forward(w, r, &a, &breq)
	h.d.End(&a, status, err)
	if status == 0 && errors.Is(err, ErrClientGone) {
		// Nothing was written: returning would make net/http send an empty
		// 200 to a client whose request never went through.
		abort = true
	}
	if obs != nil {
		h.observe(obs, r, start, cw, cb, &a, status)
	}
	if abort {
		// The response header is out and the body broke off: abort the client
		// connection so the client sees a truncated response, never a
		// complete-looking one.
		panic(http.ErrAbortHandler)
	}
}

// observe reports a finished request to obs.
func (h *Handler) observe(obs Observer, r *http.Request, start time.Time, cw *countingWriter, cb *countingBody, a *Attempt, status int) {
	e := accesslog.Entry{
		Time:      start,
		Client:    clientAddr(r.RemoteAddr),
		Method:    r.Method,
		Host:      r.Host,
		Path:      r.URL.Path,
		Status:    cmp.Or(cw.status, status),
		BytesOut:  cw.n,
		Duration:  time.Since(start),
		RequestID: r.Header.Get("X-Request-Id"),
	}
	if cb != nil {
		e.BytesIn = cb.n.Load()
	}
	fillAttempt(&e, a)
	obs.Observe(&e)
}

// countingWriter records the status and counts the body bytes of a response.
// Unwrap lets http.ResponseController reach the connection (Flush, Hijack).
type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (c *countingWriter) WriteHeader(code int) {
	if c.status == 0 && code >= 200 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	k, err := c.ResponseWriter.Write(p)
	c.n += int64(k)
	return k, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// countingBody counts the request body bytes read; the transport may read
// it from another goroutine.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	k, err := c.ReadCloser.Read(p)
	c.n.Add(int64(k))
	return k, err
}

// forward sends r to a.Backend — or, when that fails and the retry policy
// allows, to other backends — and copies the response back. It returns the
// backend's status (0 if none), whether the client connection must be aborted,
// and the failure, if any.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, a *Attempt, breq *balancer.Request) (int, bool, error) {
	ctx := r.Context()
	out := r.WithContext(ctx) // shallow copy; the header is rewritten in place
	u := *r.URL
	u.Scheme, u.Host = a.Upstream.transport.scheme, a.Backend.Addr
	out.URL = &u
	out.RequestURI = ""
	out.Close = false
	if r.ContentLength == 0 {
		out.Body = nil // no body: lets the transport reuse the connection freely
	}
	ip := ""
	if breq.ClientIP.IsValid() {
		ip = breq.ClientIP.String()
	}
	upgrade := upgradeType(r.Header)
	prepareRequestHeader(out.Header, ip, r.Host, h.tls)

	// A body small enough is kept so that the request can be sent again; the
	// transport closes (and may have consumed) any other body on an error.
	var body []byte
	if out.Body != nil && r.ContentLength > 0 && r.ContentLength <= MaxRetryBody &&
		a.Upstream.mayRetrySent(r.Method) {
		body = make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			err = clientBodyError(err)
			h.fail(w, r, err, a.Backend.Addr)
			return 0, false, err
		}
	}
	var capped *cappedBody
	if out.Body != nil && r.ContentLength < 0 && h.lim.MaxBodyBytes > 0 {
		var err error
		if capped, err = h.capBody(r); err != nil {
			if !errors.Is(err, ErrBodyTooLarge) {
				err = errors.Join(ErrClientGone, err)
			}
			h.fail(w, r, err, "")
			return 0, false, err
		}
	}
	var streamed *untouchedBody
	if out.Body != nil && body == nil {
		// A body that the transport never read (the backend could not be
		// reached) can still go to another backend.
		streamed = &untouchedBody{r: r.Body}
		if capped != nil {
			streamed.r = capped
		}
		out.Body = streamed
	}
	var tried Tried
	tried.Add(a.Backend)
	for {
		if body != nil {
			out.Body = io.NopCloser(bytes.NewReader(body))
		}
		resp, err := a.Upstream.transport.rt.RoundTrip(out)
		if err != nil && capped.passed() {
			// The transport sends the request header before the body: part
			// of the request is out, so both connections are aborted.
			return 0, true, errors.Join(ErrBodyTooLarge, err)
		}
		f := Failure{Err: err}
		if cerr := streamed.clientError(); err != nil && cerr != nil {
			// The client's body broke (malformed chunking, cut short): the
			// client's failure, answered as such, never retried.
			h.fail(w, r, cerr, a.Backend.Addr)
			return 0, false, cerr
		}
		if err != nil {
			err = classify(ctx, err)
			f.Err = err
			switch {
			case errors.Is(err, ErrClientGone):
				return 0, false, err
			case errors.Is(err, ErrConnect):
				f.Kind = FailConnect
			case errors.Is(err, ErrResponseTimeout):
				f.Kind = FailTimeout
			default:
				f.Kind = FailReset
			}
		} else if resp.StatusCode >= 500 {
			f.Kind, f.Status = FailStatus, resp.StatusCode
		} else {
			return capped.blame(h.relay(w, r, resp, a, upgrade))
		}
		resendable := out.Body == nil || body != nil || !streamed.read.Load()
		f.Replayable = resendable && a.Upstream.RetryAllowed(f.Kind, f.Status, []byte(r.Method))
		var next Attempt
		var rerr error = ErrNoBackend
		if resendable && (f.Kind == FailConnect || f.Replayable) {
			next, rerr = h.d.Retry(a, breq, &tried, f)
		}
		if rerr != nil {
			if resp != nil {
				return h.relay(w, r, resp, a, upgrade)
			}
			h.fail(w, r, err, a.Backend.Addr)
			return 0, false, err
		}
		if resp != nil {
			resp.Body.Close()
		}
		h.log.Warn("retrying on another backend", "backend", a.Backend.Addr, "next", next.Backend.Addr,
			"status", f.Status, "err", f.Err)
		h.d.End(a, f.Status, err)
		*a = next
		u.Host = a.Backend.Addr
	}
}

// untouchedBody passes a request body to the transport, remembering whether
// any of it was read; closing it is left to the server (the transport closes a
// body on every failure, which would rule out sending it elsewhere).
type untouchedBody struct {
	r    io.Reader
	read atomic.Bool // set by the transport's writer goroutine
	fail atomic.Pointer[error]
}

func (b *untouchedBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	k, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.fail.CompareAndSwap(nil, &err)
	}
	return k, err
}

// clientError returns the failure reading the client's body, if any, as the
// sentinel that answers it: a malformed body is the client's 400, a body cut
// short its going away — never the backend's fault.
func (b *untouchedBody) clientError() error {
	if b == nil {
		return nil
	}
	if p := b.fail.Load(); p != nil {
		return clientBodyError(*p)
	}
	return nil
}

// clientBodyError classifies an error reading a client's request body.
func clientBodyError(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isTimeout(err) {
		return errors.Join(ErrClientGone, err)
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return errors.Join(ErrClientGone, err)
	}
	return errors.Join(ErrBadRequest, err)
}

// checkTarget refuses what net/http accepts but no origin server should see
// from ballast: CONNECT (ballast is not a forward proxy), the HTTP/2 preface
// on an HTTP/1 connection, and targets that are not a path (asterisk-form but
// for OPTIONS, authority-form, opaque "x:80").
func checkTarget(r *http.Request) error {
	switch {
	case r.Method == http.MethodConnect:
		return errMethodNotAllowed
	case r.Method == "PRI" && r.ProtoMajor < 2:
		return errors.Join(ErrBadRequest, errors.New("HTTP/2 preface on an HTTP/1 connection"))
	case r.RequestURI == "*" && r.Method != http.MethodOptions,
		r.URL.Opaque != "", r.ProtoMajor < 2 && !strings.HasPrefix(r.URL.Path, "/") && r.RequestURI != "*":
		return errors.Join(ErrBadRequest, fmt.Errorf("invalid request target %q", r.RequestURI))
	}
	return nil
}

func (b *untouchedBody) Close() error { return nil }

// relay passes the backend's response (or protocol switch) to the client.
func (h *Handler) relay(w http.ResponseWriter, r *http.Request, resp *http.Response, a *Attempt, upgrade string) (int, bool, error) {
	h.d.Responded(a)

	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The backend must switch to one of the protocols the client offered.
		chosen := upgradeType(resp.Header)
		if upgrade == "" || chosen == "" || !httpguts.HeaderValuesContainsToken([]string{upgrade}, chosen) {
			resp.Body.Close()
			err := errors.Join(ErrBadResponse, errors.New("101 Switching Protocols without a matching upgrade request"))
			h.fail(w, r, err, a.Backend.Addr)
			return 0, false, err
		}
		return h.tunnel(w, r, resp, a)
	}
	return h.copyResponse(w, resp, a)
}

// copyResponse writes the backend's response to the client, streaming its body.
func (h *Handler) copyResponse(w http.ResponseWriter, resp *http.Response, a *Attempt) (int, bool, error) {
	defer resp.Body.Close()
	removeHopHeaders(resp.Header)
	dst := w.Header()
	copyHeader(dst, resp.Header)
	announced := len(resp.Trailer)
	if announced > 0 {
		names := make([]string, 0, announced)
		for k := range resp.Trailer {
			names = append(names, k)
		}
		dst["Trailer"] = names
		// An HTTP/2 backend may send a Content-Length with trailers; an
		// HTTP/1.1 client can only get trailers on a chunked body.
		delete(dst, "Content-Length")
	}
	if a.SetCookie != "" {
		dst.Add("Set-Cookie", a.SetCookie)
	}
	rc := http.NewResponseController(w)
	h.moveWriteDeadline(rc)
	w.WriteHeader(resp.StatusCode)

	// A response of unknown length (chunked, server-sent events) is flushed as
	// it arrives, so streams reach the client at once.
	flush := resp.ContentLength == -1
	rerr, werr := h.copyBody(w, rc, resp.Body, flush)
	switch {
	case werr != nil: // the client went away, or stopped reading; nothing left to tell it
		return resp.StatusCode, false, errors.Join(ErrClientGone, werr)
	case rerr != nil:
		h.log.Warn("backend response body broke off", "backend", a.Backend.Addr, "err", rerr)
		return resp.StatusCode, true, errors.Join(ErrBadResponse, rerr)
	}
	if len(resp.Trailer) > 0 {
		for k, vv := range resp.Trailer {
			if len(resp.Trailer) != announced {
				k = http.TrailerPrefix + k // a trailer the header did not announce
			}
			dst[k] = vv
		}
	}
	return resp.StatusCode, false, nil
}

// copyBufSize is the size of the buffers bodies are streamed through.
const copyBufSize = 32 << 10

// copyBody streams src to w (whose controller is rc), flushing after every
// write when flush is set. It returns the read (backend) and write (client)
// errors separately.
func (h *Handler) copyBody(w http.ResponseWriter, rc *http.ResponseController, src io.Reader, flush bool) (rerr, werr error) {
	bp := h.bufs.Get().(*[]byte)
	defer h.bufs.Put(bp)
	var dst io.Writer = w
	if flush || h.lim.WriteTimeout > 0 {
		dst = &clientWriter{h: h, w: w, rc: rc, flush: flush}
	}
	return copySplit(dst, src, *bp)
}

// clientWriter writes a response body to the client: it moves the write
// deadline on before each write (write_timeout), and flushes each write at
// once when flush is set.
type clientWriter struct {
	h     *Handler
	w     io.Writer
	rc    *http.ResponseController
	flush bool
}

func (c *clientWriter) Write(p []byte) (int, error) {
	c.h.moveWriteDeadline(c.rc)
	n, err := c.w.Write(p)
	if err == nil && c.flush {
		err = c.rc.Flush()
	}
	return n, err
}

// moveWriteDeadline gives the client write_timeout from now to take what is
// written next: a deadline relative to each write, so that a response that
// keeps flowing is never cut.
func (h *Handler) moveWriteDeadline(rc *http.ResponseController) {
	if h.lim.WriteTimeout > 0 {
		rc.SetWriteDeadline(time.Now().Add(h.lim.WriteTimeout))
	}
}

// capBody puts a request body of unknown length under max_body_bytes. On
// HTTP/1.1 the body's first bytes are read first, so that a body already past
// the cap gets 413 before anything goes to a backend — unless the client waits
// for 100 Continue (which reading would send). HTTP/2 bodies go at once: an
// HTTP/2 stream (gRPC) may wait for the answer before it sends anything.
func (h *Handler) capBody(r *http.Request) (*cappedBody, error) {
	max := h.lim.MaxBodyBytes
	if r.ProtoMajor >= 2 || httpguts.HeaderValuesContainsToken(r.Header["Expect"], "100-continue") {
		return &cappedBody{r: r.Body, left: max}, nil
	}
	return prereadBody(r.Body, max)
}

// fail answers a request that could not be proxied, with the status StatusFor
// chooses and a short body. A client that went away gets nothing.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error, backendAddr string) {
	status := StatusFor(err)
	if status == StatusClientClosed {
		return
	}
	if status >= 500 {
		h.log.Warn("proxy error", "status", status, "method", r.Method, "host", r.Host,
			"path", r.URL.Path, "backend", backendAddr, "err", err)
	}
	h.moveWriteDeadline(http.NewResponseController(w))
	hd := w.Header()
	hd.Set("Content-Type", "text/plain; charset=utf-8")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", "no-store")
	if status == http.StatusBadRequest || status == http.StatusMethodNotAllowed {
		// The client's stream is not to be trusted past this request.
		hd.Set("Connection", "close")
	}
	if status == http.StatusServiceUnavailable {
		hd.Set("Retry-After", retryAfterSeconds)
	}
	w.WriteHeader(status)
	io.WriteString(w, errorBody(status))
}

// clientAddr parses the client's address from http.Request.RemoteAddr.
func clientAddr(remote string) netip.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
