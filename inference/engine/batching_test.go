package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// batchPrompts are prompts of very different token counts (1 to ~70 tokens).
var batchPrompts = []string{
	"What are the symptoms of",
	"a",
	"The history of the river valley begins with the first farmers who settled there, long before the towns and the roads; they cleared the forest, drained the marshes and planted barley and flax along the banks.",
	"Ahura:",
	"shamrock pea: trailing trifoliate Asiatic and African herb having cobalt blue flowers.",
	"In the beginning",
	"testify: provide evidence for; stand as proof of; show by one's behavior, attitude, or external attributes",
	"Lipchitz",
}

type genCase struct {
	req Request
	// delay before submitting, so sequences join a running batch at different steps.
	delay time.Duration
}

func batchCases() []genCase {
	var cases []genCase
	for i, p := range batchPrompts {
		cases = append(cases, genCase{
			req:   Request{Prompt: p, MaxNewTokens: 6 + (i*7)%23, IgnoreEOS: i%2 == 0},
			delay: time.Duration((i*3)%5) * 2 * time.Millisecond,
		})
	}
	return cases
}

// runConcurrently submits every case from its own goroutine after its delay and
// returns the results in case order.
func runConcurrently(t *testing.T, e *Engine, cases []genCase) []Result {
	t.Helper()
	results := make([]Result, len(cases))
	errs := make([]error, len(cases))
	var wg sync.WaitGroup
	for i, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(c.delay)
			results[i], errs[i] = e.Generate(context.Background(), c.req, nil)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("case %d (%q): %v", i, cases[i].req.Prompt, err)
		}
	}
	return results
}

func TestGreedyBatchedMatchesSequential(t *testing.T) {
	cases := batchCases()
	seq := newTestEngine(t, Config{MaxBatchSize: 1, MaxBatchTokens: 16})
	want := make([]Result, len(cases))
	for i, c := range cases {
		want[i] = generate(t, seq, c.req)
	}

	obs := newRecObserver()
	batched := newTestEngine(t, Config{MaxBatchSize: 4, MaxBatchTokens: 16, Observer: obs})
	for round, reverse := range []bool{false, true} {
		cs := append([]genCase(nil), cases...)
		if reverse { // a different join/leave order
			for i := range cs {
				cs[i].delay = time.Duration(len(cs)-i) * time.Millisecond
			}
		}
		got := runConcurrently(t, batched, cs)
		for i := range cases {
			if got[i].Text != want[i].Text || got[i].GeneratedTokens != want[i].GeneratedTokens || got[i].FinishReason != want[i].FinishReason {
				t.Errorf("round %d case %d (%q):\nbatched    %q (%d tokens, %s)\nsequential %q (%d tokens, %s)",
					round, i, cases[i].req.Prompt, got[i].Text, got[i].GeneratedTokens, got[i].FinishReason,
					want[i].Text, want[i].GeneratedTokens, want[i].FinishReason)
			}
		}
	}
	if mb := obs.get(func(o *recObserver) int { return o.maxBatch }); mb < 2 {
		t.Errorf("largest decode batch was %d; the test never batched", mb)
	}
}

func TestChunkedPrefillMatchesWholePrompt(t *testing.T) {
	prompt := batchPrompts[2]
	whole := newTestEngine(t, Config{MaxBatchSize: 1, MaxBatchTokens: 512})
	obs := newRecObserver()
	chunked := newTestEngine(t, Config{MaxBatchSize: 1, MaxBatchTokens: 5, Observer: obs})
	if n := whole.CountTokens(prompt); n <= 10 {
		t.Fatalf("prompt has %d tokens; need more than two chunks", n)
	}
	req := Request{Prompt: prompt, MaxNewTokens: 12, IgnoreEOS: true}
	a, b := generate(t, whole, req), generate(t, chunked, req)
	if a.Text != b.Text {
		t.Errorf("chunked prefill changed greedy output:\nwhole   %q\nchunked %q", a.Text, b.Text)
	}
	if n := obs.get(func(o *recObserver) int { return o.steps["prefill"] }); n < 3 {
		t.Errorf("prefill ran %d chunks, want ≥ 3 with MaxBatchTokens 5", n)
	}

	// The same holds for the loss: chunking through the KV cache is exact.
	lw, err := whole.EvalLoss(context.Background(), prompt)
	if err != nil {
		t.Fatal(err)
	}
	lc, err := chunked.EvalLoss(context.Background(), prompt)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(lw-lc) > 1e-3 {
		t.Errorf("EvalLoss whole %.6f vs chunked %.6f", lw, lc)
	}
}

