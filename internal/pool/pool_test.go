package pool

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ballast/internal/backend"
	"ballast/internal/balancer"
)

var rr = Settings{Algorithm: balancer.AlgRoundRobin}

// mkBackends returns up backends of pool "app" with the given addresses.
func mkBackends(addrs ...string) []*backend.Backend {
	bs := make([]*backend.Backend, len(addrs))
	for i, a := range addrs {
		bs[i] = backend.New("app", a, 1)
	}
	return bs
}

func newPool(t testing.TB, s Settings, bs []*backend.Backend) *Pool {
	t.Helper()
	p, err := New("app", s, bs)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

// addrs lists the addresses of bs, joined with spaces.
func addrs(bs []*backend.Backend) string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.Addr
	}
	return strings.Join(out, " ")
}

// picks returns the addresses of k successive picks ("-" for none), joined.
func picks(p *Pool, r *balancer.Request, k int) string {
	out := make([]string, k)
	for i := range out {
		out[i] = "-"
		if b, _ := p.Pick(r); b != nil {
			out[i] = b.Addr
		}
	}
	return strings.Join(out, " ")
}

// frozen is a deep enough copy of a snapshot to tell whether it was modified.
type frozen struct {
	backends []*backend.Backend
	settings Settings
}

func freeze(s *Snapshot) frozen {
	return frozen{backends: slices.Clone(s.Backends), settings: s.Settings}
}

func (f frozen) check(t *testing.T, s *Snapshot) {
	t.Helper()
	if !slices.Equal(f.backends, s.Backends) {
		t.Errorf("old snapshot modified: backends %q, were %q", addrs(s.Backends), addrs(f.backends))
	}
	if f.settings.Algorithm != s.Settings.Algorithm || f.settings.StickyCookie != s.Settings.StickyCookie {
		t.Errorf("old snapshot modified: settings %+v, were %+v", s.Settings, f.settings)
	}
}

func TestNew(t *testing.T) {
	bs := mkBackends("a", "b", "c")
	p := newPool(t, rr, bs)
	if p.Name() != "app" {
		t.Errorf("Name() = %q", p.Name())
	}
	if got := addrs(p.Snapshot().Backends); got != "a b c" {
		t.Errorf("snapshot backends = %q, want config order a b c", got)
	}
	// The snapshot does not alias the caller's slice.
	bs[0] = backend.New("app", "evil", 1)
	if got := addrs(p.Snapshot().Backends); got != "a b c" {
		t.Errorf("changing the caller's slice changed the snapshot: %q", got)
	}
	if got := picks(p, nil, 6); got != "a b c a b c" {
		t.Errorf("round robin picks = %q", got)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		s    Settings
	}{
		{"unknown algorithm", Settings{Algorithm: "fastest"}},
		{"empty algorithm", Settings{}},
		{"consistent_hash without hash_on", Settings{Algorithm: balancer.AlgConsistentHash}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New("app", tt.s, mkBackends("a"))
			if err == nil {
				t.Fatalf("New succeeded with %+v", tt.s)
			}
			if p != nil {
				t.Errorf("New returned a pool with its error")
			}
			if !strings.Contains(err.Error(), `pool "app"`) {
				t.Errorf("error %q does not name the pool", err)
			}
		})
	}
}

func TestUpdatePublishesNewSnapshot(t *testing.T) {
	p := newPool(t, rr, mkBackends("a", "b"))
	old := p.Snapshot()
	was := freeze(old)

	next := mkBackends("c", "d", "e")
	s := Settings{Algorithm: balancer.AlgLeastConn, StickyCookie: "srv"}
	if err := p.Update(s, next); err != nil {
		t.Fatal(err)
	}
	cur := p.Snapshot()
	if cur == old {
		t.Fatal("Update did not publish a new snapshot")
	}
	if got := addrs(cur.Backends); got != "c d e" {
		t.Errorf("new snapshot backends = %q", got)
	}
	if cur.Settings.Algorithm != balancer.AlgLeastConn || cur.Settings.StickyCookie != "srv" {
		t.Errorf("new snapshot settings = %+v", cur.Settings)
	}
	was.check(t, old)
	next[0] = nil // the caller's slice is not the snapshot's
	if cur.Backends[0] == nil {
		t.Error("snapshot aliases the slice passed to Update")
	}

	// A failed Update leaves the current snapshot in place.
	if err := p.Update(Settings{Algorithm: "nope"}, mkBackends("x")); err == nil {
		t.Fatal("Update with an unknown algorithm succeeded")
	}
	if p.Snapshot() != cur {
		t.Error("failed Update replaced the snapshot")
	}
}

