package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// Holding stepMu freezes the scheduler at the start of its next iteration (after it
// has admitted what fits), which makes the admission states deterministic.

func TestAdmissionQueueFullTimeoutDrain(t *testing.T) {
	obs := newRecObserver()
	e := newTestEngine(t, Config{MaxBatchSize: 1, MaxQueue: 1, QueueTimeout: 150 * time.Millisecond, Observer: obs})
	e.stepMu.Lock()
	frozen := true
	defer func() {
		if frozen {
			e.stepMu.Unlock()
		}
	}()

	type outcome struct {
		res Result
		err error
	}
	running := make(chan outcome, 1)
	go func() {
		res, err := e.Generate(context.Background(), Request{Prompt: "a", MaxNewTokens: 3, IgnoreEOS: true}, nil)
		running <- outcome{res, err}
	}()
	waitFor(t, "the first request to take the only slot", 5*time.Second, func() bool { return e.Stats().Running == 1 })

	queued := make(chan outcome, 1)
	go func() {
		res, err := e.Generate(context.Background(), Request{Prompt: "b", MaxNewTokens: 3}, nil)
		queued <- outcome{res, err}
	}()
	waitFor(t, "the second request to queue", 5*time.Second, func() bool { return e.Stats().Waiting == 1 })

	start := time.Now()
	if _, err := e.Generate(context.Background(), Request{Prompt: "c", MaxNewTokens: 3}, nil); !errors.Is(err, ErrQueueFull) {
		t.Errorf("third request: %v, want ErrQueueFull", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("queue-full rejection took %s; it must be immediate", d)
	}

	select {
	case o := <-queued:
		if !errors.Is(o.err, ErrQueueTimeout) {
			t.Errorf("queued request: %v, want ErrQueueTimeout", o.err)
		}
		if waited := time.Since(start); waited < 100*time.Millisecond {
			t.Errorf("queue timeout after %s, configured 150ms", waited)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("queued request never timed out")
	}
	if st := e.Stats(); st.Waiting != 0 || st.Running != 1 {
		t.Errorf("stats after timeout %+v, want 0 waiting 1 running", st)
	}

	e.Drain()
	if _, err := e.Generate(context.Background(), Request{Prompt: "d", MaxNewTokens: 3}, nil); !errors.Is(err, ErrDraining) {
		t.Errorf("after Drain: %v, want ErrDraining", err)
	}
	e.stepMu.Unlock()
	frozen = false
	o := <-running
	if o.err != nil || o.res.GeneratedTokens != 3 {
		t.Errorf("running request during drain: %+v, %v; want it to finish", o.res, o.err)
	}
	for reason, want := range map[string]int{"queue_full": 1, "queue_timeout": 1, "draining": 1} {
		if got := obs.get(func(o *recObserver) int { return o.rejected[reason] }); got != want {
			t.Errorf("Rejected(%q) observed %d times, want %d", reason, got, want)
		}
	}
}

func TestCloseFailsQueuedAndIsIdempotent(t *testing.T) {
	e := newTestEngine(t, Config{MaxBatchSize: 1, MaxQueue: 4})
	e.stepMu.Lock()
	errs := make(chan error, 2)
	for _, p := range []string{"a", "b"} {
		go func() {
			_, err := e.Generate(context.Background(), Request{Prompt: p, MaxNewTokens: 50, IgnoreEOS: true}, nil)
			errs <- err
		}()
	}
	waitFor(t, "one running, one queued", 5*time.Second, func() bool { st := e.Stats(); return st.Running == 1 && st.Waiting == 1 })
	closed := make(chan error, 1)
	go func() { closed <- e.Close() }()
	// Close waits for the scheduler, which waits for the step lock.
	time.Sleep(20 * time.Millisecond)
	e.stepMu.Unlock()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	for range 2 {
		if err := <-errs; !errors.Is(err, ErrClosed) {
			t.Errorf("request at Close: %v, want ErrClosed", err)
		}
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := e.Generate(context.Background(), Request{Prompt: "c", MaxNewTokens: 1}, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Generate after Close: %v, want ErrClosed", err)
	}
	if _, err := e.EvalLoss(context.Background(), "two words"); !errors.Is(err, ErrClosed) {
		t.Errorf("EvalLoss after Close: %v, want ErrClosed", err)
	}
}

func TestCancelDuringDecodeFreesSlotWithinOneStep(t *testing.T) {
	obs := newRecObserver()
	e := newTestEngine(t, Config{MaxBatchSize: 2, Observer: obs})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tokens := make(chan struct{}, 1000)
	done := make(chan error, 1)
	go func() {
		_, err := e.Generate(ctx, Request{Prompt: "a", MaxNewTokens: 200, IgnoreEOS: true}, func(Delta) error {
			tokens <- struct{}{}
			return nil
		})
		done <- err
	}()
	for range 3 {
		<-tokens
	}
	e.stepMu.Lock() // between two steps
	before := obs.get(func(o *recObserver) int { return o.steps["decode"] })
	cancel()
	start := time.Now()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Generate: %v, want context.Canceled", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Generate did not return promptly after cancel")
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("Generate returned %s after cancel", d)
	}
	e.stepMu.Unlock()
	waitFor(t, "the slot to be freed", 5*time.Second, func() bool { return e.Stats().Running == 0 })
	if after := obs.get(func(o *recObserver) int { return o.steps["decode"] }); after != before {
		t.Errorf("%d decode steps ran for a cancelled sequence", after-before)
	}
	if n := obs.get(func(o *recObserver) int { return o.cancelled }); n != 1 {
		t.Errorf("Cancelled observed %d times, want 1", n)
	}
	// The engine goes on serving.
	if res := generate(t, e, Request{Prompt: "b", MaxNewTokens: 4, IgnoreEOS: true}); res.GeneratedTokens != 4 {
		t.Errorf("after cancel: %d tokens", res.GeneratedTokens)
	}
}

func TestCancelDuringChunkedPrefill(t *testing.T) {
	obs := newRecObserver()
	e := newTestEngine(t, Config{MaxBatchSize: 2, MaxBatchTokens: 4, Observer: obs})
	prompt := strings.Repeat(" a", e.Info().ContextLength-10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := e.Generate(ctx, Request{Prompt: prompt, MaxNewTokens: 5}, nil)
		done <- err
	}()
	waitFor(t, "prefill to start", 5*time.Second, func() bool { return obs.get(func(o *recObserver) int { return o.steps["prefill"] }) >= 2 })
	e.stepMu.Lock()
	before := obs.get(func(o *recObserver) int { return o.steps["prefill"] })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Generate: %v, want context.Canceled", err)
	}
	e.stepMu.Unlock()
	waitFor(t, "the slot to be freed", 5*time.Second, func() bool { return e.Stats().Running == 0 })
	after := obs.get(func(o *recObserver) int { return o.steps["prefill"] })
	if after != before {
		t.Errorf("%d prefill chunks ran after cancel", after-before)
	}
	if total := (e.Info().ContextLength - 10 + 3) / 4; before >= total {
		t.Errorf("prefill had finished (%d of %d chunks) before the cancel; the test proves nothing", before, total)
	}
	if n := obs.get(func(o *recObserver) int { return o.cancelled }); n != 1 {
		t.Errorf("Cancelled observed %d times, want 1", n)
	}
}

