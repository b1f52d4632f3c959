package server

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"ballast/internal/testutil"
)

// tlsBackend is an HTTPS backend that answers "NAME\n" and records how each
// request arrived.
type tlsBackend struct {
	*httptest.Server
	mu   sync.Mutex
	seen []seenRequest
}

// seenRequest is what a backend saw of one request's connection.
type seenRequest struct {
	proto      int    // HTTP major version
	serverName string // SNI
	tls        bool
}

// newTLSBackend starts an HTTPS backend with cert; h2 lets it speak HTTP/2.
func newTLSBackend(t *testing.T, name string, cert tls.Certificate, h2 bool) *tlsBackend {
	t.Helper()
	b := &tlsBackend{}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sr := seenRequest{proto: r.ProtoMajor, tls: r.TLS != nil}
		if r.TLS != nil {
			sr.serverName = r.TLS.ServerName
		}
		b.mu.Lock()
		b.seen = append(b.seen, sr)
		b.mu.Unlock()
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, name+"\n")
	}))
	b.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	b.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are what some tests want
	b.EnableHTTP2 = h2
	b.StartTLS()
	t.Cleanup(b.Close)
	return b
}

func (b *tlsBackend) Addr() string { return b.Listener.Addr().String() }

func (b *tlsBackend) requests() []seenRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]seenRequest(nil), b.seen...)
}

// A pool with tls reaches its backends over TLS on both engines, verifying
// their certificates against the pool's CA and the server name (by default
// the host of the backend's address); a certificate that does not verify is
// a connect failure: 502, and nothing is sent.
func TestBackendTLS(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	_, _, byIP := ca.issue(t, "by-ip", "127.0.0.1")
	_, _, byName := ca.issue(t, "by-name", "backend.test")
	_, _, foreign := other.issue(t, "foreign", "127.0.0.1")

	tests := []struct {
		name       string
		cert       tls.Certificate
		tls        string // the pool's tls section
		status     int
		serverName string // what the backend must see as SNI
	}{
		{"ca, name from the address", byIP, "{ca: " + ca.caFile + "}", 200, ""},
		{"server_name", byName, "{ca: " + ca.caFile + ", server_name: backend.test}", 200, "backend.test"},
		{"certificate for another name", byName, "{ca: " + ca.caFile + "}", 502, ""},
		{"certificate of another CA", foreign, "{ca: " + ca.caFile + "}", 502, ""},
		{"insecure_skip_verify", foreign, "{insecure_skip_verify: true}", 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			be := newTLSBackend(t, "secure", tc.cert, false)
			_, url := start(t, httpConfig(t, "tls: "+tc.tls, be.Addr()))
			client := testutil.Client()
			for range 3 { // a new connection, then reused ones
				status, _, body := testutil.Get(t, client, url+"/")
				if status != tc.status {
					t.Fatalf("status %d (%q), want %d", status, body, tc.status)
				}
				if status == 200 && body != "secure\n" {
					t.Fatalf("body %q", body)
				}
			}
			seen := be.requests()
			if tc.status != 200 {
				if len(seen) != 0 {
					t.Fatalf("%d requests reached a backend that does not verify", len(seen))
				}
				return
			}
			if len(seen) != 3 {
				t.Fatalf("backend saw %d requests, want 3", len(seen))
			}
			for _, sr := range seen {
				if !sr.tls || sr.proto != 1 || sr.serverName != tc.serverName {
					t.Errorf("backend saw %+v, want TLS, HTTP/1.1, SNI %q", sr, tc.serverName)
				}
			}
		})
	}
}

// A TLS handshake that never ends is bounded by timeouts.connect: the client
// gets 502 in about that time, on both engines.
func TestBackendTLSHandshakeTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns sync.WaitGroup
	conns.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // accept, never answer the ClientHello
		}
	})
	defer conns.Wait()
	defer ln.Close()
	_, url := start(t, httpConfig(t, "tls: {insecure_skip_verify: true}\ntimeouts: {connect: 300ms}", ln.Addr().String()))
	status, _, body := testutil.Get(t, testutil.Client(), url+"/")
	if status != http.StatusBadGateway {
		t.Fatalf("status %d %q, want 502", status, body)
	}
}

// A reload that changes only the contents of a pool's CA file takes effect:
// the link is identified by the file's contents, not its name.
func TestBackendTLSReloadRereadsCA(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	_, _, cert := other.issue(t, "backend", "127.0.0.1")
	be := newTLSBackend(t, "secure", cert, false)
	yaml := httpConfig(t, "tls: {ca: "+ca.caFile+"}", be.Addr())
	s, url := start(t, yaml)
	client := testutil.Client()
	if status, _, _ := testutil.Get(t, client, url+"/"); status != 502 {
		t.Fatalf("status %d before the CA is replaced, want 502", status)
	}
	writePEM(t, ca.caFile, "CERTIFICATE", other.cert.Raw)
	if err := s.Reload(parse(t, yaml)); err != nil {
		t.Fatal(err)
	}
	if status, _, body := testutil.Get(t, client, url+"/"); status != 200 {
		t.Fatalf("status %d %q after the CA was replaced, want 200", status, body)
	}

	breakFile(t, ca.caFile)
	err := s.Reload(parse(t, yaml))
	if err == nil || !strings.Contains(err.Error(), ca.caFile) || !strings.Contains(err.Error(), `pool "app": tls.ca`) {
		t.Fatalf("reload with a broken CA: %v, want an error naming the pool and the file", err)
	}
	if status, _, _ := testutil.Get(t, client, url+"/"); status != 200 {
		t.Fatalf("status %d after a rejected reload, want 200", status)
	}
}

// A TLS keep-alive connection the backend closed while it sat idle is not
// used for a request that cannot be sent twice (a POST): the native engine
// sees the close_notify below TLS, as it sees a FIN on plaintext.
func TestBackendTLSStaleConnection(t *testing.T) {
	ca := newTestCA(t)
	_, _, cert := ca.issue(t, "backend", "127.0.0.1")
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok\n")
	}))
	be.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	be.Config.IdleTimeout = 50 * time.Millisecond // closes keep-alive connections quickly
	be.StartTLS()
	defer be.Close()
	_, url := start(t, httpConfig(t, "tls: {ca: "+ca.caFile+"}", be.Listener.Addr().String()))
	client := testutil.Client()
	for i := range 3 {
		resp, err := client.Post(url+"/", "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST %d after the backend closed its idle connection: %d %q", i, resp.StatusCode, body)
		}
		time.Sleep(200 * time.Millisecond) // the backend closes the connection meanwhile
	}
}
