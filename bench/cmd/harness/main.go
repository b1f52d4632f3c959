// Command harness benchmarks ballast against HAProxy and nginx on one machine.
// It is driven by bench/run.sh, which installs the tools, builds ballast and
// this program, and passes the settings below; see bench/README.md.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type settings struct {
	ballast, idleconns string // binaries
	work, results      string // dirs
	duration, warmup   int    // seconds
	reps, idleConns    int
	scenarios          []string
	command            string // as the user typed it, for the report
	commit             string // ballast's commit, for the report
}

var (
	cfg      settings
	clkTck   int64 = 100
	notes    []string
	cfgFiles map[string]string
	stream   string // nginx stream module: path for load_module, "static", or "" if none
	origins  []*proc
)

func main() {
	var scen string
	flag.StringVar(&cfg.ballast, "ballast", "bin/ballast", "ballast binary")
	flag.StringVar(&cfg.idleconns, "idleconns", "", "idleconns binary (bench/idleconns)")
	flag.StringVar(&cfg.work, "work", "", "work directory for configs, logs and files (required)")
	flag.StringVar(&cfg.results, "results", "bench/results", "where latest.md/.json/.tsv go")
	flag.IntVar(&cfg.duration, "duration", 10, "seconds per measured run")
	flag.IntVar(&cfg.warmup, "warmup", 2, "seconds of warm-up before each measured run")
	flag.IntVar(&cfg.reps, "reps", 3, "repetitions; proxy order rotates each repetition")
	flag.IntVar(&cfg.idleConns, "idle-conns", 10000, "idle keep-alive connections in S5")
	flag.StringVar(&scen, "scenarios", "S1,S2,S3,S4,S5,S6,S7", "scenarios to run")
	flag.StringVar(&cfg.commit, "commit", "", "ballast's commit, for the report (default: git HEAD)")
	rerender := flag.String("rerender", "", "only rewrite the reports from this latest.json (no benchmark)")
	flag.StringVar(&cfg.command, "command", "bash bench/run.sh", "the command line, for the report")
	flag.Parse()
	if *rerender != "" {
		if err := rerenderReports(*rerender); err != nil {
			fmt.Fprintln(os.Stderr, "harness:", err)
			os.Exit(1)
		}
		return
	}
	if cfg.work == "" || cfg.idleconns == "" {
		fmt.Fprintln(os.Stderr, "harness: -work and -idleconns are required (use bench/run.sh)")
		os.Exit(2)
	}
	for _, s := range strings.Split(scen, ",") {
		if s = strings.TrimSpace(strings.ToUpper(s)); s != "" {
			cfg.scenarios = append(cfg.scenarios, s)
		}
	}
	pgidFile = filepath.Join(cfg.work, "pgids")

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "\nharness: %v: stopping every process it started\n", s)
		stopAll()
		os.Exit(130)
	}()

	if err := run(); err != nil {
		stopAll()
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(1)
	}
	stopAll()
}

func run() error {
	start := time.Now()
	if out, err := exec.Command("getconf", "CLK_TCK").Output(); err == nil {
		if v, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && v > 0 {
			clkTck = v
		}
	}
	for _, a := range append([]string{proxyAddr}, originAddrs...) {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("port %s is not free: %v", a, err)
		}
		ln.Close()
	}
	if err := os.Chmod(cfg.work, 0o755); err != nil { // nginx workers run as nobody
		return err
	}
	for _, d := range []string{"logs", "www", "origin1", "origin2"} {
		if err := os.MkdirAll(filepath.Join(cfg.work, d), 0o755); err != nil {
			return err
		}
	}
	// The 1 MiB file served at /1m.
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte('a' + i%26)
	}
	if err := os.WriteFile(filepath.Join(cfg.work, "www", "1m"), big, 0o644); err != nil {
		return err
	}
	stream = findStreamModule()
	var err error
	if cfgFiles, err = writeProxyConfigs(cfg.work, stream); err != nil {
		return err
	}
	mach := machineInfo()

	// Origins run for the whole benchmark.
	for i, addr := range originAddrs {
		dir := filepath.Join(cfg.work, fmt.Sprintf("origin%d", i+1))
		conf := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(conf, []byte(originConf(dir, addr, filepath.Join(cfg.work, "www"))), 0o644); err != nil {
			return err
		}
		p, err := startProc(fmt.Sprintf("origin%d", i+1), filepath.Join(dir, "stderr.log"),
			[]string{"nginx", "-p", dir + "/", "-e", filepath.Join(dir, "error.log"), "-c", conf}, os.Environ())
		if err != nil {
			return err
		}
		origins = append(origins, p)
		if err := waitReady(p, "http://"+addr+"/", 10*time.Second); err != nil {
			return fmt.Errorf("origin %s: %v", addr, err)
		}
		if err := waitReady(p, "http://"+addr+"/1m", 2*time.Second); err != nil {
			return fmt.Errorf("origin %s /1m: %v", addr, err)
		}
	}
	fmt.Printf("origins up on %s; %d s per run after %d s warm-up, %d repetitions; work dir %s\n",
		strings.Join(originAddrs, " and "), cfg.duration, cfg.warmup, cfg.reps, cfg.work)

	var runs []runResult
	for _, id := range cfg.scenarios {
		sc, ok := scenarioByID(id)
		if !ok {
			notes = append(notes, fmt.Sprintf("unknown scenario %q skipped", id))
			continue
		}
		fmt.Printf("== %s %s\n", sc.ID, sc.Title)
		for rep := 0; rep < cfg.reps; rep++ {
			for pos := 0; pos < len(proxies); pos++ {
				px := proxies[(rep+pos)%len(proxies)]
				r := runOne(sc, px, rep+1, pos+1)
				runs = append(runs, r)
				fmt.Println("  " + r.line(sc))
			}
		}
	}
	finished := time.Now()
	return writeReports(mach, runs, start, finished)
}

