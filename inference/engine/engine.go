package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/inferstack/inferstack/inference/engine/tokenizer"
)

// Defaults for Config's zero values.
const (
	DefaultModelDir       = "inference/model/default"
	DefaultMaxBatchSize   = 32
	DefaultMaxBatchTokens = 512
	DefaultMaxQueue       = 64
	DefaultQueueTimeout   = 30 * time.Second
	DefaultBatchWait      = 5 * time.Millisecond
)

// Stats is a snapshot of the scheduler's occupancy.
type Stats struct {
	Waiting  int `json:"waiting"`   // admitted to the queue, no slot yet
	Running  int `json:"running"`   // holding a slot (prefilling or decoding)
	MaxBatch int `json:"max_batch"` // slots
	MaxQueue int `json:"max_queue"` // queue capacity
}

// DefaultConfig returns the configuration used for zero fields: the bundled model,
// the library `make ort` fetches (or $ORT_LIB), the CPU provider, and the batching and
// admission defaults.
func DefaultConfig() Config {
	lib := os.Getenv("ORT_LIB")
	if lib == "" {
		lib = DefaultORTLib
	}
	return Config{
		ModelDir:          DefaultModelDir,
		ORTLib:            lib,
		ExecutionProvider: "cpu",
		MaxBatchSize:      DefaultMaxBatchSize,
		MaxBatchTokens:    DefaultMaxBatchTokens,
		MaxQueue:          DefaultMaxQueue,
		QueueTimeout:      DefaultQueueTimeout,
		BatchWait:         DefaultBatchWait,
	}
}