func TestSeededSamplingReproducible(t *testing.T) {
	e := newTestEngine(t, Config{MaxBatchSize: 8})
	req := Request{Prompt: "What are the symptoms of", MaxNewTokens: 24, Temperature: 0.9, TopK: 50, TopP: 0.95, Seed: 42, HasSeed: true, IgnoreEOS: true}
	alone := generate(t, e, req)
	again := generate(t, e, req)
	if alone.Text != again.Text {
		t.Fatalf("same seed, different text:\n%q\n%q", alone.Text, again.Text)
	}
	// Now with companions of other lengths and parameters in the same batch.
	cases := []genCase{{req: req, delay: 3 * time.Millisecond}}
	for i, p := range batchPrompts[:5] {
		cases = append(cases, genCase{req: Request{Prompt: p, MaxNewTokens: 10 + i*5, Temperature: 1.2, TopK: 5 * i, Seed: uint64(i), HasSeed: i%2 == 0}})
	}
	got := runConcurrently(t, e, cases)
	if got[0].Text != alone.Text {
		t.Errorf("seeded text changed when batched with others:\nalone   %q\nbatched %q", alone.Text, got[0].Text)
	}
	// Different seeds give different samples (24 tokens from a 4096-token vocabulary).
	other := req
	other.Seed = 43
	if res := generate(t, e, other); res.Text == alone.Text {
		t.Errorf("seeds 42 and 43 gave the same text %q", res.Text)
	}
}

