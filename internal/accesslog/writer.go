package accesslog

import (
	"bufio"
	"io"
	"runtime"
	"sync/atomic"
	"time"
)

// run is the writer goroutine: it moves lines from the ring to w until
// Close.
//
// While the ring has lines it writes them into the bufio.Writer in batches,
// flushing at least every flushInterval. When the ring runs empty it
// flushes, then waits in one of two ways:
//
//   - Polling: while lines have arrived within idleAfter, it sleeps
//     pollInterval on a timer and looks again. Log does nothing for it.
//   - Parked: after idleAfter without a line, it sets sleeping and blocks on
//     wake; the first Log to see sleeping sends a token (non-blocking).
//
// Both ways alone were measured (BenchmarkSparseLog and
// BenchmarkLineLatency on a shared 2-vCPU VM, one line every 50 µs):
//
//   - Parking alone: every Log that finds the writer asleep pays for waking
//     it, a channel send that readies a goroutine and usually a futex wake
//     of an idle thread: 3 to 7 µs per Log, against 0.3 to 0.5 µs to
//     encode and push. A line reaches w 1 to 2 µs after Log.
//   - Polling alone: Log pays nothing extra (0.3 to 1.2 µs measured, the
//     noise of the VM), a poll period's lines go out in one write instead
//     of one write each, but a line takes up to about 2 ms to reach w (Go
//     timers have millisecond resolution here) and an idle process wakes
//     a thousand times a second forever.
//
// The hybrid keeps polling's request-path cost while traffic flows (0.4 to
// 0.7 µs per Log measured) and parking's zero cost while idle; only the
// first line after an idle stretch pays one wake-up. The price is up to
// about 2 ms of latency per line, well inside the 200 ms promise. Either way
// the writer never spins.
func (l *Logger) run(w io.Writer) {
	defer close(l.done)
	s := newSink(w, &l.written)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	lastFlush, lastLine := time.Now(), time.Now()
	for open := true; open; {
		n := l.drain(s, drainBatch)
		now := time.Now()
		if n > 0 {
			lastLine = now
		}
		if n == drainBatch { // more may be waiting: go on, flush now and then
			if now.Sub(lastFlush) >= flushInterval {
				s.flush()
				lastFlush = now
			}
			continue
		}
		if s.flush() {
			lastFlush = now
		}
		if now.Sub(lastLine) < l.idleAfter {
			timer.Reset(l.poll)
			select {
			case <-timer.C:
			case <-l.quit:
				open = false
			}
			continue
		}
		open = l.park()
	}
	// Closed: every position before end was claimed and is published or
	// about to be; wait for the stragglers rather than lose them.
	for l.ring.head != l.end {
		if l.drain(s, drainBatch) == 0 {
			runtime.Gosched()
		}
	}
	s.flush()
	l.err = s.err
}

// drain writes up to max published lines to s and returns how many.
func (l *Logger) drain(s *sink, max int) int {
	for n := range max {
		sl := l.ring.peek()
		if sl == nil {
			return n
		}
		s.write(sl.ln.b)
		if cap(sl.ln.b) > maxRetained {
			sl.ln = nil // the producer that reuses the slot puts nothing back
		}
		l.ring.release(sl)
	}
	return max
}

// park waits for a line or for Close. It returns false on Close.
func (l *Logger) park() bool {
	l.sleeping.Store(true)
	defer l.sleeping.Store(false)
	// Log stores the slot's sequence number, then loads sleeping; park
	// stores sleeping, then loads the sequence number. Go's atomics are
	// sequentially consistent, so at least one of the two sees the
	// other's store: either this check finds the line or Log sends.
	if l.ring.peek() != nil {
		return true
	}
	select {
	case <-l.wake:
		return true
	case <-l.quit:
		return false
	}
}

// sink is the writer goroutine's side of the output: a bufio.Writer that
// counts the lines its writes carried, and survives write errors.
//
// A bufio.Writer stays failed after its first error; sink keeps that error
// for Close, discards the lines that were in the buffer, and starts over, so
// a disk that fills up and is freed again loses only the lines written while
// it was full.
type sink struct {
	bw      *bufio.Writer
	out     trackWriter
	pending uint64         // lines in bw not yet handed to the writer
	written *atomic.Uint64 // the Logger's count
	err     error          // first write error
	torn    bool           // a failed write ended mid-line: start the next with '\n'
}

func newSink(w io.Writer, written *atomic.Uint64) *sink {
	s := &sink{out: trackWriter{w: w}, written: written}
	s.bw = bufio.NewWriterSize(&s.out, writeBufferSize)
	return s
}

// write buffers one line. A line that does not fit in what is left of the
// buffer flushes the buffer first, so that bufio never splits a line across
// two writes unless it is longer than the whole buffer.
func (s *sink) write(p []byte) {
	if len(p) > s.bw.Available() && s.bw.Buffered() > 0 {
		s.flush()
	}
	if s.torn {
		s.torn = false
		_ = s.bw.WriteByte('\n') // an error shows again in Write below
	}
	s.pending++
	if _, err := s.bw.Write(p); err != nil {
		s.fail(err)
		return
	}
	if s.bw.Buffered() == 0 { // longer than the buffer: written directly
		s.commit()
	}
}

// flush hands the buffered lines to the writer and reports whether there
// were any.
func (s *sink) flush() bool {
	if s.bw.Buffered() == 0 {
		return false
	}
	if err := s.bw.Flush(); err != nil {
		s.fail(err)
	} else {
		s.commit()
	}
	return true
}

func (s *sink) commit() {
	s.written.Add(s.pending)
	s.pending = 0
}

func (s *sink) fail(err error) {
	if s.err == nil {
		s.err = err
	}
	s.pending = 0
	s.bw.Reset(&s.out)
	s.torn = s.out.midLine
}

// trackWriter remembers whether the last byte that reached w ended a line.
type trackWriter struct {
	w       io.Writer
	midLine bool
}

func (t *trackWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	if n > 0 {
		t.midLine = p[n-1] != '\n'
	}
	return n, err
}
