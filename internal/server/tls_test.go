package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"ballast/internal/testutil"
)

// A TLS listener serves HTTPS, negotiates HTTP/2 by ALPN, and tells the
// backend the client came over https.
func TestTLSListenerServesHTTP2(t *testing.T) {
	be := testutil.NewBackend(t, "b", nil)

	// httptest's self-signed certificate for 127.0.0.1, written to files as
	// an operator would configure it.
	ts := httptest.NewTLSServer(http.NotFoundHandler())
	defer ts.Close()
	cert := ts.TLS.Certificates[0]
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePEM(t, certFile, "CERTIFICATE", cert.Certificate[0])
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, keyFile, "PRIVATE KEY", key)

	cfg := httpConfig(t, "", be.Addr())
	cfg = strings.Replace(cfg, "    routes:\n", "    tls: {cert: "+certFile+", key: "+keyFile+"}\n    routes:\n", 1)
	_, url := start(t, cfg)
	url = strings.Replace(url, "http://", "https://", 1)

	client := ts.Client() // trusts the certificate
	client.Transport.(*http.Transport).ForceAttemptHTTP2 = true
	resp, err := client.Get(url + "/secure")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "b\n" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("client spoke %s, want HTTP/2", resp.Proto)
	}
	if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("TLS state %+v", resp.TLS)
	}
	if got := be.Requests()[0].Header.Get("X-Forwarded-Proto"); got != "https" {
		t.Errorf("X-Forwarded-Proto = %q, want https", got)
	}
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlsListenerConfig is httpConfig with a tls section (YAML flow mapping) on
// its listener.
func tlsListenerConfig(t *testing.T, tlsYAML string, backends ...string) string {
	t.Helper()
	return strings.Replace(httpConfig(t, "", backends...), "    routes:\n", "    tls: "+tlsYAML+"\n    routes:\n", 1)
}

// A TLS listener with several certificates answers each handshake with the
// one whose names cover the client's server name (SNI): exact names, then
// wildcards, then the default cert/key, which also answers clients that send
// no server name (they connected to an IP address).
func TestTLSCertificateBySNI(t *testing.T) {
	ca := newTestCA(t)
	defCert, defKey, _ := ca.issue(t, "default", "default.test", "127.0.0.1")
	aCert, aKey, _ := ca.issue(t, "a", "a.test")
	wCert, wKey, _ := ca.issue(t, "wild", "*.b.test")
	be := testutil.NewBackend(t, "b", nil)
	s, _ := start(t, tlsListenerConfig(t, fmt.Sprintf("{cert: %s, key: %s, certs: [{cert: %s, key: %s}, {cert: %s, key: %s}]}",
		defCert, defKey, aCert, aKey, wCert, wKey), be.Addr()))
	addr := s.Addr("web").String()

	tests := []struct {
		serverName string
		insecure   bool // the default certificate does not cover the name
		want       string
	}{
		{"a.test", false, "a.test"},
		{"x.b.test", false, "*.b.test"},
		{"default.test", false, "default.test"},
		{"127.0.0.1", false, "default.test"}, // no SNI for an IP address
		{"other.test", true, "default.test"},
		{"y.x.b.test", true, "default.test"}, // a wildcard covers one label
	}
	for _, tc := range tests {
		t.Run(tc.serverName, func(t *testing.T) {
			conf := ca.clientTLS(tc.serverName)
			conf.InsecureSkipVerify = tc.insecure
			leaf := handshake(t, addr, conf)
			if !slices.Contains(leaf.DNSNames, tc.want) {
				t.Errorf("server name %q got the certificate for %v, want %s", tc.serverName, leaf.DNSNames, tc.want)
			}
		})
	}

	// A whole request by SNI, over HTTP/2.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: ca.clientTLS(""), ForceAttemptHTTP2: true,
		DialTLSContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			d := tls.Dialer{Config: ca.clientTLS("a.test", "h2")}
			return d.DialContext(ctx, network, addr)
		},
	}}
	status, _, body := testutil.Get(t, client, "https://a.test/x")
	if status != 200 || body != "b\n" {
		t.Fatalf("got %d %q", status, body)
	}
}

// min_version "1.3" refuses TLS 1.2 clients; the default, "1.2", takes them.
func TestTLSMinVersion(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile, _ := ca.issue(t, "site", "127.0.0.1")
	be := testutil.NewBackend(t, "b", nil)
	for _, tc := range []struct {
		minVersion string
		tls12OK    bool
	}{{"", true}, {"1.2", true}, {"1.3", false}} {
		t.Run("min_version="+tc.minVersion, func(t *testing.T) {
			section := "{cert: " + certFile + ", key: " + keyFile + "}"
			if tc.minVersion != "" {
				section = "{cert: " + certFile + ", key: " + keyFile + ", min_version: \"" + tc.minVersion + "\"}"
			}
			s, _ := start(t, tlsListenerConfig(t, section, be.Addr()))
			addr := s.Addr("web").String()
			old := ca.clientTLS("127.0.0.1")
			old.MaxVersion = tls.VersionTLS12
			c, err := tls.Dial("tcp", addr, old)
			if err == nil {
				c.Close()
			}
			if (err == nil) != tc.tls12OK {
				t.Errorf("TLS 1.2 handshake: err = %v, want success %v", err, tc.tls12OK)
			}
			conf := ca.clientTLS("127.0.0.1")
			c, err = tls.Dial("tcp", addr, conf)
			if err != nil {
				t.Fatalf("TLS 1.3 handshake: %v", err)
			}
			if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
				t.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(v))
			}
			c.Close()
		})
	}
}

