package main

import (
	"bufio"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"ballast/internal/testutil"
)

// maxRSS is the bound on ballast's peak resident memory while it streams
// gigabytes: bodies must flow through, never be held.
const maxRSS = 100 << 20

// pattern is a pseudo-random block whose length is prime, so a body built by
// repeating it is not aligned with any buffer size: a chunk lost, repeated or
// reordered anywhere changes the checksum.
var pattern = func() []byte {
	b := make([]byte, 65521)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}()

// patternReader produces n bytes of the repeated pattern without holding them.
type patternReader struct {
	off, n int64
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	if rest := r.n - r.off; int64(len(p)) > rest {
		p = p[:rest]
	}
	total := 0
	for len(p) > 0 {
		c := copy(p, pattern[r.off%int64(len(pattern)):])
		p, r.off, total = p[c:], r.off+int64(c), total+c
	}
	return total, nil
}

// patternSum is the byte count and CRC-32 of n pattern bytes.
func patternSum(n int64) string {
	return summarize(&patternReader{n: n})
}

// summarize reads r to the end and returns "COUNT CRC32" (or the read error).
func summarize(r io.Reader) string {
	h := crc32.NewIEEE()
	n, err := io.Copy(h, r)
	if err != nil {
		return fmt.Sprintf("%d bytes, then %v", n, err)
	}
	return fmt.Sprintf("%d %08x", n, h.Sum32())
}

// streamBackend serves POST /upload (answers the body's summary) and
// GET /download?n=N[&chunked=1] (N pattern bytes, with or without Content-Length).
func streamBackend(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/upload":
		w.Header().Set("X-Got-Content-Length", strconv.FormatInt(r.ContentLength, 10))
		w.Header().Set("X-Got-Transfer-Encoding", strings.Join(r.TransferEncoding, ","))
		io.WriteString(w, summarize(r.Body))
	case "/download":
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		}
		io.Copy(w, &patternReader{n: n}) // a write error is the client's, seen there
	default:
		http.NotFound(w, r)
	}
}

// memSampler polls a process's /proc status for its resident memory.
type memSampler struct {
	pid  int
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	maxRSS  int64 // largest VmRSS sampled, bytes
	samples int
}

func startMemSampler(t *testing.T, pid int) *memSampler {
	s := &memSampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss, err := procStatus(pid, "VmRSS"); err == nil {
				s.mu.Lock()
				s.maxRSS = max(s.maxRSS, rss)
				s.samples++
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(s.halt)
	return s
}

// halt stops sampling; it may be called more than once.
func (s *memSampler) halt() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// peak returns the largest VmRSS sampled and the number of samples.
func (s *memSampler) peak() (int64, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxRSS, s.samples
}

// procStatus reads one "kB" field (VmRSS, VmHWM) of /proc/PID/status, in bytes.
func procStatus(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %q: %w", field, value, err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// TestE2EStreamingFlatMemory streams a large upload and a large download
// through the real binary, each with Content-Length and chunked, checks every
// byte arrived (count and CRC-32), and bounds ballast's peak RSS (VmHWM).
// With -short the bodies are 64 MiB instead of 1 GiB.
func TestE2EStreamingFlatMemory(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc/PID/status to measure memory")
	}
	size := int64(1 << 30)
	if testing.Short() {
		size = 64 << 20
	}
	want := patternSum(size)

	backend := testutil.NewBackend(t, "blob", streamBackend)
	dir := t.TempDir()
	listen := testutil.FreeAddr(t)
	writeFile(t, filepath.Join(dir, "ballast.yaml"), httpConfig(listen, backend.Addr()))
	p := startBallast(t, dir, "run", "-c", "ballast.yaml")
	p.waitListening(listen)
	base := "http://" + listen
	idle, err := procStatus(p.pid(), "VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	mem := startMemSampler(t, p.pid())
	c := testutil.Client()
	c.Timeout = 5 * time.Minute // a bound, not an expectation: see the timings logged

	for _, tc := range []struct {
		name string
		run  func() (string, error)
	}{
		{"upload with Content-Length", func() (string, error) {
			return upload(c, base, &patternReader{n: size}, size)
		}},
		{"upload chunked", func() (string, error) {
			return upload(c, base, io.MultiReader(&patternReader{n: size}), -1)
		}},
		{"download with Content-Length", func() (string, error) {
			return download(c, fmt.Sprintf("%s/download?n=%d", base, size), size)
		}},
		{"download chunked", func() (string, error) {
			return download(c, fmt.Sprintf("%s/download?n=%d&chunked=1", base, size), -1)
		}},
	} {
		start := time.Now()
		got, err := tc.run()
		elapsed := time.Since(start)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got != want {
			t.Fatalf("%s: got %q, want %q (bytes and CRC-32)", tc.name, got, want)
		}
		rss, _ := mem.peak()
		t.Logf("%s: %d MiB in %v (%.0f MiB/s); ballast peak VmRSS so far %.1f MiB",
			tc.name, size>>20, elapsed.Round(time.Millisecond), float64(size>>20)/elapsed.Seconds(), mib(rss))
	}

	hwm, err := procStatus(p.pid(), "VmHWM")
	if err != nil {
		t.Fatal(err)
	}
	mem.halt()
	rss, samples := mem.peak()
	t.Logf("ballast memory: idle VmRSS %.1f MiB, peak sampled VmRSS %.1f MiB (%d samples), VmHWM %.1f MiB; bound %d MiB",
		mib(idle), mib(rss), samples, mib(hwm), maxRSS>>20)
	if hwm >= maxRSS || rss >= maxRSS {
		t.Errorf("ballast peak RSS %.1f MiB (VmHWM), sampled %.1f MiB: want under %d MiB while streaming",
			mib(hwm), mib(rss), maxRSS>>20)
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// upload POSTs body (length n, or -1 for chunked) and returns the backend's
// summary of what it received, after checking the framing reached it unchanged.
func upload(c *http.Client, base string, body io.Reader, n int64) (string, error) {
	req, err := http.NewRequest(http.MethodPost, base+"/upload", body)
	if err != nil {
		return "", err
	}
	req.ContentLength = n
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	// What reached the backend is framed as the client sent it.
	if got := resp.Header.Get("X-Got-Content-Length"); got != strconv.FormatInt(n, 10) {
		return "", fmt.Errorf("backend got Content-Length %s, want %d", got, n)
	}
	if te := resp.Header.Get("X-Got-Transfer-Encoding"); (n < 0) != (te == "chunked") {
		return "", fmt.Errorf("backend got Transfer-Encoding %q for a body of length %d", te, n)
	}
	return string(b), nil
}

// download GETs url and returns the summary of the body; n is the
// Content-Length expected (-1: none, chunked).
func download(c *http.Client, url string, n int64) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	if resp.ContentLength != n {
		return "", fmt.Errorf("Content-Length %d, want %d", resp.ContentLength, n)
	}
	if n < 0 && (len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked") {
		return "", fmt.Errorf("Transfer-Encoding %q, want chunked", resp.TransferEncoding)
	}
	return summarize(resp.Body), nil
}
