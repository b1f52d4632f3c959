package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"ballast/internal/config"
)

// listenerTLS is the server side of a TLS listener. Every handshake asks it
// for the current config (GetConfigForClient), which a reload replaces whole:
// new handshakes get the new certificates and min_version while the socket
// and the connections already open stay as they are.
type listenerTLS struct {
	conf atomic.Pointer[tls.Config]
}

// newListenerTLS reads the certificates of the listener's tls section.
func newListenerTLS(lc *config.Listener) (*listenerTLS, error) {
	conf, err := handshakeConfig(lc)
	if err != nil {
		return nil, err
	}
	lt := &listenerTLS{}
	lt.conf.Store(conf)
	return lt, nil
}

// serverConfig is the config the http.Server is given: it only hands each
// handshake the current one. (Session ticket keys are this config's,
// generated and rotated by crypto/tls, so sessions resume across reloads.)
func (lt *listenerTLS) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return lt.conf.Load(), nil
		},
	}
}

// http2Server is the HTTP/2 side of TLS and h2c listeners: Go's defaults but
// for the frame size clients may send, the protocol's default of 16 KiB
// (RFC 9113 §4.2) rather than Go's 1 MiB. Larger frames save little on
// uploads, and every connection's read buffer grows to the largest frame its
// client sends.
func http2Server() *http.HTTP2Config {
	return &http.HTTP2Config{MaxReadFrameSize: 16 << 10}
}

// handshakeConfig builds the config of a TLS listener's handshakes from its
// tls section, reading every certificate and key file; an error names the
// listener, the field and the files. Go's defaults are kept for everything
// else (cipher suites, curves, session tickets): they are the modern ones.
func handshakeConfig(lc *config.Listener) (*tls.Config, error) {
	set, err := loadCertSet(lc.TLS)
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", lc.Name, err)
	}
	minVersion := uint16(tls.VersionTLS12)
	if lc.TLS.MinVersion == "1.3" {
		minVersion = tls.VersionTLS13
	}
	return &tls.Config{
		MinVersion:     minVersion,
		GetCertificate: set.get,
		NextProtos:     []string{"h2", "http/1.1"},
	}, nil
}

// certSet is a TLS listener's certificates by the DNS names of their leaves;
// immutable once built. A handshake's server name (SNI) is looked up exactly,
// then as a wildcard of its parent ("*.example.com"); certs come before the
// default cert/key, in file order; without a match (or without SNI, as when a
// client connects to an IP address) the default cert/key answers.
type certSet struct {
	byName map[string][]*tls.Certificate // lower-case names, wildcards as "*.example.com"
	def    *tls.Certificate
}

// loadCertSet reads the default cert/key and every pair of certs.
func loadCertSet(t *config.TLS) (*certSet, error) {
	def, err := loadCert("tls", t.Cert, t.Key)
	if err != nil {
		return nil, err
	}
	cs := &certSet{byName: make(map[string][]*tls.Certificate), def: def}
	for i, p := range t.Certs {
		c, err := loadCert("tls.certs["+strconv.Itoa(i)+"]", p.Cert, p.Key)
		if err != nil {
			return nil, err
		}
		cs.add(c)
	}
	cs.add(def)
	return cs, nil
}

// loadCert reads one certificate chain and its key; field names them in an
// error ("tls.certs[1]: cert b.pem, key b.key: ...").
func loadCert(field, certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("%s: cert: %w", field, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s: key: %w", field, err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: cert %s, key %s: %w", field, certFile, keyFile, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%s: cert %s: %w", field, certFile, err)
		}
	}
	return &c, nil
}

// add indexes c under its leaf's DNS names (the subject's common name is not
// a name TLS clients check, so it is not indexed).
func (cs *certSet) add(c *tls.Certificate) {
	for _, name := range c.Leaf.DNSNames {
		name = strings.ToLower(name)
		cs.byName[name] = append(cs.byName[name], c)
	}
}

// get is tls.Config.GetCertificate: the certificate for the client's server
// name, preferring one whose key the client supports (an ECDSA and an RSA
// certificate may both serve a name).
func (cs *certSet) get(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" {
		return cs.def, nil
	}
	if c := pickCert(hello, cs.byName[name]); c != nil {
		return c, nil
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if c := pickCert(hello, cs.byName["*"+name[i:]]); c != nil {
			return c, nil
		}
	}
	return cs.def, nil
}

// pickCert returns the first of certs the client supports, else the first, else nil.
func pickCert(hello *tls.ClientHelloInfo, certs []*tls.Certificate) *tls.Certificate {
	for _, c := range certs {
		if hello.SupportsCertificate(c) == nil {
			return c
		}
	}
	if len(certs) > 0 {
		return certs[0]
	}
	return nil
}
