package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/inferstack/inferstack/inference/engine"
	"github.com/inferstack/inferstack/inference/server"
	"github.com/inferstack/inferstack/inference/telemetry"
)

// modelResult is everything measured for one model.
type modelResult struct {
	Model        modelDir           `json:"model"`
	Info         modelInfo          `json:"info"`
	Skipped      string             `json:"skipped,omitempty"`
	Raw          map[int]float64    `json:"raw_decode_step_tokens_per_second"` // by batch size
	InProcess    loadResult         `json:"in_process_c1"`
	HTTPc1       loadResult         `json:"http_c1"`
	BatchingOn   []loadResult       `json:"batching_on"`
	BatchingOff  []loadResult       `json:"batching_off"`
	Checks       []targetCheck      `json:"checks"`
	PromptTokens int                `json:"prompt_tokens"`
	NewTokens    int                `json:"new_tokens"`
	Settings     map[string]any     `json:"settings"`
	Extra        map[string]float64 `json:"ratios"`
}

// modelInfo is engine.ModelInfo without the losses (NaN when unknown, which JSON
// cannot carry).
type modelInfo struct {
	Name          string `json:"name"`
	Version       string `json:"version"`
	ContextLength int    `json:"context_length"`
	VocabSize     int    `json:"vocab_size"`
	Layers        int    `json:"layers"`
	Heads         int    `json:"heads"`
}

func infoOf(i engine.ModelInfo) modelInfo {
	return modelInfo{Name: i.Name, Version: i.Version, ContextLength: i.ContextLength, VocabSize: i.VocabSize, Layers: i.Layers, Heads: i.Heads}
}

// targetCheck is one of the targets, evaluated on this run.
type targetCheck struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Target string  `json:"target"`
	Pass   bool    `json:"pass"`
}

type report struct {
	Started   time.Time     `json:"started"`
	Host      hostInfo      `json:"host"`
	Options   options       `json:"options"`
	Models    []modelResult `json:"models"`
	Duration  string        `json:"duration"`
	RawPastKV int           `json:"raw_past_positions"`
}