// withDefaults fills zero fields and rejects negative ones.
func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	if c.ModelDir == "" {
		c.ModelDir = d.ModelDir
	}
	if c.ORTLib == "" {
		c.ORTLib = d.ORTLib
	}
	if c.ExecutionProvider == "" {
		c.ExecutionProvider = d.ExecutionProvider
	}
	for _, f := range []struct {
		name string
		v    *int
		def  int
	}{
		{"MaxBatchSize", &c.MaxBatchSize, d.MaxBatchSize},
		{"MaxBatchTokens", &c.MaxBatchTokens, d.MaxBatchTokens},
		{"MaxQueue", &c.MaxQueue, d.MaxQueue},
		{"MaxNewTokens", &c.MaxNewTokens, 0},
		{"IntraOpThreads", &c.IntraOpThreads, 0},
		{"InterOpThreads", &c.InterOpThreads, 0},
		{"CUDADeviceID", &c.CUDADeviceID, 0},
	} {
		if *f.v < 0 {
			return c, fmt.Errorf("engine config: %s must not be negative (got %d)", f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if c.QueueTimeout < 0 {
		return c, fmt.Errorf("engine config: QueueTimeout must not be negative (got %s)", c.QueueTimeout)
	}
	if c.QueueTimeout == 0 {
		c.QueueTimeout = d.QueueTimeout
	}
	switch {
	case c.BatchWait == 0:
		c.BatchWait = d.BatchWait
	case c.BatchWait < 0:
		c.BatchWait = 0
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Observer == nil {
		c.Observer = NopObserver{}
	}
	return c, nil
}

// Engine serves generation requests on one ONNX Runtime session through a single
// scheduler goroutine that batches every running sequence into each decode step.
// Its methods are safe for concurrent use.
type Engine struct {
	cfg  Config
	log  *slog.Logger
	obs  Observer
	tok  *tokenizer.Tokenizer
	mc   modelConfig
	r    *runner
	opts *ort.SessionOptions
	info ModelInfo
	eos  int // -1: the model has no EOS token
	// vocab bounds sampled ids: the smaller of the model's and the tokenizer's.
	vocab int
	// paddedPrefill: prompts of different lengths may share a prefill pass,
	// left-padded (checked at load: see checkPaddedPrefill).
	paddedPrefill bool

	mu       sync.Mutex
	pending  []*sequence // FIFO of requests waiting for a slot
	active   int         // sequences holding a slot
	draining bool
	closed   bool

	wake      chan struct{} // nudges an idle scheduler
	quit      chan struct{} // closed by Close
	done      chan struct{} // closed when the scheduler has exited
	closeOnce sync.Once
	closeErr  error

	// stepMu serialises use of the session between the scheduler and the helpers
	// that run the model outside it (EvalLoss, DecodeStepThroughput), so measurements
	// and latency are not skewed by two runs sharing the cores.
	stepMu sync.Mutex
}

// New loads the model directory (config.json, tokenizer.json, the ONNX decoder),
// checks that the graph is a decoder with KV cache, and starts the scheduler.
func New(cfg Config) (*Engine, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "engine")

	if st, err := os.Stat(cfg.ModelDir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("model dir %q: not a directory (set --model-dir to a directory with model.onnx, config.json and tokenizer.json)", cfg.ModelDir)
	}
	mc, err := loadModelConfig(cfg.ModelDir)
	if err != nil {
		return nil, err
	}
	modelPath, err := findModelFile(cfg.ModelDir)
	if err != nil {
		return nil, err
	}
	tokPath := filepath.Join(cfg.ModelDir, "tokenizer.json")
	tok, err := tokenizer.Load(tokPath)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
	version, err := initORT(cfg.ORTLib)
	if err != nil {
		return nil, err
	}
	opts, err := newSessionOptions(cfg)
	if err != nil {
		return nil, err
	}
	spec, err := inspectModel(modelPath, mc, opts)
	if err != nil {
		_ = opts.Destroy()
		return nil, err
	}
	if tok.VocabSize() > spec.Vocab {
		_ = opts.Destroy()
		return nil, fmt.Errorf("model dir %s: tokenizer has %d tokens but the model's vocabulary is %d", cfg.ModelDir, tok.VocabSize(), spec.Vocab)
	}
	sess, err := ort.NewDynamicAdvancedSession(modelPath, spec.InputNames, spec.OutputNames, opts)
	if err != nil {
		_ = opts.Destroy()
		return nil, fmt.Errorf("create session for %s: %w", modelPath, err)
	}
	if !spec.HasPositionIDs && cfg.MaxBatchSize > 1 {
		// Without position_ids the graph numbers positions from the padded cache
		// length, which is wrong for every row shorter than the longest.
		log.Warn("the model has no position_ids input, so rows of different lengths cannot share a batch; batching is off", "model", modelPath)
		cfg.MaxBatchSize = 1
	}
	if cfg.MaxNewTokens == 0 || cfg.MaxNewTokens > mc.ContextLength {
		cfg.MaxNewTokens = mc.ContextLength
	}
	e := &Engine{
		cfg:   cfg,
		log:   log,
		obs:   cfg.Observer,
		tok:   tok,
		mc:    mc,
		r:     &runner{sess: sess, spec: spec},
		opts:  opts,
		eos:   -1,
		vocab: tok.VocabSize(),
		wake:  make(chan struct{}, 1),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	if mc.HasEOS && mc.EOS >= 0 && mc.EOS < spec.Vocab {
		e.eos = mc.EOS
	}
	e.info = ModelInfo{
		Name:           mc.Name,
		Version:        mc.Version,
		ContextLength:  mc.ContextLength,
		VocabSize:      spec.Vocab,
		Layers:         spec.Layers,
		Heads:          spec.Heads,
		EOSTokenID:     e.eos,
		TrainingLoss:   mc.TrainingLoss,
		ValidationLoss: mc.ValidationLoss,
	}
	if cfg.MaxBatchSize > 1 {
		if err := e.checkPaddedPrefill(); err != nil {
			log.Warn("prompts will be prefilled one at a time", "reason", err)
		} else {
			e.paddedPrefill = true
		}
	}
	log.Info("model loaded", "model", filepath.Base(modelPath), "name", mc.Name, "version", mc.Version,
		"layers", spec.Layers, "heads", spec.Heads, "head_dim", spec.HeadDim, "vocab", spec.Vocab,
		"context", mc.ContextLength, "onnxruntime", version, "provider", cfg.ExecutionProvider,
		"max_batch", cfg.MaxBatchSize, "max_batch_tokens", cfg.MaxBatchTokens, "batch_wait", cfg.BatchWait,
		"padded_prefill", e.paddedPrefill, "max_queue", cfg.MaxQueue)
	go e.loop()
	return e, nil
}

// Info describes the loaded model.
func (e *Engine) Info() ModelInfo { return e.info }

// Limits reports the effective batching and admission limits (defaults applied).
func (e *Engine) Limits() Config {
	c := e.cfg
	c.Logger, c.Observer = nil, nil
	return c
}

// CountTokens returns the number of tokens text encodes to.
func (e *Engine) CountTokens(text string) int { return len(e.tok.Encode(text)) }

// Stats returns the current queue and batch occupancy.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return Stats{Waiting: len(e.pending), Running: e.active, MaxBatch: e.cfg.MaxBatchSize, MaxQueue: e.cfg.MaxQueue}
}

// Drain makes Generate refuse new requests with ErrDraining; queued and running
// requests are still served.
func (e *Engine) Drain() {
	e.mu.Lock()
	e.draining = true
	e.mu.Unlock()
}

// Close stops the scheduler, fails requests still queued or running with ErrClosed,
// and releases every ONNX Runtime object the engine holds. It is idempotent; later
// calls return the first call's result.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		close(e.quit)
		<-e.done
		e.stepMu.Lock()
		defer e.stepMu.Unlock()
		var errs []error
		if err := e.r.sess.Destroy(); err != nil {
			errs = append(errs, fmt.Errorf("destroy session: %w", err))
		}
		if err := e.opts.Destroy(); err != nil {
			errs = append(errs, fmt.Errorf("destroy session options: %w", err))
		}
		e.closeErr = errors.Join(errs...)
	})
	return e.closeErr
}

