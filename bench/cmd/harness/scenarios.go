package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// metric is one figure a scenario reports.
type metric struct {
	Key, Label string
	Higher     bool // true: higher is better
	Digits     int
	NoRatio    bool // a ratio between proxies means nothing (background load)
}

var (
	mRPS     = metric{"rps", "req/s", true, 0, false}
	mP50     = metric{"p50_ms", "p50 latency, ms", false, 3, false}
	mP99     = metric{"p99_ms", "p99 latency, ms", false, 3, false}
	mCPUReq  = metric{"cpu_us_per_req", "proxy CPU, µs/request", false, 1, false}
	mErrors  = metric{"errors", "errors (socket + non-2xx)", false, 0, false}
	mMiBs    = metric{"mib_per_s", "MiB/s", true, 1, false}
	mCPUMiB  = metric{"cpu_ms_per_mib", "proxy CPU, ms/MiB", false, 2, false}
	mRSSIdle = metric{"rss_idle_mib", "RSS idle, MiB", false, 1, false}
	mRSSConn = metric{"rss_conns_mib", "RSS with idle conns, MiB", false, 1, false}
	mKiBConn = metric{"kib_per_conn", "KiB per idle connection", false, 2, false}
	mConnsOK = metric{"conns_ok", "idle connections held", true, 0, false}
	mOther   = metric{"other_cpu_pct", "other processes' CPU, % of machine", false, 1, true}
)

// scenario is one load pattern, run for every proxy and repetition.
type scenario struct {
	ID, Title string
	Mode      string   // http | tcp | tls: which proxy config
	Kind      string   // wrk | idle | h2load
	Args      []string // load tool arguments before duration and URL
	Path      string
	Metrics   []metric
}

var scenarios = []scenario{
	{ID: "S1", Title: "keep-alive, small responses (wrk -t2 -c64)", Mode: "http", Kind: "wrk",
		Args: []string{"-t2", "-c64"}, Path: "/", Metrics: []metric{mRPS, mP50, mP99, mCPUReq, mErrors, mOther}},
	{ID: "S2", Title: "1,000 connections (wrk -t2 -c1000)", Mode: "http", Kind: "wrk",
		Args: []string{"-t2", "-c1000"}, Path: "/", Metrics: []metric{mRPS, mP99, mErrors, mCPUReq, mOther}},
	{ID: "S3", Title: "new connection per request (wrk -t2 -c64, Connection: close)", Mode: "http", Kind: "wrk",
		Args: []string{"-t2", "-c64", "-H", "Connection: close"}, Path: "/", Metrics: []metric{mRPS, mCPUReq, mP99, mErrors, mOther}},
	{ID: "S4", Title: "1 MiB responses (wrk -t2 -c16 /1m)", Mode: "http", Kind: "wrk",
		Args: []string{"-t2", "-c16"}, Path: "/1m", Metrics: []metric{mMiBs, mCPUMiB, mP99, mErrors, mOther}},
	{ID: "S5", Title: "memory: idle, and with idle keep-alive client connections", Mode: "http", Kind: "idle",
		Metrics: []metric{mRSSIdle, mRSSConn, mKiBConn, mConnsOK}},
	{ID: "S6", Title: "HTTPS + HTTP/2 (h2load -t2 -c64 -m10)", Mode: "tls", Kind: "h2load",
		Args: []string{"-t2", "-c64", "-m10"}, Path: "/", Metrics: []metric{mRPS, mCPUReq, mErrors, mOther}},
	{ID: "S7", Title: "TCP mode, HTTP keep-alive through it (wrk -t2 -c64)", Mode: "tcp", Kind: "wrk",
		Args: []string{"-t2", "-c64"}, Path: "/", Metrics: []metric{mRPS, mP50, mP99, mCPUReq, mErrors, mOther}},
}

func scenarioByID(id string) (scenario, bool) {
	for _, s := range scenarios {
		if s.ID == id {
			if s.Kind == "idle" {
				s.Title = "memory: idle, and with " + formatNum(float64(cfg.idleConns), 0) + " idle keep-alive client connections"
			}
			return s, true
		}
	}
	return scenario{}, false
}

