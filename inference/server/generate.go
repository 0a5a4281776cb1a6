package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/inferstack/inferstack/inference/engine"
	"github.com/inferstack/inferstack/inference/telemetry"
)

// errClientGone means the client went away; nothing is answered.
var errClientGone = errors.New("client gone")

// readBody reads the request body within MaxBodyBytes and BodyReadTimeout.
func (s *Server) readBody(c *gin.Context, v *validator) ([]byte, *APIError) {
	tooLarge := &APIError{Status: http.StatusRequestEntityTooLarge, Code: CodeBodyTooLarge,
		Message: "request body is larger than " + strconv.FormatInt(s.cfg.MaxBodyBytes, 10) + " bytes",
		Check:   CheckBodySize, Reason: telemetry.ReasonTooLarge}
	if c.Request.ContentLength > s.cfg.MaxBodyBytes {
		return nil, tooLarge
	}
	if c.Request.Body == nil { // server requests always have one; handler tests may not
		v.pass(CheckBodySize)
		return nil, nil
	}
	rc := http.NewResponseController(c.Writer)
	_ = rc.SetReadDeadline(time.Now().Add(s.cfg.BodyReadTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge
		}
		// Keep the expired deadline and close after answering: net/http would otherwise
		// wait for the rest of the body before it sends the 408.
		c.Header("Connection", "close")
		return nil, &APIError{Status: http.StatusRequestTimeout, Code: CodeBodyTimeout, Message: "could not read the request body: " + err.Error(), Reason: telemetry.ReasonValidation}
	}
	// Clear the deadline: the server's background read must not end the request's
	// context while a long generation runs.
	_ = rc.SetReadDeadline(time.Time{})
	v.pass(CheckBodySize)
	return body, nil
}

// generate runs req on the engine under the request timeout, tracking it in flight.
// A nil error means success; errClientGone means nothing should be written; any other
// error is an *APIError to answer.
func (s *Server) generate(c *gin.Context, req engine.Request, emit func(engine.Delta) error) (engine.Result, error) {
	ctx, cancel := context.WithTimeoutCause(c.Request.Context(), s.cfg.RequestTimeout, errRequestTimeout)
	defer cancel()
	s.inFlight.Add(1)
	s.metrics.InFlight.Inc()
	defer func() {
		s.metrics.InFlight.Dec()
		s.inFlight.Add(-1)
	}()
	res, err := s.eng.Generate(ctx, req, emit)
	if err == nil {
		return res, nil
	}
	return res, s.engineError(ctx, c, err)
}

// engineError maps an engine error to an *APIError, or to errClientGone.
func (s *Server) engineError(ctx context.Context, c *gin.Context, err error) error {
	var ie *engine.InputError
	switch {
	case errors.As(err, &ie):
		e := &APIError{Status: http.StatusUnprocessableEntity, Code: CodeUnprocessable, Message: ie.Msg, Param: ie.Param, Check: ie.Param, Reason: telemetry.ReasonValidation}
		if ie.Param == "prompt" {
			e.Code, e.Check = CodePromptTooLong, CheckPromptLength
		}
		return e
	case errors.Is(err, engine.ErrQueueFull):
		// Counted by the engine (Observer.Rejected).
		return &APIError{Status: http.StatusTooManyRequests, Code: CodeQueueFull, Message: "the server is at capacity and its wait queue is full; retry later", RetryAfter: retryAfterQueueFull}
	case errors.Is(err, engine.ErrQueueTimeout):
		return &APIError{Status: http.StatusServiceUnavailable, Code: CodeQueueTimeout, Message: "timed out waiting for a free slot; retry later", RetryAfter: retryAfterQueueTimeout}
	case errors.Is(err, engine.ErrDraining):
		return &APIError{Status: http.StatusServiceUnavailable, Code: CodeDraining, Message: "the server is shutting down; retry on another instance", RetryAfter: retryAfterDraining}
	case errors.Is(err, engine.ErrClosed):
		return &APIError{Status: http.StatusServiceUnavailable, Code: CodeDraining, Message: "the server is shutting down; retry on another instance", RetryAfter: retryAfterDraining, Reason: telemetry.ReasonDraining}
	case ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		switch cause := context.Cause(ctx); {
		case errors.Is(cause, errRequestTimeout):
			return &APIError{Status: http.StatusServiceUnavailable, Code: CodeRequestTimeout, Message: "generation did not finish within the request timeout (" + s.cfg.RequestTimeout.String() + "); ask for fewer tokens or retry later", RetryAfter: retryAfterTimeout, Reason: telemetry.ReasonTimeout}
		case errors.Is(cause, errServerStopping):
			return &APIError{Status: http.StatusServiceUnavailable, Code: CodeDraining, Message: "the server stopped this request while shutting down; retry on another instance", RetryAfter: retryAfterDraining}
		default:
			// The client went away. The engine counted the cancellation.
			return errClientGone
		}
	case errors.Is(err, errClientGone):
		// emit could not write (the client stopped reading or left); the engine counted the cancellation.
		return errClientGone
	default:
		s.log.Error("generation failed", slog.String("request_id", requestID(c)), slog.Any("error", err))
		return &APIError{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "generation failed; see the server log for request id " + requestID(c), Reason: telemetry.ReasonInternal}
	}
}

// answerFailure writes err (an *APIError), or records that the client went away.
func (s *Server) answerFailure(c *gin.Context, err error) {
	var e *APIError
	if errors.As(err, &e) {
		s.writeError(c, e)
		return
	}
	c.Status(statusClientClosed)
	c.Abort()
}

// recordChecks counts the checks that passed.
func (s *Server) recordChecks(v *validator) {
	for _, check := range v.passed {
		s.metrics.Check(check, true)
	}
	v.passed = v.passed[:0]
}

// ms converts a duration to milliseconds with microsecond precision.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
