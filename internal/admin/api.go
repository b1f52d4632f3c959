// Package admin is ballast's admin listener: the JSON API of CONTRACT.md,
// Prometheus /metrics and the live dashboard. It drives the running server
// only through the small Control interface; it is never on the request path.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"ballast/internal/config"
)

// State is what GET /api/v1/pools returns: every pool with its backends,
// and what the dashboard's header shows.
type State struct {
	Pools      []Pool     `json:"pools"`
	Listeners  []Listener `json:"listeners"`
	Version    string     `json:"version"`
	ConfigHash string     `json:"config_hash"`
	Started    time.Time  `json:"started"`
	// VRRP is this node's part in its cluster.vrrp group; nil without one.
	VRRP *VRRP `json:"vrrp,omitempty"`
}

// VRRP is this node's VRRP state: initialize, backup or master; healthy
// reports whether it may hold the virtual IPs (its tracked pools have a
// backend up).
type VRRP struct {
	State      string   `json:"state"`
	Priority   int      `json:"priority"`
	Healthy    bool     `json:"healthy"`
	VirtualIPs []string `json:"virtual_ips"`
}

// Pool is one pool's state.
type Pool struct {
	Name      string    `json:"name"`
	Algorithm string    `json:"algorithm"`
	Queue     Queue     `json:"queue"`
	Backends  []Backend `json:"backends"`
	// Launch lists the processes ballast runs for the pool (launch); nil
	// when it runs none.
	Launch *Launch `json:"launch,omitempty"`
}

// Launch is a launched pool's processes.
type Launch struct {
	Command  []string `json:"command"`
	MaxConns int      `json:"max_conns"`
	// Restarts counts the instance exits nobody asked for.
	Restarts  uint64     `json:"restarts"`
	Instances []Instance `json:"instances"`
}

// Instance is one launched process: starting, running, backoff (it exited
// and waits to be started again), stopping or stopped.
type Instance struct {
	ID       int       `json:"id"`
	PID      int       `json:"pid"`
	Addr     string    `json:"addr"`
	State    string    `json:"state"`
	Restarts uint64    `json:"restarts"`
	LastExit string    `json:"last_exit,omitempty"`
	Since    time.Time `json:"since"`
}

// Queue is a pool's waiting room.
type Queue struct {
	Length    int   `json:"length"`
	Max       int   `json:"max"`
	TimeoutMS int64 `json:"timeout_ms"`
	// Admission is how a freed slot is handed out: adaptive or fifo.
	Admission string `json:"admission"`
	// WaitingSlow is how many of Length are requests of routes learned slow.
	WaitingSlow int `json:"waiting_slow"`
	// SlowInService and Reserve: requests of slow routes being served, and
	// the slots kept from them for fast routes (adaptive admission).
	SlowInService int `json:"slow_in_service"`
	Reserve       int `json:"reserve"`
}

// Backend is one backend's state (CONTRACT.md: addr, state, weight,
// in_flight, requests, failures, latency_ms; and more).
type Backend struct {
	Addr           string  `json:"addr"`
	State          string  `json:"state"`
	Weight         int     `json:"weight"`
	MaxConns       int     `json:"max_conns"`
	Backup         bool    `json:"backup"`
	InFlight       int64   `json:"in_flight"`
	Requests       uint64  `json:"requests"`
	Failures       uint64  `json:"failures"`
	LatencyMS      float64 `json:"latency_ms"`
	Ejections      int     `json:"ejections"`
	LastCheckError string  `json:"last_check_error"`
}

// Listener is one configured listener.
type Listener struct {
	Name     string `json:"name"`
	Listen   string `json:"listen"`
	Protocol string `json:"protocol"`
}

// Event is one backend state change.
type Event struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Pool    string    `json:"pool"`
	Backend string    `json:"backend"`
	From    string    `json:"from"`
	To      string    `json:"to"`
	Reason  string    `json:"reason"`
}

// NewBackend is the body of POST /api/v1/pools/{pool}/backends.
type NewBackend struct {
	Addr     string `json:"addr"`
	Weight   int    `json:"weight"`
	MaxConns int    `json:"max_conns"`
	Backup   bool   `json:"backup"`
}

