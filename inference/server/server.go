// Package server is the inference server's HTTP layer: gin routes and handlers for the
// seed-compatible API (GET /, POST /infer), the OpenAI-compatible completions API
// (POST /v1/completions with server-sent events, GET /v1/models), health, readiness,
// model information and metrics; request validation with JSON errors that name the
// parameter; request ids, access logs, metrics, recovery and bearer-token auth as
// middleware; and a graceful drain on shutdown.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/inferstack/inferstack/inference/engine"
	"github.com/inferstack/inferstack/inference/telemetry"
)

// Generator is what the server needs from the engine; *engine.Engine satisfies it.
type Generator interface {
	// Generate runs one request to completion; emit (may be nil) receives the text as
	// it becomes stable, on the caller's goroutine.
	Generate(ctx context.Context, req engine.Request, emit func(engine.Delta) error) (engine.Result, error)
	// Info describes the loaded model.
	Info() engine.ModelInfo
}

// Batching describes the engine's batching and admission settings, for GET /info.
type Batching struct {
	MaxBatchSize   int           `json:"max_batch_size"`
	MaxBatchTokens int           `json:"max_batch_tokens"`
	MaxQueue       int           `json:"max_queue"`
	QueueTimeout   time.Duration `json:"-"`
	BatchWait      time.Duration `json:"-"`
}

// Config configures a Server. Zero values take the defaults in DefaultConfig.
type Config struct {
	ModelName string // name served in responses and /v1/models; default: the model's own name
	Version   string // application version, for /info
	Revision  string // VCS revision, for /info

	MaxNewTokens        int // upper bound of max_new_tokens/max_tokens; default: the context length
	DefaultMaxNewTokens int // /infer's max_new_tokens when neither it nor max_length is given (default 50)

	MaxBodyBytes      int64         // request body limit (default 1 MiB)
	MaxHeaderBytes    int           // request line + headers limit (default 64 KiB)
	RequestTimeout    time.Duration // longest a generation may take, queue wait included (default 10m)
	BodyReadTimeout   time.Duration // longest to read a request body (default 30s)
	WriteTimeout      time.Duration // longest one response write may block, per write, so streams are not cut (default 30s)
	ReadHeaderTimeout time.Duration // default 10s
	IdleTimeout       time.Duration // keep-alive idle connections (default 120s)
	DrainTimeout      time.Duration // longest Serve waits for in-flight requests at shutdown (default 60s)

	AuthToken   string // when set, inference endpoints need "Authorization: Bearer <token>"
	MetricsAuth bool   // when set (with AuthToken), /metrics needs the token too

	Batching Batching // reported by /info
}

// DefaultConfig returns the defaults documented on Config's fields.
func DefaultConfig() Config {
	return Config{
		DefaultMaxNewTokens: 50,
		MaxBodyBytes:        1 << 20,
		MaxHeaderBytes:      64 << 10,
		RequestTimeout:      10 * time.Minute,
		BodyReadTimeout:     30 * time.Second,
		WriteTimeout:        30 * time.Second,
		ReadHeaderTimeout:   10 * time.Second,
		IdleTimeout:         120 * time.Second,
		DrainTimeout:        60 * time.Second,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.DefaultMaxNewTokens <= 0 {
		c.DefaultMaxNewTokens = d.DefaultMaxNewTokens
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = d.RequestTimeout
	}
	if c.BodyReadTimeout <= 0 {
		c.BodyReadTimeout = d.BodyReadTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = d.ReadHeaderTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = d.IdleTimeout
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = d.DrainTimeout
	}
	return c
}

// Causes of a request context's end that are not the client's doing.
var (
	errRequestTimeout = errors.New("request timeout")
	errServerStopping = errors.New("server stopping: drain timeout reached")
)

// Server is the HTTP layer in front of a Generator.
type Server struct {
	cfg     Config
	eng     Generator
	metrics *telemetry.Metrics
	log     *slog.Logger
	info    engine.ModelInfo
	model   string
	limits  Limits
	started time.Time
	router  *gin.Engine

	ready    atomic.Bool
	draining atomic.Bool
	inFlight atomic.Int64

	baseCtx context.Context
	abort   context.CancelCauseFunc
}

// New returns a Server for eng. m receives the server's metrics; log its logs.
func New(cfg Config, eng Generator, m *telemetry.Metrics, log *slog.Logger) *Server {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.Default()
	}
	info := eng.Info()
	s := &Server{cfg: cfg, eng: eng, metrics: m, log: log, info: info, started: time.Now()}
	s.model = cfg.ModelName
	if s.model == "" {
		s.model = info.Name
	}
	if s.model == "" {
		s.model = "default"
	}
	maxNew := cfg.MaxNewTokens
	if maxNew <= 0 {
		maxNew = info.ContextLength
	}
	if maxNew <= 0 {
		maxNew = 1024
	}
	maxLen := info.ContextLength
	if maxLen <= 0 {
		maxLen = maxNew
	}
	s.limits = Limits{MaxNewTokens: maxNew, MaxLength: maxLen, DefaultMaxNewTokens: min(cfg.DefaultMaxNewTokens, maxNew)}
	s.baseCtx, s.abort = context.WithCancelCause(context.Background())
	s.router = s.routes()
	m.SetReady(false)
	return s
}

