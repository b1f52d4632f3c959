package main

import (
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{
		{50, 50 * time.Millisecond},
		{90, 90 * time.Millisecond},
		{99, 99 * time.Millisecond},
		{99.9, 100 * time.Millisecond},
		{100, 100 * time.Millisecond},
		{0.5, 1 * time.Millisecond},
	} {
		if got := percentile(s, c.p); got != c.want {
			t.Errorf("percentile(1..100 ms, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(empty) = %v, want 0", got)
	}
	one := []time.Duration{7 * time.Millisecond}
	if got := percentile(one, 99); got != 7*time.Millisecond {
		t.Errorf("percentile(one value, 99) = %v", got)
	}
	// 10 values: p99 is the largest, p50 the 5th.
	ten := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if percentile(ten, 50) != 5 || percentile(ten, 99) != 10 || percentile(ten, 90) != 9 {
		t.Errorf("percentile(1..10): p50 %v p90 %v p99 %v", percentile(ten, 50), percentile(ten, 90), percentile(ten, 99))
	}
}

func TestSummaryUnsortedInput(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var d []time.Duration
	for _, i := range rng.Perm(1000) {
		d = append(d, time.Duration(i+1)*time.Millisecond)
	}
	s := summary(d)
	want := Summary{Count: 1000, P50Ms: 500, P90Ms: 900, P99Ms: 990, MaxMs: 1000, MeanMs: 500.5}
	if s != want {
		t.Errorf("summary = %+v, want %+v", s, want)
	}
	if (summary(nil) != Summary{}) {
		t.Errorf("summary(nil) = %+v, want zero", summary(nil))
	}
}

func TestSummarizeClassesAndErrors(t *testing.T) {
	outs := []outcome{
		{class: classShort, latency: 5 * time.Millisecond},
		{class: classShort, latency: 7 * time.Millisecond},
		{class: classLong, latency: 300 * time.Millisecond},
		{class: classShort, latency: time.Millisecond, errKind: "502"},
		{class: classUnknown, latency: time.Millisecond, errKind: "503"},
		{class: classLong, latency: 15 * time.Second, errKind: errTransport, errText: "timeout"},
		{class: classLong, latency: 15 * time.Second, errKind: errTransport, errText: "timeout"},
		{class: classShort, errKind: errDropped},
		{class: classShort, latency: 2 * time.Millisecond, errKind: "404"},
	}
	r := summarize(outs, 2*time.Second, shapeClasses["a"])
	if r.Scheduled != 9 || r.OK != 3 || r.ErrorsTotal != 6 {
		t.Fatalf("scheduled %d ok %d errors %d, want 9 3 6", r.Scheduled, r.OK, r.ErrorsTotal)
	}
	if r.OKRate != 1.5 || r.SentRate != 4.5 {
		t.Errorf("ok_rate %v sent_rate %v, want 1.5 4.5", r.OKRate, r.SentRate)
	}
	if c := r.Classes[classShort]; c.Count != 2 || c.P50Ms != 5 || c.MaxMs != 7 {
		t.Errorf("short = %+v", c)
	}
	if c := r.Classes[classLong]; c.Count != 1 || c.P99Ms != 300 {
		t.Errorf("long = %+v", c)
	}
	wantErr := map[string]int{"502": 1, "503": 1, "404": 1, errTransport: 2, errDropped: 1}
	if len(r.Errors) != len(wantErr) {
		t.Errorf("errors = %v, want %v", r.Errors, wantErr)
	}
	for k, v := range wantErr {
		if r.Errors[k] != v {
			t.Errorf("errors[%s] = %d, want %d", k, r.Errors[k], v)
		}
	}
	if g := r.Gateway; g["502"] != 1 || g["503"] != 1 || g["504"] != 0 {
		t.Errorf("gateway = %v", g)
	}
	if r.ErrorsByClass[classLong][errTransport] != 2 || r.ErrorsByClass[classUnknown]["503"] != 1 {
		t.Errorf("errors_by_class = %v", r.ErrorsByClass)
	}
	if len(r.TransportSamples) != 1 || r.TransportSamples[0] != "timeout" {
		t.Errorf("transport samples = %v", r.TransportSamples)
	}
	// Both classes are always reported, even when empty.
	empty := summarize(nil, time.Second, shapeClasses["a"])
	if _, ok := empty.Classes[classLong]; !ok {
		t.Errorf("empty result lacks the long class: %v", empty.Classes)
	}
}

func TestPickDeployShape(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	n := map[string]int{}
	for range 8000 {
		method, path, class := pick("deploy", rng)
		switch {
		case class == classGet && method == "GET" && path == "/":
		case class == classPost && method == "POST" && path == "/echo":
		default:
			t.Fatalf("pick(deploy) = %s %s %s", method, path, class)
		}
		n[class]++
	}
	if n[classPost] < 850 || n[classPost] > 1150 {
		t.Errorf("post share %d of 8000, want about 1000", n[classPost])
	}
	if _, _, c := pick("a", rng); c != classShort && c != classLong {
		t.Errorf("pick(a) class %s", c)
	}
}

func TestEchoed(t *testing.T) {
	for _, c := range []struct {
		body string
		want bool
	}{
		{`{"length":2048}`, true},
		{`{"length": 2048}` + "\n", true},
		{`{"length":2047}`, false},
		{`{}`, false},
		{`hello`, false},
	} {
		if got := echoed([]byte(c.body), 2048); got != c.want {
			t.Errorf("echoed(%q) = %v", c.body, got)
		}
	}
}

func TestWriteRaw(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000)
	outs := []outcome{
		{sched: t0.Add(2 * time.Millisecond), class: classPost, latency: 3 * time.Millisecond, errKind: "502"},
		{sched: t0.Add(1500 * time.Microsecond), class: classGet, latency: 1250 * time.Microsecond},
	}
	path := t.TempDir() + "/raw.tsv"
	if err := writeRaw(path, outs); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "sched_unix_ms\tclass\tlatency_ms\terror\n" +
		"1700000000001.500\tget\t1.25\t\n" +
		"1700000000002.000\tpost\t3.00\t502\n"
	if string(b) != want {
		t.Errorf("raw file:\n%s\nwant:\n%s", b, want)
	}
}
