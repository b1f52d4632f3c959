package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The environment variable that turns the test binary into a `ballast
// register` stand-in (see TestMain); its value is a JSON registerArgs.
const registerEnv = "BALLAST_ETCD_TEST_REGISTER"

type registerArgs struct {
	Endpoints []string
	Pool      string
	Backend   Backend
	TTL       time.Duration
}

// TestMain lets tests run RegisterUntilSignal in a child process they can
// kill, to see what happens when a registered backend really dies.
func TestMain(m *testing.M) {
	if v := os.Getenv(registerEnv); v != "" {
		var a registerArgs
		if err := json.Unmarshal([]byte(v), &a); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		err := RegisterUntilSignal(context.Background(), Config{Endpoints: a.Endpoints}, a.Pool, a.Backend, a.TTL, log)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Two nodes on one etcd: what one writes, the other's Watch delivers within
// a second (measured), for adds, updates, registrations and deletes.
func TestWatchDeliversChangesToOtherNodes(t *testing.T) {
	t.Parallel()
	ms := startCluster(t, 1, memberOpts{})
	cfg := Config{Endpoints: endpoints(ms...), Prefix: "/it/"}
	a, b := openStore(t, cfg), openStore(t, cfg)
	ctx := t.Context()
	ch := b.Watch(ctx)

	first, _ := waitSnapshot(t, ch, time.Second, "initial snapshot", func(Snapshot) bool { return true })
	if len(first.Pools) != 0 || first.Revision == 0 {
		t.Fatalf("initial snapshot of an empty prefix: %+v", first)
	}

	step := func(what string, change func() error, ok func(Snapshot) bool) Snapshot {
		t.Helper()
		start := time.Now()
		if err := change(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		snap, _ := waitSnapshot(t, ch, time.Second, what, ok)
		t.Logf("%-40s seen by the other node after %v (rev %d)", what, time.Since(start).Round(time.Microsecond), snap.Revision)
		return snap
	}
	has := func(pool, addr string, want Backend) func(Snapshot) bool {
		return func(s Snapshot) bool { got, ok := find(s, pool, addr); return ok && got == want }
	}

	step("put app 127.0.0.1:8001 weight 3", func() error {
		return a.PutBackend(ctx, "app", Backend{Addr: "127.0.0.1:8001", Weight: 3, MaxConns: 7})
	}, has("app", "127.0.0.1:8001", Backend{Addr: "127.0.0.1:8001", Weight: 3, MaxConns: 7}))

	step("update weight to 5, backup", func() error {
		return a.PutBackend(ctx, "app", Backend{Addr: "127.0.0.1:8001", Weight: 5, Backup: true})
	}, has("app", "127.0.0.1:8001", Backend{Addr: "127.0.0.1:8001", Weight: 5, Backup: true}))

	var r1, r2 *Registration
	step("register app 127.0.0.1:8002", func() (err error) {
		r1, err = a.Register(ctx, "app", Backend{Addr: "127.0.0.1:8002"}, 5*time.Second)
		return err
	}, has("app", "127.0.0.1:8002", Backend{Addr: "127.0.0.1:8002", Weight: 1, Registered: true}))

	// The same addr registered while an operator added it: the operator's
	// entry stays what every node sees.
	snap := step("register app 127.0.0.1:8001 (already added)", func() (err error) {
		r2, err = a.Register(ctx, "app", Backend{Addr: "127.0.0.1:8001", Weight: 9}, 5*time.Second)
		return err
	}, func(Snapshot) bool { return true })
	if got, _ := find(snap, "app", "127.0.0.1:8001"); got != (Backend{Addr: "127.0.0.1:8001", Weight: 5, Backup: true}) {
		t.Errorf("added entry should hide the registration of the same addr; got %+v", got)
	}
	if n := len(snap.Pools["app"]); n != 2 {
		t.Errorf("pool app has %d backends, want 2: %+v", n, snap.Pools["app"])
	}

	step("delete the added 127.0.0.1:8001", func() error {
		return a.DeleteBackend(ctx, "app", "127.0.0.1:8001")
	}, has("app", "127.0.0.1:8001", Backend{Addr: "127.0.0.1:8001", Weight: 9, Registered: true}))

	step("put other 127.0.0.1:9001", func() error {
		return a.PutBackend(ctx, "other", Backend{Addr: "127.0.0.1:9001"})
	}, has("other", "127.0.0.1:9001", Backend{Addr: "127.0.0.1:9001", Weight: 1}))

	step("close both registrations (revoke)", func() error {
		if err := r1.Close(); err != nil {
			return err
		}
		return r2.Close()
	}, func(s Snapshot) bool { _, ok := s.Pools["app"]; return !ok && len(s.Pools["other"]) == 1 })

	step("delete other 127.0.0.1:9001", func() error {
		return a.DeleteBackend(ctx, "other", "127.0.0.1:9001")
	}, func(s Snapshot) bool { return len(s.Pools) == 0 })

	if err := a.DeleteBackend(ctx, "other", "127.0.0.1:9001"); err != nil {
		t.Errorf("deleting an absent backend: %v", err)
	}
	if err := r1.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if !a.Healthy() || !b.Healthy() || a.Reconnects() != 0 {
		t.Errorf("healthy %v/%v, reconnects %d: want true/true, 0", a.Healthy(), b.Healthy(), a.Reconnects())
	}

	// A second watch on the same store starts with the whole current set.
	a.PutBackend(ctx, "app", Backend{Addr: "127.0.0.1:8003"})
	ch2 := a.Watch(ctx)
	waitSnapshot(t, ch2, time.Second, "a new watch's first snapshot", func(s Snapshot) bool {
		_, ok := find(s, "app", "127.0.0.1:8003")
		return ok && len(s.Pools) == 1
	})
}

// startRegisterProcess runs RegisterUntilSignal in a child process.
func startRegisterProcess(t *testing.T, a registerArgs) *exec.Cmd {
	t.Helper()
	v, _ := json.Marshal(a)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), registerEnv+"="+string(v))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("register process stderr:\n%s", stderr.String())
		}
	})
	return cmd
}