func TestStopStringsAndStreaming(t *testing.T) {
	e := newTestEngine(t, Config{})
	base := Request{Prompt: "shamrock pea", MaxNewTokens: 30, IgnoreEOS: true}
	full := generate(t, e, base)
	if len(full.Text) < 12 {
		t.Fatalf("greedy text too short to cut: %q", full.Text)
	}
	// A stop string taken from the middle of the greedy output.
	stop := full.Text[len(full.Text)/2 : len(full.Text)/2+3]
	want := full.Text[:strings.Index(full.Text, stop)]

	req := base
	req.Stop = []string{"never-appears-xyz", stop}
	var streamed strings.Builder
	var deltaTokens int
	res, err := e.Generate(context.Background(), req, func(d Delta) error {
		if strings.Contains(d.Text, stop) {
			t.Errorf("delta %q contains the stop string %q", d.Text, stop)
		}
		streamed.WriteString(d.Text)
		deltaTokens += d.Tokens
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Text != want || res.FinishReason != FinishStop {
		t.Errorf("with stop %q: got %q (%s), want %q (stop)", stop, res.Text, res.FinishReason, want)
	}
	if streamed.String() != res.Text {
		t.Errorf("streamed %q, result %q: the stream must stop before the stop string", streamed.String(), res.Text)
	}
	if deltaTokens > res.GeneratedTokens {
		t.Errorf("deltas cover %d tokens, result has %d", deltaTokens, res.GeneratedTokens)
	}

	// Without stop strings, the stream is the whole text.
	streamed.Reset()
	res, err = e.Generate(context.Background(), base, func(d Delta) error { streamed.WriteString(d.Text); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if streamed.String() != full.Text || res.Text != full.Text {
		t.Errorf("stream %q / result %q, want %q", streamed.String(), res.Text, full.Text)
	}
}

func TestIgnoreEOSGeneratesExactly(t *testing.T) {
	e := newTestEngine(t, Config{})
	for _, n := range []int{1, 7, 40} {
		res := generate(t, e, Request{Prompt: "a", MaxNewTokens: n, IgnoreEOS: true, Temperature: 1.5, Seed: uint64(n), HasSeed: true})
		if res.GeneratedTokens != n || res.FinishReason != FinishLength {
			t.Errorf("MaxNewTokens %d with IgnoreEOS: got %d tokens, finish %q", n, res.GeneratedTokens, res.FinishReason)
		}
	}
}

func TestContextWindow(t *testing.T) {
	e := newTestEngine(t, Config{})
	ctxLen := e.Info().ContextLength
	// Build a prompt of exactly ctxLen-5 tokens ("a a a ..." is one token per word).
	word := " a"
	if e.CountTokens(strings.Repeat(word, 10)) != 10 {
		t.Fatalf("%q is not one token per repetition in this vocabulary", word)
	}
	prompt := strings.Repeat(word, ctxLen-5)
	res := generate(t, e, Request{Prompt: prompt, MaxNewTokens: 100, IgnoreEOS: true})
	if res.GeneratedTokens != 5 || res.FinishReason != FinishLength || res.PromptTokens != ctxLen-5 {
		t.Errorf("prompt %d tokens in a %d window: generated %d (%s), want 5 (length)", res.PromptTokens, ctxLen, res.GeneratedTokens, res.FinishReason)
	}
	for _, n := range []int{ctxLen, ctxLen + 40} {
		_, err := e.Generate(context.Background(), Request{Prompt: strings.Repeat(word, n), MaxNewTokens: 1}, nil)
		var ie *InputError
		if !asInputError(err, &ie) || ie.Param != "prompt" {
			t.Errorf("prompt of %d tokens: err %v, want *InputError for prompt", n, err)
		}
	}
	// A prompt that leaves exactly one slot still runs.
	res = generate(t, e, Request{Prompt: strings.Repeat(word, ctxLen-1), MaxNewTokens: 3})
	if res.GeneratedTokens != 1 || res.FinishReason != FinishLength {
		t.Errorf("prompt of %d tokens: generated %d (%s), want 1 (length)", ctxLen-1, res.GeneratedTokens, res.FinishReason)
	}
}

func TestInvalidRequests(t *testing.T) {
	e := newTestEngine(t, Config{})
	for _, c := range []struct {
		req   Request
		param string
	}{
		{Request{Prompt: "", MaxNewTokens: 1}, "prompt"},
		{Request{Prompt: "x", MaxNewTokens: 0}, "max_new_tokens"},
		{Request{Prompt: "x", MaxNewTokens: 1, Temperature: math.NaN()}, "temperature"},
		{Request{Prompt: "x", MaxNewTokens: 1, Temperature: -1}, "temperature"},
		{Request{Prompt: "x", MaxNewTokens: 1, TopK: -1}, "top_k"},
		{Request{Prompt: "x", MaxNewTokens: 1, TopP: 1.5}, "top_p"},
	} {
		_, err := e.Generate(context.Background(), c.req, nil)
		var ie *InputError
		if !asInputError(err, &ie) || ie.Param != c.param {
			t.Errorf("%+v: err %v, want InputError on %s", c.req, err, c.param)
		}
	}
}

func asInputError(err error, target **InputError) bool {
	ie, ok := err.(*InputError)
	if ok {
		*target = ie
	}
	return ok
}

func TestEvalLoss(t *testing.T) {
	e := newTestEngine(t, Config{})
	loss, err := e.EvalLoss(context.Background(), strings.Repeat(batchPrompts[2]+"\n", 8))
	if err != nil {
		t.Fatal(err)
	}
	// A language model's loss is positive, and even an untrained one stays within a
	// few nats of uniform guessing.
	uniform := math.Log(float64(e.Info().VocabSize))
	if !(loss > 0 && loss < uniform+4) {
		t.Errorf("loss %.3f outside (0, %.3f)", loss, uniform+4)
	}
	t.Logf("loss %.4f nats (uniform %.4f)", loss, uniform)
	if _, err := e.EvalLoss(context.Background(), ""); err == nil {
		t.Error("EvalLoss of empty text: no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.EvalLoss(ctx, batchPrompts[2]); err != context.Canceled {
		t.Errorf("EvalLoss with cancelled ctx: %v, want context.Canceled", err)
	}
}

func TestWarmupInfoStats(t *testing.T) {
	e := newTestEngine(t, Config{MaxBatchSize: 3, MaxQueue: 7})
	if err := e.Warmup(context.Background()); err != nil {
		t.Fatal(err)
	}
	info := e.Info()
	if info.Layers <= 0 || info.Heads <= 0 || info.ContextLength <= 0 || info.VocabSize <= 0 || info.Name == "" {
		t.Errorf("incomplete info %+v", info)
	}
	// The scheduler retires a finished sequence just after its Generate returns.
	idle := Stats{MaxBatch: 3, MaxQueue: 7}
	waitFor(t, "idle stats", 2*time.Second, func() bool { return e.Stats() == idle })
	if n := e.CountTokens("What are the symptoms of"); n < 3 {
		t.Errorf("CountTokens = %d", n)
	}
	_ = fmt.Sprint()
}

// The warm-up is not a client request: none of its per-request timings or tokens
// reach the Observer (a cold start would otherwise count against the latency SLOs).
func TestWarmupIsNotObserved(t *testing.T) {
	obs := newRecObserver()
	e := newTestEngine(t, Config{Observer: obs})
	if err := e.Warmup(context.Background()); err != nil {
		t.Fatal(err)
	}
	count := func() [3]int {
		return [3]int{obs.get(func(o *recObserver) int { return o.first }), obs.get(func(o *recObserver) int { return o.inter }),
			obs.get(func(o *recObserver) int { return o.generated })}
	}
	if got := count(); got != [3]int{} {
		t.Fatalf("after the warm-up: first %d, inter %d, generated %d; want none", got[0], got[1], got[2])
	}
	if _, err := e.Generate(context.Background(), Request{Prompt: "Hello", MaxNewTokens: 3, IgnoreEOS: true}, nil); err != nil {
		t.Fatal(err)
	}
	// The last step's tokens are counted just after Generate returns: wait for them,
	// then a little longer, so that a warm-up counted late would show as well.
	waitFor(t, "the request's 3 tokens to be counted", 2*time.Second, func() bool { return count()[2] >= 3 })
	time.Sleep(50 * time.Millisecond)
	if got := count(); got != [3]int{1, 2, 3} {
		t.Errorf("after one request of 3 tokens: first %d, inter %d, generated %d; want 1, 2, 3", got[0], got[1], got[2])
	}
}

// TestEvalLossMatchesExport recomputes the loss tools/model measured on the bundled
// validation.txt (config.json's validation_sample_loss) through ONNX Runtime.
func TestEvalLossMatchesExport(t *testing.T) {
	dir := modelDirForTest(t)
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		SampleLoss *float64 `json:"validation_sample_loss"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.SampleLoss == nil {
		t.Skip("config.json has no validation_sample_loss (a random-init export): nothing to compare with")
	}
	text, err := os.ReadFile(filepath.Join(dir, "validation.txt"))
	if err != nil {
		t.Fatalf("validation.txt: %v", err)
	}
	e := newTestEngine(t, Config{MaxBatchTokens: 64})
	loss, err := e.EvalLoss(context.Background(), string(text))
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(loss-*cfg.SampleLoss) > 0.005 {
		t.Errorf("EvalLoss(validation.txt) = %.4f, export measured %.4f", loss, *cfg.SampleLoss)
	}
}

// TestBatchedPrefillMatchesSequential sends every prompt at once to an idle engine
// whose BatchWait gathers them: they are prefilled together, left-padded to the
// longest, in one forward pass, then leave the batch at different steps. Greedy
// outputs must equal those of prompts run one at a time.
func TestBatchedPrefillMatchesSequential(t *testing.T) {
	cases := batchCases()
	for i := range cases {
		cases[i].delay = 0
	}
	seq := newTestEngine(t, Config{MaxBatchSize: 1})
	want := make([]Result, len(cases))
	for i, c := range cases {
		want[i] = generate(t, seq, c.req)
	}

	obs := newRecObserver()
	batched := newTestEngine(t, Config{MaxBatchSize: len(cases), BatchWait: 2 * time.Second, Observer: obs})
	if !batched.paddedPrefill {
		t.Fatal("the bundled model failed the padded-prefill check")
	}
	start := time.Now()
	got := runConcurrently(t, batched, cases)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s: BatchWait must end as soon as every slot is claimed", d)
	}
	for i := range cases {
		if got[i].Text != want[i].Text || got[i].GeneratedTokens != want[i].GeneratedTokens || got[i].FinishReason != want[i].FinishReason {
			t.Errorf("case %d (%q):\nbatched prefill %q (%d tokens, %s)\nsequential      %q (%d tokens, %s)",
				i, cases[i].req.Prompt, got[i].Text, got[i].GeneratedTokens, got[i].FinishReason,
				want[i].Text, want[i].GeneratedTokens, want[i].FinishReason)
		}
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.steps["prefill"] != 1 || obs.firstOf["prefill"] != len(cases) {
		t.Errorf("prefill ran %d steps, the first with %d rows; want one step of %d rows", obs.steps["prefill"], obs.firstOf["prefill"], len(cases))
	}
	if obs.firstOf["decode"] != len(cases) {
		t.Errorf("first decode step had %d rows, want all %d", obs.firstOf["decode"], len(cases))
	}
}

// TestBatchedPrefillJoinsRunningBatch has groups of prompts join a running batch
// (each group prefilled together while others decode) and leave it in a different
// order, with a prefill budget small enough that some groups are split and long
// prompts are chunked; greedy outputs must not change.
func TestBatchedPrefillJoinsRunningBatch(t *testing.T) {
	prompts := append(append([]string(nil), batchPrompts...), batchPrompts...)
	var cases []genCase
	for i, p := range prompts {
		cases = append(cases, genCase{
			req:   Request{Prompt: p, MaxNewTokens: 3 + (i*5)%17, IgnoreEOS: true},
			delay: time.Duration(i/4) * 15 * time.Millisecond, // groups of four
		})
	}
	seq := newTestEngine(t, Config{MaxBatchSize: 1, MaxBatchTokens: 24})
	want := make([]Result, len(cases))
	for i, c := range cases {
		want[i] = generate(t, seq, c.req)
	}
	obs := newRecObserver()
	batched := newTestEngine(t, Config{MaxBatchSize: 6, MaxBatchTokens: 24, BatchWait: -1, Observer: obs})
	got := runConcurrently(t, batched, cases)
	for i := range cases {
		if got[i].Text != want[i].Text || got[i].GeneratedTokens != want[i].GeneratedTokens {
			t.Errorf("case %d (%q):\nbatched    %q (%d tokens)\nsequential %q (%d tokens)",
				i, cases[i].req.Prompt, got[i].Text, got[i].GeneratedTokens, want[i].Text, want[i].GeneratedTokens)
		}
	}
	if mb := obs.get(func(o *recObserver) int { return o.maxOf["prefill"] }); mb < 2 {
		t.Errorf("largest prefill batch was %d; the test never prefilled prompts together", mb)
	}
}

// TestBatchWait checks that an idle engine waits for requests arriving close
// together (one prefill, decoding in step) and stops waiting once every slot is
// claimed, and that with a negative BatchWait the first request starts at once.
func TestBatchWait(t *testing.T) {
	run := func(e *Engine, i int, done *sync.WaitGroup) {
		done.Add(1)
		go func() {
			defer done.Done()
			generate(t, e, Request{Prompt: batchPrompts[i], MaxNewTokens: 4, IgnoreEOS: true})
		}()
	}

	obs := newRecObserver()
	e := newTestEngine(t, Config{MaxBatchSize: 3, BatchWait: 5 * time.Second, Observer: obs})
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 3 {
		run(e, i, &wg)
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("took %s: the wait must end once all 3 slots are claimed", d)
	}
	if f := obs.get(func(o *recObserver) int { return o.firstOf["prefill"] }); f != 3 {
		t.Errorf("with BatchWait, the first prefill had %d rows; want all 3 requests sent 20ms apart", f)
	}

	// No wait: the first request is admitted alone; holding stepMu keeps the
	// scheduler from its first prefill until the others are queued behind it.
	obs = newRecObserver()
	e = newTestEngine(t, Config{MaxBatchSize: 8, BatchWait: -1, Observer: obs})
	e.stepMu.Lock()
	run(e, 0, &wg)
	waitFor(t, "the first request to be admitted", 5*time.Second, func() bool { return e.Stats().Running == 1 })
	run(e, 1, &wg)
	run(e, 2, &wg)
	waitFor(t, "two requests to queue", 5*time.Second, func() bool { return e.Stats().Waiting == 2 })
	e.stepMu.Unlock()
	wg.Wait()
	if f := obs.get(func(o *recObserver) int { return o.firstOf["prefill"] }); f != 1 {
		t.Errorf("with no BatchWait, the first prefill had %d rows; want 1", f)
	}
	if m := obs.get(func(o *recObserver) int { return o.maxOf["prefill"] }); m != 2 {
		t.Errorf("the two queued requests were prefilled in batches of at most %d; want one batch of 2", m)
	}
}

// MaxLength counts the prompt (Hugging Face's max_length), and at least one token is
// generated when the prompt alone reaches it; Result reports the limit applied.
func TestMaxLengthCountsThePrompt(t *testing.T) {
	e := newTestEngine(t, Config{})
	prompt := "What are the symptoms of"
	k := e.CountTokens(prompt)
	for _, tc := range []struct{ maxLength, want int }{{k + 3, 3}, {k, 1}, {1, 1}, {0, 5}} {
		res, err := e.Generate(context.Background(), Request{Prompt: prompt, MaxNewTokens: 5, MaxLength: tc.maxLength, IgnoreEOS: true}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.GeneratedTokens != tc.want || res.MaxNewTokens != tc.want || res.PromptTokens != k {
			t.Errorf("max_length %d with a %d-token prompt: generated %d (limit %d), want %d", tc.maxLength, k, res.GeneratedTokens, res.MaxNewTokens, tc.want)
		}
	}
	var ie *InputError
	if _, err := e.Generate(context.Background(), Request{Prompt: prompt, MaxNewTokens: 5, MaxLength: -1}, nil); !errors.As(err, &ie) || ie.Param != "max_length" {
		t.Errorf("negative MaxLength: %v, want an InputError on max_length", err)
	}
}
