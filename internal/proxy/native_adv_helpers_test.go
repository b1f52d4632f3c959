package proxy

// Helpers of the adversarial native-engine suite (native_adv_*_test.go): a raw
// TCP backend that records exactly what it receives, a raw TCP client, and a
// proxy built around the native engine with configurable timeouts. Both raw
// sides parse messages with the small reader below rather than net/http, so
// that the tests see the bytes on the wire (field names, order, framing) and
// not a library's interpretation of them.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ballast/internal/backend"
	"ballast/internal/pool"
	"ballast/internal/router"
)

// advDeadline bounds every raw connection of the suite: no test can hang.
const advDeadline = 10 * time.Second

// advMsg is one HTTP/1.x message as seen on the wire.
type advMsg struct {
	raw      string      // the head, through its empty line
	line     string      // request-line or status-line
	fields   [][2]string // header fields in order, names as sent
	body     []byte
	trailers [][2]string
	bodyErr  error // nil when the body arrived complete
	conn     int64 // backend side: which accepted connection (1-based)
}

func (m *advMsg) get(name string) string {
	if v := m.all(name); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (m *advMsg) has(name string) bool { return len(m.all(name)) > 0 }

func (m *advMsg) all(name string) []string {
	var vs []string
	for _, f := range m.fields {
		if strings.EqualFold(f[0], name) {
			vs = append(vs, f[1])
		}
	}
	return vs
}

func (m *advMsg) trailer(name string) string {
	for _, f := range m.trailers {
		if strings.EqualFold(f[0], name) {
			return f[1]
		}
	}
	return ""
}

// status is a response's status code (0 if the line is not a status-line).
func (m *advMsg) status() int {
	if len(m.line) < 12 {
		return 0
	}
	s, _ := strconv.Atoi(m.line[9:12])
	return s
}

// target is a request's request-target.
func (m *advMsg) target() string {
	p := strings.Split(m.line, " ")
	if len(p) != 3 {
		return ""
	}
	return p[1]
}

func (m *advMsg) method() string { return strings.SplitN(m.line, " ", 2)[0] }

// advReadHead reads a header block: lines up to the empty one.
func advReadHead(br *bufio.Reader) (*advMsg, error) {
	m := &advMsg{}
	var raw strings.Builder
	for i := 0; ; i++ {
		if i > 1000 {
			return nil, errors.New("header block too long")
		}
		line, err := br.ReadString('\n')
		raw.WriteString(line)
		if err != nil {
			if raw.Len() > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if !strings.HasSuffix(line, "\r\n") {
			return nil, fmt.Errorf("bare LF in %q", line)
		}
		line = strings.TrimSuffix(line, "\r\n")
		switch {
		case line == "":
			m.raw = raw.String()
			return m, nil
		case i == 0:
			m.line = line
		default:
			name, value, ok := strings.Cut(line, ":")
			if !ok {
				return nil, fmt.Errorf("bad field line %q", line)
			}
			m.fields = append(m.fields, [2]string{name, strings.TrimSpace(value)})
		}
	}
}

// advReadChunked decodes a chunked body and its trailers.
func advReadChunked(br *bufio.Reader) (body []byte, trailers [][2]string, err error) {
	for i := 0; ; i++ {
		if i > 1<<20 {
			return body, nil, errors.New("too many chunks")
		}
		line, err := br.ReadString('\n')
		if err != nil {
			return body, nil, io.ErrUnexpectedEOF
		}
		sz, _, _ := strings.Cut(strings.TrimSuffix(line, "\r\n"), ";")
		n, err := strconv.ParseInt(strings.TrimSpace(sz), 16, 64)
		if err != nil {
			return body, nil, fmt.Errorf("bad chunk line %q", line)
		}
		if n == 0 {
			break
		}
		start := len(body)
		body = append(body, make([]byte, n)...)
		if _, err := io.ReadFull(br, body[start:]); err != nil {
			return body[:start], nil, io.ErrUnexpectedEOF
		}
		var crlf [2]byte
		if _, err := io.ReadFull(br, crlf[:]); err != nil || string(crlf[:]) != "\r\n" {
			return body, nil, fmt.Errorf("chunk data not followed by CRLF: %q %v", crlf, err)
		}
	}
	for range 100 {
		line, err := br.ReadString('\n')
		if err != nil {
			return body, trailers, io.ErrUnexpectedEOF
		}
		line = strings.TrimSuffix(line, "\r\n")
		if line == "" {
			return body, trailers, nil
		}
		name, value, _ := strings.Cut(line, ":")
		trailers = append(trailers, [2]string{name, strings.TrimSpace(value)})
	}
	return body, trailers, errors.New("too many trailer fields")
}

// advReadBody reads a body framed as m's fields say; untilEOF selects a body
// delimited by the connection closing when there is no framing field.
func advReadBody(br *bufio.Reader, m *advMsg, untilEOF bool) {
	switch te := strings.ToLower(m.get("Transfer-Encoding")); {
	case strings.HasSuffix(te, "chunked"):
		m.body, m.trailers, m.bodyErr = advReadChunked(br)
	case m.has("Content-Length"):
		n, err := strconv.ParseInt(m.get("Content-Length"), 10, 64)
		if err != nil {
			m.bodyErr = err
			return
		}
		m.body = make([]byte, n)
		k, err := io.ReadFull(br, m.body)
		m.body, m.bodyErr = m.body[:k], err
	case untilEOF:
		m.body, m.bodyErr = io.ReadAll(br)
	}
}

// advReadResponse reads one response to a request with the given method.
func advReadResponse(br *bufio.Reader, method string) (*advMsg, error) {
	m, err := advReadHead(br)
	if err != nil {
		return nil, err
	}
	st := m.status()
	if method == "HEAD" || st < 200 || st == 204 || st == 304 {
		return m, nil
	}
	advReadBody(br, m, true)
	return m, m.bodyErr
}

// advClient is a raw TCP client of the proxy.
type advClient struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func advDial(t testing.TB, addr string) *advClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(advDeadline))
	return &advClient{t: t, c: c, br: bufio.NewReader(c)}
}

