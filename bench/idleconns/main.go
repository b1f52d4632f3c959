// Command idleconns opens N keep-alive HTTP/1.1 connections to a server, sends
// one GET on each and reads the response, then holds them all open and idle so
// the server's memory per idle connection can be measured (bench/run.sh, S5).
//
//	idleconns -addr 127.0.0.1:18080 -n 10000 -hold 30s -ready FILE
//
// When every connection has been tried it writes "ok=N failed=M\n" to FILE (and
// stdout), then holds the connections for -hold or until SIGTERM/SIGINT.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "server address")
	n := flag.Int("n", 10000, "connections")
	par := flag.Int("parallel", 64, "connections being opened at once")
	hold := flag.Duration("hold", 30*time.Second, "how long to hold the connections idle")
	path := flag.String("path", "/", "request path")
	ready := flag.String("ready", "", "file to write \"ok=N failed=M\" to once all are open")
	flag.Parse()

	req := []byte("GET " + *path + " HTTP/1.1\r\nHost: " + *addr + "\r\nUser-Agent: ballast-idleconns\r\n\r\n")
	var (
		mu       sync.Mutex
		conns    = make([]net.Conn, 0, *n)
		ok, fail atomic.Int64
		firstErr atomic.Value
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	open := func() error {
		c, err := net.DialTimeout("tcp", *addr, 10*time.Second)
		if err != nil {
			return err
		}
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Write(req); err != nil {
			c.Close()
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			c.Close()
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != 200 {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if err == nil && resp.Close {
			err = fmt.Errorf("server closed the connection after the response")
		}
		if err != nil {
			c.Close()
			return err
		}
		_ = c.SetDeadline(time.Time{})
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		return nil
	}
	for w := 0; w < *par; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(*n) {
				if err := open(); err != nil {
					fail.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()

	status := fmt.Sprintf("ok=%d failed=%d\n", ok.Load(), fail.Load())
	fmt.Print(status)
	if e, _ := firstErr.Load().(string); e != "" {
		fmt.Println("first error:", e)
	}
	if *ready != "" {
		tmp := *ready + ".tmp"
		if err := os.WriteFile(tmp, []byte(status), 0o644); err == nil {
			_ = os.Rename(tmp, *ready)
		}
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case <-time.After(*hold):
	}
	for _, c := range conns {
		c.Close()
	}
}
