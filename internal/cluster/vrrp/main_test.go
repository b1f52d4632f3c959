package vrrp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv, when set in the environment, turns the test binary into one
// VRRP node (runHelper) instead of running tests. The namespace tests start
// it under `ip netns exec`, so its sockets live in the node's namespace and
// a SIGKILL is a real crash.
const helperEnv = "BALLAST_VRRP_TEST_HELPER"

// helperSpec is the helper's configuration, passed as JSON in helperEnv.
type helperSpec struct {
	Name      string // answered to TCP clients, so a client sees who holds the VIP
	Interface string
	VRID      int
	Priority  int
	AdvertMS  int      // advertisement interval in milliseconds
	VIPs      []string // prefixes
	Peers     []string // unicast peers
	Preempt   bool
	Unhealthy bool // start unhealthy
	TCPPort   int  // port of the hello server on 0.0.0.0
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(runHelper(spec))
	}
	os.Exit(m.Run())
}

// runHelper runs one speaker until "stop" on stdin, stdin's end or SIGTERM.
// It prints "state NAME UNIXNANO" on every state change, "stopping
// UNIXNANO" when it begins a graceful stop and "exited ERR" at the end;
// "healthy" and "unhealthy" on stdin call SetHealthy.
func runHelper(specJSON string) int {
	var hs helperSpec
	if err := json.Unmarshal([]byte(specJSON), &hs); err != nil {
		fmt.Fprintln(os.Stderr, "helper spec:", err)
		return 2
	}
	cfg := Config{
		Interface:      hs.Interface,
		VRID:           hs.VRID,
		Priority:       hs.Priority,
		AdvertInterval: time.Duration(hs.AdvertMS) * time.Millisecond,
		Preempt:        hs.Preempt,
		OnStateChange: func(s State) {
			fmt.Printf("state %s %d\n", s, time.Now().UnixNano())
		},
	}
	for _, v := range hs.VIPs {
		cfg.VirtualIPs = append(cfg.VirtualIPs, netip.MustParsePrefix(v))
	}
	for _, p := range hs.Peers {
		cfg.UnicastPeers = append(cfg.UnicastPeers, netip.MustParseAddr(p))
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sp, err := New(cfg, log.With("node", hs.Name))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	sp.SetHealthy(!hs.Unhealthy)

	ln, err := net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", hs.TCPPort))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, hs.Name)
			c.Close()
		}
	}()

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			switch strings.TrimSpace(sc.Text()) {
			case "healthy":
				sp.SetHealthy(true)
			case "unhealthy":
				sp.SetHealthy(false)
			case "stop":
				fmt.Printf("stopping %d\n", time.Now().UnixNano())
				cancel()
				return
			}
		}
		cancel() // the test went away
	}()
	err = sp.Run(ctx)
	fmt.Printf("exited %v\n", err)
	if err != nil {
		return 1
	}
	return 0
}
