package proxy

// Helpers of the adversarial native-engine suite (native_adv_*_test.go): a raw
// TCP backend that records exactly what it receives, a raw TCP client, and a
// proxy built around the native engine with configurable timeouts. Both raw
// sides parse messages with the reader in native_adv_msg_test.go, not net/http, so
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

// advDeadline bounds every raw connection of the suite: no test can hang. It
// is generous because -race on a loaded machine is slow; tests that expect
// something within a short time set their own, shorter, deadline.
const advDeadline = 60 * time.Second

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
	m.body, m.trailers, m.bodyErr, m.bodyDone = tmp.body, tmp.trailers, tmp.bodyErr, true
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
	closes  atomic.Int64  // connections the backend has closed
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
				defer b.closes.Add(1)
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
	limits            ClientLimits // the other limits (none by default)
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
	lim := cfg.limits
	lim.ReadHeaderTimeout, lim.IdleTimeout = cfg.readHeaderTimeout, cfg.idleTimeout
	n := NewNative(NewDispatcher(tab), slog.New(slog.NewTextHandler(io.Discard, nil)), lim)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { n.Serve(ln); close(served) }()
	t.Cleanup(func() {
		ln.Close()
		<-served
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
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
