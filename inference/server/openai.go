package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/inferstack/inferstack/inference/engine"
	"github.com/inferstack/inferstack/inference/telemetry"
)

// OpenAIDefaultMaxTokens is max_tokens when a completions request omits it (OpenAI's
// documented default).
const OpenAIDefaultMaxTokens = 16

// CompletionDefaults are /v1/completions' sampling defaults, OpenAI's: temperature 1,
// top_p 1, no top-k cut.
var CompletionDefaults = Sampling{Temperature: 1, TopP: 1}

var completionParams = map[string]bool{
	"model": true, "prompt": true, "max_tokens": true, "temperature": true, "top_p": true,
	"top_k": true, "seed": true, "stop": true, "stream": true, "stream_options": true,
	"ignore_eos": true, "n": true, "best_of": true, "echo": true, "logprobs": true,
	"presence_penalty": true, "frequency_penalty": true, "user": true, "suffix": true,
	"logit_bias": true,
}

// CompletionRequest is a parsed and validated POST /v1/completions request.
type CompletionRequest struct {
	Model        string // "" when not given
	Prompt       string
	MaxTokens    int
	Stream       bool
	IncludeUsage bool
	Sampling
}

// ParseCompletion parses a POST /v1/completions body. Parameters OpenAI defines but
// this server does not implement are accepted only at their neutral values (n=1,
// best_of=1, echo=false, logprobs=null, penalties 0, suffix=null, empty logit_bias).
func ParseCompletion(contentType string, body []byte, lim Limits) (CompletionRequest, []string, *APIError) {
	v := &validator{}
	var r CompletionRequest
	ps, e := collectParams(v, "", contentType, body, completionParams, true)
	if e != nil {
		return r, v.passed, e
	}
	if p, ok := ps["model"]; ok {
		if r.Model, e = p.str(); e != nil {
			return r, v.passed, e
		}
		v.pass(p.name)
	}
	// prompt: a string, or a list holding exactly one string.
	if p, ok := ps["prompt"]; ok && len(p.raw) > 0 && p.raw[0] == '[' {
		var list []string
		if err := json.Unmarshal(p.raw, &list); err != nil || len(list) != 1 {
			return r, v.passed, &APIError{Status: http.StatusBadRequest, Code: CodeInvalidParameter, Param: "prompt",
				Message: "must be a string or a list of exactly one string (token-id prompts and batches are not supported)", Check: CheckPromptPresent, Reason: telemetry.ReasonValidation}
		}
		raw, _ := json.Marshal(list[0])
		ps["prompt"] = value{name: "prompt", raw: raw}
	}
	if r.Prompt, e = ps.prompt(v, "prompt"); e != nil {
		return r, v.passed, e
	}
	r.MaxTokens = min(OpenAIDefaultMaxTokens, lim.MaxNewTokens)
	if p, ok := ps["max_tokens"]; ok {
		n, e := p.integer(1, int64(lim.MaxNewTokens))
		if e != nil {
			return r, v.passed, e
		}
		r.MaxTokens = int(n)
		v.pass(p.name)
	}
	if r.Sampling, e = ps.sampling(v, CompletionDefaults); e != nil {
		return r, v.passed, e
	}
	if p, ok := ps["stream"]; ok {
		if r.Stream, e = p.boolean(); e != nil {
			return r, v.passed, e
		}
		v.pass(p.name)
	}
	if p, ok := ps["stream_options"]; ok {
		var so map[string]json.RawMessage
		if err := json.Unmarshal(p.raw, &so); err != nil {
			return r, v.passed, badParam(p.name, p.name, "must be an object such as {\"include_usage\": true}")
		}
		for k, raw := range so {
			if k != "include_usage" {
				return r, v.passed, badParam(p.name, p.name, "only include_usage is supported")
			}
			if string(raw) != "null" {
				if err := json.Unmarshal(raw, &r.IncludeUsage); err != nil {
					return r, v.passed, badParam(p.name, p.name, "include_usage must be true or false")
				}
			}
		}
		if !r.Stream {
			return r, v.passed, badParam(p.name, p.name, "is only allowed when stream is true")
		}
		v.pass(p.name)
	}
	if e := neutralOnly(v, ps); e != nil {
		return r, v.passed, e
	}
	return r, v.passed, nil
}