// Warmup runs one short greedy generation so that the first client does not pay
// for ONNX Runtime's lazy initialisation. Its per-request timings are not reported
// to the Observer (a cold start must not count against latency objectives).
func (e *Engine) Warmup(ctx context.Context) error {
	_, err := e.generate(ctx, Request{Prompt: "Hello", MaxNewTokens: 2, IgnoreEOS: true}, nil, true)
	if err != nil {
		return fmt.Errorf("warmup: %w", err)
	}
	return nil
}

// validateRequest checks the fields the HTTP layer validates too; the engine does
// not trust its callers with values that would make it misbehave.
func validateRequest(req Request) error {
	switch {
	case req.MaxNewTokens <= 0:
		return &InputError{Param: "max_new_tokens", Msg: fmt.Sprintf("must be positive (got %d)", req.MaxNewTokens)}
	case math.IsNaN(req.Temperature) || math.IsInf(req.Temperature, 0) || req.Temperature < 0:
		return &InputError{Param: "temperature", Msg: "must be a finite number ≥ 0"}
	case req.MaxLength < 0:
		return &InputError{Param: "max_length", Msg: "must not be negative"}
	case req.TopK < 0:
		return &InputError{Param: "top_k", Msg: "must not be negative"}
	case math.IsNaN(req.TopP) || req.TopP < 0 || req.TopP > 1:
		return &InputError{Param: "top_p", Msg: "must be between 0 and 1"}
	}
	return nil
}

// Generate runs one request to completion. See the contract in api.go.
func (e *Engine) Generate(ctx context.Context, req Request, emit func(Delta) error) (Result, error) {
	return e.generate(ctx, req, emit, false)
}

