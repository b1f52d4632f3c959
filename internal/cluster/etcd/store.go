package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Defaults applied by Open to a zero Config field.
const (
	// DefaultPrefix is the key prefix when Config.Prefix is empty.
	DefaultPrefix = "/ballast/"
	// DefaultDialTimeout is Config.DialTimeout when it is zero.
	DefaultDialTimeout = 5 * time.Second
)

// Timing of the store's own work. A probe is one linearizable read: the
// watch stream alone cannot tell a quiet cluster from an unreachable one.
const (
	probeInterval     = time.Second
	probeTimeout      = 2 * time.Second
	writeBudget       = 10 * time.Second // a write's retries stop after this (or when its ctx ends)
	attemptTimeout    = 2 * time.Second  // one attempt of a write, so a lost proposal cannot eat the budget
	minBackoff        = 100 * time.Millisecond
	maxBackoff        = 2 * time.Second
	maxConnBackoff    = 10 * time.Second // between attempts to create the client when Open could not
	maxReconnectDelay = 2 * time.Second  // between gRPC's attempts to reconnect to a member
)

// Sentinel errors.
var (
	// ErrClosed is returned by operations on a Store after Close.
	ErrClosed = errors.New("etcd store is closed")
)

// Config says how to reach etcd. Only Endpoints is required.
type Config struct {
	// Endpoints are the etcd members: host:port, http://host:port or
	// https://host:port, all plain or all TLS. At least one. The client
	// spreads requests over them and fails over when one goes away.
	Endpoints []string
	// Prefix is prepended to every key the store reads or writes, so that
	// several ballast clusters (or other applications) can share one etcd.
	// Default "/ballast/"; a "/" is appended when missing.
	Prefix string
	// DialTimeout bounds Open's first contact with etcd (and each later
	// attempt to log in). Default 5s.
	DialTimeout time.Duration
	// Username and Password log in to an etcd with auth enabled. The user
	// needs read-write access to the keys under Prefix. Both or neither.
	Username, Password string
	// CAFile is a PEM file of the authorities that sign the members'
	// certificates; empty: the system's. Setting it enables TLS.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// members started with --client-cert-auth. Both or neither; they enable
	// TLS. They are read again on every new connection (rotation-friendly).
	CertFile, KeyFile string
}

// Store is a connection to etcd holding ballast's shared backends. Open one
// per process; it is safe for concurrent use.
type Store struct {
	cfg    clientv3.Config
	prefix string
	log    *slog.Logger

	ctx    context.Context // ends at Close; every goroutine of the store watches it
	cancel context.CancelFunc
	goMu   sync.Mutex // orders go against Close: no wg.Add after wg.Wait began
	closed bool       // guarded by goMu
	wg     sync.WaitGroup

	ready chan struct{}    // closed once cli is set
	cli   *clientv3.Client // written once, before ready is closed

	healthy     atomic.Bool
	everHealthy atomic.Bool
	reconnects  atomic.Int64
	errMu       sync.Mutex
	lastErr     error

	closeOnce sync.Once
}

// Open checks cfg, connects to etcd and starts watching the connection's
// health. It waits up to DialTimeout (or until ctx ends) for a first answer.
//
// An unreachable etcd is not an error: the Store starts unhealthy and keeps
// trying, so a node can start (with its file config) during an outage. Errors
// are a config that cannot work (no endpoint, unreadable certificate files)
// and an etcd that answers but refuses: wrong password, missing permission,
// a certificate it does not trust or that does not match.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ccfg, prefix, err := cfg.client()
	if err != nil {
		return nil, err
	}
	s := &Store{cfg: ccfg, prefix: prefix, log: log, ready: make(chan struct{})}
	first, cancel := context.WithTimeout(ctx, ccfg.DialTimeout)
	defer cancel()
	if ccfg.TLS != nil {
		if err := checkTLS(first, ccfg.Endpoints, ccfg.TLS); err != nil {
			return nil, err
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	// The client's own context ends with the store, so that Close also
	// interrupts a login in progress.
	s.cfg.Context = s.ctx
	cli, err := clientv3.New(s.cfg)
	if err == nil {
		s.setClient(cli)
		err = s.probe(first, cli)
	}
	if err != nil && refused(err) {
		s.Close()
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(ccfg.Endpoints, ","), err)
	}
	s.setHealth(err)
	if err != nil {
		log.Warn("etcd not reachable yet; serving without it and retrying", "endpoints", ccfg.Endpoints, "err", err)
	}
	if cli == nil {
		s.spawn(s.connectLoop)
	}
	s.spawn(s.monitor)
	return s, nil
}

