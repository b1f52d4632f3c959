package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"ballast/internal/admin"
	"ballast/internal/config"
	"ballast/internal/metrics"
)

// adminServer is the running admin listener.
type adminServer struct {
	addr string
	ln   net.Listener
	srv  *http.Server
}

// readToken reads an admin token file: its contents, trimmed, not empty.
func readToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("admin.token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("admin.token_file %s is empty", file)
	}
	return tok, nil
}

// loopback reports whether a listen address binds only to the loopback
// interface (127.0.0.0/8, ::1 or localhost); ":9901" binds every interface.
func loopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// startAdmin binds and serves the admin listener of cfg, if any. Without a
// token file it refuses any address but a loopback one: the admin API can
// change what ballast serves.
func (s *Server) startAdmin(cfg *config.Config) (*adminServer, error) {
	ac := cfg.Admin
	if ac == nil {
		return nil, nil
	}
	token := ""
	if ac.TokenFile != "" {
		t, err := readToken(ac.TokenFile)
		if err != nil {
			return nil, err
		}
		token = t
	} else if !loopback(ac.Listen) {
		return nil, fmt.Errorf("admin.listen %s is not a loopback address: the admin API can change what ballast serves, "+
			"so set admin.token_file, or listen on 127.0.0.1 or [::1]", ac.Listen)
	}
	ln, err := s.bindAdmin(ac.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin: cannot listen on %s: %w", ac.Listen, err)
	}
	h := admin.New(control{s}, admin.Options{
		Token:         token,
		Metrics:       s.metrics.Handler(),
		UI:            admin.UI(),
		RemoveTimeout: cfg.ShutdownTimeout.D(),
	})
	a := &adminServer{addr: ac.Listen, ln: ln, srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       clientIdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          nil,
	}}
	s.wg.Go(func() {
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin listener stopped", "err", err)
		}
	})
	s.log.Info("admin listening", "addr", ln.Addr().String(), "token", token != "")
	return a, nil
}

// stop closes the admin listener, giving its requests a moment to finish.
func (a *adminServer) stop() {
	if a == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if a.srv.Shutdown(ctx) != nil {
		a.srv.Close()
	}
}

// AdminAddr returns the admin listener's bound address, or nil.
func (s *Server) AdminAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin == nil {
		return nil
	}
	return s.admin.ln.Addr()
}

// metricsPools is what a metrics scrape reads: the current pools.
func (s *Server) metricsPools() []metrics.Pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]metrics.Pool, 0, len(s.ups))
	for _, name := range s.cfg.PoolOrder {
		up, ok := s.ups[name]
		if !ok {
			continue
		}
		p := metrics.Pool{Name: name, Backends: up.Pool.Snapshot().Backends, QueueLen: up.QueueLen()}
		if m := s.monitors[name]; m != nil {
			p.Checks = m.mon.Results
		}
		if sup := s.sups[name]; sup != nil {
			l := &metrics.Launch{Restarts: sup.Restarts(), States: map[string]int{}}
			for _, in := range sup.Status() {
				l.States[in.State]++
			}
			p.Launch = l
		}
		out = append(out, p)
	}
	return out
}

// bindAdmin binds the admin listener's address (or takes it over from the
// process this one upgrades).
func (s *Server) bindAdmin(addr string) (net.Listener, error) { return s.listen(adminSocket, addr) }

// syncAdmin restarts the admin listener when a reload changed its section or
// its token file's contents. s.mu must be held.
func (s *Server) syncAdmin(cfg *config.Config) error {
	old := s.adminCfg
	same := old == nil && cfg.Admin == nil ||
		old != nil && cfg.Admin != nil && *old == *cfg.Admin && s.adminToken == tokenOf(cfg.Admin)
	if same {
		return nil
	}
	s.admin.stop()
	s.admin = nil
	a, err := s.startAdmin(cfg)
	if err != nil {
		return err
	}
	s.admin, s.adminCfg, s.adminToken = a, cfg.Admin, tokenOf(cfg.Admin)
	return nil
}

// tokenOf reads the token file of an admin section ("" when none or unreadable).
func tokenOf(a *config.Admin) string {
	if a == nil || a.TokenFile == "" {
		return ""
	}
	t, _ := readToken(a.TokenFile)
	return t
}
