package etcd

import (
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

func TestParseKey(t *testing.T) {
	for _, tc := range []struct {
		rel              string
		pool, addr       string
		registered, want bool
	}{
		{"pools/app/backends/127.0.0.1:8001", "app", "127.0.0.1:8001", false, true},
		{"pools/app/backends/[::1]:8001", "app", "[::1]:8001", false, true},
		{"registrations/app/10.0.0.1:80", "app", "10.0.0.1:80", true, true},
		{"pools/app/backends/", "", "", false, false},
		{"pools//backends/127.0.0.1:1", "", "", false, false},
		{"pools/app/settings", "", "", false, false},
		{"pools/app/backends/a/b", "", "", false, false},
		{"registrations/app", "", "", false, false},
		{"registrations/app/x/y", "", "", false, false},
		{"other/app/1.2.3.4:5", "", "", false, false},
	} {
		pool, addr, reg, ok := parseKey(tc.rel)
		if pool != tc.pool || addr != tc.addr || reg != tc.registered || ok != tc.want {
			t.Errorf("parseKey(%q) = %q %q %v %v, want %q %q %v %v", tc.rel, pool, addr, reg, ok, tc.pool, tc.addr, tc.registered, tc.want)
		}
	}
	// What the writers produce, the reader parses back.
	for _, k := range []string{backendKey("/p/", "app", "h:1"), registrationKey("/p/", "app", "h:1")} {
		if pool, addr, _, ok := parseKey(strings.TrimPrefix(k, "/p/")); !ok || pool != "app" || addr != "h:1" {
			t.Errorf("round trip of %q: %q %q %v", k, pool, addr, ok)
		}
	}
}

func TestDecodeBackend(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  Backend
		err   string
	}{
		{`{"addr":"h:1","weight":3,"max_conns":5,"backup":true}`, Backend{Addr: "h:1", Weight: 3, MaxConns: 5, Backup: true}, ""},
		{`{"weight":2}`, Backend{Addr: "h:1", Weight: 2}, ""},
		{`{}`, Backend{Addr: "h:1", Weight: 1}, ""},
		{`{"addr":"h:2"}`, Backend{}, `names addr "h:2"`},
		{`{"weight":0,"registered":true}`, Backend{Addr: "h:1", Weight: 1}, ""},
		{`{"weight":-1}`, Backend{}, "must be 1..1000"},
		{`{"weight":"2"}`, Backend{}, "not a JSON backend"},
		{`not json`, Backend{}, "not a JSON backend"},
	} {
		got, err := decodeBackend("h:1", []byte(tc.value))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("decodeBackend(%s) error %v, want %q", tc.value, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("decodeBackend(%s) = %+v, %v; want %+v", tc.value, got, err, tc.want)
		}
	}
}

// FuzzDecode: whatever is stored under the prefix, the reader neither panics
// nor accepts a backend it could not have written itself.
func FuzzDecode(f *testing.F) {
	f.Add("pools/app/backends/127.0.0.1:8001", `{"addr":"127.0.0.1:8001","weight":2}`)
	f.Add("registrations/a/[::1]:1", `{}`)
	f.Add("pools/x/backends/h:0", `{"weight":1001}`)
	f.Fuzz(func(t *testing.T, rel, value string) {
		pool, addr, _, ok := parseKey(rel)
		if !ok {
			return
		}
		b, err := decodeBackend(addr, []byte(value))
		if err != nil {
			return
		}
		if _, err := normalize(b); err != nil || checkPool(pool) != nil || b.Addr != addr {
			t.Fatalf("accepted %q=%q as %+v in pool %q", rel, value, b, pool)
		}
		again, err := decodeBackend(addr, []byte(encodeBackend(b)))
		if err != nil || again != b {
			t.Fatalf("re-encoding %+v gives %+v, %v", b, again, err)
		}
	})
}

