package admission

import (
	"testing"
	"time"
)

func TestKeyFoldsIDs(t *testing.T) {
	same := [][2]string{
		{"/users/17", "/users/42"},
		{"/users/17/posts", "/users/9/posts"},
		{"/files/3f2a9c0e5b7d4e11a2b3c4d5e6f70812", "/files/0123456789abcdef0123"},
		{"/orders/123e4567-e89b-12d3-a456-426614174000", "/orders/00000000-0000-0000-0000-000000000000"},
		{"/search?q=a", "/search?q=b"},
	}
	for _, p := range same {
		if Key("GET", p[0]) != Key("GET", p[1]) {
			t.Errorf("%s and %s: different routes, want one", p[0], p[1])
		}
	}
	differ := [][2]string{
		{"/users/17", "/users/17/posts"},
		{"/users", "/posts"},
		{"/v1/users", "/v2/users"},
		{"/users/me", "/users/17"},
		{"/report", "/api"},
	}
	for _, p := range differ {
		if Key("GET", p[0]) == Key("GET", p[1]) {
			t.Errorf("%s and %s: one route, want two", p[0], p[1])
		}
	}
	if Key("GET", "/items") == Key("POST", "/items") {
		t.Error("GET and POST of a path: one route, want two")
	}
	if Key("", "") == 0 {
		t.Error("key 0")
	}
}

func TestClassifyLearnsSlowRoutes(t *testing.T) {
	c := New()
	api, report := Key("GET", "/api"), Key("GET", "/report")
	if c.Classify(report) != Fast {
		t.Fatal("an unknown route must start fast")
	}
	for range 20 {
		c.Observe(api, c.Classify(api), 5*time.Millisecond)
		c.Observe(report, c.Classify(report), 300*time.Millisecond)
	}
	if c.Classify(api) != Fast || c.Classify(report) != Slow {
		t.Fatalf("api %v report %v, want fast and slow", c.Classify(api), c.Classify(report))
	}
	// A route only a little slower than the rest stays fast.
	mid := Key("GET", "/mid")
	for range 20 {
		c.Observe(mid, c.Classify(mid), 12*time.Millisecond)
	}
	if c.Classify(mid) != Fast {
		t.Fatal("a 12 ms route beside 5 ms ones: slow, want fast")
	}
	// One mixed route (fast and slow requests on one path) is its own
	// baseline: it stays fast, so admission stays first come, first served.
	m := New()
	work := Key("GET", "/work")
	for i := range 3000 {
		d := 5 * time.Millisecond
		if i%10 == 0 {
			d = 300 * time.Millisecond
		}
		m.Observe(work, m.Classify(work), d)
		if m.Classify(work) != Fast {
			t.Fatalf("sample %d: the only route of a pool turned slow", i)
		}
	}
}

func TestEnterKeepsAReserveForFastRoutes(t *testing.T) {
	c := New()
	// No fast traffic: slow requests may take every slot.
	for i := range 6 {
		if !c.Enter(Slow, 6, false) {
			t.Fatalf("slow request %d of 6 refused with no fast traffic", i+1)
		}
	}
	for range 6 {
		c.Leave(Slow)
	}
	// Fast traffic seen: one slot is kept from slow requests.
	for range 20 {
		c.Observe(Key("GET", "/api"), Fast, 5*time.Millisecond)
	}
	c.Arrive(Fast)
	n := 0
	for c.Enter(Slow, 6, false) {
		n++
	}
	if n != 5 {
		t.Fatalf("%d slow requests admitted of 6 slots, want 5 (one reserved)", n)
	}
	if st := c.Stats(6); st.Reserve != 1 || st.SlowInService != 5 {
		t.Fatalf("stats %+v", st)
	}
	// A slow request that waited the aging bound may take the reserve.
	if !c.Enter(Slow, 6, true) {
		t.Fatal("an aged slow request was refused the reserved slot")
	}
	if c.Enter(Slow, 6, true) {
		t.Fatal("an aged slow request went beyond capacity")
	}
}

func TestReserveFollowsFastDemand(t *testing.T) {
	c := New()
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	api := Key("GET", "/api")
	// 400 fast requests a second of 20 ms each need 8 slots.
	for range 3 {
		for range 400 {
			c.Arrive(Fast)
			c.Observe(api, Fast, 20*time.Millisecond)
			now = now.Add(time.Second / 400)
		}
	}
	if r := c.Stats(40).Reserve; r < 8 || r > 9 {
		t.Fatalf("reserve %d, want 8 (400/s × 20 ms)", r)
	}
	now = now.Add(idleAfter + time.Second)
	if r := c.Stats(40).Reserve; r != 0 {
		t.Fatalf("reserve %d after fast traffic stopped, want 0", r)
	}
}

func BenchmarkAdmit(b *testing.B) {
	c := New()
	key := Key("GET", "/api/users/17")
	for b.Loop() {
		k := Key("GET", "/api/users/17")
		cl := c.Classify(k)
		c.Arrive(cl)
		c.Enter(cl, 6, false)
		c.Observe(key, cl, 5*time.Millisecond)
		c.Leave(cl)
	}
}

func TestReserveLeavesRoomForSlowRoutes(t *testing.T) {
	c := New()
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	api, report := Key("GET", "/api"), Key("GET", "/report")
	// Per second: 108 fast requests of 7 ms (0.76 slots) and 12 slow ones of
	// 300 ms (3.6 slots, 4.8 at 75 %): of 6 slots, 1 is kept for fast ones.
	for range 3 {
		for i := range 120 {
			if i%10 == 0 {
				c.Arrive(Slow)
				c.Observe(report, Slow, 300*time.Millisecond)
			} else {
				c.Arrive(Fast)
				c.Observe(api, Fast, 7*time.Millisecond)
			}
			now = now.Add(time.Second / 120)
		}
	}
	if r := c.Stats(6).Reserve; r != 1 {
		t.Fatalf("reserve %d of 6, want 1", r)
	}
	// Fast requests of 20 ms need 3 slots (2.2 Erlangs), but slow ones need 5: still 1.
	for range 3 {
		for i := range 120 {
			if i%10 != 0 {
				c.Arrive(Fast)
				c.Observe(api, Fast, 20*time.Millisecond)
			} else {
				c.Arrive(Slow)
			}
			now = now.Add(time.Second / 120)
		}
	}
	if r := c.Stats(6).Reserve; r != 1 {
		t.Fatalf("reserve %d of 6 with slow routes needing 5, want 1", r)
	}
	// With 12 slots, fast ones get the 3 they need.
	if r := c.Stats(12).Reserve; r != 3 {
		t.Fatalf("reserve %d of 12, want 3", r)
	}
}
