// Command bench measures the inference engine and server in one run and prints a
// table (and writes it as JSON): the in-process generation loop against the HTTP
// server at concurrency 1; aggregate generated tokens/s, time to first token and
// inter-token latency at several concurrencies with batching on and off; and ONNX
// Runtime's raw batched decode-step throughput at the same batch sizes, the ceiling
// served throughput is compared with. `make bench` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	opts := defaultOptions()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	models := fs.String("models", "default=inference/model/default,bench=.cache/bench-model",
		"comma-separated name=dir model directories; a missing directory is reported and skipped")
	conc := fs.String("concurrency", "1,2,4,8,16,32", "comma-separated concurrency levels (also the raw decode-step batch sizes)")
	fs.StringVar(&opts.ORTLib, "ort-lib", envOr("ORT_LIB", opts.ORTLib), "ONNX Runtime library (env ORT_LIB)")
	fs.DurationVar(&opts.Duration, "duration", opts.Duration, "measuring time per concurrency level and mode")
	fs.DurationVar(&opts.RawDuration, "raw-duration", opts.RawDuration, "measuring time per raw decode-step batch size")
	fs.IntVar(&opts.PromptTokens, "prompt-tokens", opts.PromptTokens, "prompt length in tokens")
	fs.IntVar(&opts.NewTokens, "new-tokens", opts.NewTokens, "generated tokens per request (ignore_eos)")
	fs.IntVar(&opts.RawPast, "raw-past", opts.RawPast, "cached positions in the raw decode-step measurement (0: prompt-tokens + new-tokens/2, the served runs' mean)")
	fs.IntVar(&opts.MaxBatch, "max-batch", opts.MaxBatch, "engine MaxBatchSize with batching on")
	fs.IntVar(&opts.Threads, "threads", opts.Threads, "ONNX Runtime intra-op threads (0: one per core)")
	fs.StringVar(&opts.OutDir, "out", opts.OutDir, "directory for the JSON results")
	fs.BoolVar(&opts.SkipOff, "skip-off", false, "skip the batching-off runs")
	fs.DurationVar(&opts.BatchWait, "batch-wait", 0, "engine BatchWait with batching on (0: the engine's default; negative: none)")
	quick := fs.Bool("quick", false, "a short run (under 3 minutes for both models): concurrency 1,16, 8s per level, 1s per raw batch size; explicit flags still win")
	cpuProfile := fs.String("cpuprofile", "", "write a Go CPU profile of the whole run to this file (go tool pprof)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if *quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["concurrency"] {
			*conc = "1,16"
		}
		if !set["duration"] {
			opts.Duration = 8 * time.Second
		}
		if !set["raw-duration"] {
			opts.RawDuration = time.Second
		}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	var err error
	if opts.Models, err = parseModels(*models); err != nil {
		return err
	}
	if opts.Concurrency, err = parseInts(*conc); err != nil {
		return fmt.Errorf("--concurrency: %w", err)
	}
	if opts.RawPast == 0 {
		opts.RawPast = opts.PromptTokens + opts.NewTokens/2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return benchmark(ctx, opts, os.Stdout)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func parseModels(s string) ([]modelDir, error) {
	var out []modelDir
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, dir, ok := strings.Cut(part, "=")
		if !ok {
			name, dir = part, part
		}
		out = append(out, modelDir{Name: name, Dir: dir})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--models: no model given")
	}
	return out, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", part)
		}
		out = append(out, n)
	}
	return out, nil
}

// options configures one benchmark run.
type options struct {
	Models       []modelDir
	ORTLib       string
	Concurrency  []int
	Duration     time.Duration
	RawDuration  time.Duration
	PromptTokens int
	NewTokens    int
	RawPast      int
	MaxBatch     int
	Threads      int
	OutDir       string
	SkipOff      bool
	BatchWait    time.Duration
}

type modelDir struct {
	Name string `json:"name"`
	Dir  string `json:"dir"`
}

func defaultOptions() options {
	return options{
		ORTLib:       ".cache/onnxruntime-1.24.1/libonnxruntime.so.1",
		Duration:     5 * time.Second,
		RawDuration:  2 * time.Second,
		PromptTokens: 16,
		NewTokens:    128,
		MaxBatch:     32,
		OutDir:       "bench-results",
	}
}
