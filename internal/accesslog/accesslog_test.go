package accesslog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a writer the test can read while the Logger writes.
type syncBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.writes++
	return b.buf.Write(p)
}

func (b *syncBuffer) lines(t testing.TB) []record {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	return parseLines(t, b.buf.Bytes())
}

// parseLines decodes output made of whole lines, each one JSON object with
// no field but those of record. (decodeLine checks a line more strictly but
// is too slow for 100,000 lines under the race detector.)
func parseLines(t testing.TB, data []byte) []record {
	t.Helper()
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("output ends mid-line: %q", data[max(0, len(data)-80):])
	}
	var out []record
	for line := range bytes.Lines(data) {
		var r record
		d := json.NewDecoder(bytes.NewReader(line))
		d.DisallowUnknownFields()
		if err := d.Decode(&r); err != nil {
			t.Fatalf("line %d: %v: %q", len(out)+1, err, line)
		}
		if d.More() {
			t.Fatalf("line %d holds more than one value: %q", len(out)+1, line)
		}
		out = append(out, r)
	}
	return out
}

// produce runs producers goroutines that each log perProducer entries
// tagged BytesIn = producer, BytesOut = sequence number.
func produce(l *Logger, producers, perProducer int) {
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			e := Entry{Method: "GET", Host: "example.com", Path: "/x", Status: 200, BytesIn: int64(p)}
			for i := range perProducer {
				e.BytesOut = int64(i)
				l.Log(&e)
			}
		})
	}
	wg.Wait()
}

// checkOrder fails unless each producer's lines appear in the order it
// logged them, with no duplicates, and returns how many lines each producer
// has.
func checkOrder(t *testing.T, recs []record, producers int) []int {
	t.Helper()
	next := make([]int64, producers) // lowest sequence number still allowed
	count := make([]int, producers)
	for _, r := range recs {
		p := r.BytesIn
		if p < 0 || p >= int64(producers) {
			t.Fatalf("line from unknown producer %d", p)
		}
		if r.BytesOut < next[p] {
			t.Fatalf("producer %d: line %d after line %d", p, r.BytesOut, next[p]-1)
		}
		next[p] = r.BytesOut + 1
		count[p]++
	}
	return count
}

func TestConcurrentProducersLoseNothing(t *testing.T) {
	const producers, perProducer = 8, 10_000
	var out syncBuffer
	l := New(&out, producers*perProducer) // room for everything: nothing may drop
	produce(l, producers, perProducer)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l.Dropped() != 0 {
		t.Errorf("Dropped = %d, want 0", l.Dropped())
	}
	if l.Written() != producers*perProducer {
		t.Errorf("Written = %d, want %d", l.Written(), producers*perProducer)
	}
	recs := out.lines(t)
	if len(recs) != producers*perProducer {
		t.Fatalf("%d lines, want %d", len(recs), producers*perProducer)
	}
	for p, n := range checkOrder(t, recs, producers) {
		if n != perProducer {
			t.Errorf("producer %d: %d lines, want %d", p, n, perProducer)
		}
	}
}

// A ring far smaller than the burst wraps thousands of times while the
// writer races the producers: every line must still be whole, in order per
// producer, and counted exactly once as written or dropped.
func TestSmallRingAccountsForEveryLine(t *testing.T) {
	const producers, perProducer = 8, 10_000
	var out syncBuffer
	l := New(&out, 16)
	produce(l, producers, perProducer)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	recs := out.lines(t)
	checkOrder(t, recs, producers)
	if uint64(len(recs)) != l.Written() {
		t.Errorf("%d lines in the output, Written = %d", len(recs), l.Written())
	}
	if got := l.Written() + l.Dropped(); got != producers*perProducer {
		t.Errorf("Written %d + Dropped %d = %d, want %d", l.Written(), l.Dropped(), got, producers*perProducer)
	}
	t.Logf("written %d, dropped %d", l.Written(), l.Dropped())
}

// gateWriter blocks every Write until release is closed: a disk that has
// stopped answering.
type gateWriter struct {
	release chan struct{}
	out     syncBuffer
}

func (g *gateWriter) Write(p []byte) (int, error) {
	<-g.release
	return g.out.Write(p)
}

