package accesslog

import (
	"io"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

func benchEntry() Entry {
	return Entry{
		Time:      time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC),
		Client:    netip.MustParseAddr("203.0.113.9"),
		Method:    "GET",
		Host:      "www.example.com",
		Path:      "/api/v1/users/12345/orders",
		Status:    200,
		BytesOut:  5120,
		Duration:  3456789,
		TTFB:      2345678,
		Listener:  "https",
		Pool:      "api",
		Backend:   "10.0.3.17:8080",
		RequestID: "4f3c2a1b9e8d7c6b5a493827",
	}
}

// BenchmarkLog is the request path under contention: every P logging at
// once into one Logger whose writer discards. RunParallel's producers never
// block, so the writer gets a CPU only when the scheduler preempts one of
// them (every 10 ms); in between the ring fills within about a millisecond
// and the rest are drops, 30 times cheaper than a kept line. ns/op is
// therefore mostly the drop path; dropped/op says how much. The accepting
// path alone is BenchmarkLogAccepted.
func BenchmarkLog(b *testing.B) {
	l := New(io.Discard, 8192)
	e := benchEntry()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		e := e
		for pb.Next() {
			l.Log(&e)
		}
	})
	b.StopTimer()
	l.Close()
	b.ReportMetric(float64(l.Dropped())/float64(b.N), "dropped/op")
}

// BenchmarkLogAccepted is the accepting path alone: one producer, and the
// clock stops every few thousand lines until the writer has caught up, so
// that nothing is dropped unless the writer is kept off the CPU for
// milliseconds.
func BenchmarkLogAccepted(b *testing.B) {
	const pause = 4096
	l := New(io.Discard, 4*pause)
	e := benchEntry()
	n := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		l.Log(&e)
		if n++; n%pause == 0 {
			b.StopTimer()
			for l.Written()+l.Dropped() != n {
				runtime.Gosched()
			}
			b.StartTimer()
		}
	}
	b.StopTimer()
	l.Close()
	b.ReportMetric(float64(l.Dropped())/float64(b.N), "dropped/op")
}

// BenchmarkLogFull is the drop path alone: the writer is stuck.
func BenchmarkLogFull(b *testing.B) {
	g := &gateWriter{release: make(chan struct{})}
	l := New(g, 64)
	e := benchEntry()
	for range 200 {
		l.Log(&e)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		e := e
		for pb.Next() {
			l.Log(&e)
		}
	})
	b.StopTimer()
	close(g.release)
	l.Close()
}

func BenchmarkAppendEntry(b *testing.B) {
	e := benchEntry()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendEntry(buf[:0], &e)
	}
	b.SetBytes(int64(len(buf)))
}

// writerModes are the ways the writer can wait for lines (see run).
var writerModes = []struct {
	name            string
	poll, idleAfter time.Duration
}{
	{"park", pollInterval, 0},              // Log wakes the writer for every line
	{"poll", pollInterval, 24 * time.Hour}, // the writer never parks
	{"hybrid", pollInterval, idleAfter},    // what New does
}

// warm logs enough lines to fill every slot and the pool, and waits until
// they are written, so that allocation counts show the steady state. It
// returns Written.
func warm(l *Logger, e *Entry, lines int) uint64 {
	for range lines {
		l.Log(e)
	}
	for l.Written()+l.Dropped() != uint64(lines) {
		runtime.Gosched()
	}
	return l.Written()
}

// BenchmarkSparseLog is the request path on a moderately busy server: one
// line every 50 µs from a producer that does not yield in between.
// log-ns/op is the time spent in Log, which in park mode includes waking the
// writer. This measurement chose the hybrid.
func BenchmarkSparseLog(b *testing.B) {
	for _, m := range writerModes {
		b.Run(m.name, func(b *testing.B) {
			l := newLogger(io.Discard, 1024, m.poll, m.idleAfter)
			e := benchEntry()
			warm(l, &e, 2048)
			var inLog time.Duration
			b.ReportAllocs()
			for b.Loop() {
				start := time.Now()
				l.Log(&e)
				inLog += time.Since(start)
				for time.Since(start) < 50*time.Microsecond {
				}
			}
			b.StopTimer()
			l.Close()
			b.ReportMetric(float64(inLog.Nanoseconds())/float64(b.N), "log-ns/op")
		})
	}
}

// BenchmarkLineLatency logs one line into an otherwise quiet Logger and
// waits until the writer has written it: ns/op is how long a line takes to
// reach the output when nothing else is happening.
func BenchmarkLineLatency(b *testing.B) {
	for _, m := range writerModes {
		b.Run(m.name, func(b *testing.B) {
			l := newLogger(io.Discard, 1024, m.poll, m.idleAfter)
			e := benchEntry()
			n := warm(l, &e, 2048)
			b.ReportAllocs()
			for b.Loop() {
				l.Log(&e)
				n++
				for l.Written() != n {
					runtime.Gosched()
				}
			}
			b.StopTimer()
			l.Close()
		})
	}
}
