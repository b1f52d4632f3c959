package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// wrkResult is what the harness takes from wrk's report.
type wrkResult struct {
	Requests   int64   // "N requests in ..."
	BytesRead  float64 // "..., 1.21GB read"
	ReqPerSec  float64 // "Requests/sec:"
	BytesPerS  float64 // "Transfer/sec:"
	P50ms      float64 // --latency "50%" line
	P99ms      float64 // --latency "99%" line
	SockErrors int64   // connect + read + write + timeout
	Non2xx     int64   // "Non-2xx or 3xx responses:"
}

var (
	reRequests = regexp.MustCompile(`(?m)^\s*(\d+) requests in [^,]+,\s*([0-9.]+\s*[KMGTP]?B) read`)
	reRPS      = regexp.MustCompile(`(?m)^Requests/sec:\s*([0-9.]+)`)
	reTransfer = regexp.MustCompile(`(?m)^Transfer/sec:\s*([0-9.]+\s*[KMGTP]?B)`)
	reSockErr  = regexp.MustCompile(`(?m)^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	reNon2xx   = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses: (\d+)`)
	rePct      = regexp.MustCompile(`(?m)^\s*(50|75|90|99)(?:\.0+)?%\s+([0-9.]+)\s*(us|ms|s|m|h)\s*$`)
)

// parseWrk reads wrk's text output (run with --latency).
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m := reRequests.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk output has no \"requests in\" line")
	}
	r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	var err error
	if r.BytesRead, err = parseBytes(m[2]); err != nil {
		return r, err
	}
	if m = reRPS.FindStringSubmatch(out); m == nil {
		return r, fmt.Errorf("wrk output has no Requests/sec line")
	}
	r.ReqPerSec, _ = strconv.ParseFloat(m[1], 64)
	if m = reTransfer.FindStringSubmatch(out); m != nil {
		if r.BytesPerS, err = parseBytes(m[1]); err != nil {
			return r, err
		}
	}
	if m = reSockErr.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.SockErrors += n
		}
	}
	if m = reNon2xx.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	for _, m := range rePct.FindAllStringSubmatch(out, -1) {
		v, err := parseDurationMS(m[2], m[3])
		if err != nil {
			return r, err
		}
		switch m[1] {
		case "50":
			r.P50ms = v
		case "99":
			r.P99ms = v
		}
	}
	return r, nil
}

// parseBytes reads wrk's sizes: "512.00B", "12.5KB", "1.21GB" (powers of 1024).
func parseBytes(s string) (float64, error) {
	s = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "B"))
	mult := 1.0
	if s != "" {
		switch s[len(s)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		case 'P':
			mult = 1 << 50
		}
		if mult != 1 {
			s = strings.TrimSpace(s[:len(s)-1])
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return v * mult, nil
}

// parseDurationMS converts wrk's "450.00us", "1.20ms", "2.00s", "1.00m" to milliseconds.
func parseDurationMS(num, unit string) (float64, error) {
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q", num)
	}
	switch unit {
	case "us":
		return v / 1000, nil
	case "ms":
		return v, nil
	case "s":
		return v * 1000, nil
	case "m":
		return v * 60000, nil
	case "h":
		return v * 3600000, nil
	}
	return 0, fmt.Errorf("bad duration unit %q", unit)
}

// h2Result is what the harness takes from h2load's report.
type h2Result struct {
	ReqPerSec float64 // "finished in 10.00s, 12345.60 req/s, ..."
	Done      int64   // "requests: ... N done"
	Succeeded int64   // 2xx and 3xx
	Errors    int64   // done - succeeded, plus timeouts
}

var (
	reH2Finished = regexp.MustCompile(`(?m)^finished in [^,]+,\s*([0-9.]+) req/s`)
	reH2Requests = regexp.MustCompile(`(?m)^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
)

func parseH2load(out string) (h2Result, error) {
	var r h2Result
	m := reH2Finished.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("h2load output has no \"finished in\" line")
	}
	r.ReqPerSec, _ = strconv.ParseFloat(m[1], 64)
	if m = reH2Requests.FindStringSubmatch(out); m == nil {
		return r, fmt.Errorf("h2load output has no \"requests:\" line")
	}
	n := make([]int64, 8)
	for i := 1; i < len(m); i++ {
		n[i], _ = strconv.ParseInt(m[i], 10, 64)
	}
	r.Done, r.Succeeded = n[3], n[4]
	r.Errors = n[3] - n[4] + n[7]
	return r, nil
}
