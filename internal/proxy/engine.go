package proxy

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"

	"golang.org/x/net/http/httpguts"

	"ballast/internal/balancer"
	"ballast/internal/pool"
)

// NewUpstream returns the data path's view of pool p, talking to its backends
// with timeouts t. Close it when it is no longer used.
func NewUpstream(p *pool.Pool, t Timeouts) *Upstream {
	return &Upstream{Pool: p, Timeouts: t, transport: newTransport(t)}
}

// Close drops the upstream's idle backend connections.
func (u *Upstream) Close() {
	u.transport.close()
	u.conns.closeAll()
}

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
	a, err := h.d.Begin(&breq)
	if err != nil {
		h.fail(w, r, err, "")
		return
	}
	status, abort, err := h.forward(w, r, &a, &breq)
	h.d.End(&a, status, err)
	if abort {
		// The response header is out and the body broke off: abort the client
		// connection so the client sees a truncated response, never a
		// complete-looking one.
		panic(http.ErrAbortHandler)
	}
}

// forward sends r to a.Backend and copies the response back. It returns the
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

	resp, err := a.Upstream.transport.rt.RoundTrip(out)
	// A backend that cannot be reached is left for another one. The
	// transport closes a request body on any error, so only a request
	// without one can be sent again.
	var tried Tried
	tried.Add(a.Backend)
	for err != nil && out.Body == nil {
		cerr := classify(ctx, err)
		if !errors.Is(cerr, ErrConnect) {
			break
		}
		next, rerr := h.d.RetryConnect(a, breq, &tried)
		if rerr != nil {
			break
		}
		h.log.Warn("backend unreachable, trying another", "backend", a.Backend.Addr, "next", next.Backend.Addr, "err", err)
		h.d.End(a, 0, cerr)
		*a = next
		tried.Add(a.Backend)
		u.Host = a.Backend.Addr
		resp, err = a.Upstream.transport.rt.RoundTrip(out)
	}
	if err != nil {
		err = classify(ctx, err)
		h.fail(w, r, err, a.Backend.Addr)
		return 0, false, err
	}
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