// A registered backend whose process is killed (no deregistration) vanishes
// from every node once its lease expires (~TTL, measured); one that gets
// SIGTERM deregisters at once.
func TestRegistrationVanishesWhenProcessDies(t *testing.T) {
	t.Parallel()
	ms := startCluster(t, 1, memberOpts{})
	eps := endpoints(ms...)
	watcher := openStore(t, Config{Endpoints: eps})
	ch := watcher.Watch(t.Context())
	const ttl = 2 * time.Second

	// SIGKILL: the lease is left to expire.
	killed := startRegisterProcess(t, registerArgs{Endpoints: eps, Pool: "app", Backend: Backend{Addr: "127.0.0.1:7001", Weight: 4}, TTL: ttl})
	_, took := waitSnapshot(t, ch, 10*time.Second, "registration by a child process", func(s Snapshot) bool {
		b, ok := find(s, "app", "127.0.0.1:7001")
		return ok && b.Weight == 4 && b.Registered
	})
	t.Logf("child process registered after %v", took.Round(time.Millisecond))
	time.Sleep(ttl) // several renewals: the lease is kept alive, not just young
	if _, ok := find(currentSnapshot(t, watcher), "app", "127.0.0.1:7001"); !ok {
		t.Fatal("registration gone while its process lives")
	}
	if err := killed.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed.Wait()
	_, gone := waitSnapshot(t, ch, ttl+3*time.Second, "expiry after SIGKILL", func(s Snapshot) bool {
		_, ok := find(s, "app", "127.0.0.1:7001")
		return !ok
	})
	t.Logf("registration vanished %v after SIGKILL (ttl %v)", gone.Round(time.Millisecond), ttl)
	if gone < ttl/2 {
		t.Errorf("gone after %v: too early for a lease expiry (ttl %v)", gone, ttl)
	}

	// SIGTERM: RegisterUntilSignal revokes and exits 0. The signal goes out
	// as soon as the key appears, often while the child still waits for its
	// put's answer: regression test for a put that landed while Register's
	// ctx was cancelled, which left the key listed for the whole TTL.
	termed := startRegisterProcess(t, registerArgs{Endpoints: eps, Pool: "app", Backend: Backend{Addr: "127.0.0.1:7002"}, TTL: 30 * time.Second})
	waitSnapshot(t, ch, 10*time.Second, "second registration", func(s Snapshot) bool {
		_, ok := find(s, "app", "127.0.0.1:7002")
		return ok
	})
	if err := termed.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_, gone = waitSnapshot(t, ch, time.Second, "deregistration on SIGTERM", func(s Snapshot) bool {
		_, ok := find(s, "app", "127.0.0.1:7002")
		return !ok
	})
	if err := termed.Wait(); err != nil {
		t.Errorf("register process after SIGTERM: %v (want exit 0)", err)
	}
	t.Logf("registration vanished %v after SIGTERM (ttl 30s: revoked, not expired)", gone.Round(time.Millisecond))
}