func (ac *advClient) send(s string) {
	ac.t.Helper()
	if _, err := io.WriteString(ac.c, s); err != nil {
		ac.t.Fatalf("client write: %v", err)
	}
}

// resp reads one response and fails the test if there is none.
func (ac *advClient) resp(method string) *advMsg {
	ac.t.Helper()
	m, err := advReadResponse(ac.br, method)
	if err != nil {
		ac.t.Fatalf("client read response to %s: %v", method, err)
	}
	return m
}

// roundTrip sends req and reads its response.
func (ac *advClient) roundTrip(req string) *advMsg {
	ac.t.Helper()
	ac.send(req)
	return ac.resp(strings.SplitN(req, " ", 2)[0])
}

// expectClosed asserts that the proxy closes the connection (EOF or reset)
// within d, without sending anything more.
func (ac *advClient) expectClosed(d time.Duration) {
	ac.t.Helper()
	ac.c.SetReadDeadline(time.Now().Add(d))
	b, err := ac.br.ReadByte()
	switch {
	case err == nil:
		rest, _ := ac.br.Peek(ac.br.Buffered())
		ac.t.Fatalf("connection still open: got %q", string(b)+string(rest))
	case errors.Is(err, io.EOF), isReset(err):
	default:
		ac.t.Fatalf("connection not closed within %v: %v", d, err)
	}
}

// advConn is one connection accepted by an advBackend.
type advConn struct {
	b  *advBackend
	id int64
	c  net.Conn
	br *bufio.Reader
}

// next reads and records the next request head; its body is left unread.
func (ac *advConn) next() (*advMsg, error) {
	m, err := advReadHead(ac.br)
	if err != nil {
		return nil, err
	}
	m.conn = ac.id
	ac.b.mu.Lock()
	ac.b.msgs = append(ac.b.msgs, m)
	ac.b.mu.Unlock()
	return m, nil
}

// body reads and records m's body; it reports whether it came complete.
func (ac *advConn) body(m *advMsg) bool {
	var tmp advMsg
	tmp.fields = m.fields
	advReadBody(ac.br, &tmp, false)
	ac.b.mu.Lock()
	m.body, m.trailers, m.bodyErr = tmp.body, tmp.trailers, tmp.bodyErr
	ac.b.mu.Unlock()
	return tmp.bodyErr == nil
}

// write sends raw bytes; errors end the exchange on their own.
func (ac *advConn) write(s string) error {
	_, err := io.WriteString(ac.c, s)
	return err
}

// echo answers with a keep-alive response naming the request: method,
// target, connection, X-Token, body length and hash.
func (ac *advConn) echo(m *advMsg) bool {
	return ac.write(advResponse(200, "", advEcho(m))) == nil
}

// advEcho is what an echoing backend answers to m.
func advEcho(m *advMsg) string {
	return fmt.Sprintf("%s %s conn=%d token=%s len=%d sha=%x", m.method(), m.target(),
		m.conn, m.get("X-Token"), len(m.body), sha256.Sum256(m.body))
}

// advEchoOf is what an echoing backend answers to a request with that line
// start (method and target), token and body, whatever the connection.
func advEchoOf(method, target, token string, body []byte) string {
	return fmt.Sprintf("%s %s conn=", method, target) + "*" +
		fmt.Sprintf(" token=%s len=%d sha=%x", token, len(body), sha256.Sum256(body))
}