// A reload re-reads the certificate files of a TLS listener that keeps its
// socket, even when the config did not change: new handshakes get the new
// certificate, a connection already open keeps serving on the old one, and a
// broken file rejects the reload with its name while the listener goes on
// with what it had.
func TestTLSReloadSwapsCertificates(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile, first := ca.issue(t, "site", "site.test", "127.0.0.1")
	be := testutil.NewBackend(t, "b", nil)
	yaml := tlsListenerConfig(t, "{cert: "+certFile+", key: "+keyFile+"}", be.Addr())
	s, _ := start(t, yaml)
	addr := s.Addr("web").String()

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: ca.clientTLS("127.0.0.1"), MaxIdleConnsPerHost: 1,
	}}
	get := func() *x509.Certificate {
		t.Helper()
		resp, err := client.Get("https://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		return resp.TLS.PeerCertificates[0]
	}
	if got := get(); !got.Equal(first.Leaf) {
		t.Fatalf("first request: serial %v, want %v", got.SerialNumber, first.Leaf.SerialNumber)
	}

	// Same config, new file contents.
	_, _, second := ca.issue(t, "site", "site.test", "127.0.0.1")
	if err := s.Reload(parse(t, yaml)); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := s.Addr("web").String(); got != addr {
		t.Fatalf("listener moved from %s to %s", addr, got)
	}
	if got := handshake(t, addr, ca.clientTLS("site.test")); !got.Equal(second.Leaf) {
		t.Errorf("new handshake after reload: serial %v, want the new %v", got.SerialNumber, second.Leaf.SerialNumber)
	}
	if got := get(); !got.Equal(first.Leaf) {
		t.Errorf("the open connection was replaced (serial %v): a reload must not drop it", got.SerialNumber)
	}

	// A broken file: rejected, naming it; the listener keeps the second one.
	breakFile(t, certFile)
	err := s.Reload(parse(t, yaml))
	if err == nil || !strings.Contains(err.Error(), certFile) {
		t.Fatalf("reload with a broken certificate: err = %v, want one naming %s", err, certFile)
	}
	t.Logf("rejected: %v", err)
	if got := handshake(t, addr, ca.clientTLS("site.test")); !got.Equal(second.Leaf) {
		t.Errorf("after a rejected reload: serial %v, want %v", got.SerialNumber, second.Leaf.SerialNumber)
	}

	// New certificate paths (a certs entry added) keep the socket too.
	certFile2, keyFile2, third := ca.issue(t, "site2", "site.test", "127.0.0.1")
	aCert, aKey, _ := ca.issue(t, "a", "a.test")
	yaml2 := strings.Replace(yaml, "tls: {cert: "+certFile+", key: "+keyFile+"}",
		fmt.Sprintf("tls: {cert: %s, key: %s, certs: [{cert: %s, key: %s}]}", certFile2, keyFile2, aCert, aKey), 1)
	if err := s.Reload(parse(t, yaml2)); err != nil {
		t.Fatalf("reload with new paths: %v", err)
	}
	if got := handshake(t, addr, ca.clientTLS("site.test")); !got.Equal(third.Leaf) {
		t.Errorf("after new paths: serial %v, want %v", got.SerialNumber, third.Leaf.SerialNumber)
	}
	if got := handshake(t, addr, ca.clientTLS("a.test")); !slices.Contains(got.DNSNames, "a.test") {
		t.Errorf("the added certs entry is not served: %v", got.DNSNames)
	}
	if got := get(); !got.Equal(first.Leaf) {
		t.Errorf("the open connection was replaced by the second reload")
	}
}

// A certificate that cannot be loaded stops the start with the file's name.
func TestTLSBrokenCertificateAtStart(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile, _ := ca.issue(t, "site", "127.0.0.1")
	aCert, aKey, _ := ca.issue(t, "a", "a.test")
	breakFile(t, aKey)
	cfg := parse(t, tlsListenerConfig(t, fmt.Sprintf("{cert: %s, key: %s, certs: [{cert: %s, key: %s}]}", certFile, keyFile, aCert, aKey), "127.0.0.1:1"))
	s, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = s.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), aKey) || !strings.Contains(err.Error(), "tls.certs[0]") {
		t.Fatalf("Run: %v, want an error naming tls.certs[0] and %s", err, aKey)
	}
	t.Logf("refused: %v", err)
}

// WebSocket through a TLS listener, on an HTTP/1.1 connection (the client
// offers http/1.1 only by ALPN, as WebSocket clients do).
func TestWebSocketOverTLS(t *testing.T) {
	be := testutil.NewBackend(t, "ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo: "), msg...)); err != nil {
				return
			}
		}
	})
	ca := newTestCA(t)
	certFile, keyFile, _ := ca.issue(t, "site", "127.0.0.1")
	s, _ := start(t, tlsListenerConfig(t, "{cert: "+certFile+", key: "+keyFile+"}", be.Addr()))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.clientTLS("127.0.0.1", "http/1.1")}}
	c, resp, err := websocket.Dial(ctx, "wss://"+s.Addr("web").String()+"/socket", &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatalf("dial through proxy: %v", err)
	}
	defer c.CloseNow()
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.TLS == nil || resp.ProtoMajor != 1 {
		t.Fatalf("status %d, proto %s, tls %v", resp.StatusCode, resp.Proto, resp.TLS != nil)
	}
	for i := range 5 {
		msg := fmt.Sprintf("message %d %s", i, strings.Repeat("x", i*1000))
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "echo: "+msg {
			t.Fatalf("echo %d wrong: %.40q", i, got)
		}
	}
	c.Close(websocket.StatusNormalClosure, "done")
	if got := be.Requests()[0].Header.Get("X-Forwarded-Proto"); got != "https" {
		t.Errorf("X-Forwarded-Proto = %q, want https", got)
	}
}
