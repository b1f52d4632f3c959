package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"ballast/internal/testutil"
)

// grpcBackend is a real grpc-go server (cleartext HTTP/2) implementing the
// interop TestService: UnaryCall echoes the payload or fails with the
// requested status, FullDuplexCall echoes each message as it arrives. Both
// send header and trailer metadata naming the backend.
type grpcBackend struct {
	testpb.UnimplementedTestServiceServer
	name  string
	addr  string
	calls atomic.Int64
}

func newGRPCBackend(t *testing.T, name string) *grpcBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &grpcBackend{name: name, addr: ln.Addr().String()}
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, b)
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return b
}

func (b *grpcBackend) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	b.calls.Add(1)
	grpc.SetHeader(ctx, metadata.Pairs("x-backend", b.name))
	if st := req.GetResponseStatus(); st.GetCode() != 0 {
		grpc.SetTrailer(ctx, metadata.Pairs("x-failed-on", b.name))
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	grpc.SetTrailer(ctx, metadata.Pairs("x-served-by", b.name))
	return &testpb.SimpleResponse{Payload: req.GetPayload(), Hostname: b.name}, nil
}

func (b *grpcBackend) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	b.calls.Add(1)
	stream.SetHeader(metadata.Pairs("x-backend", b.name))
	n := 0
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			stream.SetTrailer(metadata.Pairs("x-messages", fmt.Sprint(n)))
			return nil
		}
		if err != nil {
			return err
		}
		n++
		body := append([]byte(b.name+": "), req.GetPayload().GetBody()...)
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: body}}); err != nil {
			return err
		}
	}
}

// gRPC end to end: a client reaches two grpc-go backends through ballast,
// over TLS (HTTP/2 by ALPN) and over an h2c listener. Unary and bidirectional
// streaming calls work, header and trailer metadata (grpc-status among them)
// arrive, an error status passes through, and calls on one client connection
// are balanced per request, not per connection.
func TestGRPC(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile, _ := ca.issue(t, "site", "127.0.0.1")
	b1, b2 := newGRPCBackend(t, "b1"), newGRPCBackend(t, "b2")
	web := testutil.NewBackend(t, "web", nil) // the TLS listener's other route
	yaml := fmt.Sprintf(`shutdown_timeout: 5s
listeners:
  - name: tls
    listen: %s
    tls: {cert: %s, key: %s}
    routes:
      - {path_prefix: /grpc.testing.TestService/, pool: grpc}   # gRPC paths: /package.Service/Method
      - {pool: web}
  - name: h2c
    listen: %s
    h2c: true
    routes: [{pool: grpc}]
pools:
  grpc:
    backend_protocol: h2c
    health_check: {type: tcp}
    backends:
      - addr: %s
      - addr: %s
  web:
    backends: [{addr: %s}]
`, testutil.FreeAddr(t), certFile, keyFile, testutil.FreeAddr(t), b1.addr, b2.addr, web.Addr())
	s, _ := start(t, yaml)

	for _, tc := range []struct {
		listener string
		creds    credentials.TransportCredentials
	}{
		{"tls", credentials.NewTLS(ca.clientTLS("127.0.0.1"))},
		{"h2c", insecure.NewCredentials()},
	} {
		t.Run(tc.listener, func(t *testing.T) {
			var dials atomic.Int64
			cc, err := grpc.NewClient("passthrough:///"+s.Addr(tc.listener).String(),
				grpc.WithTransportCredentials(tc.creds),
				grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
					dials.Add(1)
					var d net.Dialer
					return d.DialContext(ctx, "tcp", addr)
				}))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			client := testpb.NewTestServiceClient(cc)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			t.Run("unary", func(t *testing.T) { grpcUnary(ctx, t, client) })
			t.Run("error status", func(t *testing.T) { grpcError(ctx, t, client) })
			t.Run("bidi stream", func(t *testing.T) { grpcBidi(ctx, t, client) })
			t.Run("balanced per call", func(t *testing.T) {
				before1, before2 := b1.calls.Load(), b2.calls.Load()
				for range 20 {
					if _, err := client.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
						t.Fatal(err)
					}
				}
				n1, n2 := b1.calls.Load()-before1, b2.calls.Load()-before2
				if n1+n2 != 20 || n1 == 0 || n2 == 0 {
					t.Fatalf("20 calls on one connection went %d to b1 and %d to b2, want both some", n1, n2)
				}
				t.Logf("20 calls on one connection: b1 %d, b2 %d", n1, n2)
			})
			if n := dials.Load(); n != 1 {
				t.Errorf("the client opened %d connections to ballast, want 1", n)
			}
		})
	}
}

func grpcUnary(ctx context.Context, t *testing.T, client testpb.TestServiceClient) {
	for _, size := range []int{5, 1 << 20} { // a small message, and one past the flow-control windows
		body := bytes.Repeat([]byte("x"), size)
		var header, trailer metadata.MD
		resp, err := client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: body}},
			grpc.Header(&header), grpc.Trailer(&trailer))
		if err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		if !bytes.Equal(resp.GetPayload().GetBody(), body) {
			t.Fatalf("%d bytes: echo of %d bytes", size, len(resp.GetPayload().GetBody()))
		}
		if got := header.Get("x-backend"); len(got) != 1 || got[0] != resp.GetHostname() {
			t.Errorf("header x-backend = %q, want [%s]", got, resp.GetHostname())
		}
		if got := trailer.Get("x-served-by"); len(got) != 1 || got[0] != resp.GetHostname() {
			t.Errorf("trailer x-served-by = %q, want [%s] (trailer %v)", got, resp.GetHostname(), trailer)
		}
	}
}

func grpcError(ctx context.Context, t *testing.T, client testpb.TestServiceClient) {
	var trailer metadata.MD
	_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{
		ResponseStatus: &testpb.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "not ready: ünïcode and 100%"},
	}, grpc.Trailer(&trailer))
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition || st.Message() != "not ready: ünïcode and 100%" {
		t.Fatalf("got %v, want FailedPrecondition with the backend's message", err)
	}
	if got := trailer.Get("x-failed-on"); len(got) != 1 {
		t.Errorf("trailer x-failed-on = %q (trailer %v)", got, trailer)
	}
}

func grpcBidi(ctx context.Context, t *testing.T, client testpb.TestServiceClient) {
	stream, err := client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Lockstep: each reply must arrive before the next message is sent, so
	// nothing may be buffered until the end of the stream on the way.
	backend := ""
	for i := range 5 {
		msg := fmt.Sprintf("message %d", i)
		if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(msg)}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if i == 0 {
			hdr, err := stream.Header()
			if err != nil || len(hdr.Get("x-backend")) != 1 {
				t.Fatalf("header %v, %v", hdr, err)
			}
			backend = hdr.Get("x-backend")[0]
		}
		if want := backend + ": " + msg; string(resp.GetPayload().GetBody()) != want {
			t.Fatalf("reply %d = %q, want %q", i, resp.GetPayload().GetBody(), want)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("end of stream: %v, want EOF (status OK)", err)
	}
	if got := stream.Trailer().Get("x-messages"); len(got) != 1 || got[0] != "5" {
		t.Errorf("trailer x-messages = %q, want [5] (trailer %v)", got, stream.Trailer())
	}
}