func TestSlowWriterNeverBlocksLog(t *testing.T) {
	const producers, perProducer = 4, 25_000
	g := &gateWriter{release: make(chan struct{})}
	l := New(g, 1024)

	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		produce(l, producers, perProducer)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		close(g.release) // unblock them, or the test binary hangs
		<-done
		t.Fatal("Log calls still blocked on a stuck writer after 10s")
	}
	elapsed := time.Since(start)
	t.Logf("%d Log calls against a stuck writer took %v; dropped %d", producers*perProducer, elapsed, l.Dropped())
	if elapsed > time.Second {
		t.Errorf("Log calls took %v with the writer stuck, want well under a second", elapsed)
	}
	if l.Written() != 0 {
		t.Fatalf("Written = %d while the writer is stuck: the gate leaks", l.Written())
	}
	if l.Dropped() == 0 {
		t.Error("Dropped = 0 with a stuck writer and a 1,024-line ring")
	}

	close(g.release)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	recs := g.out.lines(t)
	checkOrder(t, recs, producers)
	if got := uint64(len(recs)); got != l.Written() || got+l.Dropped() != producers*perProducer {
		t.Errorf("%d lines written, Written %d, Dropped %d, want lines = Written and Written+Dropped = %d",
			got, l.Written(), l.Dropped(), producers*perProducer)
	}
	// Everything the ring held when the writer got stuck reaches the output.
	if len(recs) < 1024 {
		t.Errorf("only %d lines written, want at least the ring's 1,024", len(recs))
	}
}

