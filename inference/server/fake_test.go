package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inferstack/inferstack/inference/engine"
	"github.com/inferstack/inferstack/inference/telemetry"
)

// fakeEngine is a Generator whose tokens are whitespace-separated words. It emits
// the configured deltas, optionally blocks until released, and records requests.
type fakeEngine struct {
	info   engine.ModelInfo
	obs    engine.Observer
	deltas []string
	err    error         // returned instead of generating
	panicV any           // panics with this when set
	block  chan struct{} // when set, waits for it (or ctx) after the first delta
	delay  time.Duration // sleeps this long (or until ctx ends) before answering

	mu       sync.Mutex
	requests []engine.Request
	started  chan struct{} // receives once per request when generation starts
}

func newFake() *fakeEngine {
	return &fakeEngine{
		info:    engine.ModelInfo{Name: "fake-model", Version: "1.0", ContextLength: 64, VocabSize: 100, TrainingLoss: 2.5, ValidationLoss: 2.7},
		obs:     engine.NopObserver{},
		deltas:  []string{" fever", " and", " cough"},
		started: make(chan struct{}, 100),
	}
}

func (f *fakeEngine) Info() engine.ModelInfo { return f.info }

func (f *fakeEngine) CountTokens(text string) int { return len(strings.Fields(text)) }

func (f *fakeEngine) lastRequest() engine.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[len(f.requests)-1]
}

func (f *fakeEngine) Generate(ctx context.Context, req engine.Request, emit func(engine.Delta) error) (engine.Result, error) {
	start := time.Now()
	f.mu.Lock()
	f.requests = append(f.requests, req)
	f.mu.Unlock()
	if f.panicV != nil {
		panic(f.panicV)
	}
	if f.err != nil {
		return engine.Result{}, f.err
	}
	n := f.CountTokens(req.Prompt)
	if n >= f.info.ContextLength {
		return engine.Result{}, &engine.InputError{Param: "prompt", Msg: "is too long for the context window"}
	}
	select {
	case f.started <- struct{}{}:
	default: // nobody is counting (benchmarks)
	}
	f.obs.PromptTokens(n)
	limit := req.MaxNewTokens
	if req.MaxLength > 0 {
		limit = min(limit, max(req.MaxLength-n, 1))
	}
	var text strings.Builder
	for i, d := range f.deltas {
		if i >= limit {
			break
		}
		if emit != nil {
			if err := emit(engine.Delta{Text: d, Tokens: 1}); err != nil {
				return engine.Result{}, err
			}
		}
		f.obs.GeneratedTokens(1)
		text.WriteString(d)
		if i == 0 && f.block != nil {
			select {
			case <-f.block:
			case <-ctx.Done():
				f.obs.Cancelled()
				return engine.Result{}, ctx.Err()
			}
		}
	}
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			f.obs.Cancelled()
			return engine.Result{}, ctx.Err()
		}
	}
	gen := min(len(f.deltas), limit)
	return engine.Result{
		Text: text.String(), PromptTokens: n, GeneratedTokens: gen, MaxNewTokens: limit, FinishReason: engine.FinishLength,
		QueueTime: time.Millisecond, TimeToFirstToken: 2 * time.Millisecond, Total: time.Since(start),
	}, nil
}

var _ Generator = (*fakeEngine)(nil)

// testLogger discards logs unless the test runs with -v.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newTestServer builds a Server around f with fresh metrics, marked ready.
func newTestServer(t testing.TB, cfg Config, f *fakeEngine) (*Server, *telemetry.Metrics) {
	t.Helper()
	m := telemetry.New(telemetry.Options{DisableGPU: true, Logger: testLogger(t)})
	f.obs = m
	s := New(cfg, f, m, testLogger(t))
	s.SetReady(true)
	return s, m
}

// do sends a request to h and returns the recorded response.
func do(h http.Handler, method, target, contentType, body string, header ...string) *httptest.ResponseRecorder {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}