// Handler returns the HTTP handler with every route and middleware.
func (s *Server) Handler() http.Handler { return s.router }

// Limits returns the effective request limits.
func (s *Server) Limits() Limits { return s.limits }

// SetReady marks the model loaded and warmed (true) or not. Readiness stays false once
// draining has begun.
func (s *Server) SetReady(ready bool) {
	s.ready.Store(ready)
	s.metrics.SetReady(s.isReady())
}

// BeginDrain makes /readyz answer 503 from now on, so that load balancers and Consul
// stop sending traffic; requests still arriving are served until Serve's context ends.
func (s *Server) BeginDrain() {
	if !s.draining.Swap(true) {
		s.log.Info("draining: readiness is now false")
	}
	s.metrics.SetReady(false)
}

func (s *Server) isReady() bool { return s.ready.Load() && !s.draining.Load() }

// InFlight returns the number of inference requests being handled.
func (s *Server) InFlight() int64 { return s.inFlight.Load() }

// Serve serves HTTP on ln until ctx ends, then shuts down gracefully: it stops
// accepting, lets in-flight requests finish for up to DrainTimeout (http.Server's
// Shutdown, never Close), and returns nil when all finished. Requests still running at
// the drain timeout are stopped and answered 503, and Serve returns an error.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.router,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    headerHardLimit(s.cfg.MaxHeaderBytes),
		BaseContext:       func(net.Listener) context.Context { return s.baseCtx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		// No ReadTimeout or WriteTimeout: they would cut long generations and streams.
		// Body reads and each response write get their own deadlines instead.
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	s.log.Info("serving HTTP", slog.String("addr", ln.Addr().String()))
	select {
	case err := <-errc:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	s.BeginDrain()
	s.log.Info("shutting down HTTP: no new connections; draining in-flight requests",
		slog.Int64("in_flight", s.inFlight.Load()), slog.Duration("drain_timeout", s.cfg.DrainTimeout))
	dctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	err := hs.Shutdown(dctx)
	cancel()
	if err == nil {
		<-errc
		s.log.Info("drained: all in-flight requests finished")
		return nil
	}
	if s.inFlight.Load() == 0 {
		// Every generation finished; what is left is a connection Shutdown had not yet
		// seen go idle (it polls every 500 ms at most) or a client still sending a
		// request. Neither is an unfinished generation.
		_ = hs.Close()
		<-errc
		s.log.Info("drained: all in-flight requests finished; closed the remaining connections")
		return nil
	}
	s.log.Warn("drain timeout reached; stopping the remaining requests", slog.Int64("in_flight", s.inFlight.Load()))
	s.abort(errServerStopping)
	gctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(gctx); err != nil {
		_ = hs.Close()
		<-errc
		return fmt.Errorf("drain: requests still running after %s were stopped; closed their connections after 5s more: %w", s.cfg.DrainTimeout, err)
	}
	<-errc
	return fmt.Errorf("drain: requests still running after %s were stopped", s.cfg.DrainTimeout)
}
