package server

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// handleRoot serves GET /, the seed's health check: 200 while the process is alive.
func (s *Server) handleRoot(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok", "model": s.model, "ready": s.isReady()})
}

// handleHealthz serves GET /healthz: liveness, 200 while the process serves HTTP.
func (s *Server) handleHealthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "alive"})
}

// handleReadyz serves GET /readyz: 200 once the model is loaded and warmed, 503 while
// starting or draining.
func (s *Server) handleReadyz(c *gin.Context) {
	switch {
	case s.draining.Load():
		c.Header("Retry-After", "5")
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "not_ready", "reason": "draining"})
	case !s.ready.Load():
		c.Header("Retry-After", "1")
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "not_ready", "reason": "starting"})
	default:
		c.JSON(http.StatusOK, gin.H{"status": "ready", "model": s.model})
	}
}

// infoModel is the model part of GET /info (losses are null when unknown).
type infoModel struct {
	Name           string   `json:"name"`
	Version        string   `json:"version"`
	ContextLength  int      `json:"context_length"`
	VocabSize      int      `json:"vocab_size"`
	Layers         int      `json:"layers"`
	Heads          int      `json:"heads"`
	EOSTokenID     int      `json:"eos_token_id"`
	TrainingLoss   *float64 `json:"training_loss"`
	ValidationLoss *float64 `json:"validation_loss"`
}

// handleInfo serves GET /info: the model, limits, batching settings and version.
func (s *Server) handleInfo(c *gin.Context) {
	i := s.info
	c.JSON(http.StatusOK, gin.H{
		"version":           s.cfg.Version,
		"revision":          s.cfg.Revision,
		"served_model_name": s.model,
		"model": infoModel{
			Name: i.Name, Version: i.Version, ContextLength: i.ContextLength, VocabSize: i.VocabSize,
			Layers: i.Layers, Heads: i.Heads, EOSTokenID: i.EOSTokenID,
			TrainingLoss: finite(i.TrainingLoss), ValidationLoss: finite(i.ValidationLoss),
		},
		"limits": gin.H{
			"max_new_tokens":            s.limits.MaxNewTokens,
			"max_length":                s.limits.MaxLength,
			"default_max_new_tokens":    s.limits.DefaultMaxNewTokens,
			"openai_default_max_tokens": min(OpenAIDefaultMaxTokens, s.limits.MaxNewTokens),
			"max_body_bytes":            s.cfg.MaxBodyBytes,
			"max_stop_sequences":        MaxStopSequences,
			"max_stop_bytes":            MaxStopBytes,
			"request_timeout_seconds":   s.cfg.RequestTimeout.Seconds(),
			"temperature":               []float64{0, MaxTemperature},
		},
		"batching": gin.H{
			"max_batch_size":        s.cfg.Batching.MaxBatchSize,
			"max_batch_tokens":      s.cfg.Batching.MaxBatchTokens,
			"max_queue":             s.cfg.Batching.MaxQueue,
			"queue_timeout_seconds": s.cfg.Batching.QueueTimeout.Seconds(),
			"batch_wait_seconds":    s.cfg.Batching.BatchWait.Seconds(),
		},
		"ready": s.isReady(),
	})
}
