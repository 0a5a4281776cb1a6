package engine

import (
	"context"
	"fmt"
	"time"
)

// DecodeStepThroughput measures the raw batched decode step of the loaded model, the
// ceiling that served throughput is compared with: steps forward passes of batch
// rows, one new token each over a cache of past positions, without sampling,
// scheduling or text. It returns generated tokens per second (batch × steps / time),
// after one untimed warm-up step. Each step holds the model exclusively, so live
// requests are delayed, not mixed in.
func (e *Engine) DecodeStepThroughput(ctx context.Context, batch, past, steps int) (float64, error) {
	if batch <= 0 || steps <= 0 || past < 0 || past+1 > e.mc.ContextLength {
		return 0, fmt.Errorf("decode step throughput: need batch > 0, steps > 0 and 0 ≤ past < context length %d", e.mc.ContextLength)
	}
	f := e.decodeStepInputs(batch, past)
	var elapsed time.Duration
	for i := 0; i <= steps; i++ {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		d, err := e.exclusiveRun(f)
		if err != nil {
			return 0, fmt.Errorf("decode step throughput: %w", err)
		}
		if i > 0 {
			elapsed += d
		}
	}
	return float64(batch*steps) / elapsed.Seconds(), nil
}

// decodeStepInputs builds the inputs of a decode step of batch rows over past
// cached positions (zeros: the cost does not depend on the values).
func (e *Engine) decodeStepInputs(batch, past int) *forward {
	kv := newKVPair(e.r.kvTensors())
	growTo(kv.cur, e.r.kvLen(batch, past), e.r.kvLen(batch, past))
	growTo(kv.next, e.r.kvLen(batch, past+1), e.r.kvLen(batch, past+1))
	f := &forward{
		b: batch, s: 1, past: past,
		ids:       make([]int64, batch),
		mask:      make([]int64, batch*(past+1)),
		positions: make([]int64, batch),
		pastKV:    kv.cur, presentKV: kv.next,
		logits: make([]float32, batch*e.r.spec.Vocab),
	}
	for i := range f.mask {
		f.mask[i] = 1
	}
	for i := range f.ids {
		f.ids[i] = int64(i % e.vocab)
		f.positions[i] = int64(past)
	}
	return f
}

// exclusiveRun runs one forward pass while holding the model, and times it.
func (e *Engine) exclusiveRun(f *forward) (time.Duration, error) {
	e.stepMu.Lock()
	defer e.stepMu.Unlock()
	if e.isClosed() {
		return 0, ErrClosed
	}
	t0 := time.Now()
	err := e.r.run(f)
	return time.Since(t0), err
}
