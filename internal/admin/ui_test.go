package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"ballast/internal/admin/uitest"
)

// TestUIFiles checks what UI serves without a browser: the page at "/", its assets under
// "/ui/", 404 and 405 as JSON, revalidation by ETag, and the page's security headers.
func TestUIFiles(t *testing.T) {
	srv := httptest.NewServer(UI())
	t.Cleanup(srv.Close)

	tests := []struct {
		method, path string
		header       map[string]string
		status       int
		contentType  string // prefix
	}{
		{"GET", "/", nil, 200, "text/html"},
		{"HEAD", "/", nil, 200, "text/html"},
		{"GET", "/?token=abc", nil, 200, "text/html"},
		{"GET", "/ui/app.js", nil, 200, "text/javascript"},
		{"GET", "/ui/app.css", nil, 200, "text/css"},
		{"GET", "/ui/index.html", nil, 404, "application/json"}, // the page lives at "/" only
		{"GET", "/ui/", nil, 404, "application/json"},           // no directory listing
		{"GET", "/ui/missing.js", nil, 404, "application/json"},
		{"GET", "/index.html", nil, 404, "application/json"},
		{"POST", "/", nil, 405, "application/json"},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			res, body := uiFetch(t, tc.method, srv.URL+tc.path, tc.header)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %q", res.StatusCode, tc.status, body)
			}
			if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.contentType) {
				t.Errorf("Content-Type %q, want %s…", ct, tc.contentType)
			}
			if tc.status >= 400 {
				var e struct{ Error string }
				if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
					t.Errorf("error body %q is not {\"error\": \"...\"}", body)
				}
			}
			if tc.status == 405 && res.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow %q, want GET, HEAD", res.Header.Get("Allow"))
			}
			if tc.status == 200 && tc.path != "/ui/app.js" && tc.path != "/ui/app.css" {
				if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
					t.Errorf("page without a strict Content-Security-Policy: %q", csp)
				}
			}
		})
	}

	t.Run("ETag revalidation", func(t *testing.T) {
		res, _ := uiFetch(t, "GET", srv.URL+"/ui/app.js", nil)
		etag := res.Header.Get("ETag")
		if etag == "" || res.Header.Get("Cache-Control") != "no-cache" {
			t.Fatalf("ETag %q, Cache-Control %q: want an ETag and no-cache", etag, res.Header.Get("Cache-Control"))
		}
		res, _ = uiFetch(t, "GET", srv.URL+"/ui/app.js", map[string]string{"If-None-Match": etag})
		if res.StatusCode != http.StatusNotModified {
			t.Errorf("If-None-Match with the ETag: status %d, want 304", res.StatusCode)
		}
	})

	t.Run("page references only embedded files", func(t *testing.T) {
		_, page := uiFetch(t, "GET", srv.URL+"/", nil)
		refs := regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(page, -1)
		if len(refs) < 3 {
			t.Fatalf("found %d src/href in the page, want the icon, the style sheet and the script", len(refs))
		}
		for _, m := range refs {
			ref := m[1]
			if strings.HasPrefix(ref, "data:") {
				continue
			}
			if !strings.HasPrefix(ref, "ui/") {
				t.Errorf("reference %q is not a relative ui/ path", ref)
				continue
			}
			if res, _ := uiFetch(t, "GET", srv.URL+"/"+ref, nil); res.StatusCode != 200 {
				t.Errorf("%s: status %d", ref, res.StatusCode)
			}
		}
	})

	t.Run("no external URL in any file", func(t *testing.T) {
		// The SVG namespace is a name, not a fetch; anything else with a scheme or "//" would be.
		external := regexp.MustCompile(`(?i:https?://|@import)|url\(|["'(]//`)
		err := fs.WalkDir(uiFiles, "ui", func(name string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := uiFiles.ReadFile(name)
			if err != nil {
				return err
			}
			text := strings.ReplaceAll(string(b), "http://www.w3.org/2000/svg", "")
			if loc := external.FindStringIndex(text); loc != nil {
				t.Errorf("%s: external reference near %q", name, text[max(0, loc[0]-30):min(len(text), loc[1]+30)])
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func uiFetch(t *testing.T, method, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

// TestDashboard drives the page in headless Chromium against a fake admin API.
func TestDashboard(t *testing.T) {
	browser := uitest.Browser(t)

	t.Run("shows every backend, console stays clean", func(t *testing.T) {
		api := newUIFake(t, "", smallUIState())
		tab := uitest.Open(t, browser, api.URL+"/")
		tab.WaitPolled(t, 3)
		// Each row as "pool addr" -> "data-state/badge word", plus "/backup" when the backup tag shows.
		rows := uitest.Eval[map[string]string](t, tab, `Object.fromEntries([...document.querySelectorAll("tr[data-backend]")].map(
			(tr) => [tr.dataset.pool + " " + tr.dataset.backend, tr.dataset.state + "/" + tr.querySelector(".badge").textContent +
				(tr.querySelector(".backup").checkVisibility() ? "/backup" : "")]))`)
		want := map[string]string{}
		for _, p := range api.snapshot().Pools {
			for _, b := range p.Backends {
				want[p.Name+" "+b.Addr] = b.State + "/" + b.State
				if b.Backup {
					want[p.Name+" "+b.Addr] += "/backup"
				}
			}
		}
		if fmt.Sprint(rows) != fmt.Sprint(want) {
			t.Errorf("rows = %v, want %v", rows, want)
		}
		if v := uitest.Eval[string](t, tab, `document.getElementById("version").textContent`); v != api.snapshot().Version {
			t.Errorf("header version %q, want %q", v, api.snapshot().Version)
		}
		if v := uitest.Eval[bool](t, tab, `document.getElementById("banner").hidden`); !v {
			t.Error("the unreachable banner shows while the API answers")
		}
		tab.NoConsoleMessages(t)
	})

	t.Run("a launched pool shows its processes", func(t *testing.T) {
		st := smallUIState()
		st.state.Pools[1].Launch = &Launch{Command: []string{"gunicorn", "-w", "2", "app:app"}, MaxConns: 2, Restarts: 4,
			Instances: []Instance{{ID: 7, PID: 4242, Addr: "127.0.0.1:9101", State: "running", Restarts: 4, LastExit: "exit status 1"}}}
		api := newUIFake(t, "", st)
		tab := uitest.Open(t, browser, api.URL+"/")
		tab.WaitPolled(t, 2)
		tag := uitest.Eval[string](t, tab, `document.querySelector('article[data-pool="api"] .tag.launch').textContent`)
		if tag != "launched ×1 · 4 restarts" {
			t.Errorf("launch tag %q", tag)
		}
		proc := uitest.Eval[string](t, tab, `document.querySelector('tr[data-pool="api"][data-backend="127.0.0.1:9101"] .proc').textContent`)
		if proc != "pid 4242 · 4 restarts" {
			t.Errorf("process note %q", proc)
		}
		if v := uitest.Eval[bool](t, tab, `document.querySelector('article[data-pool="app"] .tag.launch').hidden`); !v {
			t.Error("a pool without launch shows a launch tag")
		}
		tab.NoConsoleMessages(t)
	})

	t.Run("a backend going down shows within 3s and in recent changes", func(t *testing.T) {
		api := newUIFake(t, "", smallUIState())
		tab := uitest.Open(t, browser, api.URL+"/")
		tab.WaitPolled(t, 2)
		const pool, addr = "app", "127.0.0.1:9002"
		row := fmt.Sprintf(`document.querySelector('tr[data-pool=%q][data-backend=%q]')`, pool, addr)
		if s := uitest.Eval[string](t, tab, row+`.dataset.state`); s != "up" {
			t.Fatalf("before the change: data-state %q, want up", s)
		}
		seq := api.setState(pool, addr, "down", "health check: connection refused")
		start := time.Now()
		tab.WaitFor(t, 3*time.Second, row+`.dataset.state === "down"`)
		t.Logf("row showed down after %v", time.Since(start).Round(time.Millisecond))
		item := uitest.Eval[string](t, tab, fmt.Sprintf(`document.querySelector('#events li[data-seq="%d"]')?.textContent ?? ""`, seq))
		for _, want := range []string{pool, addr, "up", "down", "connection refused"} {
			if !strings.Contains(item, want) {
				t.Errorf("recent changes entry %q lacks %q", item, want)
			}
		}
		if title := uitest.Eval[string](t, tab, `document.title`); title != "(1 down) ballast" {
			t.Errorf("title %q, want (1 down) ballast", title)
		}
		if first := uitest.Eval[string](t, tab, `document.querySelector("#events li").dataset.seq`); first != strconv.Itoa(seq) {
			t.Errorf("newest entry has seq %s, want %d (newest first)", first, seq)
		}
		tab.NoConsoleMessages(t)
	})

	t.Run("token goes with every API request", func(t *testing.T) {
		api := newUIFake(t, "abc", smallUIState())
		defer api.noUnauthorized(t) // also when a wait below fails, which a 401 would explain
		tab := uitest.Open(t, browser, api.URL+"/?token=abc")
		tab.WaitPolled(t, 3)
		if u := uitest.Eval[string](t, tab, `location.href`); strings.Contains(u, "token") {
			t.Errorf("the token stays in the visible URL: %s", u)
		}
		if s := uitest.Eval[string](t, tab, `sessionStorage.getItem("ballast.token") ?? ""`); s != "abc" {
			t.Errorf("sessionStorage token %q, want abc", s)
		}
		// A reload has no ?token= any more: the page must take it from sessionStorage.
		tab.Do(t, chromedp.Reload())
		tab.WaitPolled(t, 2)
		if n := api.authorized(); n < 10 {
			t.Errorf("%d authorized API requests, want at least 10 (5 polls of 2 endpoints)", n)
		}
		tab.NoConsoleMessages(t)
	})

	t.Run("without the token the page says 401", func(t *testing.T) {
		// The control for the test above: the fake does refuse, and the page says so.
		api := newUIFake(t, "abc", smallUIState())
		tab := uitest.Open(t, browser, api.URL+"/")
		tab.WaitFor(t, 5*time.Second, `!document.getElementById("banner").hidden`)
		if b := uitest.Eval[string](t, tab, `document.getElementById("banner").textContent`); !strings.Contains(b, "401") || !strings.Contains(b, "token") {
			t.Errorf("banner %q does not explain the 401", b)
		}
		if len(api.takeUnauthorized()) == 0 {
			t.Error("the fake API saw no request without the token")
		}
	})

	t.Run("banner while the API is unreachable", func(t *testing.T) {
		api := newUIFake(t, "", smallUIState())
		tab := uitest.Open(t, browser, api.URL+"/")
		tab.WaitPolled(t, 2)
		api.setFailing(http.StatusServiceUnavailable)
		tab.WaitFor(t, 5*time.Second, `!document.getElementById("banner").hidden`)
		if b := uitest.Eval[string](t, tab, `document.getElementById("banner").textContent`); !strings.Contains(b, "unreachable") || !strings.Contains(b, "503") {
			t.Errorf("banner %q, want it to say unreachable and 503", b)
		}
		polled := uitest.Eval[string](t, tab, `document.body.dataset.updated`)
		api.setFailing(0)
		tab.WaitFor(t, 5*time.Second, `document.getElementById("banner").hidden && document.body.dataset.updated !== `+strconv.Quote(polled))
		// The failed polls log the 503 responses (browser log, source "network"): expected here.
		tab.NoConsoleMessages(t, "network")
	})

	t.Run("phone viewport has no horizontal overflow", func(t *testing.T) {
		api := newUIFake(t, "", demoUIState())
		// Mobile emulation honours the meta viewport, and there a page too wide for the screen
		// widens the layout viewport (innerWidth) instead of showing scrollWidth > innerWidth:
		// overflow is either.
		type widths struct {
			Scroll int `json:"scroll"`
			Inner  int `json:"inner"`
			Table  int `json:"table"`
			Wrap   int `json:"wrap"`
		}
		overflows := func(w widths) bool { return w.Inner != 390 || w.Scroll > w.Inner }
		const measure = `({scroll: document.documentElement.scrollWidth, inner: innerWidth,
			table: document.querySelector(".table-wrap").scrollWidth, wrap: document.querySelector(".table-wrap").clientWidth})`
		for _, mobile := range []bool{true, false} {
			opts := []chromedp.EmulateViewportOption{}
			if mobile {
				opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch)
			}
			tab := uitest.Open(t, browser, "about:blank")
			tab.Do(t, chromedp.EmulateViewport(390, 844, opts...), chromedp.Navigate(api.URL+"/"))
			tab.WaitPolled(t, 2)
			w := uitest.Eval[widths](t, tab, measure)
			if overflows(w) {
				t.Errorf("mobile=%v: scrollWidth %d, innerWidth %d: the page is wider than the 390px screen", mobile, w.Scroll, w.Inner)
			}
			if w.Table <= w.Wrap {
				t.Errorf("mobile=%v: backend table %dpx in a %dpx wrapper: want it wider, scrolling inside its card", mobile, w.Table, w.Wrap)
			}
			// The probe itself: a wide element (with content: an empty one adds no overflow)
			// must show up as overflow in this viewport.
			w = uitest.Eval[widths](t, tab, `document.body.append(Object.assign(document.createElement("div"), {className: "probe", textContent: "wide"})),
				document.querySelector(".probe").style.width = "800px", `+measure)
			if !overflows(w) {
				t.Errorf("mobile=%v: an 800px element gave scrollWidth %d, innerWidth %d: the check cannot see overflow", mobile, w.Scroll, w.Inner)
			}
			tab.NoConsoleMessages(t)
		}
	})
}

// TestDashboardScreenshot saves a 1280×800 PNG of the dashboard with a realistic state to the
// path in BALLAST_SCREENSHOT, for the README. It takes two minutes: the charts' width of data.
func TestDashboardScreenshot(t *testing.T) {
	out := os.Getenv("BALLAST_SCREENSHOT")
	if out == "" {
		t.Skip("set BALLAST_SCREENSHOT=path.png to save a screenshot of the dashboard")
	}
	browser := uitest.Browser(t)
	api := newUIFake(t, "", demoUIState())
	tab := uitest.Open(t, browser, "about:blank")
	tab.Do(t, chromedp.EmulateViewport(1280, 800), chromedp.Navigate(api.URL+"/"))
	tab.WaitPolled(t, 2)
	time.Sleep(2*time.Minute + 2*time.Second) // the charts' two minutes, filled
	ctx, cancel := context.WithTimeout(tab.Ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	tab.NoConsoleMessages(t)
	t.Logf("wrote %s (%d bytes)", out, len(png))
}

// ---- the fake admin API

// uiFake serves UI() and the two endpoints the page polls from a State held in memory. The
// backends' requests counters grow with wall time at each backend's rate, as a live server's do.
type uiFake struct {
	*httptest.Server
	token string // when set, /api/ requests need "Authorization: Bearer token"

	mu           sync.Mutex
	state        State
	events       []Event
	traffic      map[string]uiTraffic // by "pool/addr"
	counted      time.Time            // when the counters were last advanced
	started      time.Time
	failing      int // status to answer /api/ with instead; 0: answer normally
	ok           int
	unauthorized []string
}

func newUIFake(t *testing.T, token string, st uiFakeState) *uiFake {
	f := &uiFake{token: token, state: st.state, events: st.events, traffic: st.traffic, started: time.Now()}
	f.counted = f.started
	ui := UI()
	mux := http.NewServeMux()
	mux.Handle("/", ui)
	mux.HandleFunc("/api/v1/pools", f.handle(func(r *http.Request) any {
		f.advance()
		return f.state
	}))
	mux.HandleFunc("/api/v1/events", f.handle(func(r *http.Request) any {
		since, _ := strconv.ParseUint(r.URL.Query().Get("since"), 10, 64)
		evs := []Event{}
		for _, e := range f.events {
			if e.Seq >= since {
				evs = append(evs, e)
			}
		}
		return map[string]any{"events": evs, "next": uint64(len(f.events) + 1)}
	}))
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

func (f *uiFake) handle(answer func(*http.Request) any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.token != "" && r.Header.Get("Authorization") != "Bearer "+f.token {
			f.unauthorized = append(f.unauthorized, fmt.Sprintf("%s (Authorization %q)", r.URL, r.Header.Get("Authorization")))
			writeError(w, http.StatusUnauthorized, "missing or wrong admin token")
			return
		}
		if f.failing != 0 {
			writeError(w, f.failing, "unavailable for the test")
			return
		}
		f.ok++
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(answer(r))
	}
}

// advance grows each backend's counters by its rate over the time since the last call, with
// a slow wave and a per-backend phase so that the charts look like traffic. f.mu is held.
func (f *uiFake) advance() {
	now := time.Now()
	dt := now.Sub(f.counted).Seconds()
	f.counted = now
	x := now.Sub(f.started).Seconds()
	for pi := range f.state.Pools {
		p := &f.state.Pools[pi]
		for bi := range p.Backends {
			b := &p.Backends[bi]
			tr := f.traffic[p.Name+"/"+b.Addr]
			if tr.rps == 0 || b.State != "up" {
				b.InFlight = 0
				continue
			}
			phase := float64(bi) + float64(pi)*2
			wave := 1 + 0.35*math.Sin(x/9+phase) + 0.15*math.Sin(x/2.3+phase*3)
			b.Requests += uint64(math.Round(tr.rps * wave * dt))
			b.LatencyMS = math.Round(tr.latency*(0.8+0.25*wave)*100) / 100
			// Little's law, so that in_flight agrees with the rate and the latency.
			b.InFlight = int64(math.Round(tr.rps * wave * b.LatencyMS / 1000))
			if b.MaxConns > 0 {
				b.InFlight = min(b.InFlight, int64(b.MaxConns))
			}
		}
	}
}

func (f *uiFake) snapshot() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

// setState changes a backend's state and records the event, as a health check would; it
// returns the event's seq.
func (f *uiFake) setState(pool, addr, state, reason string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	for pi := range f.state.Pools {
		for bi := range f.state.Pools[pi].Backends {
			b := &f.state.Pools[pi].Backends[bi]
			if f.state.Pools[pi].Name != pool || b.Addr != addr {
				continue
			}
			seq := len(f.events) + 1
			f.events = append(f.events, Event{Seq: uint64(seq), Time: time.Now().UTC(), Pool: pool, Backend: addr,
				From: b.State, To: state, Reason: reason})
			b.State = state
			if state == "down" {
				b.LastCheckError = reason
			}
			return seq
		}
	}
	panic("no backend " + pool + "/" + addr)
}

func (f *uiFake) setFailing(status int) {
	f.mu.Lock()
	f.failing = status
	f.mu.Unlock()
}

func (f *uiFake) authorized() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ok
}

func (f *uiFake) takeUnauthorized() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.unauthorized
	f.unauthorized = nil
	return u
}

func (f *uiFake) noUnauthorized(t *testing.T) {
	t.Helper()
	for _, u := range f.takeUnauthorized() {
		t.Errorf("401: API request without the bearer token: %s", u)
	}
}

// uiFakeState is what a uiFake starts with: the State, the events so far (seq 1, 2, …) and
// the traffic of each backend, by "pool/addr".
type uiFakeState struct {
	state   State
	events  []Event
	traffic map[string]uiTraffic
}

// uiTraffic is a backend's mean requests/s and latency in ms; the fake varies both over time.
type uiTraffic struct{ rps, latency float64 }

// smallUIState is one pool of three backends and one of one, all up.
func smallUIState() uiFakeState {
	return uiFakeState{
		state: State{
			Version:    "ballast test",
			ConfigHash: "sha256:0123456789abcdef0123456789abcdef",
			Started:    time.Now().Add(-90 * time.Minute).UTC(),
			Listeners:  []Listener{{Name: "web", Listen: "127.0.0.1:8080", Protocol: "http"}},
			Pools: []Pool{
				{Name: "app", Algorithm: "least_conn", Queue: Queue{Max: 1000, TimeoutMS: 5000}, Backends: []Backend{
					{Addr: "127.0.0.1:9001", State: "up", Weight: 1, MaxConns: 4, Requests: 100},
					{Addr: "127.0.0.1:9002", State: "up", Weight: 1, Requests: 200},
					{Addr: "127.0.0.1:9003", State: "up", Weight: 1, Backup: true},
				}},
				{Name: "api", Algorithm: "round_robin", Backends: []Backend{
					{Addr: "127.0.0.1:9101", State: "up", Weight: 2, Requests: 5},
				}},
			},
		},
		traffic: map[string]uiTraffic{
			"app/127.0.0.1:9001": {20, 2.5}, "app/127.0.0.1:9002": {10, 3}, "api/127.0.0.1:9101": {3, 12},
		},
	}
}

// demoUIState is the README's picture: two pools, six backends (one a backup), one down, one
// draining, traffic on the others, recent changes, an error message that must not widen a
// phone's page.
func demoUIState() uiFakeState {
	ago := func(d time.Duration) time.Time { return time.Now().Add(-d).UTC() }
	started := ago(3*24*time.Hour + 4*time.Hour + 12*time.Minute)
	return uiFakeState{
		state: State{
			Version:    "ballast 0.4.0 (commit 79fccab, go1.26.8)",
			ConfigHash: "sha256:9f2c4e1ab37d5c08e6f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7",
			Started:    started,
			Listeners: []Listener{
				{Name: "web", Listen: "0.0.0.0:443", Protocol: "http"},
				{Name: "db", Listen: "127.0.0.1:5433", Protocol: "tcp"},
			},
			Pools: []Pool{
				{Name: "app", Algorithm: "least_conn", Queue: Queue{Length: 0, Max: 1000, TimeoutMS: 5000}, Backends: []Backend{
					{Addr: "127.0.0.1:9001", State: "up", Weight: 3, MaxConns: 64, Requests: 1843211, Failures: 12, LatencyMS: 4.2},
					{Addr: "127.0.0.1:9002", State: "up", Weight: 3, MaxConns: 64, Requests: 1839076, Failures: 9, LatencyMS: 3.9},
					{Addr: "127.0.0.1:9003", State: "down", Weight: 1, MaxConns: 64, Requests: 602144, Failures: 311, LatencyMS: 11.4, Ejections: 1,
						LastCheckError: "dial tcp 127.0.0.1:9003: connect: connection refused"},
					{Addr: "127.0.0.1:9004", State: "up", Weight: 1, MaxConns: 64, Backup: true, Requests: 1201},
				}},
				{Name: "api", Algorithm: "weighted_round_robin", Queue: Queue{Max: 200, TimeoutMS: 2000}, Backends: []Backend{
					{Addr: "10.0.3.21:8000", State: "draining", Weight: 1, Requests: 95211, Failures: 1, LatencyMS: 21.7},
					{Addr: "10.0.3.22:8000", State: "up", Weight: 1, Requests: 96872, Failures: 0, LatencyMS: 18.3},
				}},
			},
		},
		events: []Event{
			{Seq: 1, Time: ago(4*time.Minute + 12*time.Second), Pool: "app", Backend: "127.0.0.1:9003", From: "up", To: "ejected",
				Reason: "5 consecutive failures"},
			{Seq: 2, Time: ago(3*time.Minute + 42*time.Second), Pool: "app", Backend: "127.0.0.1:9003", From: "ejected", To: "up",
				Reason: "ejection of 30s ended"},
			{Seq: 3, Time: ago(95 * time.Second), Pool: "app", Backend: "127.0.0.1:9003", From: "up", To: "down",
				Reason: "health check: 3 failures: dial tcp 127.0.0.1:9003: connect: connection refused"},
			{Seq: 4, Time: ago(40 * time.Second), Pool: "api", Backend: "10.0.3.21:8000", From: "up", To: "draining",
				Reason: "drain requested by the admin API"},
		},
		traffic: map[string]uiTraffic{
			"app/127.0.0.1:9001": {180, 4.2}, "app/127.0.0.1:9002": {175, 3.9}, "api/10.0.3.22:8000": {42, 18},
		},
	}
}