// runResult is one proxy's run of one scenario.
type runResult struct {
	Scenario string             `json:"scenario"`
	Proxy    string             `json:"proxy"`
	Rep      int                `json:"rep"`
	Position int                `json:"position"` // 1..3: its place in this repetition's order
	Started  time.Time          `json:"started"`
	Metrics  map[string]float64 `json:"metrics,omitempty"`
	Detail   map[string]float64 `json:"detail,omitempty"` // raw counters behind the metrics
	Error    string             `json:"error,omitempty"`
	Output   string             `json:"output,omitempty"` // the load tool's report
}

func (r runResult) line(sc scenario) string {
	s := fmt.Sprintf("[%s rep %d #%d] %-7s", r.Scenario, r.Rep, r.Position, r.Proxy)
	if r.Error != "" {
		return s + " FAILED: " + r.Error
	}
	for _, m := range sc.Metrics {
		s += fmt.Sprintf("  %s=%s", m.Key, formatNum(r.Metrics[m.Key], m.Digits))
	}
	return s
}

func url(sc scenario) string {
	if sc.Mode == "tls" {
		return "https://" + proxyAddr + sc.Path
	}
	return "http://" + proxyAddr + sc.Path
}

// runOne starts the proxy fresh, measures one scenario, and stops it.
func runOne(sc scenario, px proxy, rep, pos int) runResult {
	r := runResult{Scenario: sc.ID, Proxy: px.name, Rep: rep, Position: pos, Started: time.Now().UTC(),
		Metrics: map[string]float64{}, Detail: map[string]float64{}}
	argv, err := px.argv(sc.Mode)
	if err != nil {
		r.Error = "skipped: " + err.Error()
		return r
	}
	tag := fmt.Sprintf("%s-rep%d-%s", sc.ID, rep, px.name)
	p, err := startProc(px.name, filepath.Join(cfg.work, "logs", tag+".log"), argv, proxyEnv())
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer func() {
		p.stop(5 * time.Second)
		waitPortFree(3 * time.Second)
		time.Sleep(500 * time.Millisecond)
	}()
	check := url(sc)
	if sc.Mode == "tcp" || sc.Kind == "idle" {
		check = "http://" + proxyAddr + "/"
	}
	if err := waitReady(p, check, 15*time.Second); err != nil {
		r.Error = "did not start: " + err.Error()
		return r
	}
	switch sc.Kind {
	case "wrk", "h2load":
		err = measureLoad(sc, p, tag, &r)
	case "idle":
		err = measureIdle(p, tag, &r)
	default:
		err = fmt.Errorf("unknown scenario kind %q", sc.Kind)
	}
	if err == nil && p.exited() {
		err = fmt.Errorf("proxy exited during the run: %v: %s", p.err, p.logTail(5))
	}
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

func loadArgv(sc scenario, seconds int) []string {
	if sc.Kind == "h2load" {
		return append(append([]string{"h2load"}, sc.Args...), "-D", strconv.Itoa(seconds), url(sc))
	}
	return append(append([]string{"wrk"}, sc.Args...), "-d"+strconv.Itoa(seconds)+"s", "--latency", url(sc))
}

func measureLoad(sc scenario, p *proc, tag string, r *runResult) error {
	limit := time.Duration(cfg.duration+30) * time.Second
	if cfg.warmup > 0 {
		if _, _, err := runTool(tag+"-warmup", loadArgv(sc, cfg.warmup), limit); err != nil {
			return fmt.Errorf("warm-up: %v", err)
		}
	}
	m0, o0, t0, start := machineBusyTicks(), originTicks(), cpuTicks(p.pid()), time.Now()
	out, toolCPU, err := runTool(tag, loadArgv(sc, cfg.duration), limit)
	m1, o1, t1, elapsed := machineBusyTicks(), originTicks(), cpuTicks(p.pid()), time.Since(start)
	r.Output = out
	if err != nil {
		return err
	}
	cpuUS := float64(t1-t0) * 1e6 / float64(clkTck)
	r.Detail["cpu_ticks"] = float64(t1 - t0)
	r.Detail["clk_tck"] = float64(clkTck)
	r.Detail["origin_cpu_ticks"] = float64(o1 - o0)
	r.Detail["client_cpu_s"] = toolCPU.Seconds()
	// Whatever else ran: the machine's busy time minus proxy, origins and client.
	other := float64(m1-m0-(t1-t0)-(o1-o0))/float64(clkTck) - toolCPU.Seconds()
	r.Metrics["other_cpu_pct"] = max(0, 100*other/(elapsed.Seconds()*float64(runtime.NumCPU())))
	if sc.Kind == "h2load" {
		h, err := parseH2load(out)
		if err != nil {
			return err
		}
		r.Detail["requests"] = float64(h.Succeeded)
		r.Metrics["rps"] = h.ReqPerSec
		r.Metrics["errors"] = float64(h.Errors)
		if h.Succeeded > 0 {
			r.Metrics["cpu_us_per_req"] = cpuUS / float64(h.Succeeded)
		}
		return nil
	}
	w, err := parseWrk(out)
	if err != nil {
		return err
	}
	r.Detail["requests"] = float64(w.Requests)
	r.Detail["bytes_read"] = w.BytesRead
	r.Detail["socket_errors"] = float64(w.SockErrors)
	r.Detail["non_2xx"] = float64(w.Non2xx)
	r.Metrics["rps"] = w.ReqPerSec
	r.Metrics["p50_ms"] = w.P50ms
	r.Metrics["p99_ms"] = w.P99ms
	r.Metrics["errors"] = float64(w.SockErrors + w.Non2xx)
	r.Metrics["mib_per_s"] = w.BytesPerS / (1 << 20)
	if w.Requests > 0 {
		r.Metrics["cpu_us_per_req"] = cpuUS / float64(w.Requests)
	}
	if w.BytesRead > 0 {
		r.Metrics["cpu_ms_per_mib"] = cpuUS / 1000 / (w.BytesRead / (1 << 20))
	}
	return nil
}

func measureIdle(p *proc, tag string, r *runResult) error {
	time.Sleep(time.Second)
	idle, n := rssKiB(p.pid())
	r.Detail["processes"] = float64(n)
	ready := filepath.Join(cfg.work, "logs", tag+".ready")
	argv := []string{cfg.idleconns, "-addr", proxyAddr, "-n", strconv.Itoa(cfg.idleConns), "-hold", "120s", "-ready", ready}
	ic, err := startProc("idleconns", filepath.Join(cfg.work, "logs", tag+".idleconns.log"), argv, os.Environ())
	if err != nil {
		return err
	}
	defer ic.stop(2 * time.Second)
	deadline := time.Now().Add(90 * time.Second)
	var status string
	for {
		if b, err := os.ReadFile(ready); err == nil && strings.HasSuffix(string(b), "\n") {
			status = strings.TrimSpace(string(b))
			break
		}
		if ic.exited() {
			return fmt.Errorf("idleconns exited: %v: %s", ic.err, ic.logTail(3))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("idleconns not ready after 90s: %s", ic.logTail(3))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // let the proxy settle with the connections idle
	with, _ := rssKiB(p.pid())
	var ok, failed int
	fmt.Sscanf(status, "ok=%d failed=%d", &ok, &failed)
	r.Output = status
	r.Detail["rss_idle_kib"] = float64(idle)
	r.Detail["rss_conns_kib"] = float64(with)
	r.Detail["conns_failed"] = float64(failed)
	r.Metrics["rss_idle_mib"] = float64(idle) / 1024
	r.Metrics["rss_conns_mib"] = float64(with) / 1024
	r.Metrics["conns_ok"] = float64(ok)
	if ok > 0 {
		r.Metrics["kib_per_conn"] = float64(with-idle) / float64(ok)
	}
	if ok == 0 {
		return fmt.Errorf("no idle connection could be opened: %s", status)
	}
	return nil
}
