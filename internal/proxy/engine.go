package proxy

import (
	"bytes"
	"cmp"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
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
	tunnels connSet[struct{}] // raw tunnels after an Upgrade
	bufs    sync.Pool         // *[]byte copy buffers, kept per processor: lock-free in the common case
}

// NewHandler returns the engine for a listener; tls says whether clients
// arrive over TLS (for X-Forwarded-Proto).
func NewHandler(d *Dispatcher, log *slog.Logger, tls bool) *Handler {
	h := &Handler{d: d, log: log, tls: tls}
	h.bufs.New = func() any { b := make([]byte, copyBufSize); return &b }
	return h
}

// ServeHTTP proxies one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	clientIP := clientAddr(r.RemoteAddr)
	breq := balancer.Request{
		ClientIP: clientIP,
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
	u.Scheme, u.Host = "http", a.Backend.Addr
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
			err = errors.Join(ErrClientGone, err)
			h.fail(w, r, err, a.Backend.Addr)
			return 0, false, err
		}
	}
	var streamed *untouchedBody
	if out.Body != nil && body == nil {
		// A body that the transport never read (the backend could not be
		// reached) can still go to another backend.
		streamed = &untouchedBody{r: r.Body}
		out.Body = streamed
	}
	var tried Tried
	tried.Add(a.Backend)
	for {
		if body != nil {
			out.Body = io.NopCloser(bytes.NewReader(body))
		}
		resp, err := a.Upstream.transport.rt.RoundTrip(out)
		f := Failure{Err: err}
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
			return h.relay(w, r, resp, a, upgrade)
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
}

func (b *untouchedBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.r.Read(p)
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
	}
	if a.SetCookie != "" {
		dst.Add("Set-Cookie", a.SetCookie)
	}
	w.WriteHeader(resp.StatusCode)

	// A response of unknown length (chunked, server-sent events) is flushed as
	// it arrives, so streams reach the client at once.
	flush := resp.ContentLength == -1
	rerr, werr := h.copyBody(w, resp.Body, flush)
	switch {
	case werr != nil: // the client went away; nothing left to tell it
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

// copyBody streams src to w, flushing after every write when flush is set. It
// returns the read (backend) and write (client) errors separately.
func (h *Handler) copyBody(w http.ResponseWriter, src io.Reader, flush bool) (rerr, werr error) {
	bp := h.bufs.Get().(*[]byte)
	defer h.bufs.Put(bp)
	var dst io.Writer = w
	if flush {
		dst = flushWriter{w, http.NewResponseController(w)}
	}
	return copySplit(dst, src, *bp)
}

// flushWriter flushes each write to the client at once.
type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
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
	hd := w.Header()
	hd.Set("Content-Type", "text/plain; charset=utf-8")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", "no-store")
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
