package server

// The instruments of the smuggling probes (smuggling_probes_test.go,
// smuggling_responses_test.go): a backend that records every byte the proxy
// sends it, connection by connection; a strict reading of those bytes that
// two independent parsers (ballast's h1 and net/http) must agree on; a raw
// client; and the observation of one probe on both sides of the proxy.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ballast/internal/h1"
)

// tapBackend records exactly the bytes it receives and answers every request
// it can read with tapEcho. A request for /early is refused with 401 at once,
// before its body is read (as a server refusing an upload does), and its
// connection then only records until the proxy closes it. A request that
// carries "Expect: 100-continue" gets a 100 before its body is read.
type tapBackend struct {
	ln net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex
	events []tapEvent
	nconns int
	conns  map[net.Conn]struct{}
}

// tapEvent is bytes received on connection conn, or (eof) the proxy closing it.
type tapEvent struct {
	conn int
	data []byte
	eof  bool
}

func newTapBackend(t *testing.T) *tapBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tb := &tapBackend{ln: ln, conns: map[net.Conn]struct{}{}}
	tb.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tb.mu.Lock()
			tb.nconns++
			id := tb.nconns
			tb.conns[c] = struct{}{}
			tb.mu.Unlock()
			tb.wg.Go(func() { tb.serve(c, id) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		tb.mu.Lock()
		for c := range tb.conns {
			c.Close()
		}
		tb.mu.Unlock()
		tb.wg.Wait()
	})
	return tb
}

func (tb *tapBackend) Addr() string { return tb.ln.Addr().String() }

// tapEcho is the body of the backend's answer to a request.
func tapEcho(method, target, body string) string {
	return fmt.Sprintf("%s %s body=%q", method, target, body)
}

func (tb *tapBackend) serve(c net.Conn, id int) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	br := bufio.NewReader(&tapReader{tb: tb, id: id, r: c})
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			}
			io.Copy(io.Discard, br) // record whatever else comes
			return
		}
		if req.URL.Path == "/early" {
			io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			io.Copy(io.Discard, br)
			return
		}
		if strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
			io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			io.Copy(io.Discard, br)
			return
		}
		echo := tapEcho(req.Method, req.RequestURI, string(body))
		if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(echo), echo); err != nil {
			return
		}
	}
}

// tapReader records what is read from one connection.
type tapReader struct {
	tb *tapBackend
	id int
	r  io.Reader
}

func (tr *tapReader) Read(p []byte) (int, error) {
	n, err := tr.r.Read(p)
	tr.tb.mu.Lock()
	defer tr.tb.mu.Unlock()
	if n > 0 {
		tr.tb.events = append(tr.tb.events, tapEvent{conn: tr.id, data: slices.Clone(p[:n])})
	}
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		tr.tb.events = append(tr.tb.events, tapEvent{conn: tr.id, eof: true})
	}
	return n, err
}

// quiet waits until nothing has arrived for a moment (at most a few
// seconds), so that one probe's traffic never lands in the next one's record.
func (tb *tapBackend) quiet() {
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		n := tb.mark()
		time.Sleep(25 * time.Millisecond)
		if tb.mark() == n {
			return
		}
	}
}

// mark is the position in the record from which a probe's traffic counts.
func (tb *tapBackend) mark() int {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return len(tb.events)
}

// since returns the bytes received after mark on each connection (in the
// order the connections got their first byte) and the connections the proxy
// closed after mark.
func (tb *tapBackend) since(mark int) (order []int, bytesOf map[int][]byte, closed map[int]bool) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	bytesOf, closed = map[int][]byte{}, map[int]bool{}
	for _, e := range tb.events[mark:] {
		if e.eof {
			closed[e.conn] = true
			continue
		}
		if _, ok := bytesOf[e.conn]; !ok {
			order = append(order, e.conn)
		}
		bytesOf[e.conn] = append(bytesOf[e.conn], e.data...)
	}
	return order, bytesOf, closed
}

// wireReq is one request as a backend received it.
type wireReq struct {
	method, target, host string
	te, cl               string // the framing fields as received ("" when absent)
	body                 string
}

