package router

import "testing"

func TestMatchFirstWins(t *testing.T) {
	tab, err := New([]Route[string]{
		{Host: "api.example.com", PathPrefix: "/v2", Target: "api-v2"},
		{Host: "api.example.com", Target: "api"},
		{Host: "*.example.com", Target: "wild"},
		{PathPrefix: "/static/", Target: "static"},
		{Target: "app"},
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		host, path, want string
	}{
		{"api.example.com", "/v2/users", "api-v2"},
		{"API.Example.COM:8080", "/v2", "api-v2"},
		{"api.example.com.", "/v1", "api"},
		{"api.example.com", "/v1", "api"},
		{"www.example.com", "/", "wild"},
		{"example.com", "/", "app"}, // wildcard does not match the bare domain
		{"other.org", "/static/app.css", "static"},
		{"other.org", "/static", "app"},
		{"[::1]:8080", "/", "app"},
		{"", "/", "app"},
	}
	for _, c := range cases {
		t.Run(c.host+c.path, func(t *testing.T) {
			got, ok := tab.Match(c.host, c.path)
			if !ok || got != c.want {
				t.Fatalf("Match(%q, %q) = %q, %v; want %q", c.host, c.path, got, ok, c.want)
			}
		})
	}
}

func TestNoMatch(t *testing.T) {
	tab, err := New([]Route[int]{{Host: "a.example", Target: 1}, {PathPrefix: "/x", Target: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := tab.Match("b.example", "/y"); ok {
		t.Fatalf("matched %d, want no match", got)
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := New([]Route[int]{{PathPrefix: "api"}}); err == nil {
		t.Fatal("path_prefix without leading slash accepted")
	}
	if _, err := New([]Route[int]{{Host: "*."}}); err == nil {
		t.Fatal("empty wildcard accepted")
	}
}

func TestStripPort(t *testing.T) {
	for in, want := range map[string]string{
		"example.com":    "example.com",
		"example.com:80": "example.com",
		"[::1]:8080":     "[::1]",
		"[::1]":          "[::1]",
		"::1":            "::1",
		"127.0.0.1:9":    "127.0.0.1",
		"":               "",
	} {
		if got := StripPort(in); got != want {
			t.Errorf("StripPort(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	tab, _ := New([]Route[int]{{Host: "*.example.com", Target: 1}, {PathPrefix: "/", Target: 2}})
	n := testing.AllocsPerRun(100, func() { tab.Match("WWW.example.com:443", "/index") })
	if n != 0 {
		t.Fatalf("Match allocates %.0f times", n)
	}
}

func BenchmarkMatch(b *testing.B) {
	tab, _ := New([]Route[int]{
		{Host: "api.example.com", PathPrefix: "/v2", Target: 1},
		{Host: "*.example.com", Target: 2},
		{PathPrefix: "/static/", Target: 3},
		{Target: 4},
	})
	b.ReportAllocs()
	for b.Loop() {
		tab.Match("www.example.org", "/index.html")
	}
}