// Control is what the admin API drives. Errors wrapping ErrNotFound give
// 404, ErrConflict 409, ErrInvalid 400, config.Problems 400 with every
// problem; anything else 500.
type Control interface {
	State() State
	AddBackend(pool string, b NewBackend) error
	DrainBackend(pool, addr string) error
	// RemoveBackend drains the backend, waits (within ctx) for its requests
	// in flight, then removes it.
	RemoveBackend(ctx context.Context, pool, addr string) error
	RestartPool(ctx context.Context, pool string) error
	// Reload re-reads the config file, as SIGHUP does.
	Reload() error
	// Events returns the state changes with seq >= since, oldest first, and
	// the seq the next one will have.
	Events(since uint64) ([]Event, uint64)
}

// Errors a Control returns, mapped to statuses.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrInvalid  = errors.New("invalid")
)

// Options configure the admin handler.
type Options struct {
	// Token, when not empty, is required of every request: as
	// "Authorization: Bearer TOKEN", or once as ?token=TOKEN (the dashboard's
	// link), which sets an HttpOnly cookie for the page's later requests.
	Token string
	// Metrics serves GET /metrics; nil: 404.
	Metrics http.Handler
	// UI serves the dashboard at / and its assets; nil: 404.
	UI http.Handler
	// RemoveTimeout bounds how long DELETE waits for a draining backend's
	// requests in flight.
	RemoveTimeout time.Duration
}

// tokenCookie carries the token for the dashboard's asset and API requests.
const tokenCookie = "ballast_admin_token"

// maxBody bounds a JSON request body.
const maxBody = 64 << 10

// New returns the admin listener's handler.
func New(c Control, o Options) http.Handler {
	a := &api{c: c, o: o}
	if o.Token != "" {
		sum := sha256.Sum256([]byte(o.Token))
		a.token = sum[:]
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/pools", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, c.State())
	})
	mux.HandleFunc("GET /api/v1/pools/{pool}", a.pool)
	mux.HandleFunc("POST /api/v1/pools/{pool}/backends", a.addBackend)
	mux.HandleFunc("DELETE /api/v1/pools/{pool}/backends/{addr}", a.removeBackend)
	mux.HandleFunc("POST /api/v1/pools/{pool}/backends/{addr}/drain", a.drain)
	mux.HandleFunc("POST /api/v1/pools/{pool}/restart", a.restart)
	mux.HandleFunc("POST /api/v1/reload", a.reload)
	mux.HandleFunc("GET /api/v1/events", a.events)
	if o.Metrics != nil {
		mux.Handle("GET /metrics", o.Metrics)
	}
	if o.UI != nil {
		mux.Handle("GET /{$}", o.UI)
		mux.Handle("GET /ui/", o.UI)
	}
	a.mux = mux
	return a
}

type api struct {
	c     Control
	o     Options
	token []byte // sha256 of the token; nil: no token required
	mux   *http.ServeMux
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.token != nil && !a.authorized(w, r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ballast"`)
		writeError(w, http.StatusUnauthorized, "missing or wrong admin token (Authorization: Bearer <token>)")
		return
	}
	h, pattern := a.mux.Handler(r)
	if pattern == "" {
		a.notRouted(w, r, h)
		return
	}
	a.mux.ServeHTTP(w, r)
}

// authorized checks the bearer token, the ?token= of a dashboard link (and
// then sets the cookie), or the cookie, in constant time.
func (a *api) authorized(w http.ResponseWriter, r *http.Request) bool {
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return a.matches(v)
	}
	if v := r.URL.Query().Get("token"); v != "" && a.matches(v) {
		http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: v, Path: "/", HttpOnly: true,
			SameSite: http.SameSiteStrictMode})
		return true
	}
	if ck, err := r.Cookie(tokenCookie); err == nil {
		return a.matches(ck.Value)
	}
	return false
}

