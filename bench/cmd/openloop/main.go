// Command openloop sends HTTP requests at Poisson-distributed times (an
// open-loop load: the arrivals do not wait for earlier responses) and reports
// the latency of each class of request separately, with the errors by kind.
//
//	openloop -url http://127.0.0.1:18300 -rate 120 -duration 60s -shape a
//
// Shape a sends 10 % of the requests to /report (long) and 90 % to /api
// (short); shape b sends every request to /work and classifies each by the
// response header X-Slow (1: long, 0: short); shape deploy sends GET / (class
// get) and, one time in eight, POST /echo with a 2 KiB body (class post, whose
// answer must report the 2048 bytes). Latency runs from the time a request was
// scheduled, not from when it was sent, so a sender that falls behind is
// charged for it (no coordinated omission). Requests scheduled in the first
// -warmup are sent but not counted.
//
// The result is one JSON object on stdout; -raw FILE also writes one line per
// measured request (its scheduled time, class, latency and error). It is
// driven by bench/python/run.sh and bench/python/deploy.sh.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Request classes.
const (
	classShort   = "short"
	classLong    = "long"
	classUnknown = "unknown" // shape b, when the response had no X-Slow (e.g. a proxy's 502)
	classGet     = "get"     // shape deploy: GET /
	classPost    = "post"    // shape deploy: POST /echo with a body
)

// postBodySize is the size of shape deploy's POST bodies.
const postBodySize = 2048

// shapeClasses are the classes always present in a shape's result.
var shapeClasses = map[string][]string{
	"a":      {classShort, classLong},
	"b":      {classShort, classLong},
	"deploy": {classGet, classPost},
}

// Error kinds besides status codes.
const (
	errTransport  = "transport"  // no response: connect, reset, timeout, ...
	errDropped    = "dropped"    // not sent: -max-inflight requests were already waiting
	errUnfinished = "unfinished" // still in flight at the hard deadline
	errBadEcho    = "bad_echo"   // shape deploy: a 2xx answer to POST /echo without the body's length
)

type options struct {
	url         string
	rate        float64
	duration    time.Duration
	warmup      time.Duration
	shape       string
	seed        uint64
	maxInflight int
	timeout     time.Duration
	label       string
	raw         string
}

// outcome is one finished (or failed) request.
type outcome struct {
	sched   time.Time // when it was scheduled
	class   string
	latency time.Duration // from the scheduled time to the end of the body
	errKind string        // "" for a 2xx response
	errText string        // transport errors: the message
}

