package accesslog

import (
	"bytes"
	"encoding/json"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// record mirrors a line for encoding/json.
type record struct {
	Time       string  `json:"time"`
	Client     string  `json:"client"`
	Method     string  `json:"method"`
	Host       string  `json:"host"`
	Path       string  `json:"path"`
	Status     int     `json:"status"`
	BytesIn    int64   `json:"bytes_in"`
	BytesOut   int64   `json:"bytes_out"`
	DurationMS float64 `json:"duration_ms"`
	TTFBMS     float64 `json:"ttfb_ms"`
	Listener   string  `json:"listener"`
	Pool       string  `json:"pool"`
	Backend    string  `json:"backend"`
	Retries    int     `json:"retries"`
	QueuedMS   float64 `json:"queued_ms"`
	RequestID  string  `json:"request_id"`
}

var wantKeys = []string{
	"time", "client", "method", "host", "path", "status", "bytes_in", "bytes_out",
	"duration_ms", "ttfb_ms", "listener", "pool", "backend", "retries", "queued_ms", "request_id",
}

// decodeLine checks that line is exactly one JSON object with exactly the
// keys of wantKeys, in order, followed by one newline, and decodes it.
func decodeLine(t testing.TB, line []byte) record {
	t.Helper()
	if len(line) == 0 || line[len(line)-1] != '\n' {
		t.Fatalf("line does not end in a newline: %q", line)
	}
	body := line[:len(line)-1]
	if i := bytes.IndexAny(body, "\r\n"); i >= 0 {
		t.Fatalf("raw line break at %d inside the line: %q", i, line)
	}
	if !json.Valid(body) {
		t.Fatalf("invalid JSON: %q", line)
	}
	if !utf8.Valid(body) {
		t.Fatalf("invalid UTF-8 in line: %q", line)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("line does not open an object: %v %v", tok, err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("key: %v in %q", err, line)
		}
		keys = append(keys, tok.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("value of %q: %v", tok, err)
		}
	}
	if strings.Join(keys, ",") != strings.Join(wantKeys, ",") {
		t.Fatalf("keys\n got %v\nwant %v", keys, wantKeys)
	}
	var r record
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(&r); err != nil {
		t.Fatalf("decode %q: %v", line, err)
	}
	return r
}

// jsonView is what a JSON reader sees of s once logged: the truncated value
// with invalid bytes replaced, computed here through encoding/json.
func jsonView(t testing.TB, s string) string {
	t.Helper()
	b, err := json.Marshal(truncate(s, maxField))
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestHostileStringsStayInsideTheirField(t *testing.T) {
	tests := []struct {
		name string
		s    string
	}{
		{"empty", ""},
		{"quotes", `say "hi"`},
		{"backslashes", `C:\path\to\"file\\`},
		{"injection", `/x","status":999,"pool":"evil`},
		{"newline injection", "/x\n{\"status\":1}\n"},
		{"carriage return", "a\rb"},
		{"nul", "a\x00b\x00"},
		{"all controls", string([]byte{1, 2, 3, 7, 8, 9, 10, 11, 12, 13, 27, 31, 127})},
		{"invalid utf8", "a\xffb\xfe\xc0\xafc"},
		{"truncated utf8", "é\xc3"},
		{"surrogate half", "\xed\xa0\x80"},
		{"line separators", "a\u2028b\u2029c"},
		{"multibyte", "日本語/ü/😀"},
		{"long path", "/" + strings.Repeat("a", 100_000)},
		{"long multibyte", "/" + strings.Repeat("é", 5_000)},
		{"long controls", strings.Repeat("\x00", 5_000)},
		{"long invalid", strings.Repeat("\xff", 5_000)},
		{"html", "<script>&amp;</script>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := Entry{
				Method: tc.s, Host: tc.s, Path: tc.s, Listener: tc.s,
				Pool: tc.s, Backend: tc.s, RequestID: tc.s, Status: 204,
			}
			r := decodeLine(t, appendEntry(nil, &e))
			want := jsonView(t, tc.s)
			for name, got := range map[string]string{
				"method": r.Method, "host": r.Host, "path": r.Path, "listener": r.Listener,
				"pool": r.Pool, "backend": r.Backend, "request_id": r.RequestID,
			} {
				if got != want {
					t.Errorf("%s = %.80q, want %.80q", name, got, want)
				}
			}
			if r.Status != 204 {
				t.Errorf("status = %d, want 204: a string leaked into another field", r.Status)
			}
		})
	}
}

func TestFieldsRoundTrip(t *testing.T) {
	e := Entry{
		Time:      time.Date(2026, 3, 4, 5, 6, 7, 891_234_567, time.FixedZone("X", 3600)),
		Client:    netip.MustParseAddr("2001:db8::1"),
		Method:    "PATCH",
		Host:      "api.example.com:8443",
		Path:      "/v1/items/42",
		Status:    503,
		BytesIn:   1 << 40,
		BytesOut:  -1,
		Duration:  1234567 * time.Microsecond,
		TTFB:      999 * time.Microsecond,
		Listener:  "public",
		Pool:      "api",
		Backend:   "10.0.0.7:8080",
		Retries:   3,
		Queued:    2*time.Millisecond + 500*time.Nanosecond,
		RequestID: "01J0000000000000000000000",
	}
	r := decodeLine(t, appendEntry(nil, &e))
	want := record{
		Time: "2026-03-04T04:06:07.891Z", Client: "2001:db8::1", Method: "PATCH",
		Host: "api.example.com:8443", Path: "/v1/items/42", Status: 503,
		BytesIn: 1 << 40, BytesOut: -1, DurationMS: 1234.567, TTFBMS: 0.999,
		Listener: "public", Pool: "api", Backend: "10.0.0.7:8080", Retries: 3,
		QueuedMS: 2.001, RequestID: "01J0000000000000000000000",
	}
	if r != want {
		t.Errorf("got\n%+v\nwant\n%+v", r, want)
	}

	// The zero Entry is a valid line too.
	r = decodeLine(t, appendEntry(nil, &Entry{}))
	if r.Time != "0001-01-01T00:00:00.000Z" || r.Client != "" || r.Status != 0 || r.TTFBMS != 0 {
		t.Errorf("zero entry: %+v", r)
	}
}