func TestAdd(t *testing.T) {
	p := newPool(t, rr, mkBackends("a", "b"))
	old := p.Snapshot()
	was := freeze(old)

	c := backend.New("app", "c", 1)
	if err := p.Add(c); err != nil {
		t.Fatal(err)
	}
	cur := p.Snapshot()
	if cur == old {
		t.Fatal("Add did not publish a new snapshot")
	}
	if got := addrs(cur.Backends); got != "a b c" {
		t.Errorf("after Add: %q, want a b c", got)
	}
	if p.Backend("c") != c {
		t.Error("Backend(c) is not the added backend")
	}
	if got := picks(p, nil, 3); !strings.Contains(got, "c") {
		t.Errorf("added backend never picked: %q", got)
	}
	was.check(t, old)

	// Adding an address that is already there: ErrExists, nothing published,
	// and the backend in the pool stays the original one.
	dup := backend.New("app", "b", 7)
	err := p.Add(dup)
	if !errors.Is(err, ErrExists) {
		t.Fatalf("Add of existing addr: err = %v, want ErrExists", err)
	}
	if !strings.Contains(err.Error(), `pool "app"`) || !strings.Contains(err.Error(), "b") {
		t.Errorf("error %q does not name pool and backend", err)
	}
	if p.Snapshot() != cur {
		t.Error("failed Add published a snapshot")
	}
	if p.Backend("b") == dup {
		t.Error("failed Add replaced the existing backend")
	}
}

func TestRemove(t *testing.T) {
	bs := mkBackends("a", "b", "c")
	p := newPool(t, rr, bs)
	old := p.Snapshot()
	was := freeze(old)

	got, err := p.Remove("b")
	if err != nil {
		t.Fatal(err)
	}
	if got != bs[1] {
		t.Errorf("Remove returned %v, want the backend that was in the pool", got)
	}
	cur := p.Snapshot()
	if cur == old {
		t.Fatal("Remove did not publish a new snapshot")
	}
	if a := addrs(cur.Backends); a != "a c" {
		t.Errorf("after Remove: %q, want a c", a)
	}
	if p.Backend("b") != nil {
		t.Error("Backend(b) still found after Remove")
	}
	if s := picks(p, nil, 10); strings.Contains(s, "b") {
		t.Errorf("removed backend picked: %q", s)
	}
	was.check(t, old)

	_, err = p.Remove("b")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Remove of missing addr: err = %v, want ErrNotFound", err)
	}
	if p.Snapshot() != cur {
		t.Error("failed Remove published a snapshot")
	}

	// Remove then Add must not scribble over any earlier snapshot's array.
	_, _ = p.Remove("a")
	if err := p.Add(backend.New("app", "z", 1)); err != nil {
		t.Fatal(err)
	}
	was.check(t, old)
	if a := addrs(cur.Backends); a != "a c" {
		t.Errorf("snapshot after first Remove changed to %q", a)
	}
	if a := addrs(p.Snapshot().Backends); a != "c z" {
		t.Errorf("current = %q, want c z", a)
	}
}

func TestRemoveAll(t *testing.T) {
	p := newPool(t, rr, mkBackends("a"))
	if _, err := p.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if b, c := p.Pick(nil); b != nil || c != "" {
		t.Errorf("empty pool picked %v %q", b, c)
	}
}

