package server

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
