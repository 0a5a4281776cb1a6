package server

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/inferstack/inferstack/inference/telemetry"
)

const (
	headerRequestID = "X-Request-ID"
	ctxRequestID    = "inferstack.request_id"
	// statusClientClosed is recorded (nginx's convention) when the client went away
	// before the answer; nothing reaches the client.
	statusClientClosed = 499
)

func (s *Server) routes() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = true
	r.ContextWithFallback = true
	// No proxy is trusted: the logged client address is the connection's peer, never
	// a spoofable X-Forwarded-For.
	_ = r.SetTrustedProxies(nil)
	r.Use(s.requestIDMiddleware, s.observeMiddleware, s.recoverMiddleware, s.headerSizeMiddleware)

	// Every GET route answers HEAD too (as the seed's Starlette routes did), for
	// probes that use it; net/http drops the body.
	get := func(g *gin.RouterGroup, path string, h gin.HandlerFunc) {
		g.GET(path, h)
		g.HEAD(path, h)
	}
	open := r.Group("/")
	get(open, "/", s.handleRoot)
	get(open, "/healthz", s.handleHealthz)
	get(open, "/readyz", s.handleReadyz)

	metrics := r.Group("/")
	if s.cfg.MetricsAuth {
		metrics.Use(s.authMiddleware)
	}
	metricsHandler := s.metrics.Handler()
	get(metrics, "/metrics", func(c *gin.Context) { metricsHandler.ServeHTTP(c.Writer, c.Request) })

	api := r.Group("/", s.authMiddleware)
	get(api, "/info", s.handleInfo)
	api.POST("/infer", s.handleInfer)
	api.POST("/v1/completions", s.handleCompletions)
	get(api, "/v1/models", s.handleModels)
	get(api, "/v1/models/:model", s.handleModel)

	allowed := map[string][]string{}
	for _, rt := range r.Routes() {
		allowed[rt.Path] = append(allowed[rt.Path], rt.Method)
	}
	r.NoRoute(func(c *gin.Context) {
		s.writeError(c, &APIError{Status: http.StatusNotFound, Code: CodeNotFound, Message: "no such endpoint: " + c.Request.Method + " " + c.Request.URL.Path})
	})
	r.NoMethod(func(c *gin.Context) {
		if m := methodsFor(allowed, c.Request.URL.Path); m != "" {
			c.Header("Allow", m)
		}
		s.writeError(c, &APIError{Status: http.StatusMethodNotAllowed, Code: CodeMethodNotAllowed, Message: "method " + c.Request.Method + " is not allowed on " + c.Request.URL.Path})
	})
	return r
}

// methodsFor returns the Allow header for path (static routes only; good enough for
// a 405 hint).
func methodsFor(allowed map[string][]string, path string) string {
	m := allowed[path]
	if len(m) == 0 && strings.HasPrefix(path, "/v1/models/") {
		m = allowed["/v1/models/:model"]
	}
	sort.Strings(m)
	return strings.Join(m, ", ")
}

// requestIDMiddleware takes the client's X-Request-ID when it is short and plain, or
// makes one, and echoes it in the response.
func (s *Server) requestIDMiddleware(c *gin.Context) {
	id := c.GetHeader(headerRequestID)
	if !validRequestID(id) {
		id = newID()
	}
	c.Set(ctxRequestID, id)
	c.Header(headerRequestID, id)
	c.Next()
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		b := id[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_' || b == '.' || b == ':') {
			return false
		}
	}
	return true
}

// newID returns 16 random bytes in hex.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

func requestID(c *gin.Context) string { return c.GetString(ctxRequestID) }