// client validates c and builds the etcd client's config.
func (c Config) client() (clientv3.Config, string, error) {
	var cc clientv3.Config
	if len(c.Endpoints) == 0 {
		return cc, "", errors.New("etcd: endpoints: at least one is required")
	}
	schemes := map[string]bool{}
	for _, ep := range c.Endpoints {
		scheme, err := endpointScheme(ep)
		if err != nil {
			return cc, "", fmt.Errorf("etcd: endpoints: %w", err)
		}
		schemes[scheme] = true
	}
	if schemes["http"] && schemes["https"] {
		return cc, "", errors.New("etcd: endpoints: mixes http:// and https://; use one")
	}
	if (c.Username == "") != (c.Password == "") {
		return cc, "", errors.New("etcd: username and password: set both or neither")
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return cc, "", errors.New("etcd: cert_file and key_file: set both or neither")
	}
	useTLS := schemes["https"] || c.CAFile != "" || c.CertFile != ""
	if useTLS && schemes["http"] {
		return cc, "", errors.New("etcd: endpoints are http:// but TLS files are set; use https://")
	}
	if useTLS {
		info := transport.TLSInfo{CertFile: c.CertFile, KeyFile: c.KeyFile, TrustedCAFile: c.CAFile}
		tc, err := info.ClientConfig()
		if err != nil {
			return cc, "", fmt.Errorf("etcd: tls: %w", err)
		}
		tc.MinVersion = tls.VersionTLS12
		cc.TLS = tc
	}
	prefix := c.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	cc.Endpoints = append([]string(nil), c.Endpoints...)
	cc.DialTimeout = c.DialTimeout
	if cc.DialTimeout <= 0 {
		cc.DialTimeout = DefaultDialTimeout
	}
	cc.Username, cc.Password = c.Username, c.Password
	// etcd's own logs would bypass slog; the store logs what matters.
	cc.Logger = zap.NewNop()
	// Pings find a dead connection that sends no RST (a partition). etcd
	// refuses pings more often than every 5s (--grpc-keepalive-min-time).
	cc.DialKeepAliveTime = 10 * time.Second
	cc.DialKeepAliveTimeout = 5 * time.Second
	// gRPC's default reconnect backoff grows to 2 minutes: after a long
	// outage a node would notice etcd's return that late. Cap it.
	cc.DialOptions = []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: maxReconnectDelay},
		MinConnectTimeout: 5 * time.Second,
	})}
	return cc, prefix, nil
}

// endpointScheme checks an endpoint and returns "http", "https" or "" (none).
func endpointScheme(ep string) (string, error) {
	if scheme, _, ok := strings.Cut(ep, "://"); ok {
		u, err := url.Parse(ep)
		if err != nil {
			return "", fmt.Errorf("%q: %w", ep, err)
		}
		if scheme != "http" && scheme != "https" {
			return "", fmt.Errorf("%q: scheme must be http or https", ep)
		}
		if _, _, err := net.SplitHostPort(u.Host); err != nil || (u.Path != "" && u.Path != "/") {
			return "", fmt.Errorf("%q: must be %s://host:port", ep, scheme)
		}
		return scheme, nil
	}
	if _, _, err := net.SplitHostPort(ep); err != nil {
		return "", fmt.Errorf("%q: must be host:port or http(s)://host:port", ep)
	}
	return "", nil
}

