// Package engine runs a decoder-only language model exported to ONNX (Hugging Face
// Optimum layout with KV cache) through ONNX Runtime: tokenizer, sampler, a continuous
// batching scheduler with bounded admission, and the generation loop.
//
// The HTTP layer talks to the engine only through the types in this file.
package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Request is one generation request, already validated for types and ranges by the
// caller. The engine still checks what only it can know (prompt length in tokens).
type Request struct {
	Prompt       string
	MaxNewTokens int     // > 0
	Temperature  float64 // 0 means greedy
	TopK         int     // 0 means no top-k cut
	TopP         float64 // 0 or 1 means no nucleus cut
	Seed         uint64  // used when HasSeed; otherwise a random seed
	HasSeed      bool
	Stop         []string // generation stops before the first occurrence of any of these
	IgnoreEOS    bool     // generate exactly MaxNewTokens (benchmarks)
	// MaxLength, when > 0, also stops generation once prompt and generated tokens
	// together reach it (Hugging Face's max_length); at least one token is generated
	// even when the prompt alone reaches it.
	MaxLength int
}

// Delta is a piece of generated text, emitted as soon as it is known to be stable
// (complete UTF-8, and not possibly the start of a stop string).
type Delta struct {
	Text   string
	Tokens int // generated tokens this delta covers
}

// Finish reasons, as OpenAI names them.
const (
	FinishStop   = "stop"   // EOS or a stop string
	FinishLength = "length" // MaxNewTokens or the context window reached
)

// Result is the outcome of a finished generation.
type Result struct {
	Text             string
	PromptTokens     int
	GeneratedTokens  int
	MaxNewTokens     int // the limit applied: MaxNewTokens after MaxLength, the context window and the engine's cap
	FinishReason     string
	QueueTime        time.Duration // submit → prefill start
	TimeToFirstToken time.Duration // submit → first token sampled
	Total            time.Duration // submit → done
}

// Errors returned by Generate. The HTTP layer maps them to status codes.
var (
	ErrQueueFull    = errors.New("engine: wait queue is full")           // 429 + Retry-After
	ErrQueueTimeout = errors.New("engine: timed out waiting for a slot") // 503 + Retry-After
	ErrDraining     = errors.New("engine: shutting down")                // 503
	ErrClosed       = errors.New("engine: closed")                       // 503
)

// InputError is a client mistake that only the engine can detect (for example a
// prompt longer than the context window). The HTTP layer answers 422 naming Param.
type InputError struct {
	Param string
	Msg   string
}

func (e *InputError) Error() string { return fmt.Sprintf("%s: %s", e.Param, e.Msg) }

// Observer receives the engine's measurements where they happen, once each.
// telemetry implements it on Prometheus; NopObserver discards. Methods are called
// from the engine's goroutines, some while it holds internal locks: they must be
// fast, must not block, and must not call back into the Engine.
type Observer interface {
	QueueWait(d time.Duration)
	FirstToken(d time.Duration)
	InterToken(d time.Duration)
	// Step is called after every batched decode (or prefill) step.
	Step(kind string, batch int, tokens int, d time.Duration)
	PromptTokens(n int)
	GeneratedTokens(n int)
	QueueDepth(waiting, running int)
	Rejected(reason string) // "queue_full", "queue_timeout", "draining"
	Cancelled()
}

// NopObserver discards every observation.
type NopObserver struct{}

func (NopObserver) QueueWait(time.Duration)              {}
func (NopObserver) FirstToken(time.Duration)             {}
func (NopObserver) InterToken(time.Duration)             {}
func (NopObserver) Step(string, int, int, time.Duration) {}
func (NopObserver) PromptTokens(int)                     {}
func (NopObserver) GeneratedTokens(int)                  {}
func (NopObserver) QueueDepth(int, int)                  {}
func (NopObserver) Rejected(string)                      {}
func (NopObserver) Cancelled()                           {}

var _ Observer = NopObserver{}

// Config configures an Engine. Zero values take the defaults documented on each field
// (DefaultConfig returns them filled in).
type Config struct {
	ModelDir          string // directory in the Optimum decoder layout (model.onnx, config.json, tokenizer.json)
	ORTLib            string // path to libonnxruntime.so (1.24.x)
	ExecutionProvider string // "cpu" (default) or "cuda"
	CUDADeviceID      int
	IntraOpThreads    int // 0: ONNX Runtime's default (one per core)
	InterOpThreads    int // 0: ONNX Runtime's default

	MaxBatchSize   int           // sequences decoded together per step; 1 disables batching (default 32)
	MaxBatchTokens int           // prompt tokens prefilled per scheduler step, padding included; longer prompts are chunked (default 512)
	MaxQueue       int           // requests waiting for a slot; beyond it Generate returns ErrQueueFull (default 64)
	QueueTimeout   time.Duration // longest wait for a slot before ErrQueueTimeout (default 30s)
	MaxNewTokens   int           // upper bound for Request.MaxNewTokens (default: the context length)
	// BatchWait is how long the scheduler, when no sequence is running (idle, or
	// the whole batch just finished), waits after a request arrives for more to
	// arrive before it starts prefilling; it stops early once every free slot is
	// claimed, and never lasts longer than the latest prefill step took (what a
	// request that misses the group costs the others). Requests sent together are
	// then prefilled in one pass and decode in step, instead of interrupting each
	// other's decoding with their prefills. The wait adds to time to first token
	// only, and never delays running sequences. Only with batching on (default
	// 5ms; negative: no wait, which Limits reports as 0).
	BatchWait time.Duration

	Logger   *slog.Logger // default: slog.Default()
	Observer Observer     // default: NopObserver
}

// ModelInfo describes the loaded model, for /info, metrics and Consul meta.
type ModelInfo struct {
	Name           string  `json:"name"`
	Version        string  `json:"version"`
	ContextLength  int     `json:"context_length"`
	VocabSize      int     `json:"vocab_size"`
	Layers         int     `json:"layers"`
	Heads          int     `json:"heads"`
	EOSTokenID     int     `json:"eos_token_id"`
	TrainingLoss   float64 `json:"training_loss"`   // from config.json; NaN when absent
	ValidationLoss float64 `json:"validation_loss"` // from config.json; NaN when absent
}

// The Engine type (engine.go) provides:
//
//	func DefaultConfig() Config      // the defaults zero fields take
//	func New(cfg Config) (*Engine, error)
//	func (e *Engine) Generate(ctx context.Context, req Request, emit func(Delta) error) (Result, error)
//	     blocks until done; emit (may be nil) runs on the caller's goroutine, never on the
//	     scheduler's, so a slow client never stalls the batch; ctx cancellation stops the
//	     sequence at the next step (counted as cancelled) and returns ctx.Err(); an error
//	     from emit stops the sequence the same way and is returned.
//	func (e *Engine) Info() ModelInfo
//	func (e *Engine) Limits() Config // effective settings, defaults applied
//	func (e *Engine) CountTokens(text string) int
//	func (e *Engine) Warmup(ctx context.Context) error
//	func (e *Engine) EvalLoss(ctx context.Context, text string) (float64, error)  // mean next-token cross-entropy, nats
//	func (e *Engine) Stats() Stats   // waiting, running, capacity
//	func (e *Engine) Drain()         // refuse new requests with ErrDraining; queued and running ones finish
//	func (e *Engine) Close() error   // stops the scheduler, releases every ONNX Runtime object
//	func (e *Engine) DecodeStepThroughput(ctx context.Context, batch, past, steps int) (float64, error)
//	     raw batched decode-step tokens/s, the ceiling for served throughput (benchmarks)