func (a *api) matches(v string) bool {
	sum := sha256.Sum256([]byte(v))
	return subtle.ConstantTimeCompare(sum[:], a.token) == 1
}

// notRouted answers a request no pattern matches: 405 with Allow when the
// path exists for other methods, else 404 — both as JSON.
func (a *api) notRouted(w http.ResponseWriter, r *http.Request, h http.Handler) {
	rec := &headerRecorder{h: http.Header{}}
	h.ServeHTTP(rec, r)
	if rec.code == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", rec.h.Get("Allow"))
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path))
		return
	}
	writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
}

// headerRecorder captures what the mux's own not-found/405 handler would send.
type headerRecorder struct {
	h    http.Header
	code int
}

func (r *headerRecorder) Header() http.Header         { return r.h }
func (r *headerRecorder) Write(p []byte) (int, error) { return len(p), nil }
func (r *headerRecorder) WriteHeader(code int)        { r.code = code }

func (a *api) pool(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("pool")
	for _, p := range a.c.State().Pools {
		if p.Name == name {
			writeJSON(w, http.StatusOK, p)
			return
		}
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("no pool %q", name))
}

func (a *api) addBackend(w http.ResponseWriter, r *http.Request) {
	var nb NewBackend
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&nb); err != nil {
		writeError(w, http.StatusBadRequest, "body: "+err.Error()+` (want {"addr": "host:port", "weight": 1})`)
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "body: more than one JSON value")
		return
	}
	if nb.Weight == 0 {
		nb.Weight = config.DefaultWeight
	}
	pool := r.PathValue("pool")
	if err := a.c.AddBackend(pool, nb); err != nil {
		writeFailure(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, a.backend(pool, nb.Addr))
}

// backend returns the state of one backend, for the answer to a change.
func (a *api) backend(pool, addr string) any {
	for _, p := range a.c.State().Pools {
		if p.Name != pool {
			continue
		}
		for _, b := range p.Backends {
			if b.Addr == addr {
				return b
			}
		}
	}
	return map[string]string{"pool": pool, "addr": addr}
}

func (a *api) drain(w http.ResponseWriter, r *http.Request) {
	pool, addr := r.PathValue("pool"), r.PathValue("addr")
	if err := a.c.DrainBackend(pool, addr); err != nil {
		writeFailure(w, err)
		return
	}
	writeJSON(w, http.StatusOK, a.backend(pool, addr))
}

func (a *api) removeBackend(w http.ResponseWriter, r *http.Request) {
	pool, addr := r.PathValue("pool"), r.PathValue("addr")
	ctx := r.Context()
	if a.o.RemoveTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.o.RemoveTimeout)
		defer cancel()
	}
	if err := a.c.RemoveBackend(ctx, pool, addr); err != nil {
		writeFailure(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"pool": pool, "addr": addr, "removed": "true"})
}

func (a *api) restart(w http.ResponseWriter, r *http.Request) {
	if err := a.c.RestartPool(r.Context(), r.PathValue("pool")); err != nil {
		writeFailure(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"pool": r.PathValue("pool"), "restarted": "true"})
}

func (a *api) reload(w http.ResponseWriter, r *http.Request) {
	if err := a.c.Reload(); err != nil {
		writeFailure(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"reloaded": "true", "config_hash": a.c.State().ConfigHash})
}

func (a *api) events(w http.ResponseWriter, r *http.Request) {
	var since uint64
	if v := r.URL.Query().Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "since: want a non-negative integer")
			return
		}
		since = n
	}
	evs, next := a.c.Events(since)
	if evs == nil {
		evs = []Event{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": evs, "next": next})
}

// writeFailure maps a Control error to its status.
func writeFailure(w http.ResponseWriter, err error) {
	var ps config.Problems
	switch {
	case errors.As(err, &ps):
		list := make([]string, len(ps))
		for i, p := range ps {
			list[i] = p.String()
		}
		writeJSON(w, http.StatusBadRequest, map[string]any{
			"error": "config rejected, the running config keeps serving: " + strings.Join(list, "; "), "problems": list})
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrConflict):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusGatewayTimeout, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