// connectLoop creates the client when Open could not (with auth enabled,
// creating it needs etcd to answer). It returns once it has one.
func (s *Store) connectLoop() {
	delay := time.Second
	for {
		if !sleep(s.ctx, delay) {
			return
		}
		delay = min(2*delay, maxConnBackoff)
		cli, err := clientv3.New(s.cfg)
		if err != nil {
			s.noteErr(err)
			s.log.Debug("etcd: still not reachable", "err", err)
			continue
		}
		s.setClient(cli)
		ctx, cancel := context.WithTimeout(s.ctx, probeTimeout)
		s.setHealth(s.probe(ctx, cli))
		cancel()
		return
	}
}

// spawn runs f in a goroutine that Close waits for. It reports false (and
// does not run f) once the store is closed.
func (s *Store) spawn(f func()) bool {
	s.goMu.Lock()
	defer s.goMu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// setClient publishes the client to the waiters of ready.
func (s *Store) setClient(cli *clientv3.Client) {
	s.cli = cli
	close(s.ready)
}

// client returns the etcd client once there is one.
func (s *Store) client(ctx context.Context) (*clientv3.Client, error) {
	select {
	case <-s.ready:
		if s.ctx.Err() != nil {
			return nil, ErrClosed
		}
		return s.cli, nil
	case <-s.ctx.Done():
		return nil, ErrClosed
	case <-ctx.Done():
		if err := s.LastError(); err != nil {
			return nil, fmt.Errorf("etcd not connected: %w", err)
		}
		return nil, fmt.Errorf("etcd not connected: %w", ctx.Err())
	}
}

// monitor probes etcd every probeInterval and keeps Healthy up to date.
func (s *Store) monitor() {
	cli, err := s.client(s.ctx)
	if err != nil {
		return
	}
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(s.ctx, probeTimeout)
		err := s.probe(ctx, cli)
		cancel()
		if s.ctx.Err() != nil {
			return
		}
		s.setHealth(err)
	}
}

// probe is one linearizable read: it succeeds only when a quorum answers.
func (s *Store) probe(ctx context.Context, cli *clientv3.Client) error {
	_, err := cli.Get(ctx, s.prefix, clientv3.WithCountOnly())
	if errors.Is(err, context.DeadlineExceeded) {
		// The client waits for a usable connection, so a timeout is all it
		// says; name what did not answer.
		err = fmt.Errorf("no answer from %s: %w", strings.Join(s.cfg.Endpoints, ","), err)
	}
	return err
}

// setHealth records a probe's outcome and logs transitions.
func (s *Store) setHealth(err error) {
	if err != nil {
		s.noteErr(err)
		if s.healthy.Swap(false) {
			s.log.Warn("etcd unreachable; serving the last known backends", "err", err)
		}
		return
	}
	if s.healthy.Swap(true) {
		return
	}
	if s.everHealthy.Swap(true) {
		n := s.reconnects.Add(1)
		s.log.Info("etcd reachable again", "reconnects", n)
	} else {
		s.log.Info("connected to etcd", "endpoints", s.cfg.Endpoints)
	}
}

// noteErr remembers err for LastError.
func (s *Store) noteErr(err error) {
	s.errMu.Lock()
	s.lastErr = err
	s.errMu.Unlock()
}

// Healthy reports whether the last probe (a quorum read, every second)
// succeeded. While false, the store serves what it last knew.
func (s *Store) Healthy() bool { return s.healthy.Load() }

// LastError returns the most recent error from etcd (a probe, the watch or a
// write), nil if there was none. It stays after recovery, for status pages.
func (s *Store) LastError() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.lastErr
}

// Reconnects counts the recoveries from unhealthy to healthy after the first
// connection.
func (s *Store) Reconnects() int64 { return s.reconnects.Load() }

