package main

import (
	"math"
	"testing"
)

const wrkSample = `Running 2s test @ http://127.0.0.1:18080/1m
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    11.37ms    7.00ms   1.17s    85.53%
    Req/Sec   687.33     71.72   841.00     60.00%
  Latency Distribution
     50%  450.00us
     75%   13.52ms
     90%   17.76ms
     99%    1.20s
  2763 requests in 2.02s, 2.70GB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 5
Requests/sec:   1364.97
Transfer/sec:      1.33GB
`

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9*math.Max(1, math.Abs(b)) }

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(wrkSample)
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{Requests: 2763, BytesRead: 2.70 * (1 << 30), ReqPerSec: 1364.97, BytesPerS: 1.33 * (1 << 30),
		P50ms: 0.45, P99ms: 1200, SockErrors: 10, Non2xx: 5}
	if r.Requests != want.Requests || r.SockErrors != want.SockErrors || r.Non2xx != want.Non2xx ||
		!near(r.BytesRead, want.BytesRead) || !near(r.ReqPerSec, want.ReqPerSec) || !near(r.BytesPerS, want.BytesPerS) ||
		!near(r.P50ms, want.P50ms) || !near(r.P99ms, want.P99ms) {
		t.Fatalf("got %+v\nwant %+v", r, want)
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:18080 Connection refused\n"); err == nil {
		t.Fatal("want an error for output without results")
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]float64{"512.00B": 512, "12.50KB": 12.5 * 1024, "4.65MB": 4.65 * (1 << 20), "1.00TB": 1 << 40} {
		got, err := parseBytes(in)
		if err != nil || !near(got, want) {
			t.Errorf("parseBytes(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

func TestParseH2load(t *testing.T) {
	out := `finished in 2.01s, 13257.00 req/s, 536.40KB/s
requests: 26514 total, 27154 started, 26514 done, 26500 succeeded, 14 failed, 14 errored, 2 timeout
`
	r, err := parseH2load(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.ReqPerSec != 13257 || r.Done != 26514 || r.Succeeded != 26500 || r.Errors != 16 {
		t.Fatalf("got %+v", r)
	}
}

func TestSummarize(t *testing.T) {
	med, lo, hi := summarize([]float64{3, 1, 2})
	if med != 2 || lo != 1 || hi != 3 {
		t.Fatalf("got %v %v %v", med, lo, hi)
	}
	if s := formatNum(1234567.891, 1); s != "1,234,567.9" {
		t.Fatalf("formatNum: %s", s)
	}
}
