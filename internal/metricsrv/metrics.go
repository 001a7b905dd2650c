// Package metricsrv owns the Prometheus endpoint of the commands: one HTTP
// server with /metrics and /readyz (and, when given, one more handler for
// every other path: the dashboard), as a stage (internal/stage). The
// producer, the trainer and the demo register their series on a registry;
// this serves it.
//
// It imports nothing of the pipeline.
package metricsrv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ffc-stream/ffc/internal/stage"
)

// Options configures a Server.
type Options struct {
	// Addr to listen on, host:port (":9464"; port 0 picks a free one).
	Addr string
	// Gatherer is what /metrics serves.
	Gatherer prometheus.Gatherer
	// ShutdownTimeout bounds the wait for requests in flight when Run
	// ends (default 2 s).
	ShutdownTimeout time.Duration
	// Health, when set, is served on /readyz as JSON: status 200 while
	// every condition holds, 503 otherwise.
	Health []*stage.Health
	// Handler, when set, serves every other path (the live dashboard,
	// internal/dashboard, on /).
	Handler http.Handler
	Log     *slog.Logger
}

// Server serves /metrics while Run runs.
type Server struct {
	stage.Lifecycle
	opts Options
	addr atomic.Pointer[string]
}

// New validates opts; it listens on nothing until Run.
func New(opts Options) (*Server, error) {
	if opts.Addr == "" {
		return nil, errors.New("metrics: no address")
	}
	if opts.Gatherer == nil {
		return nil, errors.New("metrics: no gatherer")
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 2 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Server{opts: opts}, nil
}

// Addr is the address /metrics listens on once Ready.
func (s *Server) Addr() string {
	if a := s.addr.Load(); a != nil {
		return *a
	}
	return ""
}

// Run listens, serves until ctx ends, then shuts the server down.
func (s *Server) Run(ctx context.Context) error {
	ctx, end, err := s.Begin(ctx)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	defer end()
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("metrics: listen %s: %w", s.opts.Addr, err)
	}
	a := ln.Addr().String()
	s.addr.Store(&a)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("/readyz", s.readyz)
	if s.opts.Handler != nil {
		mux.Handle("/", s.opts.Handler)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	s.opts.Log.Info("serving metrics", "url", "http://"+a+"/metrics")
	s.SetReady()
	select {
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("metrics: serve: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	<-served
	if err != nil {
		return fmt.Errorf("metrics: shutdown: %w", err)
	}
	return nil
}

// Close stops Run and waits for it.
func (s *Server) Close() error {
	s.Stop()
	return nil
}

// readyz serves the health conditions as JSON: 200 when all hold.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	ok := true
	conds := []stage.Condition{}
	for _, h := range s.opts.Health {
		ok = ok && h.OK()
		conds = append(conds, h.Conditions()...)
	}
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(struct {
		Ready      bool              `json:"ready"`
		Conditions []stage.Condition `json:"conditions"`
	}{ok, conds})
}