// findStreamModule tells how nginx can proxy TCP: "static", a module path, or "".
func findStreamModule() string {
	out, _ := exec.Command("nginx", "-V").CombinedOutput()
	for _, f := range strings.Fields(string(out)) {
		if f == "--with-stream" {
			return "static"
		}
	}
	for _, p := range []string{"/usr/lib/nginx/modules/ngx_stream_module.so", "/usr/share/nginx/modules/ngx_stream_module.so"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// proxy describes one proxy under test.
type proxy struct {
	name string
	argv func(mode string) ([]string, error)
}

var proxies = []proxy{
	{"ballast", func(mode string) ([]string, error) {
		return []string{cfg.ballast, "run", "-c", cfgFiles["ballast/"+mode]}, nil
	}},
	{"haproxy", func(mode string) ([]string, error) {
		if _, err := exec.LookPath("haproxy"); err != nil {
			return nil, fmt.Errorf("haproxy not installed")
		}
		return []string{"haproxy", "-db", "-f", cfgFiles["haproxy/"+mode]}, nil
	}},
	{"nginx", func(mode string) ([]string, error) {
		if mode == "tcp" && stream == "" {
			return nil, fmt.Errorf("nginx has no stream module (Debian: apt-get install libnginx-mod-stream)")
		}
		d := filepath.Join(cfg.work, "nginx", mode)
		return []string{"nginx", "-p", d + "/", "-e", filepath.Join(d, "error.log"), "-c", cfgFiles["nginx/"+mode]}, nil
	}},
}

// proxyEnv is the environment without anything that would limit Go's cores.
func proxyEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "GOMAXPROCS=") && !strings.HasPrefix(e, "GOGC=") && !strings.HasPrefix(e, "GOMEMLIMIT=") {
			env = append(env, e)
		}
	}
	return env
}

var insecureClient = &http.Client{
	Timeout: 2 * time.Second,
	Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
	},
}

// waitReady polls url until it answers 200, p exits, or timeout passes.
func waitReady(p *proc, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("exited at start: %v: %s", p.err, p.logTail(5))
		}
		resp, err := insecureClient.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %v: %v (log: %s)", timeout, last, p.logTail(5))
}

// waitPortFree waits until nothing accepts on proxyAddr any more.
func waitPortFree(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", proxyAddr, 200*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(100 * time.Millisecond)
	}
}

// runTool runs a load generator to completion (bounded by timeout) and returns
// its output and the CPU time it used.
func runTool(name string, argv []string, timeout time.Duration) (string, time.Duration, error) {
	logPath := filepath.Join(cfg.work, "logs", name+".out")
	p, err := startProc(name, logPath, argv, os.Environ())
	if err != nil {
		return "", 0, err
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.stop(2 * time.Second)
		b, _ := os.ReadFile(logPath)
		return string(b), 0, fmt.Errorf("%s did not finish within %v", argv[0], timeout)
	}
	p.stop(time.Second)
	b, _ := os.ReadFile(logPath)
	if p.err != nil {
		return string(b), 0, fmt.Errorf("%s: %v: %s", argv[0], p.err, p.logTail(3))
	}
	var cpu time.Duration
	if ps := p.cmd.ProcessState; ps != nil {
		cpu = ps.UserTime() + ps.SystemTime()
	}
	return string(b), cpu, nil
}