// observeMiddleware sets the default write deadline and a read deadline, then logs
// the request and counts it by route template and status once it is answered.
//
// The read deadline (BodyReadTimeout) bounds reading whatever body the request has:
// net/http reads an unread body before it answers or reuses the connection, so
// without it a client that stalls mid-body would hold the connection, and block a
// graceful shutdown, indefinitely. readBody clears it once a body is read, before a
// generation that may run longer.
func (s *Server) observeMiddleware(c *gin.Context) {
	start := time.Now()
	s.extendWriteDeadline(c)
	_ = http.NewResponseController(c.Writer).SetReadDeadline(start.Add(s.cfg.BodyReadTimeout))
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = telemetry.EndpointUnmatched
	}
	status := c.Writer.Status()
	s.metrics.Request(route, status)
	level := slog.LevelInfo
	switch {
	case route == "/metrics" || route == "/healthz" || route == "/readyz":
		level = slog.LevelDebug // scraped every few seconds (a 503 while starting is expected); keep them out of info logs
	case status == http.StatusInternalServerError:
		level = slog.LevelError // a bug: the recovery handler also logs the stack
	case status >= 500:
		level = slog.LevelWarn // overload, timeouts, draining: operational, not a bug
	}
	// User input (path, query) is passed as attributes: the handler quotes and escapes it.
	s.log.LogAttrs(c.Request.Context(), level, "http request",
		slog.String("request_id", requestID(c)),
		slog.String("method", c.Request.Method),
		slog.String("route", route),
		slog.String("path", c.Request.URL.Path),
		slog.Int("status", status),
		slog.Int("bytes", max(c.Writer.Size(), 0)),
		slog.Duration("duration", time.Since(start)),
		slog.String("remote", c.ClientIP()),
	)
}

// recoverMiddleware turns a panic into a JSON 500 (when nothing was written yet),
// logs it with its stack and counts it.
func (s *Server) recoverMiddleware(c *gin.Context) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
			panic(v)
		}
		s.log.Error("panic in handler", slog.String("request_id", requestID(c)), slog.String("panic", fmt.Sprint(v)), slog.String("stack", string(debug.Stack())))
		if c.Writer.Written() {
			s.metrics.Failure(telemetry.ReasonInternal)
			c.Abort()
			return
		}
		s.writeError(c, &APIError{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error; see the server log for request id " + requestID(c), Reason: telemetry.ReasonInternal})
	}()
	c.Next()
}

// headerSizeMiddleware answers a JSON 431 when the request line and headers, as
// parsed, are over MaxHeaderBytes. net/http's own limit is set higher (headerHardLimit)
// because it answers in plain text, before any handler runs.
func (s *Server) headerSizeMiddleware(c *gin.Context) {
	if n := requestHeadSize(c.Request); n > s.cfg.MaxHeaderBytes {
		c.Header("Connection", "close")
		s.writeError(c, &APIError{Status: http.StatusRequestHeaderFieldsTooLarge, Code: CodeHeadersTooLarge,
			Message: fmt.Sprintf("request line and headers are %d bytes; the limit is %d (--max-header-bytes)", n, s.cfg.MaxHeaderBytes),
			Reason:  telemetry.ReasonTooLarge})
		return
	}
	c.Next()
}

// requestHeadSize is the size of r's request line and header block as HTTP/1.1 would
// send them ("Name: value\r\n" per value, Host included), without optional whitespace.
func requestHeadSize(r *http.Request) int {
	n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + 2
	if r.Host != "" {
		n += len("Host: ") + len(r.Host) + 2
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n + 2
}

// headerHardLimit is net/http's MaxHeaderBytes for a configured limit: four times it,
// at least 1 MiB (net/http's default), so that everything between the two gets the
// JSON 431 and only absurd requests get net/http's plain-text one.
func headerHardLimit(limit int) int {
	if limit > math.MaxInt/4 {
		return limit
	}
	return max(4*limit, 1<<20)
}

// authMiddleware requires "Authorization: Bearer <token>" when a token is configured.
func (s *Server) authMiddleware(c *gin.Context) {
	if s.cfg.AuthToken == "" {
		c.Next()
		return
	}
	got, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	if !ok {
		got, ok = strings.CutPrefix(c.GetHeader("Authorization"), "bearer ")
	}
	// Compare digests so the comparison takes the same time whatever the lengths.
	want := sha256.Sum256([]byte(s.cfg.AuthToken))
	have := sha256.Sum256([]byte(strings.TrimSpace(got)))
	if !ok || subtle.ConstantTimeCompare(want[:], have[:]) != 1 {
		s.writeError(c, &APIError{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Message: "missing or invalid bearer token (Authorization: Bearer <token>)", Reason: telemetry.ReasonUnauthorized})
		return
	}
	c.Next()
}

// extendWriteDeadline gives the next response write WriteTimeout to complete. Each
// write of a stream extends it, so long streams are not cut while a client that stops
// reading is. Writers that cannot set deadlines (httptest recorders) are left alone.
func (s *Server) extendWriteDeadline(c *gin.Context) {
	_ = http.NewResponseController(c.Writer).SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
}
