package server

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"

	"ballast/internal/config"
	"ballast/internal/proxy"
)

// backendLink turns a pool's tls and backend_protocol into how the data path
// reaches its backends, reading the CA file. Its ID changes whenever the
// settings or the CA file's contents do, so that a reload replaces the
// upstream's connections then, and only then.
func backendLink(name string, pc *config.Pool) (proxy.Link, error) {
	l := proxy.Link{H2: pc.BackendProtocol == config.BackendH2C}
	if l.H2 {
		l.ID = config.BackendH2C
	}
	t := pc.TLS
	if t == nil {
		return l, nil
	}
	conf := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,         // empty: each backend's host (transport.dial)
		InsecureSkipVerify: t.InsecureSkipVerify, // the operator's explicit choice, for tests
	}
	sum := sha256.New()
	fmt.Fprintf(sum, "%s\x00%s\x00%t\x00", pc.BackendProtocol, t.ServerName, t.InsecureSkipVerify)
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return l, fmt.Errorf("pool %q: tls.ca: %w", name, err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return l, fmt.Errorf("pool %q: tls.ca: no PEM certificate in %s", name, t.CA)
		}
		conf.RootCAs = roots
		sum.Write(pem)
	}
	l.TLS = conf
	l.ID = "tls:" + hex.EncodeToString(sum.Sum(nil))
	return l, nil
}