// parseStream reads the bytes one backend connection received as a sequence
// of requests, strictly: with ballast's h1 parser (which refuses everything
// ambiguous), then again with net/http, and the two must frame them alike.
// It returns the complete requests and whether an incomplete one follows
// them; bytes that are not a valid request are an error.
func parseStream(b []byte) (reqs []wireReq, partial bool, err error) {
	rest := b
	var r h1.Request
	for len(rest) > 0 {
		n, err := h1.ParseRequest(rest, &r)
		if errors.Is(err, h1.ErrIncomplete) {
			partial = true
			break
		}
		if err != nil {
			return nil, false, fmt.Errorf("request %d: %w in %q", len(reqs)+1, err, clip(rest))
		}
		w := wireReq{method: string(r.Method), target: string(r.Target), host: string(r.Host),
			te: string(r.Header("Transfer-Encoding")), cl: string(r.Header("Content-Length"))}
		after := rest[n:]
		var used int
		switch {
		case r.Chunked:
			src := bytes.NewReader(after)
			br := bufio.NewReader(src)
			var cr h1.ChunkedReader
			cr.Reset(br)
			body, err := io.ReadAll(&cr)
			if errors.Is(err, io.ErrUnexpectedEOF) {
				partial = true
				rest = nil
				continue
			}
			if err != nil {
				return nil, false, fmt.Errorf("request %d: chunked body: %w", len(reqs)+1, err)
			}
			w.body = string(body)
			used = len(after) - src.Len() - br.Buffered()
		case int64(len(after)) < r.ContentLength:
			partial = true
			rest = nil
			continue
		default:
			used = int(r.ContentLength)
			w.body = string(after[:used])
		}
		reqs = append(reqs, w)
		rest = after[used:]
	}

	// net/http must see the same complete requests, with the same bodies.
	br := bufio.NewReader(bytes.NewReader(b))
	for i, w := range reqs {
		req, err := http.ReadRequest(br)
		if err != nil {
			return nil, false, fmt.Errorf("request %d: net/http: %v", i+1, err)
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, false, fmt.Errorf("request %d: net/http body: %v", i+1, err)
		}
		if req.Method != w.method || req.RequestURI != w.target || string(body) != w.body {
			return nil, false, fmt.Errorf("request %d: h1 reads %s %s body %q, net/http reads %s %s body %q",
				i+1, w.method, w.target, w.body, req.Method, req.RequestURI, body)
		}
	}
	if !partial {
		if _, err := http.ReadRequest(br); err != io.EOF {
			return nil, false, fmt.Errorf("net/http reads more than h1 after %d requests: %v", len(reqs), err)
		}
	}
	return reqs, partial, nil
}

// parseLenient reads the bytes one backend connection received with net/http
// alone (framing only): enough to tell whether a request is still incomplete.
func parseLenient(b []byte) (reqs []wireReq, partial bool, err error) {
	br := bufio.NewReader(bytes.NewReader(b))
	for {
		if _, err := br.Peek(1); err == io.EOF {
			return reqs, false, nil
		}
		req, err := http.ReadRequest(br)
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return reqs, true, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("request %d: net/http: %v", len(reqs)+1, err)
		}
		body, err := io.ReadAll(req.Body)
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return reqs, true, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("request %d: net/http body: %v", len(reqs)+1, err)
		}
		reqs = append(reqs, wireReq{method: req.Method, target: req.RequestURI, host: req.Host,
			te: strings.Join(req.TransferEncoding, ", "), cl: req.Header.Get("Content-Length"), body: string(body)})
	}
}

