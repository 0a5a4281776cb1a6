package server

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/inferstack/inferstack/inference/engine"
	"github.com/inferstack/inferstack/inference/telemetry"
)

// InferDefaults are /infer's sampling defaults: mild sampling that reads naturally on
// small models. temperature=0 asks for greedy decoding.
var InferDefaults = Sampling{Temperature: 0.7, TopK: 50, TopP: 0.95}

var inferParams = map[string]bool{
	"prompt": true, "max_length": true, "max_new_tokens": true, "temperature": true,
	"top_k": true, "top_p": true, "seed": true, "stop": true, "ignore_eos": true,
}

// InferRequest is a parsed and validated POST /infer request.
type InferRequest struct {
	Prompt       string
	MaxLength    int // total tokens, prompt included (Hugging Face's max_length); 0 when not given
	MaxNewTokens int // 0 when not given; wins over MaxLength when both are given
	Sampling
}

// ParseInfer parses a POST /infer request from its raw query string, Content-Type and
// body. Parameters may be query parameters, JSON body members, or both, but each at
// most once. It returns the checks that passed, or an *APIError with a 4xx status that
// names the offending parameter.
func ParseInfer(rawQuery, contentType string, body []byte, lim Limits) (InferRequest, []string, *APIError) {
	v := &validator{}
	var r InferRequest
	ps, e := collectParams(v, rawQuery, contentType, body, inferParams, false)
	if e != nil {
		return r, v.passed, e
	}
	if r.Prompt, e = ps.prompt(v, "prompt"); e != nil {
		return r, v.passed, e
	}
	if p, ok := ps["max_length"]; ok {
		n, e := p.integer(1, int64(lim.MaxLength))
		if e != nil {
			return r, v.passed, e
		}
		r.MaxLength = int(n)
		v.pass(p.name)
	}
	if p, ok := ps["max_new_tokens"]; ok {
		n, e := p.integer(1, int64(lim.MaxNewTokens))
		if e != nil {
			return r, v.passed, e
		}
		r.MaxNewTokens = int(n)
		v.pass(p.name)
	}
	if r.Sampling, e = ps.sampling(v, InferDefaults); e != nil {
		return r, v.passed, e
	}
	return r, v.passed, nil
}

// inferResponse is POST /infer's answer.
type inferResponse struct {
	RequestID       string        `json:"request_id"`
	Model           string        `json:"model"`
	Prompt          string        `json:"prompt"`
	GeneratedText   string        `json:"generated_text"`
	PromptTokens    int           `json:"prompt_tokens"`
	GeneratedTokens int           `json:"generated_tokens"`
	FinishReason    string        `json:"finish_reason"`
	Timings         inferTimings  `json:"timings"`
	Parameters      inferSettings `json:"parameters"`
}

type inferTimings struct {
	QueueMS float64 `json:"queue_ms"`
	TTFTMS  float64 `json:"ttft_ms"`
	TotalMS float64 `json:"total_ms"`
}

// inferSettings echoes the settings the generation used, defaults included.
type inferSettings struct {
	MaxNewTokens int      `json:"max_new_tokens"`
	Temperature  float64  `json:"temperature"`
	TopK         int      `json:"top_k"`
	TopP         float64  `json:"top_p"`
	Seed         *uint64  `json:"seed,omitempty"`
	Stop         []string `json:"stop,omitempty"`
	IgnoreEOS    bool     `json:"ignore_eos"`
}

// handleInfer serves POST /infer, the seed-compatible inference endpoint.
func (s *Server) handleInfer(c *gin.Context) {
	start := time.Now()
	v := &validator{}
	body, e := s.readBody(c, v)
	if e != nil {
		s.writeError(c, e)
		return
	}
	r, passed, e := ParseInfer(c.Request.URL.RawQuery, c.GetHeader("Content-Type"), body, s.limits)
	v.passed = append(v.passed, passed...)
	s.recordChecks(v)
	if e != nil {
		s.writeError(c, e)
		return
	}
	req := engine.Request{
		Prompt: r.Prompt, MaxNewTokens: s.limits.DefaultMaxNewTokens, Temperature: r.Temperature, TopK: r.TopK, TopP: r.TopP,
		Seed: r.Seed, HasSeed: r.HasSeed, Stop: r.Stop, IgnoreEOS: r.IgnoreEOS,
	}
	switch {
	case r.MaxNewTokens > 0:
		req.MaxNewTokens = r.MaxNewTokens
	case r.MaxLength > 0:
		// Hugging Face's max_length counts the prompt; the engine, which tokenizes it,
		// applies it (at least one token, like generate()).
		req.MaxNewTokens, req.MaxLength = s.limits.MaxNewTokens, r.MaxLength
	}
	res, err := s.generate(c, req, nil)
	if err != nil {
		s.answerFailure(c, err)
		return
	}
	s.metrics.Check(CheckPromptLength, true)
	s.metrics.Latency(telemetry.EndpointInfer, time.Since(start))
	out := inferResponse{
		RequestID: requestID(c), Model: s.model, Prompt: r.Prompt, GeneratedText: res.Text,
		PromptTokens: res.PromptTokens, GeneratedTokens: res.GeneratedTokens, FinishReason: res.FinishReason,
		Timings: inferTimings{QueueMS: ms(res.QueueTime), TTFTMS: ms(res.TimeToFirstToken), TotalMS: ms(res.Total)},
		Parameters: inferSettings{MaxNewTokens: res.MaxNewTokens, Temperature: r.Temperature, TopK: r.TopK, TopP: r.TopP,
			Stop: r.Stop, IgnoreEOS: r.IgnoreEOS},
	}
	if r.HasSeed {
		seed := r.Seed
		out.Parameters.Seed = &seed
	}
	s.extendWriteDeadline(c)
	c.JSON(http.StatusOK, out)
}
