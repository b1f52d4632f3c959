package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultTTL is a registration's lease TTL when Register gets 0: how long a
// backend stays listed after its process dies without deregistering.
const DefaultTTL = 10 * time.Second

// revokeTimeout bounds Registration.Close's revoke, retries included.
const revokeTimeout = 5 * time.Second

// Registration is a backend registered under a lease. The lease is renewed
// every TTL/3 until Close revokes it; if the process dies, etcd deletes the
// backend once the TTL has passed. If the lease is lost anyway (etcd was
// unreachable for longer than the TTL), the backend is registered again under
// a new lease as soon as etcd answers.
type Registration struct {
	s      *Store
	key    string
	val    string
	ttl    int64 // seconds
	lease  clientv3.LeaseID
	cancel context.CancelFunc
	done   chan struct{} // closed when the keep-alive goroutine has returned

	closeOnce sync.Once
	closeErr  error
}

// Register lists b as a backend of pool on every node, for as long as the
// returned Registration lives. ttl is rounded up to whole seconds (etcd may
// raise it to its minimum, about 2s); 0 means DefaultTTL. It retries
// transient failures as PutBackend does.
func (s *Store) Register(ctx context.Context, pool string, b Backend, ttl time.Duration) (*Registration, error) {
	if err := checkPool(pool); err != nil {
		return nil, err
	}
	b, err := normalize(b)
	if err != nil {
		return nil, fmt.Errorf("pool %q: %w", pool, err)
	}
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < 0 {
		return nil, fmt.Errorf("pool %q: register %s: ttl %s: must be positive", pool, b.Addr, ttl)
	}
	r := &Registration{
		s:    s,
		key:  registrationKey(s.prefix, pool, b.Addr),
		val:  encodeBackend(b),
		ttl:  int64(math.Ceil(ttl.Seconds())),
		done: make(chan struct{}),
	}
	if err := r.grantAndPut(ctx); err != nil {
		return nil, err
	}
	kctx, cancel := context.WithCancel(s.ctx)
	r.cancel = cancel
	if !s.spawn(func() { r.keepAlive(kctx) }) {
		cancel()
		close(r.done)
	}
	return r, nil
}

// grantAndPut takes a new lease and writes the key under it.
func (r *Registration) grantAndPut(ctx context.Context) error {
	return r.s.retry(ctx, func(ctx context.Context, cli *clientv3.Client) error {
		g, err := cli.Grant(ctx, r.ttl)
		if err != nil {
			return err
		}
		if _, err := cli.Put(ctx, r.key, r.val, clientv3.WithLease(g.ID)); err != nil {
			// The put may have landed even so (ctx cancelled while its
			// answer was on the way): revoke, so no key outlives a failed
			// Register for a whole TTL. Best effort: else it expires.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), attemptTimeout)
			cli.Revoke(rctx, g.ID)
			cancel()
			return err
		}
		r.lease = g.ID
		return nil
	}, "register %s", r.key)
}

// keepAlive renews the lease until ctx ends, and registers again when the
// lease is lost.
func (r *Registration) keepAlive(ctx context.Context) {
	defer close(r.done)
	cli := r.s.cli // set: Register succeeded
	for {
		ch, err := cli.KeepAlive(ctx, r.lease)
		if err == nil {
			for range ch {
				// The client renews every ttl/3 and closes ch when the
				// lease is gone (expired, revoked) or ctx ends.
			}
		}
		if ctx.Err() != nil {
			return
		}
		r.s.log.Warn("etcd: registration lost its lease; registering again", "key", r.key, "err", err)
		for {
			err := r.grantAndPut(ctx)
			if err == nil {
				r.s.log.Info("etcd: registered again", "key", r.key)
				break
			}
			if ctx.Err() != nil || !sleep(ctx, time.Second) {
				return
			}
		}
	}
}

// Close deregisters: it stops the renewals and revokes the lease, which
// removes the backend from every node at once. It is safe to call more than
// once. After the Store's Close it returns ErrClosed; the key then expires
// after its TTL.
func (r *Registration) Close() error {
	r.closeOnce.Do(func() {
		r.cancel()
		<-r.done
		if r.s.ctx.Err() != nil {
			r.closeErr = ErrClosed
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), revokeTimeout)
		defer cancel()
		r.closeErr = r.s.retry(ctx, func(ctx context.Context, cli *clientv3.Client) error {
			_, err := cli.Revoke(ctx, r.lease)
			if errors.Is(err, rpctypes.ErrLeaseNotFound) {
				return nil // already gone: revoked by an earlier attempt, or expired
			}
			return err
		}, "deregister %s", r.key)
	})
	return r.closeErr
}

// RegisterUntilSignal is the body of `ballast register`: it registers b in
// pool and keeps it registered until SIGINT or SIGTERM (or until ctx ends),
// then deregisters and returns nil. While etcd is unreachable at the start it
// keeps trying; it returns an error only for what retrying cannot fix (a bad
// backend, a refused login). If the process is killed instead, the backend
// disappears after ttl.
func RegisterUntilSignal(ctx context.Context, cfg Config, pool string, b Backend, ttl time.Duration, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := Open(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer s.Close()
	var reg *Registration
	for {
		reg, err = s.Register(ctx, pool, b, ttl)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if !transient(err) {
			return err
		}
		log.Warn("etcd: cannot register yet; retrying", "pool", pool, "addr", b.Addr, "err", err)
		if !sleep(ctx, time.Second) {
			return nil
		}
	}
	log.Info("registered", "pool", pool, "addr", b.Addr, "key", reg.key, "ttl_s", reg.ttl)
	<-ctx.Done()
	if err := reg.Close(); err != nil {
		return err
	}
	log.Info("deregistered", "pool", pool, "addr", b.Addr)
	return nil
}