// generate is Generate; an untracked sequence (the warm-up) reports no per-request
// observations (queue wait, prompt and generated tokens, time to first token,
// inter-token latency), so those metrics and their SLOs see client requests only.
// Model steps are reported whoever asked for them.
func (e *Engine) generate(ctx context.Context, req Request, emit func(Delta) error, untracked bool) (Result, error) {
	submitted := time.Now()
	if err := validateRequest(req); err != nil {
		return Result{}, err
	}
	ids := e.tok.Encode(req.Prompt)
	ctxLen := e.mc.ContextLength
	if len(ids) == 0 {
		return Result{}, &InputError{Param: "prompt", Msg: "encodes to no tokens"}
	}
	if len(ids)+1 > ctxLen {
		return Result{}, &InputError{Param: "prompt", Msg: fmt.Sprintf("is %d tokens; the model's context window is %d tokens including at least one generated token", len(ids), ctxLen)}
	}
	maxNew := min(req.MaxNewTokens, e.cfg.MaxNewTokens, ctxLen-len(ids))
	if req.MaxLength > 0 {
		maxNew = min(maxNew, max(req.MaxLength-len(ids), 1))
	}
	seq := &sequence{
		ctx:       ctx,
		req:       req,
		prompt:    ids,
		maxNew:    maxNew,
		submitted: submitted,
		untracked: untracked,
		out:       outbox{notify: make(chan struct{}, 1)},
	}

	e.mu.Lock()
	switch {
	case e.closed:
		e.mu.Unlock()
		return Result{}, ErrClosed
	case e.draining:
		e.mu.Unlock()
		e.obs.Rejected("draining")
		return Result{}, ErrDraining
	}
	// Requests beyond the free slots wait; at most MaxQueue of them.
	if waiting := len(e.pending) - (e.cfg.MaxBatchSize - e.active); waiting >= e.cfg.MaxQueue {
		e.mu.Unlock()
		e.obs.Rejected("queue_full")
		return Result{}, ErrQueueFull
	}
	e.pending = append(e.pending, seq)
	e.obs.QueueDepth(len(e.pending), e.active)
	e.mu.Unlock()
	e.nudge()

	timer := time.NewTimer(e.cfg.QueueTimeout)
	defer timer.Stop()
	timeout := timer.C
	var batch []Delta
	for {
		select {
		case <-seq.out.notify:
			var done bool
			var res Result
			var err error
			batch, done, res, err = seq.out.take(batch[:0])
			for _, d := range batch {
				if emit == nil {
					continue
				}
				if eerr := emit(d); eerr != nil {
					seq.abandoned.Store(true)
					e.nudge()
					return Result{}, eerr
				}
			}
			if done {
				return res, err
			}
		case <-timeout:
			timeout = nil
			if e.unqueue(seq) {
				e.obs.Rejected("queue_timeout")
				return Result{}, ErrQueueTimeout
			}
		case <-ctx.Done():
			if _, done, res, err := seq.out.take(nil); done {
				return res, err // finished in the same instant: the result stands
			}
			if e.unqueue(seq) {
				e.obs.Cancelled()
				return Result{}, ctx.Err()
			}
			// Admitted: the scheduler drops it at its next step and counts it.
			seq.abandoned.Store(true)
			e.nudge()
			return Result{}, ctx.Err()
		}
	}
}

// unqueue removes seq from the wait queue; false when it already holds a slot.
func (e *Engine) unqueue(seq *sequence) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, s := range e.pending {
		if s == seq {
			e.pending = append(e.pending[:i], e.pending[i+1:]...)
			e.obs.QueueDepth(len(e.pending), e.active)
			return true
		}
	}
	return false
}

func (e *Engine) nudge() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// outbox carries a sequence's deltas and outcome from the scheduler to Generate's
// goroutine. It never blocks the scheduler: deltas queue in a slice and notify holds
// at most one wake-up.
type outbox struct {
	mu     sync.Mutex
	deltas []Delta
	done   bool
	res    Result
	err    error
	notify chan struct{}
}

func (o *outbox) signal() {
	select {
	case o.notify <- struct{}{}:
	default:
	}
}

func (o *outbox) push(d Delta) {
	o.mu.Lock()
	o.deltas = append(o.deltas, d)
	o.mu.Unlock()
	o.signal()
}

func (o *outbox) finish(res Result, err error) {
	o.mu.Lock()
	if !o.done {
		o.done, o.res, o.err = true, res, err
	}
	o.mu.Unlock()
	o.signal()
}

// take moves the queued deltas into buf and reports whether the sequence is done.
func (o *outbox) take(buf []Delta) ([]Delta, bool, Result, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	buf = append(buf, o.deltas...)
	clear(o.deltas)
	o.deltas = o.deltas[:0]
	return buf, o.done, o.res, o.err
}

// sequence is one request inside the engine. Fields below the line belong to the
// scheduler goroutine.
type sequence struct {
	ctx       context.Context
	req       Request
	prompt    []int
	maxNew    int
	submitted time.Time
	untracked bool        // the warm-up: its timings and tokens are not observed
	abandoned atomic.Bool // Generate has returned (client gone or emit failed)
	out       outbox

	// --- scheduler-owned ---
	admitted  time.Time
	fed       int    // tokens in the KV cache
	lastChunk int    // tokens in the latest prefill chunk
	kv        kvPair // cache while prefilling: own, or shared by a batched prefill's rows
	kvRow     int    // the row of kv.cur holding this sequence
	kvPos     int    // positions per row in kv.cur (the valid ones are the last fed)
	samp      *sampler
	dec       *tokenizer.StreamDecoder
	stop      *stopFilter
	lastToken int
	generated int
	unsent    int // generated tokens not yet covered by a delta
	ttft      time.Duration
	lastTokAt time.Time
	finished  bool
}

// cancelled reports whether nobody waits for the sequence any more.
func (s *sequence) cancelled() bool {
	return s.abandoned.Load() || s.ctx.Err() != nil
}