func clip(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

// rawClient is a client connection to the proxy under test.
type rawClient struct {
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawClient{c: c, br: bufio.NewReader(c)}
}

// send writes s in the background: a proxy that refuses a request may close
// the connection before it has all been written.
func (rc *rawClient) send(s string) {
	go io.WriteString(rc.c, s)
}

// response reads the next final response (interim ones are skipped) with its
// whole body; method is the request's.
func (rc *rawClient) response(method string) (status int, body string, resp *http.Response, err error) {
	for {
		resp, err = http.ReadResponse(rc.br, &http.Request{Method: method})
		if err != nil {
			return 0, "", nil, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return resp.StatusCode, string(b), resp, fmt.Errorf("body: %w", err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp.StatusCode, string(b), resp, nil
		}
	}
}

// closedWithin reports whether the proxy closes the connection within d
// without sending anything more; extra is what it sent instead.
func (rc *rawClient) closedWithin(d time.Duration) (closed bool, extra string) {
	rc.c.SetReadDeadline(time.Now().Add(d))
	defer rc.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	b, err := rc.br.ReadByte()
	switch {
	case err == nil:
		rest, _ := rc.br.Peek(rc.br.Buffered())
		return false, string(b) + string(rest)
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
		return true, ""
	}
	return false, ""
}

// observation is what a probe led to, on both sides of the proxy.
type observation struct {
	replies []obsReply
	readErr error // reading the reply after the last one
	closed  bool
	extra   string // bytes the proxy sent beyond the replies

	order   []int
	bytesOf map[int][]byte
	eof     map[int]bool
}

type obsReply struct {
	status int
	body   string
}

func observe(t *testing.T, tb *tapBackend, addr string, p probe, want outcome) *observation {
	tb.quiet()
	mark := tb.mark()
	rc := dialRaw(t, addr)
	rc.send(p.raw + nextReq)
	if p.halfClose {
		time.Sleep(100 * time.Millisecond)
		rc.c.(interface{ CloseWrite() error }).CloseWrite()
	}

	// The client's side: as many replies as the outcomes allow, the ones
	// beyond what want expects with a short deadline.
	o := &observation{}
	n := len(want.replies)
	for i := range n {
		if i >= len(want.replies) {
			rc.c.SetReadDeadline(time.Now().Add(time.Second))
		}
		method := "GET"
		if i < len(want.reqs) {
			method = want.reqs[i].method
		}
		st, body, _, err := rc.response(method)
		if err != nil {
			o.readErr = err
			// http.ReadResponse reports a close before the status line as
			// io.ErrUnexpectedEOF.
			o.closed = errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
			break
		}
		o.replies = append(o.replies, obsReply{st, body})
	}
	if o.readErr == nil {
		// A close is waited for when it is all that is expected.
		d := 100 * time.Millisecond
		if want.closed {
			d = 3 * time.Second
		}
		o.closed, o.extra = rc.closedWithin(d)
	}

	// The backend's side, once it is quiet; a connection left with an
	// incomplete request gets a moment to be closed.
	tb.quiet()
	o.order, o.bytesOf, o.eof = tb.since(mark)
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		open := false
		for _, id := range o.order {
			if _, partial, err := parseLenient(o.bytesOf[id]); err == nil && partial && !o.eof[id] {
				open = true
			}
		}
		if !open {
			break
		}
		o.order, o.bytesOf, o.eof = tb.since(mark)
	}
	return o
}

// check compares the observation with an outcome.
func (o *observation) check(want outcome) error {
	for i, w := range want.replies {
		if i >= len(o.replies) {
			return fmt.Errorf("reply %d: none (%v), want %d", i+1, o.readErr, w.status)
		}
		g := o.replies[i]
		if g.status != w.status {
			return fmt.Errorf("reply %d: status %d %q, want %d", i+1, g.status, g.body, w.status)
		}
		if w.echo > 0 {
			r := want.reqs[w.echo-1]
			if e := tapEcho(r.method, r.target, r.body); g.body != e {
				return fmt.Errorf("reply %d is not the backend's answer to %s %s: %q, want %q", i+1, r.method, r.target, g.body, e)
			}
		}
	}
	if len(o.replies) > len(want.replies) {
		return fmt.Errorf("%d replies, want %d: %+v", len(o.replies), len(want.replies), o.replies)
	}
	switch {
	case want.closed && !o.closed:
		return fmt.Errorf("client connection not closed after the replies; extra bytes %q", o.extra)
	case !want.closed && (o.closed || o.extra != ""):
		return fmt.Errorf("after the replies: closed %v (%v), extra bytes %q", o.closed, o.readErr, o.extra)
	}

	var got []wireReq
	partialConns := 0
	for _, id := range o.order {
		reqs, partial, err := parseStream(o.bytesOf[id])
		if err != nil {
			return fmt.Errorf("backend connection %d received malformed bytes: %v", id, err)
		}
		got = append(got, reqs...)
		if partial {
			partialConns++
			switch {
			case !want.mayPartial || partialConns > 1:
				return fmt.Errorf("backend connection %d received an incomplete request", id)
			case !o.eof[id]:
				return fmt.Errorf("backend connection %d holding an incomplete request was left open: another request could complete it", id)
			}
		}
	}
	if len(got) != len(want.reqs) {
		return fmt.Errorf("backend received %d complete requests, want %d: %+v", len(got), len(want.reqs), got)
	}
	for i, w := range want.reqs {
		g := got[i]
		switch {
		case g.method != w.method || g.target != w.target || g.body != w.body:
			return fmt.Errorf("backend request %d: %s %s body %q, want %s %s body %q", i+1, g.method, g.target, g.body, w.method, w.target, w.body)
		case w.host != "" && g.host != w.host:
			return fmt.Errorf("backend request %d: Host %q, want %q", i+1, g.host, w.host)
		case w.chunked && (g.te != "chunked" || g.cl != ""):
			return fmt.Errorf("backend request %d framed by TE %q CL %q, want chunked", i+1, g.te, g.cl)
		case !w.chunked && g.te != "":
			return fmt.Errorf("backend request %d framed by TE %q, want Content-Length", i+1, g.te)
		}
	}
	return nil
}

// dump shows what the backend received, for a failure's message.
func (o *observation) dump() string {
	var b strings.Builder
	fmt.Fprintf(&b, "client got %+v (then %v, closed %v, extra %q)\n", o.replies, o.readErr, o.closed, o.extra)
	for _, id := range o.order {
		fmt.Fprintf(&b, "backend connection %d (closed %v): %q\n", id, o.eof[id], clip(o.bytesOf[id]))
	}
	return b.String()
}
