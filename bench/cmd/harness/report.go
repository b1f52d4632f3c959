package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

type machine struct {
	Nproc   string `json:"nproc"`
	CPU     string `json:"cpu"`
	Kernel  string `json:"kernel"`
	Nginx   string `json:"nginx"`
	HAProxy string `json:"haproxy"`
	Wrk     string `json:"wrk"`
	H2load  string `json:"h2load"`
	Go      string `json:"go"`
	Ballast string `json:"ballast"`
	Commit  string `json:"commit"`
	NoFile  string `json:"nofile"`
	LoadAvg string `json:"loadavg_at_start"`
}

// loadAvg is the 1-, 5- and 15-minute load average: other work on the machine skews the figures.
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// firstLine runs argv and returns the first non-empty line of its output.
func firstLine(argv ...string) string {
	out, _ := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return "?"
}

func machineInfo() machine {
	m := machine{
		Nproc:   firstLine("nproc"),
		Kernel:  firstLine("uname", "-r"),
		Nginx:   strings.TrimPrefix(firstLine("nginx", "-v"), "nginx version: "),
		HAProxy: firstLine("haproxy", "-v"),
		Wrk:     firstLine("wrk", "-v"),
		H2load:  firstLine("h2load", "--version"),
		Go:      firstLine("go", "version"),
		Ballast: firstLine(cfg.ballast, "version"),
		Commit:  firstLine("git", "rev-parse", "--short", "HEAD"),
		NoFile:  firstLine("sh", "-c", "ulimit -n"),
		LoadAvg: loadAvg(),
	}
	if cfg.commit != "" {
		m.Commit = cfg.commit
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if i := strings.Index(m.HAProxy, " - "); i > 0 {
		m.HAProxy = m.HAProxy[:i]
	}
	if i := strings.Index(m.Wrk, " Copyright"); i > 0 {
		m.Wrk = m.Wrk[:i]
	}
	return m
}

// loadAtEnd is the load average when the benchmark finished.
var loadAtEnd string

// busyPct is the share of the machine other processes may use before a run is flagged.
const busyPct = 20

// stat is one metric of one proxy over the repetitions.
type stat struct {
	Scenario string    `json:"scenario"`
	Metric   string    `json:"metric"`
	Proxy    string    `json:"proxy"`
	Values   []float64 `json:"values"`
	Median   float64   `json:"median"`
	Min      float64   `json:"min"`
	Max      float64   `json:"max"`
}

func summarize(vals []float64) (med, lo, hi float64) {
	v := append([]float64(nil), vals...)
	sort.Float64s(v)
	n := len(v)
	if n == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	if n%2 == 1 {
		med = v[n/2]
	} else {
		med = (v[n/2-1] + v[n/2]) / 2
	}
	return med, v[0], v[n-1]
}

// formatNum prints v with digits decimals and thousands separators.
func formatNum(v float64, digits int) string {
	if math.IsNaN(v) {
		return "—"
	}
	s := fmt.Sprintf("%.*f", digits, v)
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := b.String()
	if neg {
		out = "-" + out
	}
	if frac != "" {
		out += "." + frac
	}
	return out
}

func ratio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func writeReports(m machine, runs []runResult, start, end time.Time) error {
	names := []string{}
	for _, p := range proxies {
		names = append(names, p.name)
	}
	var stats []stat
	var md strings.Builder
	date := start.Format("2006-01-02")
	fmt.Fprintf(&md, "# ballast vs HAProxy vs nginx — %s\n\n", date)
	fmt.Fprintf(&md, "- **machine**: %s cores (`nproc`), %s, kernel %s, open-file limit %s\n", m.Nproc, m.CPU, m.Kernel, m.NoFile)
	fmt.Fprintf(&md, "- **versions**: %s · %s · %s · %s · %s\n", m.Nginx, m.HAProxy, m.Wrk, m.H2load, m.Go)
	fmt.Fprintf(&md, "- **ballast**: commit %s — `%s`\n", m.Commit, m.Ballast)
	if loadAtEnd == "" {
		loadAtEnd = loadAvg()
	}
	fmt.Fprintf(&md, "- **date**: %s → %s UTC (%s); load average (1, 5, 15 min) before %s, after %s\n", start.UTC().Format("2006-01-02 15:04:05"),
		end.UTC().Format("15:04:05"), end.Sub(start).Round(time.Second), m.LoadAvg, loadAtEnd)
	fmt.Fprintf(&md, "- **command**: `%s` — %d s per measured run after a %d s warm-up; %d repetitions, proxy order rotated each repetition, each proxy restarted for every run\n", cfg.command, cfg.duration, cfg.warmup, cfg.reps)
	fmt.Fprintf(&md, "- proxies on %s, round robin over two nginx origins (%s, 1 worker each); client, proxy and origins share the machine\n\n", proxyAddr, strings.Join(originAddrs, ", "))
	md.WriteString("Cells: median (min–max) over the repetitions. ↑ higher is better, ↓ lower is better. Ratios compare medians.\n\n")
	md.WriteString("| scenario | metric | " + strings.Join(names, " | ") + " | ballast ÷ haproxy | nginx ÷ haproxy |\n")
	md.WriteString("|---|---|" + strings.Repeat("---:|", len(names)+2) + "\n")

	for _, id := range cfg.scenarios {
		sc, ok := scenarioByID(id)
		if !ok {
			continue
		}
		first := true
		for _, mt := range sc.Metrics {
			cells := []string{}
			meds := map[string]float64{}
			for _, name := range names {
				var vals []float64
				for _, r := range runs {
					if r.Scenario == sc.ID && r.Proxy == name && r.Error == "" {
						vals = append(vals, r.Metrics[mt.Key])
					}
				}
				med, lo, hi := summarize(vals)
				meds[name] = med
				if len(vals) > 0 {
					stats = append(stats, stat{sc.ID, mt.Key, name, vals, med, lo, hi})
				}
				switch {
				case len(vals) == 0:
					cells = append(cells, "n/a")
				case len(vals) == 1:
					cells = append(cells, formatNum(med, mt.Digits))
				default:
					cells = append(cells, fmt.Sprintf("%s (%s–%s)", formatNum(med, mt.Digits), formatNum(lo, mt.Digits), formatNum(hi, mt.Digits)))
				}
			}
			arrow := "↓"
			if mt.Higher {
				arrow = "↑"
			}
			label := ""
			if first {
				label = "**" + sc.ID + "** " + sc.Title
				first = false
			}
			r1, r2 := ratio(meds["ballast"], meds["haproxy"]), ratio(meds["nginx"], meds["haproxy"])
			if mt.NoRatio {
				r1, r2 = "—", "—"
			}
			fmt.Fprintf(&md, "| %s | %s %s | %s | %s | %s |\n", label, mt.Label, arrow, strings.Join(cells, " | "), r1, r2)
		}
	}

	// Failed or skipped runs, and anything else worth knowing.
	var problems []string
	for _, r := range runs {
		if r.Error != "" {
			problems = append(problems, fmt.Sprintf("%s rep %d %s: %s", r.Scenario, r.Rep, r.Proxy, oneLine(r.Error)))
		} else if r.Metrics["errors"] > 0 {
			problems = append(problems, fmt.Sprintf("%s rep %d %s: %.0f errors (socket errors %.0f, non-2xx %.0f)",
				r.Scenario, r.Rep, r.Proxy, r.Metrics["errors"], r.Detail["socket_errors"], r.Detail["non_2xx"]))
		}
	}
	// Runs during which other processes took a good part of the machine.
	for _, id := range cfg.scenarios {
		var busy []string
		for _, r := range runs {
			if r.Scenario == id && r.Error == "" && r.Metrics["other_cpu_pct"] > busyPct {
				busy = append(busy, fmt.Sprintf("rep %d %s %.0f %%", r.Rep, r.Proxy, r.Metrics["other_cpu_pct"]))
			}
		}
		if len(busy) > 0 {
			problems = append(problems, fmt.Sprintf("%s: other processes used more than %d %% of the machine during %s: "+
				"throughput and latency of those runs are not comparable (CPU per request holds up better)", id, busyPct, strings.Join(busy, ", ")))
		}
	}
	problems = append(problems, notes...)
	if len(problems) > 0 {
		md.WriteString("\nNotes:\n\n")
		for _, p := range problems {
			md.WriteString("- " + p + "\n")
		}
	}
	md.WriteString("\nRaw numbers: `bench/results/latest.json` (every run, with the load tool's output) and `bench/results/latest.tsv`.\n")

	if err := os.MkdirAll(cfg.results, 0o755); err != nil {
		return err
	}
	text := md.String()
	for _, name := range []string{"latest.md", date + ".md"} {
		if err := os.WriteFile(filepath.Join(cfg.results, name), []byte(text), 0o644); err != nil {
			return err
		}
	}
	doc := map[string]any{
		"machine": m, "command": cfg.command, "duration_s": cfg.duration, "warmup_s": cfg.warmup,
		"repetitions": cfg.reps, "idle_conns": cfg.idleConns, "clk_tck": clkTck,
		"started": start.UTC(), "finished": end.UTC(), "summary": stats, "runs": runs, "notes": notes,
		"loadavg_at_end": loadAtEnd, "scenarios": cfg.scenarios,
	}
	js, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cfg.results, "latest.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	var tsv strings.Builder
	tsv.WriteString("scenario\tproxy\trep\tposition\tmetric\tvalue\terror\n")
	for _, r := range runs {
		if r.Error != "" {
			fmt.Fprintf(&tsv, "%s\t%s\t%d\t%d\t\t\t%s\n", r.Scenario, r.Proxy, r.Rep, r.Position, oneLine(r.Error))
			continue
		}
		keys := make([]string, 0, len(r.Metrics))
		for k := range r.Metrics {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&tsv, "%s\t%s\t%d\t%d\t%s\t%g\t\n", r.Scenario, r.Proxy, r.Rep, r.Position, k, r.Metrics[k])
		}
	}
	if err := os.WriteFile(filepath.Join(cfg.results, "latest.tsv"), []byte(tsv.String()), 0o644); err != nil {
		return err
	}
	fmt.Println()
	fmt.Print(text)
	return nil
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// rerenderReports rewrites latest.md/.tsv (and the dated .md) from a saved
// latest.json, for changes to the report's layout without a new benchmark.
func rerenderReports(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc struct {
		Machine   machine     `json:"machine"`
		Command   string      `json:"command"`
		Duration  int         `json:"duration_s"`
		Warmup    int         `json:"warmup_s"`
		Reps      int         `json:"repetitions"`
		IdleConns int         `json:"idle_conns"`
		ClkTck    int64       `json:"clk_tck"`
		Started   time.Time   `json:"started"`
		Finished  time.Time   `json:"finished"`
		Runs      []runResult `json:"runs"`
		Notes     []string    `json:"notes"`
		LoadAfter string      `json:"loadavg_at_end"`
		Scenarios []string    `json:"scenarios"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	cfg.command, cfg.duration, cfg.warmup, cfg.reps, cfg.idleConns = doc.Command, doc.Duration, doc.Warmup, doc.Reps, doc.IdleConns
	clkTck, notes, loadAtEnd = doc.ClkTck, doc.Notes, doc.LoadAfter
	if loadAtEnd == "" {
		loadAtEnd = "?"
	}
	cfg.scenarios = doc.Scenarios
	if len(cfg.scenarios) == 0 {
		seen := map[string]bool{}
		for _, r := range doc.Runs {
			if !seen[r.Scenario] {
				seen[r.Scenario] = true
				cfg.scenarios = append(cfg.scenarios, r.Scenario)
			}
		}
	}
	return writeReports(doc.Machine, doc.Runs, doc.Started, doc.Finished)
}