// currentSnapshot is the first snapshot of a fresh watch: the current state,
// whatever an older watch has consumed.
func currentSnapshot(t *testing.T, s *Store) Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	snap, ok := <-s.Watch(ctx)
	if !ok {
		t.Fatal("no snapshot within 5s")
	}
	return snap
}

// A registration whose lease is lost anyway (revoked behind its back here;
// in life, an etcd outage longer than the TTL) registers again by itself.
func TestRegistrationComesBackAfterLeaseLoss(t *testing.T) {
	t.Parallel()
	ms := startCluster(t, 1, memberOpts{})
	s := openStore(t, Config{Endpoints: endpoints(ms...)})
	ctx := t.Context()
	ch := s.Watch(ctx)
	reg, err := s.Register(ctx, "app", Backend{Addr: "127.0.0.1:7100"}, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	present := func(want bool) func(Snapshot) bool {
		return func(s Snapshot) bool { _, ok := find(s, "app", "127.0.0.1:7100"); return ok == want }
	}
	waitSnapshot(t, ch, time.Second, "registration", present(true))

	resp, err := s.cli.Get(ctx, registrationKey(s.prefix, "app", "127.0.0.1:7100"))
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("registration key: %v %+v", err, resp)
	}
	lease := clientv3.LeaseID(resp.Kvs[0].Lease)
	if _, err := s.cli.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, ch, time.Second, "removal by the revoke", present(false))
	_, back := waitSnapshot(t, ch, 5*time.Second, "registration again", present(true))
	t.Logf("registered again %v after its lease was revoked", back.Round(time.Millisecond))

	resp, err = s.cli.Get(ctx, registrationKey(s.prefix, "app", "127.0.0.1:7100"))
	if err != nil || len(resp.Kvs) != 1 || clientv3.LeaseID(resp.Kvs[0].Lease) == lease {
		t.Fatalf("registration key after re-registering: %v %+v (old lease %x)", err, resp, lease)
	}
	if err := reg.Close(); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, ch, time.Second, "deregistration", present(false))
}

// Writes are checked before they reach etcd.
func TestWritesRejectBadInput(t *testing.T) {
	t.Parallel()
	ms := startCluster(t, 1, memberOpts{})
	s := openStore(t, Config{Endpoints: endpoints(ms...)})
	ctx := t.Context()
	for _, tc := range []struct {
		pool string
		b    Backend
		want string
	}{
		{"", Backend{Addr: "127.0.0.1:1"}, "pool name is empty"},
		{"a/b", Backend{Addr: "127.0.0.1:1"}, "must not contain '/'"},
		{"app", Backend{Addr: "127.0.0.1"}, "must be host:port"},
		{"app", Backend{Addr: "127.0.0.1:0"}, "port must be 1..65535"},
		{"app", Backend{Addr: "127.0.0.1:1", Weight: 1001}, "weight 1001: must be 1..1000"},
		{"app", Backend{Addr: "127.0.0.1:1", MaxConns: -1}, "max_conns -1"},
	} {
		err := s.PutBackend(ctx, tc.pool, tc.b)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("PutBackend(%q, %+v) = %v, want %q", tc.pool, tc.b, err, tc.want)
		}
		if _, err := s.Register(ctx, tc.pool, tc.b, time.Second); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Register(%q, %+v) = %v, want %q", tc.pool, tc.b, err, tc.want)
		}
	}
	s.Close()
	if err := s.PutBackend(ctx, "app", Backend{Addr: "127.0.0.1:1"}); !errors.Is(err, ErrClosed) {
		t.Errorf("PutBackend after Close = %v, want ErrClosed", err)
	}
	if _, ok := <-s.Watch(ctx); ok {
		t.Error("Watch after Close delivered a snapshot")
	}
}
