package server

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/inferstack/inferstack/inference/telemetry"
)

// Error codes in error bodies. They are stable; clients may switch on them.
const (
	CodeInvalidParameter     = "invalid_parameter"
	CodeMissingParameter     = "missing_parameter"
	CodeUnknownParameter     = "unknown_parameter"
	CodeInvalidJSON          = "invalid_json"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeBodyTooLarge         = "body_too_large"
	CodeHeadersTooLarge      = "headers_too_large"
	CodeBodyTimeout          = "body_read_timeout"
	CodePromptTooLong        = "prompt_too_long"
	CodeUnprocessable        = "unprocessable"
	CodeModelNotFound        = "model_not_found"
	CodeUnauthorized         = "unauthorized"
	CodeNotFound             = "not_found"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeQueueFull            = "queue_full"
	CodeQueueTimeout         = "queue_timeout"
	CodeDraining             = "shutting_down"
	CodeRequestTimeout       = "request_timeout"
	CodeInternal             = "internal_error"
)

// Retry-After values, in seconds. Overload clears quickly under continuous batching;
// a draining instance will not come back, so clients should wait for another one.
const (
	retryAfterQueueFull    = 1
	retryAfterQueueTimeout = 2
	retryAfterTimeout      = 1
	retryAfterDraining     = 5
)

// APIError is an error answered to the client: a status code, a stable code, a
// message and, for parameter errors, the parameter's name. Check names the failed
// validation check (a fixed set; empty when it is not a validation failure) and Reason
// the inference_request_failures_total reason (empty: not counted there).
type APIError struct {
	Status     int
	Code       string
	Message    string
	Param      string
	Check      string
	Reason     string
	RetryAfter int // seconds; 0 means no Retry-After header
}

// Error returns the parameter and message.
func (e *APIError) Error() string {
	if e.Param != "" {
		return e.Param + ": " + e.Message
	}
	return e.Message
}

// badParam is a 400 naming a parameter.
func badParam(param, check, format string) *APIError {
	return &APIError{Status: http.StatusBadRequest, Code: CodeInvalidParameter, Message: format, Param: param, Check: check, Reason: telemetry.ReasonValidation}
}

// errorBody is the error shape of the non-OpenAI routes.
type errorBody struct {
	Error     errorDetail `json:"error"`
	RequestID string      `json:"request_id,omitempty"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Param   string `json:"param,omitempty"`
}

// openAIErrorBody is OpenAI's error shape: {"error":{"message","type","param","code"}}.
type openAIErrorBody struct {
	Error openAIError `json:"error"`
}

type openAIError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func openAIType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status >= 500:
		return "server_error"
	default:
		return "invalid_request_error"
	}
}

// isOpenAIPath reports whether path belongs to the OpenAI-compatible API, whose errors
// use OpenAI's shape.
func isOpenAIPath(path string) bool { return path == "/v1" || strings.HasPrefix(path, "/v1/") }

// writeError answers e in the route family's error shape, sets Retry-After, and
// counts the failure reason and the failed validation check.
func (s *Server) writeError(c *gin.Context, e *APIError) {
	if e.Check != "" {
		s.metrics.Check(e.Check, false)
	}
	if e.Reason != "" {
		s.metrics.Failure(e.Reason)
	}
	if e.RetryAfter > 0 {
		c.Header("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	if e.Status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Bearer realm="inference"`)
	}
	s.extendWriteDeadline(c)
	if isOpenAIPath(c.Request.URL.Path) {
		oe := openAIError{Message: e.Message, Type: openAIType(e.Status)}
		if e.Param != "" {
			p := e.Param
			oe.Param = &p
		}
		if e.Code != "" {
			code := e.Code
			oe.Code = &code
		}
		c.AbortWithStatusJSON(e.Status, openAIErrorBody{Error: oe})
		return
	}
	c.AbortWithStatusJSON(e.Status, errorBody{
		Error:     errorDetail{Code: e.Code, Message: e.Message, Param: e.Param},
		RequestID: requestID(c),
	})
}
