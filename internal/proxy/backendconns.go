package proxy

import (
	"bufio"
	"net"
	"sync"
	"time"
)

// backendReadBuf is the read buffer of one connection to a backend: big enough
// for any response header block ballast accepts, and for small bodies whole.
const backendReadBuf = 16 << 10

// bconn is one keep-alive connection to a backend, owned by one exchange at a
// time and parked in its backend's idle set in between.
type bconn struct {
	c        net.Conn
	br       *bufio.Reader
	idleFrom time.Time // when it was parked
	reused   bool      // it served an exchange before this one
	rd       readDeadline
	pk       *peeker // checks it for a close or stray bytes before reuse
}

// idleConns keeps the idle keep-alive connections to one backend. get and put
// are non-blocking channel operations: no lock of ours on the request path,
// and a connection is handed from one exchange to the next without copying.
type idleConns struct {
	ch chan *bconn
}

func newIdleConns() *idleConns { return &idleConns{ch: make(chan *bconn, idlePerBackend)} }

// get returns an idle connection that has not been idle longer than maxIdle,
// or nil. Connections idle too long are closed on the way.
func (p *idleConns) get(now time.Time, maxIdle time.Duration) *bconn {
	for {
		select {
		case bc := <-p.ch:
			if maxIdle > 0 && now.Sub(bc.idleFrom) > maxIdle {
				bc.c.Close()
				continue
			}
			bc.reused = true
			return bc
		default:
			return nil
		}
	}
}

// put parks bc for reuse, or closes it when the set is full.
func (p *idleConns) put(bc *bconn, now time.Time) {
	bc.idleFrom = now
	select {
	case p.ch <- bc:
	default:
		bc.c.Close()
	}
}

// closeAll closes every parked connection.
func (p *idleConns) closeAll() {
	for {
		select {
		case bc := <-p.ch:
			bc.c.Close()
		default:
			return
		}
	}
}

// backendConns holds the idle sets of every backend an Upstream has talked to,
// keyed by address. sync.Map reads of existing keys take no lock.
type backendConns struct {
	m sync.Map // addr → *idleConns
}

func (b *backendConns) idle(addr string) *idleConns {
	if v, ok := b.m.Load(addr); ok {
		return v.(*idleConns)
	}
	v, _ := b.m.LoadOrStore(addr, newIdleConns())
	return v.(*idleConns)
}

func (b *backendConns) closeAll() {
	b.m.Range(func(_, v any) bool {
		v.(*idleConns).closeAll()
		return true
	})
}
