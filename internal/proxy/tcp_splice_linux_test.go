package proxy

import (
	"bytes"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"ballast/internal/balancer"
	"ballast/internal/pool"
)

// procIO returns this process's rchar and wchar from /proc/self/io: the bytes
// it moved through read/write-like system calls. splice(2) is not counted.
func procIO(t *testing.T) (rchar, wchar int64) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no /proc/self/io: %v", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "rchar":
			rchar = n
		case "wchar":
			wchar = n
		}
	}
	return rchar, wchar
}

// wrappedListener hands out connections wrapped the way a listener that
// tracks them does (internal/server's max_conns slots): a struct embedding
// *net.TCPConn.
type wrappedListener struct{ net.Listener }

type wrappedConn struct{ *net.TCPConn }

func (l wrappedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return wrappedConn{c.(*net.TCPConn)}, nil
}

// The proxy copies by splice(2), never through its own memory: 32 MiB through
// it and an echo backend that splices too cost this process only the test
// client's own 32 MiB written and read. A copy through user space would add
// 32 MiB read and written per direction.
func TestTCPProxySplices(t *testing.T) {
	for _, wrap := range []bool{false, true} {
		t.Run("wrapped="+strconv.FormatBool(wrap), func(t *testing.T) {
			be := newTCPBackend(t, "b0", func(_ string, c *net.TCPConn) { io.Copy(c, c) })
			f := newTCPFixture(t, pool.Settings{Algorithm: balancer.AlgRoundRobin}, be.Addr())
			f.p.SetIdleTimeout(time.Hour)
			if wrap {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				go f.p.Serve(wrappedListener{ln})
				t.Cleanup(func() { ln.Close() })
				f.addr = ln.Addr().String()
			}
			c := f.dial(t)
			const n = 32 << 20
			data := bytes.Repeat([]byte("0123456789abcdef"), n/16)
			r0, w0 := procIO(t)
			go func() {
				c.Write(data)
				c.CloseWrite()
			}()
			got, err := io.ReadAll(c.br)
			if err != nil || len(got) != n {
				t.Fatalf("echoed %d bytes, %v", len(got), err)
			}
			r1, w1 := procIO(t)
			t.Logf("%d MiB through the proxy and back: this process read %.1f MiB, wrote %.1f MiB by read/write calls",
				n>>20, float64(r1-r0)/(1<<20), float64(w1-w0)/(1<<20))
			if r1-r0 > n*3/2 || w1-w0 > n*3/2 {
				t.Fatalf("the proxy copied through user space: read %d, wrote %d bytes for %d each way", r1-r0, w1-w0, n)
			}
		})
	}
}
