package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// clientCertVerdict bounds how long checkTLS waits, after a TLS 1.3
// handshake, for the server to reject the client certificate.
const clientCertVerdict = 300 * time.Millisecond

// checkTLS connects to every endpoint (in parallel) and completes a TLS
// handshake with base, so that Open reports a certificate problem on either
// side: the etcd client would only retry, and say no more than that it timed
// out. Endpoints that are down or slow are an outage, not an error.
func checkTLS(ctx context.Context, endpoints []string, base *tls.Config) error {
	errs := make([]error, len(endpoints))
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		wg.Go(func() { errs[i] = checkTLSEndpoint(ctx, ep, base) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func checkTLSEndpoint(ctx context.Context, ep string, base *tls.Config) error {
	hostport := ep
	if _, rest, ok := strings.Cut(ep, "://"); ok {
		hostport = rest
	}
	host, _, _ := net.SplitHostPort(hostport)
	tc := base.Clone()
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	d := tls.Dialer{Config: tc}
	conn, err := d.DialContext(ctx, "tcp", hostport)
	if err == nil {
		defer conn.Close()
		// In TLS 1.3 the server judges the client certificate (or its
		// absence) after the client's handshake is over; a rejection
		// arrives as an alert on the first read. A server that accepts
		// stays silent (it waits for the HTTP/2 preface), so the read
		// times out: fine.
		tconn := conn.(*tls.Conn)
		if tconn.ConnectionState().Version < tls.VersionTLS13 {
			return nil
		}
		tconn.SetReadDeadline(time.Now().Add(clientCertVerdict))
		_, err = tconn.Read(make([]byte, 1))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
	}
	if ctx.Err() == nil && err != nil && refused(err) {
		return fmt.Errorf("etcd: tls handshake with %s: %w", ep, err)
	}
	return nil
}
