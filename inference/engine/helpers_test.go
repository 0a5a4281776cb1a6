package engine

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// moduleRoot walks up from the test's directory to the directory holding go.mod.
func moduleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// ortLibForTest returns the ONNX Runtime library: $ORT_LIB, else the path `make ort`
// fills; it skips the test when neither exists.
func ortLibForTest(t testing.TB) string {
	t.Helper()
	lib := os.Getenv("ORT_LIB")
	if lib == "" {
		lib = filepath.Join(moduleRoot(t), DefaultORTLib)
	}
	if _, err := os.Stat(lib); err != nil {
		t.Skipf("ONNX Runtime library not found at %s: run `make ort` (or set ORT_LIB)", lib)
	}
	return lib
}

// modelDirForTest returns the bundled model directory, skipping the test when its
// model.onnx is not there yet.
func modelDirForTest(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(moduleRoot(t), DefaultModelDir)
	if _, err := os.Stat(filepath.Join(dir, "model.onnx")); err != nil {
		t.Skipf("bundled model not found at %s: export it with tools/model (see its README)", dir)
	}
	return dir
}

// newTestEngine starts an engine on the bundled model; cfg's zero fields take the
// defaults. The engine is closed when the test ends.
func newTestEngine(t testing.TB, cfg Config) *Engine {
	t.Helper()
	cfg.ORTLib = ortLibForTest(t)
	if cfg.ModelDir == "" {
		cfg.ModelDir = modelDirForTest(t)
	}
	if cfg.IntraOpThreads == 0 {
		cfg.IntraOpThreads = 1
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

// recObserver records observations for assertions.
type recObserver struct {
	NopObserver
	mu        sync.Mutex
	rejected  map[string]int
	cancelled int
	steps     map[string]int
	maxBatch  int
	maxOf     map[string]int // largest batch by step kind
	firstOf   map[string]int // batch of the first step of each kind
	first     int
	inter     int
	generated int
}

func newRecObserver() *recObserver {
	return &recObserver{rejected: map[string]int{}, steps: map[string]int{}, maxOf: map[string]int{}, firstOf: map[string]int{}}
}

func (o *recObserver) Rejected(reason string) {
	o.mu.Lock()
	o.rejected[reason]++
	o.mu.Unlock()
}

func (o *recObserver) Cancelled() {
	o.mu.Lock()
	o.cancelled++
	o.mu.Unlock()
}

func (o *recObserver) Step(kind string, batch, _ int, _ time.Duration) {
	o.mu.Lock()
	if o.steps[kind] == 0 {
		o.firstOf[kind] = batch
	}
	o.steps[kind]++
	o.maxBatch = max(o.maxBatch, batch)
	o.maxOf[kind] = max(o.maxOf[kind], batch)
	o.mu.Unlock()
}

func (o *recObserver) FirstToken(time.Duration) {
	o.mu.Lock()
	o.first++
	o.mu.Unlock()
}

func (o *recObserver) InterToken(time.Duration) {
	o.mu.Lock()
	o.inter++
	o.mu.Unlock()
}

func (o *recObserver) GeneratedTokens(n int) {
	o.mu.Lock()
	o.generated += n
	o.mu.Unlock()
}

func (o *recObserver) get(f func(*recObserver) int) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return f(o)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
}

func generate(t testing.TB, e *Engine, req Request) Result {
	t.Helper()
	res, err := e.Generate(context.Background(), req, nil)
	if err != nil {
		t.Fatalf("Generate(%q): %v", req.Prompt, err)
	}
	return res
}