// neutralOnly checks the OpenAI parameters accepted only at their neutral values.
func neutralOnly(v *validator, ps params) *APIError {
	ints := []string{"n", "best_of"}
	for _, name := range ints {
		if p, ok := ps[name]; ok {
			if _, e := p.integer(1, 1); e != nil {
				e.Message = "only 1 is supported"
				return e
			}
			v.pass(name)
		}
	}
	for _, name := range []string{"presence_penalty", "frequency_penalty"} {
		if p, ok := ps[name]; ok {
			if _, e := p.float(0, 0, false, "0"); e != nil {
				e.Message = "only 0 is supported (penalties are not implemented)"
				return e
			}
			v.pass(name)
		}
	}
	if p, ok := ps["echo"]; ok {
		b, e := p.boolean()
		if e != nil {
			return e
		}
		if b {
			return badParam(p.name, p.name, "echo is not supported")
		}
		v.pass(p.name)
	}
	if p, ok := ps["logprobs"]; ok {
		if n, e := p.integer(0, 0); e != nil || n != 0 {
			return badParam(p.name, p.name, "logprobs are not supported (use null)")
		}
		v.pass(p.name)
	}
	if p, ok := ps["suffix"]; ok {
		if s, e := p.str(); e != nil || s != "" {
			return badParam(p.name, p.name, "suffix is not supported (use null)")
		}
		v.pass(p.name)
	}
	if p, ok := ps["logit_bias"]; ok {
		var m map[string]float64
		if err := json.Unmarshal(p.raw, &m); err != nil || len(m) > 0 {
			return badParam(p.name, p.name, "logit_bias is not supported (use null or {})")
		}
		v.pass(p.name)
	}
	if p, ok := ps["user"]; ok {
		s, e := p.str()
		if e != nil {
			return e
		}
		if msg := textProblem(s); msg != "" || len(s) > 256 {
			return badParam(p.name, p.name, "must be a short plain string")
		}
		v.pass(p.name)
	}
	return nil
}

// completion is OpenAI's text_completion object (also each streamed chunk).
type completion struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []completionChoice `json:"choices"`
	Usage   *usage             `json:"usage,omitempty"`
}