// Summary is the latency distribution of one class's successful requests.
type Summary struct {
	Count  int     `json:"count"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
	MeanMs float64 `json:"mean_ms"`
}

// Result is what openloop prints.
type Result struct {
	Label       string  `json:"label,omitempty"`
	URL         string  `json:"url"`
	Shape       string  `json:"shape"`
	Rate        float64 `json:"rate"`
	DurationS   float64 `json:"duration_s"`
	WarmupS     float64 `json:"warmup_s"`
	Seed        uint64  `json:"seed"`
	MaxInflight int     `json:"max_inflight"`
	TimeoutS    float64 `json:"timeout_s"`

	// Scheduled is the number of requests scheduled in the measured window.
	Scheduled int `json:"scheduled"`
	// OK is how many of them got a 2xx response.
	OK int `json:"ok"`
	// SentRate is Scheduled per second of the measured window; OKRate is OK
	// per second (the achieved rate).
	SentRate float64 `json:"sent_rate"`
	OKRate   float64 `json:"ok_rate"`
	// SendLagP99Ms is how late the sender itself started requests (p99): if
	// it is large, the load generator, not the proxy, was the bottleneck.
	SendLagP99Ms float64 `json:"send_lag_p99_ms"`

	// Classes holds the latency of 2xx responses per class.
	Classes map[string]Summary `json:"classes"`
	// Errors counts the failed requests by kind: a status code ("502"),
	// "transport", "dropped" or "unfinished".
	Errors map[string]int `json:"errors"`
	// ErrorsTotal is the sum of Errors; Gateway the 502, 503 and 504 among them.
	ErrorsTotal int            `json:"errors_total"`
	Gateway     map[string]int `json:"gateway_errors"`
	// ErrorsByClass splits Errors by request class (in shape b an error
	// response usually has no X-Slow: class "unknown").
	ErrorsByClass map[string]map[string]int `json:"errors_by_class"`
	// TransportSamples are a few distinct transport error messages.
	TransportSamples []string `json:"transport_samples,omitempty"`
	// CPUSeconds is the user + system time openloop itself used.
	CPUSeconds float64 `json:"cpu_s"`
	// StartUnixMs is the wall-clock time of scheduled offset 0 (the start of
	// the warm-up), in Unix milliseconds.
	StartUnixMs int64 `json:"start_unix_ms"`
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "http://127.0.0.1:18300", "base URL of the server under test")
	flag.Float64Var(&o.rate, "rate", 120, "mean arrival rate, requests per second (Poisson)")
	flag.DurationVar(&o.duration, "duration", 60*time.Second, "measured time")
	flag.DurationVar(&o.warmup, "warmup", 5*time.Second, "time before the measured window (sent, not counted)")
	flag.StringVar(&o.shape, "shape", "a", "a: /api (90 %) and /report (10 %); b: /work, classified by X-Slow; deploy: GET / and POST /echo (1 in 8)")
	flag.Uint64Var(&o.seed, "seed", 1, "seed for the arrival times and the path choice")
	flag.IntVar(&o.maxInflight, "max-inflight", 2000, "requests in flight at most; more are counted as dropped")
	flag.DurationVar(&o.timeout, "timeout", 15*time.Second, "client timeout per request")
	flag.StringVar(&o.label, "label", "", "a name for the run, copied into the output")
	flag.StringVar(&o.raw, "raw", "", "also write one tab-separated line per measured request to this file: "+
		"scheduled time (Unix ms), class, latency (ms), error kind (empty if 2xx)")
	flag.Parse()
	if err := o.check(); err != nil {
		fmt.Fprintln(os.Stderr, "openloop:", err)
		os.Exit(2)
	}
	// Hard deadline: whatever happens, the process ends.
	hard := o.warmup + o.duration + o.timeout + 30*time.Second
	time.AfterFunc(hard, func() {
		fmt.Fprintf(os.Stderr, "openloop: hard deadline (%v) reached, exiting\n", hard)
		os.Exit(3)
	})
	res, outs := run(o)
	if o.raw != "" {
		if err := writeRaw(o.raw, outs); err != nil {
			fmt.Fprintln(os.Stderr, "openloop:", err)
			os.Exit(1)
		}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "openloop:", err)
		os.Exit(1)
	}
	var b strings.Builder
	for _, c := range shapeClasses[o.shape] {
		fmt.Fprintf(&b, ", %s p50 %.1f p99 %.1f ms", c, res.Classes[c].P50Ms, res.Classes[c].P99Ms)
	}
	fmt.Fprintf(os.Stderr, "openloop %s shape %s: %d scheduled, %d ok (%.1f/s), %d errors %v%s\n",
		o.label, o.shape, res.Scheduled, res.OK, res.OKRate, res.ErrorsTotal, res.Errors, b.String())
}

func (o options) check() error {
	switch {
	case o.rate <= 0 || math.IsInf(o.rate, 0) || math.IsNaN(o.rate):
		return errors.New("-rate must be positive")
	case o.duration <= 0:
		return errors.New("-duration must be positive")
	case o.warmup < 0:
		return errors.New("-warmup must not be negative")
	case shapeClasses[o.shape] == nil:
		return fmt.Errorf("-shape must be a, b or deploy, not %q", o.shape)
	case o.maxInflight < 1:
		return errors.New("-max-inflight must be at least 1")
	case o.timeout <= 0:
		return errors.New("-timeout must be positive")
	case !strings.HasPrefix(o.url, "http://") && !strings.HasPrefix(o.url, "https://"):
		return fmt.Errorf("-url must start with http:// or https://, not %q", o.url)
	}
	return nil
}

func newClient(o options) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{Transport: tr, Timeout: o.timeout}
}

// pick chooses the next request of a shape: its method, path and class.
func pick(shape string, rng *rand.Rand) (method, path, class string) {
	switch shape {
	case "a":
		if rng.Float64() < 0.1 {
			return http.MethodGet, "/report", classLong
		}
		return http.MethodGet, "/api", classShort
	case "deploy":
		if rng.IntN(8) == 0 {
			return http.MethodPost, "/echo", classPost
		}
		return http.MethodGet, "/", classGet
	}
	// Shape b: one path; which requests are slow is drawn here, from the
	// seed, so that every proxy meets the same sequence, and told to the app
	// in a header (X-Work, which no proxy under test looks at); the
	// response's X-Slow confirms it.
	if rng.Float64() < 0.1 {
		return http.MethodGet, "/work", classUnknown + "/slow"
	}
	return http.MethodGet, "/work", classUnknown + "/fast"
}

// run sends the load and summarises it; it also returns every measured
// outcome.
func run(o options) (Result, []outcome) {
	client := newClient(o)
	base := strings.TrimRight(o.url, "/")
	rng := rand.New(rand.NewPCG(o.seed, 0x6f70656e6c6f6f70))
	end := o.warmup + o.duration

	var (
		mu       sync.Mutex
		outcomes []outcome
		lags     []time.Duration
		inflight = make(chan struct{}, o.maxInflight)
		wg       sync.WaitGroup
		pending  = map[int]outcome{} // measured requests in flight: id -> class and schedule
	)
	record := func(out outcome) {
		mu.Lock()
		outcomes = append(outcomes, out)
		mu.Unlock()
	}

	start := time.Now()
	var at time.Duration // scheduled offset of the next request
	for id := 0; ; id++ {
		at += time.Duration(rng.ExpFloat64() / o.rate * float64(time.Second))
		if at >= end {
			break
		}
		method, path, class := pick(o.shape, rng)
		recClass, _, _ := strings.Cut(class, "/") // what a request that gets no answer is counted as
		sched := start.Add(at)
		if d := time.Until(sched); d > 0 {
			time.Sleep(d)
		}
		measured := at >= o.warmup
		if measured {
			lags = append(lags, time.Since(sched))
		}
		select {
		case inflight <- struct{}{}:
		default:
			if measured {
				record(outcome{sched: sched, class: recClass, errKind: errDropped})
			}
			continue
		}
		if measured {
			mu.Lock()
			pending[id] = outcome{sched: sched, class: recClass, errKind: errUnfinished}
			mu.Unlock()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := doRequest(client, method, base+path, class, sched)
			<-inflight
			if measured {
				mu.Lock()
				delete(pending, id)
				outcomes = append(outcomes, out)
				mu.Unlock()
			}
		}()
	}
	window := time.Since(start) - o.warmup
	if window < o.duration {
		window = o.duration
	}

	// Every request ends within the client timeout; allow a little more.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(o.timeout + 5*time.Second):
	}
	mu.Lock()
	defer mu.Unlock()
	for _, out := range pending {
		outcomes = append(outcomes, out)
	}
	res := summarize(outcomes, window, shapeClasses[o.shape])
	res.StartUnixMs = start.UnixMilli()
	res.Label, res.URL, res.Shape, res.Rate = o.label, o.url, o.shape, o.rate
	res.DurationS, res.WarmupS, res.Seed = o.duration.Seconds(), o.warmup.Seconds(), o.seed
	res.MaxInflight, res.TimeoutS = o.maxInflight, o.timeout.Seconds()
	res.SendLagP99Ms = ms(percentile(sortedDurations(lags), 99))
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		res.CPUSeconds = round(time.Duration(ru.Utime.Nano()+ru.Stime.Nano()).Seconds(), 3)
	}
	return res, slices.Clone(outcomes)
}

// writeRaw writes one tab-separated line per outcome, in scheduled order,
// after a header line.
func writeRaw(path string, outs []outcome) error {
	outs = slices.Clone(outs)
	sort.SliceStable(outs, func(i, j int) bool { return outs[i].sched.Before(outs[j].sched) })
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "sched_unix_ms\tclass\tlatency_ms\terror")
	for _, o := range outs {
		fmt.Fprintf(w, "%.3f\t%s\t%.2f\t%s\n",
			float64(o.sched.UnixMicro())/1000, o.class, float64(o.latency)/float64(time.Millisecond), o.errKind)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// postBody is the body of shape deploy's POSTs.
var postBody = bytes.Repeat([]byte("x"), postBodySize)

// doRequest sends one request and reads the whole body.
func doRequest(client *http.Client, method, url, class string, sched time.Time) outcome {
	ctx, cancel := context.WithTimeout(context.Background(), client.Timeout)
	defer cancel()
	var body io.Reader
	if method == http.MethodPost {
		body = bytes.NewReader(postBody)
	}
	work := ""
	if c, w, ok := strings.Cut(class, "/"); ok { // shape b: the request says how long it takes
		class, work = c, w
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return outcome{sched: sched, class: class, latency: time.Since(sched), errKind: errTransport, errText: err.Error()}
	}
	if work != "" {
		req.Header.Set("X-Work", work)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := client.Do(req)
	if err != nil {
		return outcome{sched: sched, class: class, latency: time.Since(sched), errKind: errTransport, errText: err.Error()}
	}
	var got []byte
	if class == classPost {
		got, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	} else {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	resp.Body.Close()
	out := outcome{sched: sched, class: class, latency: time.Since(sched)}
	if class == classUnknown {
		switch resp.Header.Get("X-Slow") {
		case "1":
			out.class = classLong
		case "0":
			out.class = classShort
		}
	}
	switch {
	case err != nil:
		out.errKind, out.errText = errTransport, err.Error()
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		out.errKind = strconv.Itoa(resp.StatusCode)
	case class == classPost && !echoed(got, postBodySize):
		out.errKind, out.errText = errBadEcho, "POST /echo answered "+strconv.Quote(string(got[:min(len(got), 200)]))
	}
	return out
}

// echoed reports whether b is the JSON answer of /echo for a body of n bytes.
func echoed(b []byte, n int) bool {
	var v struct {
		Length *int `json:"length"`
	}
	return json.Unmarshal(b, &v) == nil && v.Length != nil && *v.Length == n
}

// summarize turns the measured outcomes into a Result (without the settings);
// classes are always present in it (count 0 if none).
func summarize(outs []outcome, window time.Duration, classes []string) Result {
	res := Result{
		Scheduled:     len(outs),
		Classes:       map[string]Summary{},
		Errors:        map[string]int{},
		Gateway:       map[string]int{"502": 0, "503": 0, "504": 0},
		ErrorsByClass: map[string]map[string]int{},
	}
	byClass := map[string][]time.Duration{}
	seen := map[string]bool{}
	for _, o := range outs {
		if o.errKind == "" {
			res.OK++
			byClass[o.class] = append(byClass[o.class], o.latency)
			continue
		}
		res.ErrorsTotal++
		res.Errors[o.errKind]++
		if _, ok := res.Gateway[o.errKind]; ok {
			res.Gateway[o.errKind]++
		}
		if res.ErrorsByClass[o.class] == nil {
			res.ErrorsByClass[o.class] = map[string]int{}
		}
		res.ErrorsByClass[o.class][o.errKind]++
		if o.errText != "" && !seen[o.errText] && len(res.TransportSamples) < 5 {
			seen[o.errText] = true
			res.TransportSamples = append(res.TransportSamples, o.errText)
		}
	}
	for _, c := range classes {
		res.Classes[c] = summary(byClass[c]) // always present, count 0 if none
	}
	for c, l := range byClass {
		if _, ok := res.Classes[c]; !ok {
			res.Classes[c] = summary(l)
		}
	}
	if s := window.Seconds(); s > 0 {
		res.SentRate = round(float64(res.Scheduled)/s, 2)
		res.OKRate = round(float64(res.OK)/s, 2)
	}
	return res
}

// summary is the distribution of d (which it sorts).
func summary(d []time.Duration) Summary {
	if len(d) == 0 {
		return Summary{}
	}
	s := sortedDurations(d)
	var sum time.Duration
	for _, v := range s {
		sum += v
	}
	return Summary{
		Count:  len(s),
		P50Ms:  ms(percentile(s, 50)),
		P90Ms:  ms(percentile(s, 90)),
		P99Ms:  ms(percentile(s, 99)),
		MaxMs:  ms(s[len(s)-1]),
		MeanMs: ms(sum / time.Duration(len(s))),
	}
}

func sortedDurations(d []time.Duration) []time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d
}

// percentile is the nearest-rank percentile p (0 < p <= 100) of sorted s:
// the smallest value with at least p % of the values at or below it.
func percentile(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// ms is d in milliseconds, rounded to 0.01 ms.
func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 2) }

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}
