package server

import (
	"bytes"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
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

// A tcp listener copies by splice(2) through everything the server puts
// between the socket and the TCP engine (limits.max_conns wraps each client
// connection): 32 MiB through ballast and a splicing echo backend cost this
// process only the test client's own reads and writes.
func TestTCPModeSplices(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echo.Close() })
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	cfg, _ := tcpConfig(t, "{max_conns: 100, idle_timeout: 1h}", "", backendAt(echo.Addr().String()))
	s, _ := start(t, cfg)
	c := dialTCP(t, s)

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
	t.Logf("%d MiB through ballast and back: this process read %.1f MiB, wrote %.1f MiB by read/write calls",
		n>>20, float64(r1-r0)/(1<<20), float64(w1-w0)/(1<<20))
	if r1-r0 > n*3/2 || w1-w0 > n*3/2 {
		t.Fatalf("ballast copied through user space: read %d, wrote %d bytes for %d each way", r1-r0, w1-w0, n)
	}
}