func TestBackendLookup(t *testing.T) {
	bs := mkBackends("10.0.0.1:80", "10.0.0.2:80", "[::1]:80")
	p := newPool(t, rr, bs)
	tests := []struct {
		addr string
		want *backend.Backend
	}{
		{"10.0.0.1:80", bs[0]},
		{"10.0.0.2:80", bs[1]},
		{"[::1]:80", bs[2]},
		{"10.0.0.3:80", nil},
		{"10.0.0.1", nil},
		{"", nil},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			if got := p.Backend(tt.addr); got != tt.want {
				t.Errorf("Backend(%q) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
}

// backupPool returns a pool with primaries a, b and backups x, y.
func backupPool(t *testing.T, s Settings) (*Pool, map[string]*backend.Backend) {
	t.Helper()
	bs := mkBackends("a", "x", "b", "y")
	bs[1].SetBackup(true)
	bs[3].SetBackup(true)
	m := map[string]*backend.Backend{}
	for _, b := range bs {
		m[b.Addr] = b
	}
	return newPool(t, s, bs), m
}

func TestBackups(t *testing.T) {
	for _, alg := range []string{balancer.AlgRoundRobin, balancer.AlgLeastConn, balancer.AlgRandom, balancer.AlgP2C, balancer.AlgWeightedRoundRobin} {
		for _, sticky := range []string{"", "srv"} {
			t.Run(alg+"/sticky="+sticky, func(t *testing.T) {
				p, m := backupPool(t, Settings{Algorithm: alg, StickyCookie: sticky})
				tally := func() map[string]int {
					c := map[string]int{}
					for range 200 {
						b, _ := p.Pick(&balancer.Request{})
						if b == nil {
							c["-"]++
						} else {
							c[b.Addr]++
						}
					}
					return c
				}
				if c := tally(); c["x"]+c["y"]+c["-"] != 0 {
					t.Errorf("primaries usable: picks %v include backups or none", c)
				}

				m["a"].SetState(backend.StateDown)
				if c := tally(); c["b"] != 200 {
					t.Errorf("one primary usable: picks %v, want only b", c)
				}

				// b is full (max_conns reached): no primary is usable.
				m["b"].SetMaxConns(1)
				m["b"].Acquire()
				c := tally()
				if c["a"]+c["b"]+c["-"] != 0 || c["x"] == 0 || c["y"] == 0 {
					t.Errorf("no primary usable: picks %v, want both backups and only them", c)
				}

				m["x"].SetState(backend.StateDown)
				if c := tally(); c["y"] != 200 {
					t.Errorf("one backup usable: picks %v, want only y", c)
				}

				m["y"].SetState(backend.StateDown)
				if c := tally(); c["-"] != 200 {
					t.Errorf("nothing usable: picks %v, want none", c)
				}

				m["b"].Release(false) // b has room again
				if c := tally(); c["b"] != 200 {
					t.Errorf("primary recovered: picks %v, want only b", c)
				}
			})
		}
	}
}

// A backup reached through a sticky pool gets no cookie: the client should go
// back to a primary as soon as one is usable.
func TestBackupNoCookie(t *testing.T) {
	p, m := backupPool(t, Settings{Algorithm: balancer.AlgRoundRobin, StickyCookie: "srv"})
	m["a"].SetState(backend.StateDown)
	m["b"].SetState(backend.StateDown)
	b, cookie := p.Pick(&balancer.Request{Header: http.Header{}})
	if b == nil || !b.Backup() {
		t.Fatalf("picked %v, want a backup", b)
	}
	if cookie != "" {
		t.Errorf("backup pick set cookie %q", cookie)
	}
}

func TestStickyCookie(t *testing.T) {
	bs := mkBackends("a", "b", "c")
	s := Settings{Algorithm: balancer.AlgRoundRobin, StickyCookie: "srv", StickyTTL: time.Hour}
	p := newPool(t, s, bs)
	req := func(cookie string) *balancer.Request {
		h := http.Header{}
		if cookie != "" {
			h.Set("Cookie", cookie)
		}
		return &balancer.Request{Header: h}
	}
	cookieFor := func(b *backend.Backend) string { return "srv=" + b.ID }

	tests := []struct {
		name       string
		setup      func()
		cookie     string
		wantAddr   string // "" = any
		wantCookie bool
	}{
		{name: "no cookie", wantCookie: true},
		{name: "valid cookie", cookie: cookieFor(bs[1]), wantAddr: "b"},
		{name: "valid cookie among others", cookie: "theme=dark; " + cookieFor(bs[2]) + "; x=1", wantAddr: "c"},
		{name: "unknown id", cookie: "srv=0000000000000000", wantCookie: true},
		{name: "id of another pool", cookie: "srv=" + backend.StickyID("other", "b"), wantCookie: true},
		{name: "other cookie only", cookie: "session=abc", wantCookie: true},
		{name: "empty value", cookie: "srv=", wantCookie: true},
		{
			name:   "cookie names a down backend",
			setup:  func() { bs[0].SetState(backend.StateDown) },
			cookie: cookieFor(bs[0]), wantCookie: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, b := range bs {
				b.SetState(backend.StateUp)
			}
			if tt.setup != nil {
				tt.setup()
			}
			for range 4 { // repeat: the answer must not depend on the rotation
				b, cookie := p.Pick(req(tt.cookie))
				if b == nil {
					t.Fatal("no backend")
				}
				if !b.Usable() {
					t.Errorf("picked unusable %s", b.Addr)
				}
				if tt.wantAddr != "" && b.Addr != tt.wantAddr {
					t.Errorf("picked %s, want %s", b.Addr, tt.wantAddr)
				}
				if !tt.wantCookie {
					if cookie != "" {
						t.Errorf("cookie %q set although the client's one was honoured", cookie)
					}
					continue
				}
				if !strings.HasPrefix(cookie, cookieFor(b)+";") {
					t.Errorf("cookie %q does not bind the client to %s (%s)", cookie, b.Addr, b.ID)
				}
				if !strings.Contains(cookie, "Max-Age=3600") {
					t.Errorf("cookie %q lacks the TTL", cookie)
				}
				// The cookie just handed out is honoured next time.
				h := http.Header{}
				h.Set("Cookie", strings.SplitN(cookie, ";", 2)[0])
				b2, c2 := p.Pick(&balancer.Request{Header: h})
				if b2 != b || c2 != "" {
					t.Errorf("new cookie not honoured: picked %v cookie %q, want %s and none", b2, c2, b.Addr)
				}
			}
		})
	}
}

func TestNonStickyNeverSetsCookie(t *testing.T) {
	bs := mkBackends("a", "b")
	p := newPool(t, rr, bs)
	h := http.Header{}
	h.Set("Cookie", "srv="+bs[0].ID)
	for range 4 {
		if _, c := p.Pick(&balancer.Request{Header: h}); c != "" {
			t.Fatalf("non-sticky pool set cookie %q", c)
		}
		if _, c := p.Pick(nil); c != "" {
			t.Fatalf("non-sticky pool set cookie %q", c)
		}
	}
}

// TestPickDuringChanges runs pickers against a pool that a writer keeps
// changing (Add, Remove, Update with other algorithms, backups, state
// changes). Every backend picked must have been in a published snapshot;
// decoys that were refused by Add (ErrExists) or never added must never be
// picked. Run with -race.
func TestPickDuringChanges(t *testing.T) {
	const (
		pickers = 8
		rounds  = 400
		nAddrs  = 12
	)
	algs := []Settings{
		{Algorithm: balancer.AlgRoundRobin},
		{Algorithm: balancer.AlgLeastConn},
		{Algorithm: balancer.AlgWeightedRoundRobin},
		{Algorithm: balancer.AlgP2C},
		{Algorithm: balancer.AlgRoundRobin, StickyCookie: "srv"},
	}
	p := newPool(t, rr, mkBackends("10.0.0.0:80", "10.0.0.1:80"))

	var (
		mu        sync.Mutex
		published = map[*backend.Backend]bool{}
		decoys    = map[*backend.Backend]bool{}
	)
	record := func() {
		mu.Lock()
		for _, b := range p.Snapshot().Backends {
			published[b] = true
		}
		mu.Unlock()
	}
	record()

	var stop atomic.Bool
	var wg sync.WaitGroup
	picked := make([]map[*backend.Backend]int, pickers)
	for i := range pickers {
		picked[i] = map[*backend.Backend]int{}
		wg.Go(func() {
			h := http.Header{}
			req := &balancer.Request{Header: h}
			for n := 0; !stop.Load() || n < 100; n++ {
				if n%7 == 0 {
					h.Set("Cookie", "srv="+backend.StickyID("app", fmt.Sprintf("10.0.0.%d:80", n%nAddrs)))
				}
				b, _ := p.Pick(req)
				if b != nil {
					picked[i][b]++
				}
			}
		})
	}

	wg.Go(func() {
		defer stop.Store(true)
		for r := range rounds {
			addr := fmt.Sprintf("10.0.0.%d:80", r%nAddrs)
			switch r % 5 {
			case 0, 1:
				b := backend.New("app", addr, 1+r%3)
				b.SetBackup(r%4 == 0)
				err := p.Add(b)
				if err != nil {
					if !errors.Is(err, ErrExists) {
						t.Errorf("Add: %v", err)
					}
					mu.Lock()
					decoys[b] = true
					mu.Unlock()
				}
			case 2:
				if _, err := p.Remove(addr); err != nil && !errors.Is(err, ErrNotFound) {
					t.Errorf("Remove: %v", err)
				}
			case 3:
				cur := p.Snapshot()
				bs := slices.Clone(cur.Backends)
				if len(bs) > 1 {
					bs = bs[1:] // drop the first, keep the others
				}
				if err := p.Update(algs[r%len(algs)], bs); err != nil {
					t.Errorf("Update: %v", err)
				}
			case 4:
				if b := p.Backend(addr); b != nil {
					b.SetState(backend.State(r % 2))
				}
			}
			record()
		}
	})
	wg.Wait()

	total := 0
	for _, m := range picked {
		for b, n := range m {
			total += n
			if decoys[b] {
				t.Errorf("picked %s, a backend refused by Add", b.Addr)
			} else if !published[b] {
				t.Errorf("picked %s (%p), never in a published snapshot", b.Addr, b)
			}
		}
	}
	if total == 0 {
		t.Error("no pick succeeded: the test proved nothing")
	}
	if len(decoys) == 0 {
		t.Error("no Add was refused: the decoy check proved nothing")
	}
}

func BenchmarkPoolPick(b *testing.B) {
	bs := make([]*backend.Backend, 10)
	for i := range bs {
		bs[i] = backend.New("bench", fmt.Sprintf("10.0.0.%d:8080", i+1), 1)
	}
	p := newPool(b, rr, bs)
	r := &balancer.Request{Host: "example.com", Path: "/"}
	b.ReportAllocs()
	for b.Loop() {
		if be, _ := p.Pick(r); be == nil {
			b.Fatal("no backend")
		}
	}
}

func BenchmarkPoolPickSticky(b *testing.B) {
	bs := make([]*backend.Backend, 10)
	for i := range bs {
		bs[i] = backend.New("bench", fmt.Sprintf("10.0.0.%d:8080", i+1), 1)
	}
	p := newPool(b, Settings{Algorithm: balancer.AlgRoundRobin, StickyCookie: "srv"}, bs)
	h := http.Header{}
	h.Set("Cookie", "theme=dark; srv="+bs[3].ID)
	r := &balancer.Request{Header: h}
	b.ReportAllocs()
	for b.Loop() {
		if be, _ := p.Pick(r); be != bs[3] {
			b.Fatal("sticky cookie not honoured")
		}
	}
}

// Pick on the request path must not allocate (STYLE.md rule 6); the
// benchmark reports it, this test enforces it.
func TestPickDoesNotAllocate(t *testing.T) {
	bs := mkBackends("a", "b", "c", "d")
	bs[3].SetBackup(true)
	p := newPool(t, rr, bs)
	r := &balancer.Request{}
	if n := testing.AllocsPerRun(1000, func() { p.Pick(r) }); n != 0 {
		t.Errorf("Pick allocates %.1f times per call", n)
	}
	bs[0].SetState(backend.StateDown)
	bs[1].SetState(backend.StateDown)
	bs[2].SetState(backend.StateDown)
	if n := testing.AllocsPerRun(1000, func() { p.Pick(r) }); n != 0 {
		t.Errorf("Pick of a backup allocates %.1f times per call", n)
	}
}
