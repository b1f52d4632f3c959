package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"ballast/internal/testutil"
)

func TestStatusFor(t *testing.T) {
	sentinels := []struct {
		err  error
		want int
	}{
		{ErrNoRoute, http.StatusNotFound},
		{ErrNoBackend, http.StatusServiceUnavailable},
		{ErrBadRequest, http.StatusBadRequest},
		{ErrBodyTooLarge, http.StatusRequestEntityTooLarge},
		{ErrResponseTimeout, http.StatusGatewayTimeout},
		{ErrClientGone, StatusClientClosed},
		{ErrConnect, http.StatusBadGateway},
		{ErrBadResponse, http.StatusBadGateway},
	}
	other := errors.New("some detail")
	for _, s := range sentinels {
		forms := []struct {
			name string
			err  error
		}{
			{"bare", s.err},
			{"wrapped", fmt.Errorf("pool %q: dial 127.0.0.1:1: %w", "app", s.err)},
			{"wrapped twice", fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", s.err))},
			{"joined first", errors.Join(s.err, other)},
			{"joined last", errors.Join(other, s.err)},
			{"wrapped join", fmt.Errorf("ctx: %w", errors.Join(s.err, other))},
		}
		for _, f := range forms {
			t.Run(s.err.Error()+"/"+f.name, func(t *testing.T) {
				if got := StatusFor(f.err); got != s.want {
					t.Errorf("StatusFor(%v) = %d, want %d", f.err, got, s.want)
				}
			})
		}
	}

	unknown := []error{
		errors.New("boom"),
		io.ErrUnexpectedEOF,
		context.DeadlineExceeded,
		fmt.Errorf("wrapped: %w", os.ErrDeadlineExceeded),
		errors.Join(errors.New("a"), errors.New("b")),
	}
	for _, err := range unknown {
		t.Run("unknown/"+err.Error(), func(t *testing.T) {
			if got := StatusFor(err); got != http.StatusBadGateway {
				t.Errorf("StatusFor(%v) = %d, want 502", err, got)
			}
		})
	}
}

// Every status StatusFor can send gets a body that starts with its number.
// (499 is only recorded: the client is gone and nothing is written.)
func TestErrorBody(t *testing.T) {
	for _, status := range []int{400, 404, 413, 502, 503, 504} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			body := errorBody(status)
			if !strings.HasPrefix(body, strconv.Itoa(status)+" ") {
				t.Errorf("errorBody(%d) = %q, does not start with the status", status, body)
			}
			if !strings.HasSuffix(body, "\n") || strings.Count(body, "\n") != 1 {
				t.Errorf("errorBody(%d) = %q, want one line", status, body)
			}
		})
	}
}

// timeoutErr is a net.Error that reports a timeout.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// plainNetErr is a net.Error that is not a timeout.
type plainNetErr struct{}

func (plainNetErr) Error() string   { return "connection reset" }
func (plainNetErr) Timeout() bool   { return false }
func (plainNetErr) Temporary() bool { return false }

// closedPortDialErr returns the error of a real dial to a 127.0.0.1 port
// nobody listens on.
func closedPortDialErr(t *testing.T) error {
	t.Helper()
	c, err := net.DialTimeout("tcp", testutil.FreeAddr(t), time.Second)
	if err == nil {
		c.Close()
		t.Skip("the freed port was taken again")
	}
	return err
}

func TestClassify(t *testing.T) {
	live := context.Background()
	gone, cancel := context.WithCancel(context.Background())
	cancel()

	dialErr := closedPortDialErr(t)
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want error
	}{
		{"real dial error", live, dialErr, ErrConnect},
		{"wrapped dial error", live, fmt.Errorf("transport: %w", dialErr), ErrConnect},
		{"dial timeout is a connect error", live, &net.OpError{Op: "dial", Net: "tcp", Err: timeoutErr{}}, ErrConnect},
		{"net.Error timeout", live, timeoutErr{}, ErrResponseTimeout},
		{"read timeout", live, &net.OpError{Op: "read", Net: "tcp", Err: timeoutErr{}}, ErrResponseTimeout},
		{"deadline exceeded", live, os.ErrDeadlineExceeded, ErrResponseTimeout},
		{"client gone", gone, context.Canceled, ErrClientGone},
		{"client gone wins over dial error", gone, dialErr, ErrClientGone},
		{"client gone wins over timeout", gone, timeoutErr{}, ErrClientGone},
		{"unexpected EOF", live, io.ErrUnexpectedEOF, ErrBadResponse},
		{"EOF", live, io.EOF, ErrBadResponse},
		{"net.Error not a timeout", live, plainNetErr{}, ErrBadResponse},
		{"read error", live, &net.OpError{Op: "read", Net: "tcp", Err: plainNetErr{}}, ErrBadResponse},
		{"anything else", live, errors.New("malformed HTTP response"), ErrBadResponse},
	}
	sentinels := []error{ErrConnect, ErrResponseTimeout, ErrClientGone, ErrBadResponse, ErrNoRoute, ErrNoBackend, ErrBadRequest}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify(tt.ctx, tt.err)
			if !errors.Is(got, tt.want) {
				t.Fatalf("classify(%v) = %v, want %v", tt.err, got, tt.want)
			}
			for _, s := range sentinels {
				if s != tt.want && errors.Is(got, s) {
					t.Errorf("classify(%v) also matches %v", tt.err, s)
				}
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("classify(%v) = %v lost the original error", tt.err, got)
			}
		})
	}
}

// classify on what the engine's own transport returns for real failures.
func TestClassifyTransportErrors(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)

	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			io.WriteString(c, "this is not HTTP\r\n\r\n")
			c.Close()
		}
	}))
	defer broken.Close()

	closed := testutil.FreeAddr(t)

	tests := []struct {
		name   string
		addr   string
		cancel bool
		want   error
		status int
	}{
		{"connection refused", closed, false, ErrConnect, 502},
		{"response header timeout", slow.Listener.Addr().String(), false, ErrResponseTimeout, 504},
		{"client cancels", slow.Listener.Addr().String(), true, ErrClientGone, StatusClientClosed},
		{"garbage response", broken.Listener.Addr().String(), false, ErrBadResponse, 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTransport(Timeouts{Connect: time.Second, ResponseHeader: 100 * time.Millisecond, Idle: time.Second})
			defer tr.close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				time.AfterFunc(20*time.Millisecond, cancel)
			}
			req, err := http.NewRequestWithContext(ctx, "GET", "http://"+tt.addr+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := tr.rt.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("RoundTrip succeeded with %s", resp.Status)
			}
			got := classify(ctx, err)
			if !errors.Is(got, tt.want) {
				t.Errorf("classify(%v) = %v, want %v", err, got, tt.want)
			}
			if s := StatusFor(got); s != tt.status {
				t.Errorf("StatusFor = %d, want %d", s, tt.status)
			}
		})
	}
}