type completionChoice struct {
	Text         string  `json:"text"`
	Index        int     `json:"index"`
	Logprobs     *string `json:"logprobs"`
	FinishReason *string `json:"finish_reason"`
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// handleCompletions serves POST /v1/completions, streamed or not.
func (s *Server) handleCompletions(c *gin.Context) {
	start := time.Now()
	v := &validator{}
	body, e := s.readBody(c, v)
	if e != nil {
		s.writeError(c, e)
		return
	}
	if name, ok := firstQueryParam(c.Request.URL.RawQuery); ok {
		// OpenAI's API takes every parameter in the JSON body; a query parameter would
		// otherwise be silently ignored.
		s.writeError(c, &APIError{Status: http.StatusBadRequest, Code: CodeUnknownParameter, Param: name,
			Message: "query parameters are not accepted on /v1/completions; give " + strconv.Quote(name) + " in the JSON body",
			Check:   CheckQuery, Reason: telemetry.ReasonValidation})
		return
	}
	r, passed, e := ParseCompletion(c.GetHeader("Content-Type"), body, s.limits)
	v.passed = append(v.passed, passed...)
	if e == nil && r.Model != "" && r.Model != s.model {
		e = &APIError{Status: http.StatusNotFound, Code: CodeModelNotFound, Param: "model",
			Message: "the model does not exist on this server; GET /v1/models lists it", Check: "model", Reason: telemetry.ReasonValidation}
		v.passed = slices.DeleteFunc(v.passed, func(check string) bool { return check == "model" })
	}
	s.recordChecks(v)
	if e != nil {
		s.writeError(c, e)
		return
	}
	req := engine.Request{
		Prompt: r.Prompt, MaxNewTokens: r.MaxTokens, Temperature: r.Temperature, TopK: r.TopK, TopP: r.TopP,
		Seed: r.Seed, HasSeed: r.HasSeed, Stop: r.Stop, IgnoreEOS: r.IgnoreEOS,
	}
	base := completion{ID: "cmpl-" + newID(), Object: "text_completion", Created: time.Now().Unix(), Model: s.model}
	if r.Stream {
		s.streamCompletion(c, start, req, base, r.IncludeUsage)
		return
	}
	res, err := s.generate(c, req, nil)
	if err != nil {
		s.answerFailure(c, err)
		return
	}
	s.metrics.Check(CheckPromptLength, true)
	s.metrics.Latency(telemetry.EndpointCompletions, time.Since(start))
	reason := res.FinishReason
	base.Choices = []completionChoice{{Text: res.Text, FinishReason: &reason}}
	base.Usage = &usage{PromptTokens: res.PromptTokens, CompletionTokens: res.GeneratedTokens, TotalTokens: res.PromptTokens + res.GeneratedTokens}
	s.extendWriteDeadline(c)
	c.JSON(http.StatusOK, base)
}

// streamCompletion answers with server-sent events: one chunk per delta, a final chunk
// with the finish reason, optionally a usage chunk, then "data: [DONE]". Headers are
// sent with the first delta, so errors before it (queue full, prompt too long) still
// get their status code.
func (s *Server) streamCompletion(c *gin.Context, start time.Time, req engine.Request, base completion, includeUsage bool) {
	started := false
	var writeErr error
	send := func(v any) error {
		if !started {
			started = true
			h := c.Writer.Header()
			h.Set("Content-Type", "text/event-stream; charset=utf-8")
			h.Set("Cache-Control", "no-cache")
			h.Set("X-Accel-Buffering", "no")
			c.Status(http.StatusOK)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return s.writeEvent(c, b)
	}
	emit := func(d engine.Delta) error {
		if d.Text == "" || writeErr != nil {
			return writeErr
		}
		chunk := base
		chunk.Choices = []completionChoice{{Text: d.Text}}
		if writeErr = send(chunk); writeErr != nil {
			// The client stopped reading or went away: not a server failure.
			return fmt.Errorf("%w: %w", errClientGone, writeErr)
		}
		return nil
	}
	res, err := s.generate(c, req, emit)
	if err != nil {
		if writeErr != nil {
			err = errClientGone
		}
		var e *APIError
		switch {
		case !started:
			s.answerFailure(c, err)
		case errors.As(err, &e):
			// Mid-stream failure: an error event in OpenAI's shape, then [DONE].
			if e.Reason != "" {
				s.metrics.Failure(e.Reason)
			}
			code := e.Code
			_ = send(openAIErrorBody{Error: openAIError{Message: e.Message, Type: openAIType(e.Status), Code: &code}})
			_ = s.writeEvent(c, []byte("[DONE]"))
		default:
			c.Abort() // client gone: nothing to write
		}
		return
	}
	s.metrics.Check(CheckPromptLength, true)
	reason := res.FinishReason
	final := base
	final.Choices = []completionChoice{{Text: "", FinishReason: &reason}}
	if send(final) != nil {
		return
	}
	if includeUsage {
		u := base
		u.Choices = []completionChoice{}
		u.Usage = &usage{PromptTokens: res.PromptTokens, CompletionTokens: res.GeneratedTokens, TotalTokens: res.PromptTokens + res.GeneratedTokens}
		if send(u) != nil {
			return
		}
	}
	if s.writeEvent(c, []byte("[DONE]")) == nil {
		s.metrics.Latency(telemetry.EndpointCompletions, time.Since(start))
	}
}

// writeEvent writes one "data: ..." event and flushes it, within WriteTimeout.
func (s *Server) writeEvent(c *gin.Context, data []byte) error {
	s.extendWriteDeadline(c)
	buf := make([]byte, 0, len(data)+8)
	buf = append(buf, "data: "...)
	buf = append(buf, data...)
	buf = append(buf, "\n\n"...)
	if _, err := c.Writer.Write(buf); err != nil {
		return err
	}
	return http.NewResponseController(c.Writer).Flush()
}

// modelObject is OpenAI's model object.
type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (s *Server) modelObject() modelObject {
	return modelObject{ID: s.model, Object: "model", Created: s.started.Unix(), OwnedBy: "inferstack"}
}

// handleModels serves GET /v1/models.
func (s *Server) handleModels(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"object": "list", "data": []modelObject{s.modelObject()}})
}

// handleModel serves GET /v1/models/:model.
func (s *Server) handleModel(c *gin.Context) {
	if c.Param("model") != s.model {
		s.writeError(c, &APIError{Status: http.StatusNotFound, Code: CodeModelNotFound, Param: "model", Message: "the model does not exist on this server"})
		return
	}
	c.JSON(http.StatusOK, s.modelObject())
}

// finite returns a pointer to v, or nil when v is NaN or infinite (JSON has no NaN).
func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// firstQueryParam returns the name of the first parameter in a raw query string,
// printable in an error (quoted when long or not UTF-8), and whether there is one.
func firstQueryParam(raw string) (string, bool) {
	if raw == "" {
		return "", false
	}
	name, _, _ := strings.Cut(raw, "&")
	name, _, _ = strings.Cut(name, "=")
	if n, err := url.QueryUnescape(name); err == nil {
		name = n
	}
	if len(name) > 64 || !utf8.ValidString(name) {
		name = strconv.QuoteToASCII(truncate(name, 64))
	}
	return name, true
}