func TestCancelWhileQueuedAndEmitError(t *testing.T) {
	obs := newRecObserver()
	e := newTestEngine(t, Config{MaxBatchSize: 1, MaxQueue: 2, Observer: obs})
	e.stepMu.Lock()
	go func() { _, _ = e.Generate(context.Background(), Request{Prompt: "a", MaxNewTokens: 2}, nil) }()
	waitFor(t, "slot taken", 5*time.Second, func() bool { return e.Stats().Running == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := e.Generate(ctx, Request{Prompt: "b", MaxNewTokens: 2}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("queued request past its deadline: %v, want context.DeadlineExceeded", err)
	}
	if st := e.Stats(); st.Waiting != 0 {
		t.Errorf("cancelled request still queued: %+v", st)
	}
	e.stepMu.Unlock()

	// An emit error stops the sequence and is returned.
	// emit freezes the scheduler first, so the sequence cannot finish on its own
	// before the scheduler sees that its client is gone.
	boom := errors.New("client write failed")
	_, err := e.Generate(context.Background(), Request{Prompt: "c", MaxNewTokens: 100, IgnoreEOS: true}, func(Delta) error {
		e.stepMu.Lock()
		return boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("emit error: Generate returned %v", err)
	}
	e.stepMu.Unlock()
	waitFor(t, "the slot to be freed", 5*time.Second, func() bool { return e.Stats().Running == 0 })
	if n := obs.get(func(o *recObserver) int { return o.cancelled }); n != 2 {
		t.Errorf("Cancelled observed %d times, want 2 (queued deadline, emit error)", n)
	}
}
