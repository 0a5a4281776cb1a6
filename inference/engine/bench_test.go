package engine

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
)

// benchEngine starts an engine for benchmarks on $ENGINE_BENCH_MODEL_DIR (for
// example .cache/bench-model, the GPT-2-small-shaped model `make bench-model`
// builds) or the bundled model.
func benchEngine(b *testing.B, cfg Config) *Engine {
	b.Helper()
	if dir := os.Getenv("ENGINE_BENCH_MODEL_DIR"); dir != "" {
		cfg.ModelDir = dir
	}
	cfg.ORTLib = ortLibForTest(b)
	if cfg.ModelDir == "" {
		cfg.ModelDir = modelDirForTest(b)
	}
	e, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	return e
}

// BenchmarkDecodeStep measures ONNX Runtime's raw batched decode step over a cache
// of 64 positions (the ceiling for served throughput). Rerun with
//
//	go test -run '^$' -bench DecodeStep ./inference/engine
func BenchmarkDecodeStep(b *testing.B) {
	e := benchEngine(b, Config{})
	for _, batch := range []int{1, 4, 16, 32} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			f := e.decodeStepInputs(batch, 64)
			if _, err := e.exclusiveRun(f); err != nil { // warm-up
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := e.exclusiveRun(f); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// BenchmarkGenerate measures one stream end to end through the scheduler: a short
// prompt, 32 generated tokens (greedy, EOS ignored).
func BenchmarkGenerate(b *testing.B) {
	e := benchEngine(b, Config{})
	req := Request{Prompt: "What are the symptoms of", MaxNewTokens: 32, IgnoreEOS: true}
	tokens := 0
	for b.Loop() {
		res, err := e.Generate(context.Background(), req, nil)
		if err != nil {
			b.Fatal(err)
		}
		tokens += res.GeneratedTokens
	}
	b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkGenerateConcurrent keeps 16 streams in flight through the scheduler
// (continuous batching, in process): aggregate generated tokens/s, to compare with
// BenchmarkDecodeStep/batch=16.
func BenchmarkGenerateConcurrent(b *testing.B) {
	e := benchEngine(b, Config{})
	req := Request{Prompt: "What are the symptoms of a cold and how long", MaxNewTokens: 128, IgnoreEOS: true}
	const conc = 16
	var tokens atomic.Int64
	b.SetParallelism(conc) // conc × GOMAXPROCS goroutines: enough to keep the batch full
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := e.Generate(context.Background(), req, nil)
			if err != nil {
				b.Error(err)
				return
			}
			tokens.Add(int64(res.GeneratedTokens))
		}
	})
	b.ReportMetric(float64(tokens.Load())/b.Elapsed().Seconds(), "tokens/s")
}