func TestClientAddress(t *testing.T) {
	tests := []struct {
		addr netip.Addr
		want string
	}{
		{netip.Addr{}, ""},
		{netip.MustParseAddr("192.0.2.1"), "192.0.2.1"},
		{netip.MustParseAddr("::ffff:192.0.2.1"), "::ffff:192.0.2.1"},
		{netip.MustParseAddr("fe80::1%eth0"), "fe80::1%eth0"},
		{netip.MustParseAddr("fe80::1").WithZone("a\"b\n"), "fe80::1%a\"b\n"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			r := decodeLine(t, appendEntry(nil, &Entry{Client: tc.addr}))
			if r.Client != tc.want {
				t.Errorf("client = %q, want %q", r.Client, tc.want)
			}
		})
	}
}

func TestTimeMatchesRFC3339Millis(t *testing.T) {
	const layout = "2006-01-02T15:04:05.000Z07:00"
	for _, tm := range []time.Time{
		{},
		time.Unix(0, 0),
		time.Date(1999, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(2026, 7, 1, 0, 0, 0, 1_000_000, time.FixedZone("W", -7*3600)),
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Now(),
	} {
		got := string(appendTime(nil, tm))
		if want := tm.UTC().Format(layout); got != want {
			t.Errorf("appendTime(%v) = %s, want %s", tm, got, want)
		}
	}
}

func TestMillisThreeDecimals(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0.000"},
		{1, "0.000"},
		{499, "0.000"},
		{500, "0.001"},
		{time.Microsecond, "0.001"},
		{time.Millisecond, "1.000"},
		{1_234_567_890, "1234.568"},
		{-1_500_000, "-1.500"},
		{math.MaxInt64, "9223372036854.776"},
		{math.MinInt64, "-9223372036854.776"},
	}
	for _, tc := range tests {
		if got := string(appendMillis(nil, tc.d)); got != tc.want {
			t.Errorf("appendMillis(%d) = %s, want %s", tc.d, got, tc.want)
		}
	}
}

func TestTruncateCutsAtUTF8Boundary(t *testing.T) {
	tests := []struct {
		name, s, want string
	}{
		{"short", "abc", "abc"},
		{"exact", strings.Repeat("a", maxField), strings.Repeat("a", maxField)},
		{"ascii", strings.Repeat("a", maxField+1), strings.Repeat("a", maxField)},
		// 'a' then 2-byte runes: the rune on the cut (bytes 2047-2048) is dropped.
		{"two-byte", "a" + strings.Repeat("é", maxField), "a" + strings.Repeat("é", (maxField-2)/2)},
		// 3-byte runes: 682 of them fill 2,046 bytes.
		{"three-byte", strings.Repeat("€", maxField), strings.Repeat("€", maxField/3)},
		// A 4-byte rune ending exactly at the limit is kept.
		{"four-byte fits", strings.Repeat("😀", maxField/4+1), strings.Repeat("😀", maxField/4)},
		// Invalid bytes are cut at the limit; appendString replaces them.
		{"invalid", strings.Repeat("\xff", maxField+5), strings.Repeat("\xff", maxField)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := truncate(tc.s, maxField)
			if got != tc.want {
				t.Errorf("truncate: len %d, want len %d", len(got), len(tc.want))
			}
			r := decodeLine(t, appendEntry(nil, &Entry{Path: tc.s}))
			if r.Path != jsonView(t, tc.want) {
				t.Errorf("logged path: len %d, want len %d", len(r.Path), len(jsonView(t, tc.want)))
			}
		})
	}
}

// FuzzAppendEntry: whatever the strings and numbers, a line is one valid
// JSON object with the fixed keys, and every value reads back.
func FuzzAppendEntry(f *testing.F) {
	f.Add("GET", "example.com", "/a", "id", 200, int64(1_500_000), int64(-1))
	f.Add("\"", "\\", "\n\x00\xff", "\u2028", 0, int64(math.MinInt64), int64(math.MaxInt64))
	f.Add(strings.Repeat("é", 2000), "", "\xc3", "", -1, int64(0), int64(0))
	f.Fuzz(func(t *testing.T, method, host, path, id string, status int, d, n int64) {
		e := Entry{
			Time: time.Unix(0, d).UTC(), Method: method, Host: host, Path: path,
			Status: status, BytesIn: n, Duration: time.Duration(d), RequestID: id,
		}
		r := decodeLine(t, appendEntry(nil, &e))
		if r.Method != jsonView(t, method) || r.Host != jsonView(t, host) ||
			r.Path != jsonView(t, path) || r.RequestID != jsonView(t, id) {
			t.Errorf("strings changed: %+v", r)
		}
		if r.Status != status || r.BytesIn != n {
			t.Errorf("numbers changed: %+v", r)
		}
		if want := strconv.FormatFloat(float64(time.Duration(d))/1e6, 'f', 3, 64); math.Abs(r.DurationMS-mustFloat(t, want)) > 0.0011+math.Abs(r.DurationMS)*1e-15 {
			t.Errorf("duration_ms = %v, want about %s", r.DurationMS, want)
		}
	})
}

func mustFloat(t testing.TB, s string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
