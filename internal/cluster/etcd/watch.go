package etcd

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Snapshot is the complete set of shared backends at one etcd revision:
// operator-added and self-registered ones, merged. It is never modified after
// delivery; consumers may keep it.
type Snapshot struct {
	// Revision is the etcd revision the snapshot reflects; it only grows
	// (unless etcd itself lost its data).
	Revision int64
	// Pools maps a pool's name to its backends, sorted by Addr. A pool
	// without backends is absent.
	Pools map[string][]Backend
}

// Watch delivers a Snapshot of every pool's shared backends when it starts
// and after every change, pushed by an etcd watch (no polling): a change made
// on any node arrives on every node within milliseconds.
//
// The channel holds one Snapshot; a slow reader gets the latest, never a
// backlog, so a consumer can simply apply each one it receives. It is closed
// when ctx ends or the Store is closed.
//
// During an etcd outage nothing is delivered: the last Snapshot stays valid.
// Once etcd answers again the watch resumes from the revision after the last
// one delivered, so changes made meanwhile arrive; if etcd compacted them
// away, a fresh complete Snapshot is read instead. If etcd is unreachable when
// Watch starts, the first Snapshot comes when it is reachable.
func (s *Store) Watch(ctx context.Context) <-chan Snapshot {
	out := make(chan Snapshot, 1)
	if !s.spawn(func() { s.watch(ctx, out) }) {
		close(out)
	}
	return out
}

// watch is Watch's goroutine: read everything, then follow the changes.
func (s *Store) watch(ctx context.Context, out chan Snapshot) {
	defer close(out)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.ctx, cancel)()
	cli, err := s.client(ctx)
	if err != nil {
		return
	}
	var st *state
	delay := minBackoff
	for {
		if st == nil {
			if st = s.load(ctx, cli); st == nil {
				return
			}
			publish(out, st.snapshot())
		}
		// RequireLeader: a member cut off from its cluster ends the watch
		// (ErrNoLeader) instead of keeping it silently stale; the next
		// watch goes to a member that has a leader.
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := cli.Watch(wctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(st.rev+1))
		delivered, resync := s.follow(wch, st, out)
		wcancel()
		if resync {
			st = nil
		}
		if delivered {
			delay = minBackoff
		}
		if !sleep(ctx, delay) {
			return
		}
		delay = min(2*delay, maxBackoff)
	}
}

// follow applies the watch's events to st and publishes a Snapshot after each
// response. It returns when the watch ends: delivered says whether any
// Snapshot went out, resync whether the revision to resume from is gone.
func (s *Store) follow(wch clientv3.WatchChan, st *state, out chan Snapshot) (delivered, resync bool) {
	for resp := range wch {
		if err := resp.Err(); err != nil {
			if s.ctx.Err() == nil {
				s.noteErr(err)
			}
			if errors.Is(err, rpctypes.ErrCompacted) {
				s.log.Warn("etcd watch: revision compacted; reading everything again", "rev", st.rev+1, "compact_rev", resp.CompactRevision)
				return delivered, true
			}
			s.log.Warn("etcd watch ended; resuming", "rev", st.rev+1, "err", err)
			return delivered, false
		}
		if len(resp.Events) == 0 {
			continue // created, or a progress notification
		}
		for _, ev := range resp.Events {
			st.apply(s, ev.Type, ev.Kv)
		}
		publish(out, st.snapshot())
		delivered = true
	}
	return delivered, false
}

// load reads every key under the prefix, retrying until it succeeds or ctx
// ends (then nil).
func (s *Store) load(ctx context.Context, cli *clientv3.Client) *state {
	delay := minBackoff
	for {
		resp, err := cli.Get(ctx, s.prefix, clientv3.WithPrefix())
		if err == nil {
			st := &state{rev: resp.Header.Revision, entries: make(map[string]entry, len(resp.Kvs))}
			for _, kv := range resp.Kvs {
				st.apply(s, mvccpb.PUT, kv)
			}
			st.rev = resp.Header.Revision
			return st
		}
		if ctx.Err() != nil {
			return nil
		}
		s.noteErr(err)
		s.log.Debug("etcd: reading backends failed; retrying", "err", err)
		if !sleep(ctx, delay) {
			return nil
		}
		delay = min(2*delay, maxBackoff)
	}
}

// publish replaces any unread Snapshot in out with snap. It never blocks:
// the watch goroutine is out's only sender.
func publish(out chan Snapshot, snap Snapshot) {
	select {
	case <-out:
	default:
	}
	out <- snap
}

// state is a watch's view of the keys: the backends by key, at revision rev.
type state struct {
	rev     int64
	entries map[string]entry
}

// entry is one backend key's content.
type entry struct {
	pool string
	b    Backend
}

// apply records one key's new value (PUT) or removal (DELETE).
func (st *state) apply(s *Store, typ mvccpb.Event_EventType, kv *mvccpb.KeyValue) {
	st.rev = max(st.rev, kv.ModRevision)
	key := string(kv.Key)
	pool, addr, registered, ok := parseKey(strings.TrimPrefix(key, s.prefix))
	if !ok {
		return
	}
	if typ == mvccpb.DELETE {
		delete(st.entries, key)
		return
	}
	b, err := decodeBackend(addr, kv.Value)
	if err != nil {
		// A bad value replaces what was there: the key no longer says
		// anything usable.
		delete(st.entries, key)
		s.log.Warn("etcd: ignoring a backend whose value is invalid", "key", key, "err", err)
		return
	}
	b.Registered = registered
	st.entries[key] = entry{pool: pool, b: b}
}

// snapshot builds a fresh, independent Snapshot of st. An operator-added
// backend hides a registration of the same addr in the same pool.
func (st *state) snapshot() Snapshot {
	byPool := map[string]map[string]Backend{}
	for _, e := range st.entries {
		m := byPool[e.pool]
		if m == nil {
			m = map[string]Backend{}
			byPool[e.pool] = m
		}
		if old, ok := m[e.b.Addr]; ok && !old.Registered {
			continue
		}
		m[e.b.Addr] = e.b
	}
	snap := Snapshot{Revision: st.rev, Pools: make(map[string][]Backend, len(byPool))}
	for pool, m := range byPool {
		list := make([]Backend, 0, len(m))
		for _, b := range m {
			list = append(list, b)
		}
		slices.SortFunc(list, func(a, b Backend) int { return cmp.Compare(a.Addr, b.Addr) })
		snap.Pools[pool] = list
	}
	return snap
}
