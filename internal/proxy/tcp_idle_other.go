//go:build !linux

package proxy

import (
	"io"
	"net"
	"sync/atomic"
	"time"
)

// traffic is when a byte was last read from either connection. Without
// splice(2) io.Copy copies through user space anyway, so counting there costs
// nothing the copy did not already pay.
type traffic struct{ last atomic.Int64 } // UnixNano

func (t *traffic) start() { t.last.Store(time.Now().UnixNano()) }

// source returns what the copy from c reads: c, noting the time of each read.
func (w *idleWatch) source(c net.Conn) io.Reader {
	if w == nil {
		return c
	}
	return stampReader{c, &w.traffic.last}
}

// quiet returns how long no byte has been read from either connection.
func (w *idleWatch) quiet() time.Duration {
	return time.Duration(time.Now().UnixNano() - w.traffic.last.Load())
}

// stampReader notes the time of every read that returned bytes.
type stampReader struct {
	c    net.Conn
	last *atomic.Int64
}

func (r stampReader) Read(p []byte) (int, error) {
	n, err := r.c.Read(p)
	if n > 0 {
		r.last.Store(time.Now().UnixNano())
	}
	return n, err
}
