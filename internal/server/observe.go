package server

import (
	"io"
	"sync/atomic"

	"ballast/internal/accesslog"
	"ballast/internal/config"
	"ballast/internal/metrics"
)

// sink is where finished requests go: the metrics, and the access log when
// one is configured. Shared by every listener; the access log can be
// switched on reload without touching them.
type sink struct {
	metrics *metrics.Metrics
	access  atomic.Pointer[accessLog]
}

// accessLog is an open access log and its output.
type accessLog struct {
	output string
	w      io.WriteCloser
	log    *accesslog.Logger
}

// accessLogLines is the access log's in-memory ring: lines beyond it, when the
// disk cannot keep up, are dropped and counted rather than stall requests.
const accessLogLines = 16384

// listenerObserver names the listener in each entry (proxy.Observer).
type listenerObserver struct {
	name string
	s    *sink
}

func (o listenerObserver) Observe(e *accesslog.Entry) {
	e.Listener = o.name
	o.s.metrics.Observe(e)
	if a := o.s.access.Load(); a != nil {
		a.log.Log(e)
	}
}

// setAccessLog makes the access log match cfg: opened, switched, reopened (a
// file is reopened on every reload, for log rotation) or closed.
func (s *sink) setAccessLog(cfg *config.AccessLog) error {
	var next *accessLog
	if cfg != nil && cfg.Output != "off" {
		w, err := accesslog.Open(cfg.Output)
		if err != nil {
			return err
		}
		next = &accessLog{output: cfg.Output, w: w, log: accesslog.New(w, accessLogLines)}
	}
	if old := s.access.Swap(next); old != nil {
		old.close()
	}
	return nil
}

func (a *accessLog) close() {
	a.log.Close()
	a.w.Close()
}
