package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"
)

// tunnel finishes a protocol switch (WebSocket and any other Upgrade): it sends
// the backend's 101 response to the client, then copies raw bytes both ways
// until either side closes. It returns the status and failure for Dispatcher.End.
func (h *Handler) tunnel(w http.ResponseWriter, r *http.Request, resp *http.Response, a *Attempt) (int, bool, error) {
	backConn, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		err := errors.Join(ErrBadResponse, errors.New("101 response body is not a stream"))
		h.fail(w, r, err, a.Backend.Addr)
		return 0, false, err
	}
	defer backConn.Close()

	clientConn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// The client's connection cannot be taken over (HTTP/2): the backend
		// did nothing wrong, so report no status that counts against it.
		err = errors.Join(ErrBadRequest, err)
		h.fail(w, r, err, a.Backend.Addr)
		return 0, false, nil
	}
	defer clientConn.Close()
	// The server's deadlines (write_timeout) do not apply to a tunnel, whose
	// bytes may stop for as long as the peers like.
	clientConn.SetDeadline(time.Time{})
	if !h.tunnels.add(clientConn, struct{}{}) {
		return 0, false, ErrClientGone // shutting down
	}
	defer h.tunnels.done(clientConn)

	// The 101 keeps the handshake's Connection and Upgrade fields; other
	// hop-by-hop fields are dropped as for any response.
	upgrade := resp.Header.Get("Upgrade")
	removeHopHeaders(resp.Header)
	resp.Header["Connection"] = []string{"Upgrade"}
	resp.Header["Upgrade"] = []string{upgrade}
	resp.Body = nil
	if err := resp.Write(brw); err != nil {
		return resp.StatusCode, false, errors.Join(ErrClientGone, err)
	}
	if err := brw.Flush(); err != nil {
		return resp.StatusCode, false, errors.Join(ErrClientGone, err)
	}

	// Bytes the client sent right after its handshake may sit in brw's read
	// buffer: read through it, not around it.
	done := make(chan struct{}, 2)
	go func() { io.Copy(backConn, brw); done <- struct{}{} }()
	go func() { io.Copy(clientConn, backConn); done <- struct{}{} }()
	<-done
	// One side is finished: closing both (deferred) ends the other copy.
	return http.StatusSwitchingProtocols, false, nil
}

// Shutdown refuses new tunnels, waits until the open ones end or ctx is done,
// then closes whatever is still open, and reports whether it had to.
func (h *Handler) Shutdown(ctx context.Context) bool { return h.tunnels.shutdown(ctx, nil) }