type hostInfo struct {
	CPU        string `json:"cpu"`
	Cores      int    `json:"cores"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Go         string `json:"go"`
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func benchmark(ctx context.Context, opts options, out io.Writer) error {
	rep := report{
		Started: time.Now().UTC(),
		Host:    hostInfo{CPU: cpuModel(), Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Go: runtime.Version()},
		Options: opts, RawPastKV: opts.RawPast,
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fmt.Fprintf(out, "bench: %s, %d cores; prompt %d tokens, %d new tokens (ignore_eos, greedy), %s per level\n",
		rep.Host.CPU, rep.Host.Cores, opts.PromptTokens, opts.NewTokens, opts.Duration)
	for _, m := range opts.Models {
		if st, err := os.Stat(filepath.Join(m.Dir, "model.onnx")); err != nil || st.IsDir() {
			msg := fmt.Sprintf("no model.onnx in %s", m.Dir)
			if m.Name == "bench" {
				msg += " (build it with `make bench-model`)"
			}
			fmt.Fprintf(out, "\n== %s: skipped: %s\n", m.Name, msg)
			rep.Models = append(rep.Models, modelResult{Model: m, Skipped: msg})
			continue
		}
		res, err := benchModel(ctx, opts, m, log, out)
		if err != nil {
			return fmt.Errorf("model %s: %w", m.Name, err)
		}
		rep.Models = append(rep.Models, res)
		printModel(out, res, opts)
	}
	rep.Duration = time.Since(rep.Started).Round(time.Second).String()
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return fmt.Errorf("results dir: %w", err)
	}
	path := filepath.Join(opts.OutDir, "bench-"+rep.Started.Format("20060102T150405Z")+".json")
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	fmt.Fprintf(out, "\nresults: %s (run took %s)\n", path, rep.Duration)
	return nil
}

func newEngine(opts options, m modelDir, maxBatch int, log *slog.Logger, clk *stepClock) (*engine.Engine, error) {
	return engine.New(engine.Config{
		ModelDir:       m.Dir,
		ORTLib:         opts.ORTLib,
		IntraOpThreads: opts.Threads,
		MaxBatchSize:   maxBatch,
		BatchWait:      opts.BatchWait,
		MaxQueue:       1024,
		QueueTimeout:   time.Hour,
		Logger:         log,
		Observer:       clk,
	})
}

// promptOf builds a prompt of exactly n tokens for e's tokenizer, appending words
// from a fixed sentence one at a time and skipping any that would overshoot.
func promptOf(e *engine.Engine, n int) (string, error) {
	words := strings.Fields("What are the symptoms of a cold and how long does it usually last in adults who are otherwise healthy and well rested")
	p := "Question:"
	if e.CountTokens(p) > n {
		p = "Q"
	}
	for i := 0; e.CountTokens(p) < n && i < 50*n; i++ {
		w := " " + words[i%len(words)]
		if e.CountTokens(p+w) <= n {
			p += w
		}
	}
	if e.CountTokens(p) != n {
		return "", fmt.Errorf("cannot build a %d-token prompt with this tokenizer", n)
	}
	return p, nil
}

// serve starts the HTTP server on a loopback port; stop shuts it down.
func serve(e *engine.Engine, log *slog.Logger) (baseURL string, stop func(), err error) {
	metrics := telemetry.New(telemetry.Options{Logger: log, DisableGPU: true})
	srv := server.New(server.Config{}, e, metrics, log)
	srv.SetReady(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	return "http://" + ln.Addr().String(), func() {
		cancel()
		<-done
		metrics.Close()
	}, nil
}

// settle waits until the engine has no work left (cancelled requests are dropped at
// its next step), so one level does not spill into the next.
func settle(e *engine.Engine) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if st := e.Stats(); st.Running == 0 && st.Waiting == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func benchModel(ctx context.Context, opts options, m modelDir, log *slog.Logger, out io.Writer) (modelResult, error) {
	res := modelResult{Model: m, Raw: map[int]float64{}, PromptTokens: opts.PromptTokens, NewTokens: opts.NewTokens, Extra: map[string]float64{}}
	onClk, offClk := &stepClock{}, &stepClock{}
	e, err := newEngine(opts, m, opts.MaxBatch, log, onClk)
	if err != nil {
		return res, err
	}
	defer e.Close()
	res.Info = infoOf(e.Info())
	lim := e.Limits()
	res.Settings = map[string]any{"max_batch_size": lim.MaxBatchSize, "max_batch_tokens": lim.MaxBatchTokens, "batch_wait": lim.BatchWait.String(), "intra_op_threads": opts.Threads}
	fmt.Fprintf(out, "\n== %s (%s): %d layers, %d heads, vocab %d, context %d\n", m.Name, m.Dir, res.Info.Layers, res.Info.Heads, res.Info.VocabSize, res.Info.ContextLength)
	if opts.PromptTokens+opts.NewTokens > res.Info.ContextLength {
		return res, fmt.Errorf("prompt %d + new %d tokens exceed the context of %d", opts.PromptTokens, opts.NewTokens, res.Info.ContextLength)
	}
	prompt, err := promptOf(e, opts.PromptTokens)
	if err != nil {
		return res, err
	}
	req := engine.Request{Prompt: prompt, MaxNewTokens: opts.NewTokens, IgnoreEOS: true}
	if err := e.Warmup(ctx); err != nil {
		return res, err
	}

	// (c) Raw decode steps.
	for _, b := range opts.Concurrency {
		one, err := e.DecodeStepThroughput(ctx, b, opts.RawPast, 2)
		if err != nil {
			return res, err
		}
		steps := max(3, int(opts.RawDuration.Seconds()*one/float64(b)))
		tps, err := e.DecodeStepThroughput(ctx, b, opts.RawPast, steps)
		if err != nil {
			return res, err
		}
		res.Raw[b] = tps
		fmt.Fprintf(out, "  raw decode step, batch %2d: %8.1f tokens/s\n", b, tps)
	}

	// (a) In-process loop at concurrency 1, then the same engine behind HTTP.
	if _, err := e.Generate(ctx, req, nil); err != nil {
		return res, err
	}
	res.InProcess = runLoad(ctx, inProcess(e, req), 1, opts.Duration)
	settle(e)
	fmt.Fprintf(out, "  in-process, concurrency 1: %8.1f tokens/s\n", res.InProcess.TokensPerSec)

	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 0}}
	defer hc.CloseIdleConnections()
	measure := func(eng *engine.Engine, clk *stepClock, mode string) ([]loadResult, error) {
		url, stop, err := serve(eng, log)
		if err != nil {
			return nil, err
		}
		defer stop()
		c := overHTTP(hc, url, req)
		if _, err := c(ctx, func(int) {}); err != nil { // warm the connection and the handler
			return nil, err
		}
		var rs []loadResult
		for _, n := range opts.Concurrency {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			before := clk.snapshot()
			r := runLoad(ctx, c, n, opts.Duration)
			r.Steps = clk.snapshot().since(before, opts.Duration)
			settle(eng)
			fmt.Fprintf(out, "  http, batching %s, concurrency %2d: %8.1f tokens/s  ttft p50 %7.1f ms p99 %7.1f ms  itl p50 %6.1f ms p99 %6.1f ms  (%d done, %d errors)\n",
				mode, n, r.TokensPerSec, r.TTFTp50, r.TTFTp99, r.ITLp50, r.ITLp99, r.Requests, r.Errors)
			fmt.Fprintf(out, "    engine: decode steps %4.1f%% of the time (%.1f tokens/s inside them), prefill %4.1f%%, neither %4.1f%%\n",
				100*r.Steps.DecodeShare, r.Steps.DecodeTokensPerSec, 100*r.Steps.PrefillShare, 100*(1-r.Steps.DecodeShare-r.Steps.PrefillShare))
			if r.FirstError != "" {
				fmt.Fprintf(out, "    first error: %s\n", r.FirstError)
			}
			rs = append(rs, r)
		}
		return rs, nil
	}
	if res.BatchingOn, err = measure(e, onClk, "on "); err != nil {
		return res, err
	}
	for _, r := range res.BatchingOn {
		if r.Concurrency == 1 {
			res.HTTPc1 = r
		}
	}
	if err := e.Close(); err != nil {
		return res, err
	}
	if !opts.SkipOff {
		off, err := newEngine(opts, m, 1, log, offClk)
		if err != nil {
			return res, err
		}
		defer off.Close()
		if err := off.Warmup(ctx); err != nil {
			return res, err
		}
		if res.BatchingOff, err = measure(off, offClk, "off"); err != nil {
			return res, err
		}
	}
	res.Checks = checks(res)
	return res, nil
}

func find(rs []loadResult, c int) (loadResult, bool) {
	for _, r := range rs {
		if r.Concurrency == c {
			return r, true
		}
	}
	return loadResult{}, false
}

// checks evaluates the targets on this run's numbers.
func checks(res modelResult) []targetCheck {
	var cs []targetCheck
	if res.InProcess.TokensPerSec > 0 && res.HTTPc1.TokensPerSec > 0 {
		v := res.HTTPc1.TokensPerSec / res.InProcess.TokensPerSec
		res.Extra["http_c1_over_in_process"] = v
		cs = append(cs, targetCheck{"HTTP c=1 / in-process c=1 tokens/s", v, "≥ 0.95", v >= 0.95})
	}
	on16, ok1 := find(res.BatchingOn, 16)
	if raw := res.Raw[16]; ok1 && raw > 0 {
		v := on16.TokensPerSec / raw
		cs = append(cs, targetCheck{"c=16 served / raw batch-16 decode step", v, "≥ 0.80", v >= 0.80})
	}
	if off16, ok := find(res.BatchingOff, 16); ok1 && ok && off16.TokensPerSec > 0 {
		v := on16.TokensPerSec / off16.TokensPerSec
		cs = append(cs, targetCheck{"c=16 batching on / off tokens/s", v, "≥ 3", v >= 3})
	}
	if on1, ok := find(res.BatchingOn, 1); ok1 && ok && on1.ITLp99 > 0 {
		v := on16.ITLp99 / on1.ITLp99
		cs = append(cs, targetCheck{"c=16 p99 ITL / c=1 p99 ITL", v, "≤ 3", v <= 3})
	}
	return cs
}

func printModel(out io.Writer, res modelResult, opts options) {
	fmt.Fprintf(out, "\n%s: generated tokens/s (aggregate), latencies in ms\n", res.Model.Name)
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "conc\traw step\ton: tok/s\ton/raw\tTTFT p50\tTTFT p99\tITL p50\tITL p99\toff: tok/s\tTTFT p50\tTTFT p99\tITL p50\tITL p99\ton/off\t")
	for _, c := range opts.Concurrency {
		on, _ := find(res.BatchingOn, c)
		off, hasOff := find(res.BatchingOff, c)
		raw := res.Raw[c]
		ratio := func(a, b float64) string {
			if a <= 0 || b <= 0 {
				return "-"
			}
			return fmt.Sprintf("%.2f", a/b)
		}
		row := fmt.Sprintf("%d\t%.1f\t%.1f\t%s\t%.1f\t%.1f\t%.2f\t%.2f\t", c, raw, on.TokensPerSec, ratio(on.TokensPerSec, raw), on.TTFTp50, on.TTFTp99, on.ITLp50, on.ITLp99)
		if hasOff {
			row += fmt.Sprintf("%.1f\t%.1f\t%.1f\t%.2f\t%.2f\t%s\t", off.TokensPerSec, off.TTFTp50, off.TTFTp99, off.ITLp50, off.ITLp99, ratio(on.TokensPerSec, off.TokensPerSec))
		} else {
			row += "-\t-\t-\t-\t-\t-\t"
		}
		fmt.Fprintln(tw, row)
	}
	_ = tw.Flush()
	fmt.Fprintf(out, "in-process c=1: %.1f tokens/s; HTTP c=1: %.1f tokens/s\n", res.InProcess.TokensPerSec, res.HTTPc1.TokensPerSec)
	for _, c := range res.Checks {
		verdict := "MISS"
		if c.Pass {
			verdict = "ok"
		}
		fmt.Fprintf(out, "  target %-42s %6.2f  (%s)  %s\n", c.Name, c.Value, c.Target, verdict)
	}
}

// stepClock is an engine.Observer that adds up the time the engine spends inside
// model steps. It splits a served level's throughput into the speed of its decode
// steps (against the raw step: the cost of other work sharing the cores) and the
// share of time the model spends decoding (against 1: scheduling, prefill and
// idle time), which stays readable when other load on the machine makes single
// throughput numbers noisy.
type stepClock struct {
	engine.NopObserver
	decodeNs, prefillNs, decodeTokens atomic.Int64
}

var _ engine.Observer = (*stepClock)(nil)

// Step implements engine.Observer.
func (c *stepClock) Step(kind string, _ int, tokens int, d time.Duration) {
	switch kind {
	case "decode":
		c.decodeNs.Add(int64(d))
		c.decodeTokens.Add(int64(tokens))
	case "prefill":
		c.prefillNs.Add(int64(d))
	}
}

type clockReading struct{ decode, prefill, tokens int64 }

func (c *stepClock) snapshot() clockReading {
	return clockReading{c.decodeNs.Load(), c.prefillNs.Load(), c.decodeTokens.Load()}
}

// stepShares is where a level's time went, from the engine's side.
type stepShares struct {
	DecodeShare        float64 `json:"decode_share"`  // time in decode steps / window
	PrefillShare       float64 `json:"prefill_share"` // time in prefill steps / window
	DecodeTokensPerSec float64 `json:"decode_step_tokens_per_second"`
}

func (r clockReading) since(before clockReading, window time.Duration) stepShares {
	dec, pre, tok := r.decode-before.decode, r.prefill-before.prefill, r.tokens-before.tokens
	s := stepShares{DecodeShare: float64(dec) / float64(window), PrefillShare: float64(pre) / float64(window)}
	if dec > 0 {
		s.DecodeTokensPerSec = float64(tok) / time.Duration(dec).Seconds()
	}
	return s
}