// advEchoMatch compares an echo with advEchoOf's pattern, ignoring conn.
func advEchoMatch(got, want string) bool {
	pre, post, _ := strings.Cut(want, "*")
	if !strings.HasPrefix(got, pre) || !strings.HasSuffix(got, post) {
		return false
	}
	mid := strings.TrimSuffix(strings.TrimPrefix(got, pre), post)
	_, err := strconv.Atoi(mid)
	return err == nil
}

// advResponse builds a Content-Length response with extra header lines.
func advResponse(status int, extra, body string) string {
	return fmt.Sprintf("HTTP/1.1 %d %s\r\n%sContent-Length: %d\r\n\r\n%s",
		status, statusText(status), extra, len(body), body)
}

// advBackend is a raw TCP backend on 127.0.0.1 that records every request.
type advBackend struct {
	addr    string
	accepts atomic.Int64
	done    chan struct{} // closed when the test ends: blocked handlers return

	mu    sync.Mutex
	msgs  []*advMsg
	conns map[net.Conn]struct{}
}

// newAdvBackend serves each request with h (nil: read the body and echo);
// h returns false to close the connection.
func newAdvBackend(t testing.TB, h func(ac *advConn, m *advMsg) bool) *advBackend {
	if h == nil {
		h = func(ac *advConn, m *advMsg) bool { return ac.body(m) && ac.echo(m) }
	}
	return newAdvRawBackend(t, func(ac *advConn) {
		for {
			m, err := ac.next()
			if err != nil || !h(ac, m) {
				return
			}
		}
	})
}

// newAdvRawBackend runs serve for every accepted connection, then closes it.
func newAdvRawBackend(t testing.TB, serve func(ac *advConn)) *advBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &advBackend{addr: ln.Addr().String(), done: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns[c] = struct{}{}
			b.mu.Unlock()
			id := b.accepts.Add(1)
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(advDeadline))
				serve(&advConn{b: b, id: id, c: c, br: bufio.NewReader(c)})
			})
		}
	})
	t.Cleanup(func() {
		close(b.done)
		ln.Close()
		b.mu.Lock()
		for c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		wg.Wait()
	})
	return b
}

// seen returns copies of the requests recorded so far.
func (b *advBackend) seen() []advMsg {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]advMsg, len(b.msgs))
	for i, m := range b.msgs {
		out[i] = *m
	}
	return out
}

// sleep waits d or until the test ends.
func (b *advBackend) sleep(d time.Duration) {
	select {
	case <-time.After(d):
	case <-b.done:
	}
}

// advProxyConfig configures the engine under test; zero fields get defaults.
type advProxyConfig struct {
	timeouts          Timeouts
	readHeaderTimeout time.Duration
	idleTimeout       time.Duration
}

// advProxy is the native engine serving on 127.0.0.1.
type advProxy struct {
	addr string
	n    *Native
	ln   net.Listener
}

func newAdvProxy(t testing.TB, cfg advProxyConfig, addrs ...string) *advProxy {
	t.Helper()
	if cfg.timeouts == (Timeouts{}) {
		cfg.timeouts = Timeouts{Connect: time.Second, ResponseHeader: 5 * time.Second, Idle: time.Minute}
	}
	if cfg.readHeaderTimeout == 0 {
		cfg.readHeaderTimeout = 5 * time.Second
	}
	if cfg.idleTimeout == 0 {
		cfg.idleTimeout = time.Minute
	}
	bs := make([]*backend.Backend, len(addrs))
	for i, a := range addrs {
		bs[i] = backend.New("app", a, 1)
	}
	p, err := pool.New("app", pool.Settings{Algorithm: "round_robin"}, bs)
	if err != nil {
		t.Fatal(err)
	}
	up := NewUpstream(p, cfg.timeouts)
	tab, err := router.New([]router.Route[*Upstream]{{Target: up}})
	if err != nil {
		t.Fatal(err)
	}
	n := NewNative(NewDispatcher(tab), slog.New(slog.NewTextHandler(io.Discard, nil)),
		cfg.readHeaderTimeout, cfg.idleTimeout)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { n.Serve(ln); close(served) }()
	t.Cleanup(func() {
		ln.Close()
		<-served
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n.Shutdown(ctx)
		up.Close()
	})
	return &advProxy{addr: ln.Addr().String(), n: n, ln: ln}
}

// advWaitFor polls cond every 10ms for up to d.
func advWaitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// advGet is a minimal HTTP/1.1 GET with an X-Token.
func advGet(path, token string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: app.test\r\nX-Token: " + token + "\r\n\r\n"
}
