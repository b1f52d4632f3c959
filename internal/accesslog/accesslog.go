// Package accesslog writes ballast's access log: one JSON object per proxied
// request, one per line.
//
// The request path pays for one line and nothing else. Log encodes the Entry
// into a pooled buffer and pushes it into a bounded lock-free ring (see ring);
// one goroutine per Logger pops lines and writes them out through a 64 KiB
// bufio.Writer. Log never takes a mutex, never waits for the disk and does
// not allocate in steady state: when the ring is full because the output is
// slow, the line is dropped and counted (Dropped) instead.
//
// Entry has no field for request or response headers, so Authorization,
// Cookie and Set-Cookie values cannot reach the log through this package.
// Path carries no query string (where tokens often travel) by contract.
//
// A line looks like this (wrapped here):
//
//	{"time":"2026-01-02T15:04:05.123Z","client":"192.0.2.7","method":"GET",
//	"host":"example.com","path":"/a","status":200,"bytes_in":0,"bytes_out":512,
//	"duration_ms":1.234,"ttfb_ms":0.900,"listener":"web","pool":"app",
//	"backend":"10.0.0.2:8080","retries":0,"queued_ms":0.000,"request_id":"abc"}
package accesslog

import (
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Entry is one request as the access log records it. Strings may alias
// buffers the caller reuses: Log copies what it needs before returning.
//
// Each string is cut to its first 2,048 bytes (at a UTF-8 boundary) and
// escaped; invalid UTF-8 is logged as U+FFFD. Durations are logged in
// milliseconds with three decimals.
type Entry struct {
	Time      time.Time     // when the request began
	Client    netip.Addr    // client address (zero: unknown)
	Method    string        // request method as received
	Host      string        // Host header or :authority as received
	Path      string        // path only, no query string
	Status    int           // status sent to the client (0: none sent)
	BytesIn   int64         // request body bytes read from the client
	BytesOut  int64         // response body bytes written to the client
	Duration  time.Duration // from Time to the last byte sent
	TTFB      time.Duration // from Time to the backend's response header (0: none)
	Listener  string        // name of the listener that accepted the request
	Pool      string        // "" when no route matched
	Backend   string        // address of the backend that answered ("" if none)
	Retries   int           // attempts after the first
	Queued    time.Duration // time spent waiting in the pool's queue
	RequestID string        // the request's X-Request-Id
}

const (
	// DefaultBufferLines is the ring capacity New uses when asked for less
	// than one line.
	DefaultBufferLines = 8192

	// writeBufferSize is the bufio.Writer between the ring and the output.
	writeBufferSize = 64 << 10
	// flushInterval bounds how long a line may wait in the write buffer
	// while the ring never runs empty (it is flushed whenever it does).
	flushInterval = 200 * time.Millisecond
	// drainBatch is how many lines the writer takes between clock reads.
	drainBatch = 256
	// pollInterval is how often a writer that has found the ring empty
	// looks again, while it has seen a line within idleAfter. See run.
	pollInterval = time.Millisecond
	// idleAfter is how long the writer polls without seeing a line before
	// it parks until a Log wakes it.
	idleAfter = 100 * time.Millisecond
	// lineCap is a new encode buffer's capacity; a typical line is 300 to
	// 500 bytes.
	lineCap = 512
	// maxRetained is the largest encode buffer kept for reuse: room for a
	// line with a path at the 2,048-byte cap. Hostile input can make a
	// line ~90 KiB (every field at 2,048 control bytes, six bytes each
	// escaped); keeping such buffers would pin up to that much per slot.
	// With it, a full 8,192-line ring holds at most 32 MiB.
	maxRetained = 4 << 10
)

// Logger writes Entries to an io.Writer from a goroutine of its own. Log may
// be called from any number of goroutines; Close stops the Logger.
type Logger struct {
	ring ring // tail is first, on a cache line of its own

	// sleeping is true while the writer is parked, or about to park, on
	// wake. Producers read it after every push; the writer stores it only
	// around a park (after idleAfter without a line), so the line stays
	// shared and cheap to read.
	sleeping atomic.Bool
	_        [cacheLine - 4]byte

	dropped atomic.Uint64 // written by producers only when they drop
	_       [cacheLine - 8]byte

	written atomic.Uint64 // the writer's, once per flush; read by Written
	_       [cacheLine - 8]byte

	lines sync.Pool // of *line
	// wake has room for one token. Log sends without blocking and only
	// when sleeping is set, so at most one send per park reaches the
	// runtime.
	wake chan struct{}
	quit chan struct{} // closed by Close, after the ring is closed
	done chan struct{} // closed by the writer when it has returned

	poll, idleAfter time.Duration // pollInterval and idleAfter but in tests

	closeOnce sync.Once
	end       uint64 // set by Close before quit is closed: the ring's end
	err       error  // first write error; set by the writer before done
}

// New starts a Logger writing to w through a background goroutine; w must
// not be nil and is written by that goroutine only. bufferLines is the
// capacity of the in-memory ring, rounded up to a power of two (8,192 holds
// about 4 MiB of typical lines; less than one means DefaultBufferLines). When the ring
// is full, Log drops the line and counts it (Dropped) instead of waiting.
// Close stops the goroutine; w itself is left open.
func New(w io.Writer, bufferLines int) *Logger {
	return newLogger(w, bufferLines, pollInterval, idleAfter)
}

// newLogger is New with the writer's polling period and idle threshold;
// tests use idleAfter 0 (park at once, every line wakes the writer) and a
// long idleAfter (never park) to exercise each mode alone.
func newLogger(w io.Writer, bufferLines int, poll, idleAfter time.Duration) *Logger {
	if bufferLines < 1 {
		bufferLines = DefaultBufferLines
	}
	l := &Logger{
		wake: make(chan struct{}, 1),
		quit: make(chan struct{}),
		done: make(chan struct{}),

		poll:      poll,
		idleAfter: idleAfter,
	}
	l.lines.New = func() any { return &line{b: make([]byte, 0, lineCap)} }
	l.ring.init(bufferLines)
	go l.run(w)
	return l
}

// Log records e. It never blocks and never takes a mutex: it encodes e into
// a pooled buffer and pushes that into the ring, or, when the ring is full or
// the Logger closed, drops the line and counts it in Dropped. In steady state
// it does not allocate. e is not retained.
func (l *Logger) Log(e *Entry) {
	if l.ring.full() {
		// Checked first so that an overloaded logger spends nothing on
		// lines it cannot keep.
		l.dropped.Add(1)
		return
	}
	ln := l.lines.Get().(*line)
	ln.b = appendEntry(ln.b[:0], e)
	old, ok := l.ring.push(ln)
	if !ok {
		l.recycle(ln)
		l.dropped.Add(1)
		return
	}
	if old != nil {
		l.recycle(old) // the writer is done with it (see ring.push)
	}
	// The push's store to the slot and this load are sequentially
	// consistent with the writer's store to sleeping and its recheck of
	// the ring (park), so one of the two always sees the other: no line is
	// left behind a parked writer.
	if l.sleeping.Load() {
		select {
		case l.wake <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

// recycle returns ln to the pool unless it grew too large to keep.
func (l *Logger) recycle(ln *line) {
	if cap(ln.b) <= maxRetained {
		l.lines.Put(ln)
	}
}

// Dropped returns how many lines Log dropped because the ring was full (or,
// after Close, because the Logger was closed).
func (l *Logger) Dropped() uint64 { return l.dropped.Load() }

// Written returns how many lines have been handed to the writer and
// accepted by it. Lines lost to a write error count in neither Written nor
// Dropped; the error is returned by Close.
func (l *Logger) Written() uint64 { return l.written.Load() }

// Close writes out every line Log queued before Close was called, stops the
// writer goroutine and returns the first error the writer returned, if any.
// Log after Close drops. Close is safe to call more than once and from any
// goroutine; it does not close the writer passed to New.
func (l *Logger) Close() error {
	l.closeOnce.Do(func() {
		l.end = l.ring.close()
		close(l.quit)
	})
	<-l.done
	return l.err
}
