package engine

import (
	"context"
	"fmt"
	"math"
	"strings"
)

// EvalLoss returns the mean next-token cross-entropy (nats per token) of the model
// over text, read as one document per line, the protocol tools/model uses for the
// validation_sample_loss it writes to config.json: each non-empty line is encoded
// as [EOS] + tokens(line) + [EOS] (without the EOS marks when the model has none)
// and every token after the first is predicted from those before it. A document
// longer than the context length is scored in consecutive windows of the context
// length. Windows are fed in chunks of MaxBatchTokens through the KV cache; ctx is
// checked between chunks. The model is shared with the scheduler, one run at a time.
func (e *Engine) EvalLoss(ctx context.Context, text string) (float64, error) {
	ctxLen := e.mc.ContextLength
	var sum float64
	var count int
	sc := newEvalScratch(e)
	for _, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		ids := e.tok.Encode(line)
		if e.eos >= 0 {
			ids = append(append([]int{e.eos}, ids...), e.eos)
		}
		for start := 0; start < len(ids)-1; start += ctxLen {
			window := ids[start:min(start+ctxLen, len(ids))]
			if len(window) < 2 {
				break
			}
			s, n, err := e.scoreWindow(ctx, window, sc)
			if err != nil {
				return 0, err
			}
			sum += s
			count += n
		}
	}
	if count == 0 {
		return 0, &InputError{Param: "text", Msg: "has no line with at least two tokens to score"}
	}
	return sum / float64(count), nil
}

// evalScratch holds EvalLoss's buffers.
type evalScratch struct {
	logits         []float32
	ids, pos, mask []int64
}

func newEvalScratch(e *Engine) *evalScratch {
	chunk := min(e.cfg.MaxBatchTokens, e.mc.ContextLength)
	sc := &evalScratch{
		logits: make([]float32, chunk*e.r.spec.Vocab),
		ids:    make([]int64, chunk),
		pos:    make([]int64, chunk),
		mask:   make([]int64, e.mc.ContextLength),
	}
	for i := range sc.mask {
		sc.mask[i] = 1
	}
	return sc
}

// scoreWindow returns the summed cross-entropy of predicting window[1:] and the
// number of predictions.
func (e *Engine) scoreWindow(ctx context.Context, window []int, sc *evalScratch) (float64, int, error) {
	vocab := e.r.spec.Vocab
	chunkMax := len(sc.ids)
	kv := newKVPair(e.r.kvTensors())
	kvLimit := e.r.kvLen(1, e.mc.ContextLength)
	var sum float64
	var count int
	for past := 0; past < len(window); {
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		n := min(chunkMax, len(window)-past)
		for i := 0; i < n; i++ {
			sc.ids[i] = int64(window[past+i])
			sc.pos[i] = int64(past + i)
		}
		growTo(kv.next, e.r.kvLen(1, past+n), kvLimit)
		d, err := e.exclusiveRun(&forward{b: 1, s: n, past: past, ids: sc.ids, mask: sc.mask, positions: sc.pos,
			pastKV: kv.cur, presentKV: kv.next, logits: sc.logits})
		if err != nil {
			return 0, 0, fmt.Errorf("eval loss: %w", err)
		}
		e.obs.Step("prefill", 1, n, d)
		kv.swap()
		// Position past+i predicts window[past+i+1].
		for i := 0; i < n && past+i+1 < len(window); i++ {
			sum += crossEntropy(sc.logits[i*vocab:(i+1)*vocab], window[past+i+1])
			count++
		}
		past += n
	}
	return sum, count, nil
}

// crossEntropy is -log softmax(row)[target], computed stably in float64.
func crossEntropy(row []float32, target int) float64 {
	maxV := math.Inf(-1)
	for _, v := range row {
		if float64(v) > maxV {
			maxV = float64(v)
		}
	}
	var z float64
	for _, v := range row {
		z += math.Exp(float64(v) - maxV)
	}
	return math.Log(z) + maxV - float64(row[target])
}

func (e *Engine) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}