func TestCloseFlushes(t *testing.T) {
	var out syncBuffer
	l := New(&out, 0)
	for i := range 1000 {
		l.Log(&Entry{Status: 200, BytesOut: int64(i)})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	recs := out.lines(t)
	if len(recs) != 1000 || l.Written() != 1000 {
		t.Fatalf("after Close: %d lines, Written %d, want 1000", len(recs), l.Written())
	}
	checkOrder(t, recs, 1)

	l.Log(&Entry{})
	if l.Dropped() != 1 || l.Written() != 1000 {
		t.Errorf("Log after Close: Dropped %d, Written %d, want 1 and 1000", l.Dropped(), l.Written())
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if got := len(out.lines(t)); got != 1000 {
		t.Errorf("%d lines after Log-after-Close, want 1000", got)
	}
}

// Each line must reach the writer on its own, without Close and without
// waiting for the periodic flush, whichever way the writer waits. In park
// mode every line finds the writer parked, so this also hunts for a lost
// wake-up: a parked writer that misses a push would leave the line unwritten.
func TestEveryLineReachesWriterPromptly(t *testing.T) {
	for _, m := range []struct {
		name            string
		poll, idleAfter time.Duration
		lines           int
	}{
		{"park", pollInterval, 0, 5000},
		{"poll", pollInterval, 24 * time.Hour, 200},
		{"hybrid", pollInterval, idleAfter, 200},
	} {
		t.Run(m.name, func(t *testing.T) {
			var out syncBuffer
			l := newLogger(&out, 64, m.poll, m.idleAfter)
			defer l.Close()
			var worst time.Duration
			for i := range m.lines {
				start := time.Now()
				l.Log(&Entry{BytesOut: int64(i)})
				for spin := 0; l.Written() != uint64(i+1); spin++ {
					if time.Since(start) > 5*time.Second {
						t.Fatalf("line %d not written after 5s", i)
					}
					if i%2 == 0 || spin > 1000 {
						time.Sleep(10 * time.Microsecond) // let the writer park
					} else {
						runtime.Gosched()
					}
				}
				worst = max(worst, time.Since(start))
			}
			t.Logf("worst Log-to-write latency over %d lines: %v", m.lines, worst)
			if worst >= flushInterval {
				t.Errorf("worst latency %v, want less than the %v periodic flush", worst, flushInterval)
			}
			if recs := out.lines(t); len(recs) != m.lines {
				t.Errorf("%d lines, want %d", len(recs), m.lines)
			}
		})
	}
}

// A push that lands after the writer found the ring empty but before it
// parked must still wake it (see park). The writer is in park mode, so every
// burst ends with it going to sleep; the gap before each burst's last line
// is varied over the first 10 µs to sweep that window. A lost wake-up leaves
// the burst's last line unwritten until the next Log, which never comes.
func TestNoLostWakeUp(t *testing.T) {
	var out syncBuffer
	l := newLogger(&out, 64, pollInterval, 0)
	defer l.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	var n uint64
	for burst := range 10_000 {
		for range 1 + rng.IntN(3) {
			gap := time.Duration(rng.IntN(10_000))
			for start := time.Now(); time.Since(start) < gap; {
			}
			l.Log(&Entry{})
			n++
		}
		for start := time.Now(); l.Written() != n; {
			if time.Since(start) > 2*time.Second {
				t.Fatalf("burst %d: %d of %d lines written after 2s: lost wake-up", burst, l.Written(), n)
			}
			runtime.Gosched()
		}
	}
}

// The writer must not keep polling a quiet ring: idleAfter after the last
// line it parks, and the next line wakes it.
func TestWriterParksWhenIdle(t *testing.T) {
	var out syncBuffer
	l := newLogger(&out, 64, time.Millisecond, 20*time.Millisecond)
	defer l.Close()
	l.Log(&Entry{})
	start := time.Now()
	for !l.sleeping.Load() {
		if time.Since(start) > 5*time.Second {
			t.Fatal("writer still polling 5s after the last line")
		}
		time.Sleep(time.Millisecond)
	}
	if waited := time.Since(start); waited < 20*time.Millisecond {
		t.Errorf("writer parked after %v, before idleAfter (20ms)", waited)
	}
	l.Log(&Entry{})
	for l.Written() != 2 {
		if time.Since(start) > 5*time.Second {
			t.Fatal("line after parking not written: lost wake-up")
		}
		time.Sleep(time.Millisecond)
	}
}

// failWriter fails its first Write after writing half of it, then works.
type failWriter struct {
	syncBuffer
	failed bool
}

var errDiskFull = errors.New("disk full")

func (f *failWriter) Write(p []byte) (int, error) {
	if !f.failed {
		f.failed = true
		n, _ := f.syncBuffer.Write(p[:len(p)/2])
		return n, errDiskFull
	}
	return f.syncBuffer.Write(p)
}

// A write error is returned by Close but does not stop the log, and the
// half line it left behind is terminated so later lines stay parseable.
func TestWriteErrorReturnedByCloseAndLoggingContinues(t *testing.T) {
	w := &failWriter{}
	l := New(w, 0)
	l.Log(&Entry{BytesOut: 0})
	for l.Written() == 0 && !w.failedNow() {
		time.Sleep(time.Millisecond)
	}
	for i := 1; i <= 10; i++ {
		l.Log(&Entry{BytesOut: int64(i)})
	}
	if err := l.Close(); !errors.Is(err, errDiskFull) {
		t.Fatalf("Close = %v, want %v", err, errDiskFull)
	}
	if l.Written() != 10 {
		t.Errorf("Written = %d, want 10 (the failed line is not counted)", l.Written())
	}
	data := w.buf.Bytes()
	torn, rest, ok := bytes.Cut(data, []byte("\n"))
	if !ok || !bytes.HasPrefix(torn, []byte(`{"time"`)) {
		t.Fatalf("want the torn first line alone on the first line, got %q", data)
	}
	recs := parseLines(t, rest)
	if len(recs) != 10 || recs[0].BytesOut != 1 {
		t.Errorf("after the error: %d lines starting at %d, want 10 starting at 1", len(recs), recs[0].BytesOut)
	}
}

func (f *failWriter) failedNow() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes > 0
}

// A line longer than the 64 KiB write buffer goes to the writer whole.
func TestLineLongerThanWriteBuffer(t *testing.T) {
	var out syncBuffer
	l := New(&out, 0)
	ctl := strings.Repeat("\x01", 10_000) // 2,048 bytes each after truncation, six escaped
	huge := Entry{Method: ctl, Host: ctl, Path: ctl, Listener: ctl, Pool: ctl, Backend: ctl, RequestID: ctl, BytesOut: 1}
	if n := len(appendEntry(nil, &huge)); n <= writeBufferSize {
		t.Fatalf("test line is %d bytes, want more than %d", n, writeBufferSize)
	}
	l.Log(&Entry{BytesOut: 0})
	l.Log(&huge)
	l.Log(&Entry{BytesOut: 2})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	recs := out.lines(t)
	if len(recs) != 3 || l.Written() != 3 {
		t.Fatalf("%d lines, Written %d, want 3", len(recs), l.Written())
	}
	checkOrder(t, recs, 1)
}

func TestLogDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	l := New(io.Discard, 1024)
	defer l.Close()
	e := Entry{
		Time: time.Now(), Method: "GET", Host: "example.com",
		Path: "/some/path/of/typical/length", Status: 200, Pool: "app", Backend: "10.0.0.1:80",
		RequestID: "0123456789abcdef",
	}
	for range 10_000 { // warm the pool and every slot
		l.Log(&e)
	}
	if n := testing.AllocsPerRun(10_000, func() { l.Log(&e) }); n != 0 {
		t.Errorf("Log: %v allocs per call, want 0", n)
	}
}

func Example() {
	w, err := Open("stdout")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer w.Close()
	l := New(w, 8192)
	l.Log(&Entry{
		Time:   time.Date(2026, 1, 2, 15, 4, 5, 123e6, time.UTC),
		Method: "GET", Host: "example.com", Path: "/a", Status: 200, BytesOut: 512,
		Duration: 1234 * time.Microsecond, Listener: "web", Pool: "app", Backend: "10.0.0.2:8080",
	})
	if err := l.Close(); err != nil {
		fmt.Println(err)
	}
	// Output:
	// {"time":"2026-01-02T15:04:05.123Z","client":"","method":"GET","host":"example.com","path":"/a","status":200,"bytes_in":0,"bytes_out":512,"duration_ms":1.234,"ttfb_ms":0.000,"listener":"web","pool":"app","backend":"10.0.0.2:8080","retries":0,"queued_ms":0.000,"request_id":""}
}