// Prefix returns the key prefix in use (with its trailing "/").
func (s *Store) Prefix() string { return s.prefix }

// Close stops watches and registrations and closes the connection.
// Registrations are not revoked (close them first for that): their keys expire
// after their TTL, as if the process had died.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.goMu.Lock()
		s.closed = true
		s.goMu.Unlock()
		s.cancel()
		s.wg.Wait()
		select {
		case <-s.ready:
			if err = s.cli.Close(); errors.Is(err, context.Canceled) {
				err = nil
			}
		default:
		}
	})
	return err
}

// PutBackend adds or replaces an operator-managed backend of pool, for every
// node. Transient failures (a member going away, a leader election) are
// retried for up to 10s or until ctx ends.
func (s *Store) PutBackend(ctx context.Context, pool string, b Backend) error {
	if err := checkPool(pool); err != nil {
		return err
	}
	b, err := normalize(b)
	if err != nil {
		return fmt.Errorf("pool %q: %w", pool, err)
	}
	key, val := backendKey(s.prefix, pool, b.Addr), encodeBackend(b)
	return s.retry(ctx, func(ctx context.Context, cli *clientv3.Client) error {
		_, err := cli.Put(ctx, key, val)
		return err
	}, "pool %q: put backend %s", pool, b.Addr)
}

// DeleteBackend removes an operator-managed backend of pool, for every node.
// Deleting one that does not exist is not an error. A registration of the same
// addr is left alone. Retries as PutBackend does.
func (s *Store) DeleteBackend(ctx context.Context, pool, addr string) error {
	if err := checkPool(pool); err != nil {
		return err
	}
	key := backendKey(s.prefix, pool, addr)
	return s.retry(ctx, func(ctx context.Context, cli *clientv3.Client) error {
		_, err := cli.Delete(ctx, key)
		return err
	}, "pool %q: delete backend %s", pool, addr)
}

// retry runs an idempotent operation until it succeeds, fails for a reason
// that retrying cannot fix, or runs out of time (writeBudget or ctx). The
// etcd client retries reads by itself but not writes that may have reached
// the server; these are safe to repeat because they set a whole value.
func (s *Store) retry(ctx context.Context, op func(context.Context, *clientv3.Client) error, format string, args ...any) error {
	ctx, cancel := context.WithTimeout(ctx, writeBudget)
	defer cancel()
	cli, err := s.client(ctx)
	if err != nil {
		return fmt.Errorf(format+": %w", append(args, err)...)
	}
	delay := minBackoff
	for {
		// RequireLeader: a member that knows it has no leader says so at
		// once (then another attempt), instead of holding the write.
		actx, acancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), attemptTimeout)
		err = op(actx, cli)
		acancel()
		if err == nil {
			return nil
		}
		if s.ctx.Err() != nil {
			err = ErrClosed
		} else {
			s.noteErr(err)
		}
		if s.ctx.Err() != nil || ctx.Err() != nil || !transient(err) || !sleep(ctx, delay) {
			if !s.Healthy() && transient(err) {
				format += ": etcd unreachable"
			}
			return fmt.Errorf(format+": %w", append(args, err)...)
		}
		delay = min(2*delay, maxBackoff)
	}
}

// transient reports whether err may go away by itself: no member reachable,
// no leader, a timeout. Not: a wrong password, a missing permission, a
// cancelled context, a closed client.
func transient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, ErrClosed) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	code := status.Code(err)
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	}
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}

// refused reports whether err means etcd answered and said no, or the TLS
// handshake failed on a certificate: misconfiguration, reported by Open
// rather than retried forever.
func refused(err error) bool {
	msg := err.Error()
	if strings.Contains(msg, "x509:") || strings.Contains(msg, "tls:") {
		return true
	}
	var netErr *net.OpError
	if errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return false // the network, not etcd's answer
	}
	return !transient(err) && !errors.Is(err, context.Canceled)
}

// sleep waits d or until ctx ends; it reports whether the full time passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