func TestSnapshotMergesAndSorts(t *testing.T) {
	s := &Store{prefix: "/p/", log: testLogger(t)}
	st := &state{entries: map[string]entry{}}
	put := func(key, value string, rev int64) {
		st.apply(s, mvccpb.PUT, &mvccpb.KeyValue{Key: []byte(key), Value: []byte(value), ModRevision: rev})
	}
	put("/p/registrations/app/h:2", `{"weight":9}`, 2)
	put("/p/pools/app/backends/h:2", `{"weight":4}`, 3)
	put("/p/pools/app/backends/h:1", `{}`, 4)
	put("/p/registrations/app/h:3", `{}`, 5)
	put("/p/registrations/web/h:9", `{}`, 6)
	put("/p/pools/app/settings", `{}`, 7)    // not a backend key: ignored
	put("/p/pools/bad/backends/h:5", `{`, 8) // invalid: skipped
	snap := st.snapshot()
	if snap.Revision != 8 {
		t.Errorf("revision %d, want 8", snap.Revision)
	}
	want := []Backend{{Addr: "h:1", Weight: 1}, {Addr: "h:2", Weight: 4}, {Addr: "h:3", Weight: 1, Registered: true}}
	if got := snap.Pools["app"]; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("pool app = %+v, want %+v", got, want)
	}
	if len(snap.Pools) != 2 {
		t.Errorf("pools %v, want app and web", snap.Pools)
	}
	// Deleting the added entry uncovers the registration.
	st.apply(s, mvccpb.DELETE, &mvccpb.KeyValue{Key: []byte("/p/pools/app/backends/h:2"), ModRevision: 9})
	if b, _ := find(st.snapshot(), "app", "h:2"); b != (Backend{Addr: "h:2", Weight: 9, Registered: true}) {
		t.Errorf("after deleting the added h:2: %+v", b)
	}
	// A delivered snapshot is not changed by later events.
	st.apply(s, mvccpb.DELETE, &mvccpb.KeyValue{Key: []byte("/p/pools/app/backends/h:1"), ModRevision: 10})
	if len(snap.Pools["app"]) != 3 {
		t.Error("an old snapshot changed")
	}
}

func TestPublishKeepsOnlyTheLatest(t *testing.T) {
	out := make(chan Snapshot, 1)
	for rev := int64(1); rev <= 3; rev++ {
		publish(out, Snapshot{Revision: rev}) // must not block without a reader
	}
	if s := <-out; s.Revision != 3 {
		t.Errorf("got revision %d, want the latest, 3", s.Revision)
	}
}

func TestConfigChecks(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		err  string
	}{
		{"no endpoints", Config{}, "at least one is required"},
		{"bad endpoint", Config{Endpoints: []string{"localhost"}}, "must be host:port"},
		{"bad scheme", Config{Endpoints: []string{"unix://x:1"}}, "scheme must be http or https"},
		{"path", Config{Endpoints: []string{"http://h:1/x"}}, "must be http://host:port"},
		{"mixed", Config{Endpoints: []string{"http://a:1", "https://b:1"}}, "mixes http:// and https://"},
		{"half auth", Config{Endpoints: []string{"a:1"}, Username: "u"}, "set both or neither"},
		{"half cert", Config{Endpoints: []string{"a:1"}, CertFile: "c"}, "set both or neither"},
		{"tls on http", Config{Endpoints: []string{"http://a:1"}, CAFile: "ca.pem"}, "use https://"},
		{"missing CA", Config{Endpoints: []string{"a:1"}, CAFile: "/nonexistent/ca.pem"}, "etcd: tls:"},
	} {
		_, _, err := tc.cfg.client()
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
		}
	}
	cc, prefix, err := Config{Endpoints: []string{"127.0.0.1:2379"}, Prefix: "/x"}.client()
	if err != nil || prefix != "/x/" || cc.DialTimeout != DefaultDialTimeout || cc.TLS != nil {
		t.Errorf("defaults: %v prefix %q dial %v tls %v", err, prefix, cc.DialTimeout, cc.TLS != nil)
	}
	if _, prefix, _ := (Config{Endpoints: []string{"h:1"}}).client(); prefix != DefaultPrefix {
		t.Errorf("default prefix %q", prefix)
	}
	cc, _, err = Config{Endpoints: []string{"https://h:1"}, DialTimeout: time.Second}.client()
	if err != nil || cc.TLS == nil || cc.DialTimeout != time.Second {
		t.Errorf("https without files: %v, tls %v", err, cc.TLS != nil)
	}
}
