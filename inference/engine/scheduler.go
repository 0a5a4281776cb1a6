package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"
)

// scheduler is the state of the one goroutine that runs the model for live requests.
// Each iteration it admits waiting requests (after a short BatchWait when nothing
// is running), prefills them (short prompts together in one padded pass, long ones
// in chunks; at most MaxBatchTokens prompt tokens per iteration), patches the batch
// KV cache when sequences joined or left, and runs one batched decode step for
// every running sequence.
type scheduler struct {
	e *Engine

	prefilling []*sequence // admitted, prompt not fully prefilled yet
	joining    []*sequence // prefilled, first token sampled, not yet in the batch
	rows       []*sequence // the batch, in cache row order
	cache      kvPair      // the batch's cache, [len(rows), heads, positions, head_dim]
	positions  int         // P: positions in cache.cur
	leaving    bool        // a row finished or was cancelled since the last rebuild

	retired int // sequences that gave up their slot this iteration

	// Reused per-step buffers.
	ids, mask, posIDs []int64
	logits            []float32
	scratch           []sampleScratch // one per sampling worker
	group             []*sequence     // prompts of this iteration's batched prefill
	groupKV           [][]float32     // their present KV, [len(group), heads, width, head_dim]
	noKV              [][]float32     // empty past tensors
	toks              []int           // tokens sampled in the last decode step, by row
	rowSrc            []rowSource
	kvLimit           int           // floats in one KV tensor at MaxBatchSize × context
	lastPrefill       time.Duration // how long the latest prefill step took
}

// idleRelease is how long an idle scheduler keeps its batch buffers.
const idleRelease = time.Second

func (e *Engine) loop() {
	defer close(e.done)
	sp := e.r.spec
	s := &scheduler{
		e:       e,
		cache:   newKVPair(e.r.kvTensors()),
		scratch: make([]sampleScratch, max(1, runtime.GOMAXPROCS(0))),
		kvLimit: e.cfg.MaxBatchSize * sp.Heads * e.mc.ContextLength * sp.HeadDim,
	}
	lastW, lastR := -1, -1
	for {
		if e.cfg.MaxBatchSize > 1 && e.cfg.BatchWait > 0 && s.empty() {
			e.gather(s.batchWait())
		}
		e.mu.Lock()
		if e.closed {
			pending := e.pending
			e.pending = nil
			e.mu.Unlock()
			for _, q := range pending {
				q.out.finish(Result{}, ErrClosed)
			}
			s.failAll(ErrClosed)
			return
		}
		now := time.Now()
		for len(e.pending) > 0 && e.active < e.cfg.MaxBatchSize {
			q := e.pending[0]
			e.pending[0] = nil
			e.pending = e.pending[1:]
			e.active++
			q.admitted = now
			if !q.untracked {
				e.obs.QueueWait(now.Sub(q.submitted))
				e.obs.PromptTokens(len(q.prompt))
			}
			s.prefilling = append(s.prefilling, q)
		}
		if len(e.pending) == 0 {
			e.pending = nil // let the backing array go
		}
		w, r := len(e.pending), e.active
		idle := r == 0
		if w != lastW || r != lastR {
			// Published under e.mu, like Generate's and unqueue's, so an older
			// snapshot never overwrites a newer one.
			e.obs.QueueDepth(w, r)
			lastW, lastR = w, r
		}
		e.mu.Unlock()
		if idle {
			// Keep the buffers through short pauses (the next burst reuses them);
			// let them go when the pause lasts.
			t := time.NewTimer(idleRelease)
			select {
			case <-e.wake:
			case <-e.quit:
			case <-t.C:
				s.release()
				select {
				case <-e.wake:
				case <-e.quit:
				}
			}
			t.Stop()
			continue
		}
		s.iterate()
		if s.retired > 0 {
			e.mu.Lock()
			e.active -= s.retired
			w, r := len(e.pending), e.active
			e.obs.QueueDepth(w, r)
			e.mu.Unlock()
			s.retired = 0
			lastW, lastR = w, r
		}
	}
}

// empty reports whether requests are waiting while no sequence holds a slot (the
// scheduler was idle, or the whole batch just finished): then a short wait delays
// nobody's decoding, and lets requests sent together start together.
func (s *scheduler) empty() bool {
	e := s.e
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.active == 0 && len(e.pending) > 0
}

// batchWait is how long gather may wait: BatchWait, but no longer than the last
// prefill step took, since a request that misses the group costs about one
// separate prefill step (on a small model, a few milliseconds of waiting would
// cost more than it saves).
func (s *scheduler) batchWait() time.Duration {
	if s.lastPrefill > 0 {
		return min(s.e.cfg.BatchWait, s.lastPrefill)
	}
	return s.e.cfg.BatchWait
}

// gather waits up to d for requests to claim every free slot (see
// Config.BatchWait).
func (e *Engine) gather(d time.Duration) {
	deadline := time.Now().Add(d)
	for {
		e.mu.Lock()
		done := e.closed || len(e.pending) >= e.cfg.MaxBatchSize-e.active
		e.mu.Unlock()
		left := time.Until(deadline)
		if done || left <= 0 {
			return
		}
		t := time.NewTimer(left)
		select {
		case <-e.wake:
		case <-e.quit:
		case <-t.C:
		}
		t.Stop()
	}
}

// iterate runs one scheduler iteration.
func (s *scheduler) iterate() {
	e := s.e
	e.stepMu.Lock()
	defer e.stepMu.Unlock()

	// Cancelled rows leave before any work is spent on them.
	for _, q := range s.rows {
		if !q.finished && q.cancelled() {
			s.drop(q)
		}
	}
	s.prefill()
	if s.leaving || len(s.joining) > 0 {
		s.rebuild()
	}
	if len(s.rows) > 0 {
		s.decode()
	}
}

// release lets go of the per-step buffers while there is no work (the prefill
// logits alone can be prompt chunk × vocabulary floats).
func (s *scheduler) release() {
	s.ids, s.mask, s.posIDs, s.logits = nil, nil, nil, nil
	s.groupKV = nil
	s.cache = newKVPair(s.e.r.kvTensors())
	s.positions = 0
	clear(s.rows)
	s.rows = s.rows[:0]
	s.leaving = false
}

// drop retires a sequence whose client is gone.
func (s *scheduler) drop(q *sequence) {
	q.finished = true
	q.kv = kvPair{}
	s.leaving = true
	s.retired++
	s.e.obs.Cancelled()
	err := q.ctx.Err()
	if err == nil {
		err = context.Canceled
	}
	q.out.finish(Result{}, err)
}

// fail retires a sequence with an engine error.
func (s *scheduler) fail(q *sequence, err error) {
	if q.finished {
		return
	}
	q.finished = true
	q.kv = kvPair{}
	s.leaving = true
	s.retired++
	q.out.finish(Result{}, err)
}

// failAll fails every admitted sequence and empties the batch.
func (s *scheduler) failAll(err error) {
	for _, list := range [][]*sequence{s.prefilling, s.joining, s.rows} {
		for _, q := range list {
			s.fail(q, err)
		}
	}
	s.prefilling, s.joining, s.rows = nil, nil, nil
	s.cache = newKVPair(s.e.r.kvTensors())
	s.positions = 0
	s.leaving = false
}

// prefill feeds the prompts of admitted sequences, oldest first, up to
// MaxBatchTokens prompt tokens per iteration (always at least one chunk), so that a
// burst of joiners delays the running batch by a bounded amount. Prompts that fit
// in one chunk and have not started are prefilled together in one forward pass,
// left-padded to the longest of them (the budget counts the padded tokens): one
// large matrix product instead of one per prompt, which on a CPU is several times
// faster because the weights are read once. Longer prompts go through their own
// cache in chunks whose boundaries depend only on the prompt length.
func (s *scheduler) prefill() {
	e := s.e
	vocab := e.r.spec.Vocab
	limit := e.cfg.MaxBatchTokens
	used := 0 // tokens spent on chunks this iteration
	group, groupLen := s.group[:0], 0
	kept := s.prefilling[:0]
	for _, q := range s.prefilling {
		if q.cancelled() {
			s.drop(q)
			continue
		}
		if s.batchable(q) {
			n := len(q.prompt)
			if cost := (len(group) + 1) * max(groupLen, n); used+cost <= limit || used == 0 && len(group) == 0 {
				group = append(group, q)
				groupLen = max(groupLen, n)
			} else {
				kept = append(kept, q)
			}
			continue
		}
		for !q.finished && q.fed < len(q.prompt) {
			spent := used + len(group)*groupLen
			chunk := min(limit, len(q.prompt)-q.fed)
			if spent > 0 && spent+chunk > limit {
				break
			}
			if err := s.prefillChunk(q, chunk); err != nil {
				e.log.Error("prefill failed", "err", err)
				s.fail(q, fmt.Errorf("engine: prefill: %w", err))
				break
			}
			used += chunk
		}
		if q.finished {
			continue
		}
		if q.fed < len(q.prompt) {
			kept = append(kept, q)
			continue
		}
		// Prompt complete: the last position of the last chunk gives the first token.
		s.firstToken(q, s.logits[(q.lastChunk-1)*vocab:q.lastChunk*vocab])
	}
	clear(s.prefilling[len(kept):])
	s.prefilling = kept
	if len(group) > 0 {
		if err := s.prefillBatch(group, groupLen); err != nil {
			e.log.Error("batched prefill failed", "batch", len(group), "tokens", groupLen, "err", err)
			for _, q := range group {
				s.fail(q, fmt.Errorf("engine: prefill: %w", err))
			}
		} else {
			for i, q := range group {
				row := (i+1)*groupLen - 1
				s.firstToken(q, s.logits[row*vocab:(row+1)*vocab])
			}
		}
	}
	clear(group)
	s.group = group[:0]
}

// batchable reports whether q's prompt can go through a batched prefill: it has not
// started and fits in one chunk, and the model computes padded rows correctly.
func (s *scheduler) batchable(q *sequence) bool {
	return s.e.paddedPrefill && q.fed == 0 && len(q.prompt) <= s.e.cfg.MaxBatchTokens
}

// firstToken samples a sequence's first token from the logits of its prompt's last
// position and moves it to the joiners.
func (s *scheduler) firstToken(q *sequence, logits []float32) {
	s.start(q)
	tok := q.samp.sample(logits, &s.scratch[0])
	if !q.untracked {
		s.e.obs.GeneratedTokens(1)
	}
	s.accept(q, tok, time.Now())
	if q.finished {
		q.kv = kvPair{}
	} else {
		s.joining = append(s.joining, q)
	}
}

// prefillBatch runs the whole prompts of group through one forward pass, each row
// left-padded to width tokens (padding is masked out and gets position 0). The
// rows' caches are the rows of s.groupKV until rebuild copies them into the batch,
// in the same iteration; s.logits receives [len(group), width, vocab].
func (s *scheduler) prefillBatch(group []*sequence, width int) error {
	e := s.e
	b := len(group)
	s.ids = growInt64(s.ids, b*width)
	s.posIDs = growInt64(s.posIDs, b*width)
	s.mask = growInt64(s.mask, b*width)
	tokens := 0
	for i, q := range group {
		n := len(q.prompt)
		tokens += n
		pad := width - n
		ids, pos, mask := s.ids[i*width:(i+1)*width], s.posIDs[i*width:(i+1)*width], s.mask[i*width:(i+1)*width]
		for j := range width {
			if j < pad {
				ids[j], pos[j], mask[j] = 0, 0, 0
			} else {
				ids[j], pos[j], mask[j] = int64(q.prompt[j-pad]), int64(j-pad), 1
			}
		}
	}
	s.logits = growFloat32(s.logits, b*width*e.r.spec.Vocab)
	if s.groupKV == nil {
		s.groupKV = make([][]float32, e.r.kvTensors())
		s.noKV = make([][]float32, e.r.kvTensors())
	}
	growTo(s.groupKV, e.r.kvLen(b, width), e.r.kvLen(1, e.cfg.MaxBatchTokens))
	t0 := time.Now()
	err := e.r.run(&forward{
		b: b, s: width, past: 0,
		ids: s.ids, mask: s.mask, positions: s.posIDs,
		pastKV: s.noKV, presentKV: s.groupKV, logits: s.logits,
	})
	if err != nil {
		return err
	}
	s.lastPrefill = time.Since(t0)
	e.obs.Step("prefill", b, tokens, s.lastPrefill)
	for i, q := range group {
		q.kv = kvPair{cur: s.groupKV}
		q.kvRow, q.kvPos = i, width
		q.fed = len(q.prompt)
		q.lastChunk = len(q.prompt)
	}
	return nil
}

// start prepares a sequence's sampler and text state when its prompt is in.
func (s *scheduler) start(q *sequence) {
	e := s.e
	banned := -1
	if q.req.IgnoreEOS {
		banned = e.eos
	}
	q.samp = newSampler(q.req, e.vocab, banned)
	q.dec = e.tok.NewStreamDecoder()
	q.stop = newStopFilter(q.req.Stop)
}

// prefillChunk feeds the next n prompt tokens of q through the model, extending q's
// own cache; s.logits receives [1, n, vocab].
func (s *scheduler) prefillChunk(q *sequence, n int) error {
	e := s.e
	sp := e.r.spec
	if len(q.kv.cur) == 0 {
		q.kv = newKVPair(e.r.kvTensors())
	}
	past := q.fed
	total := past + n
	s.ids = growInt64(s.ids, n)
	s.posIDs = growInt64(s.posIDs, n)
	s.mask = growInt64(s.mask, total)
	for i := 0; i < n; i++ {
		s.ids[i] = int64(q.prompt[past+i])
		s.posIDs[i] = int64(past + i)
	}
	for i := 0; i < total; i++ {
		s.mask[i] = 1
	}
	s.logits = growFloat32(s.logits, n*sp.Vocab)
	growTo(q.kv.next, e.r.kvLen(1, total), e.r.kvLen(1, e.mc.ContextLength))
	t0 := time.Now()
	err := e.r.run(&forward{
		b: 1, s: n, past: past,
		ids: s.ids, mask: s.mask, positions: s.posIDs,
		pastKV: q.kv.cur, presentKV: q.kv.next, logits: s.logits,
	})
	if err != nil {
		return err
	}
	s.lastPrefill = time.Since(t0)
	e.obs.Step("prefill", 1, n, s.lastPrefill)
	q.kv.swap()
	q.kvRow, q.kvPos = 0, total
	q.fed = total
	q.lastChunk = n
	return nil
}

// rebuild updates the batch cache after sequences joined or left. When the rows
// still fit the current position count P without wasting more than a quarter of it
// on padding, the cache is patched in place: a joiner takes a leaver's row (or a new
// row at the end), and rows from the end fill the remaining holes, so only the rows
// that change are copied. Otherwise the whole cache is laid out afresh on P = the
// longest row (leading all-padding columns trimmed).
func (s *scheduler) rebuild() {
	if s.rebuildInPlace() {
		return
	}
	e := s.e
	sp := e.r.spec
	s.rowSrc = s.rowSrc[:0]
	var rows []*sequence
	p := 0
	for r, q := range s.rows {
		if q.finished {
			continue
		}
		rows = append(rows, q)
		s.rowSrc = append(s.rowSrc, rowSource{bufs: s.cache.cur, row: r, positions: s.positions, length: q.fed})
		p = max(p, q.fed)
	}
	for _, q := range s.joining {
		rows = append(rows, q)
		s.rowSrc = append(s.rowSrc, rowSource{bufs: q.kv.cur, row: q.kvRow, positions: q.kvPos, length: q.fed})
		p = max(p, q.fed)
	}
	if len(rows) > 0 {
		reserve(s.cache.next, e.r.kvLen(len(rows), p), s.kvWant(rows, p))
		gatherRows(s.cache.next, s.rowSrc, sp.Heads, sp.HeadDim, p)
		s.cache.swap()
	}
	for _, q := range s.joining {
		q.kv = kvPair{}
	}
	clear(s.joining)
	s.joining = s.joining[:0]
	clear(s.rowSrc)
	s.rowSrc = s.rowSrc[:0]
	s.rows = rows
	s.positions = p
	s.leaving = false
	if len(rows) == 0 {
		// Nothing to keep: let a burst's buffers go.
		s.cache = newKVPair(e.r.kvTensors())
	}
}

// rebuildInPlace patches the batch cache without moving surviving rows (see
// rebuild); false when the layout has to change.
func (s *scheduler) rebuildInPlace() bool {
	e := s.e
	sp := e.r.spec
	p := s.positions
	live, longest := 0, 0
	for _, q := range s.rows {
		if !q.finished {
			live++
			longest = max(longest, q.fed)
		}
	}
	for _, q := range s.joining {
		longest = max(longest, q.fed)
	}
	b := live + len(s.joining)
	if live == 0 || longest > p || (p-longest)*4 > p || b > len(s.rows) && len(s.cache.cur[0]) < e.r.kvLen(b, p) {
		return false
	}
	rowLen := sp.Heads * p * sp.HeadDim
	var holes []int
	for i, q := range s.rows {
		if q.finished {
			holes = append(holes, i)
		}
	}
	rows := s.rows
	for _, q := range s.joining {
		j := len(rows)
		if len(holes) > 0 {
			j, holes = holes[0], holes[1:]
			rows[j] = q
		} else {
			rows = append(rows, q)
		}
		src := []rowSource{{bufs: q.kv.cur, row: q.kvRow, positions: q.kvPos, length: q.fed}}
		dst := make([][]float32, len(s.cache.cur))
		for k, buf := range s.cache.cur {
			dst[k] = buf[j*rowLen : (j+1)*rowLen]
		}
		gatherRows(dst, src, sp.Heads, sp.HeadDim, p)
		q.kv = kvPair{}
	}
	// Fill the remaining holes with rows from the end.
	for len(holes) > 0 {
		last := len(rows) - 1
		if holes[len(holes)-1] == last {
			rows[last] = nil
			rows, holes = rows[:last], holes[:len(holes)-1]
			continue
		}
		j := holes[0]
		holes = holes[1:]
		for _, buf := range s.cache.cur {
			copy(buf[j*rowLen:(j+1)*rowLen], buf[last*rowLen:(last+1)*rowLen])
		}
		rows[j] = rows[last]
		rows[last] = nil
		rows = rows[:last]
	}
	clear(s.joining)
	s.joining = s.joining[:0]
	s.rows = rows
	s.leaving = false
	return true
}

// kvWant is the size of one KV tensor of the batch rows when it reaches its
// largest before its membership changes: p positions now, growing by one per step
// until the row with the most tokens left finishes.
func (s *scheduler) kvWant(rows []*sequence, p int) int {
	left := 0
	for _, q := range rows {
		if !q.finished {
			left = max(left, q.maxNew-q.generated)
		}
	}
	return min(s.e.r.kvLen(len(rows), min(p+left, s.e.mc.ContextLength)), s.kvLimit)
}

// decode runs one batched decode step: every row feeds its last token at its own
// next position; padding columns are masked out.
func (s *scheduler) decode() {
	e := s.e
	sp := e.r.spec
	b, p := len(s.rows), s.positions
	s.ids = growInt64(s.ids, b)
	s.posIDs = growInt64(s.posIDs, b)
	s.mask = growInt64(s.mask, b*(p+1))
	for i, q := range s.rows {
		s.ids[i] = int64(q.lastToken)
		s.posIDs[i] = int64(q.fed)
		m := s.mask[i*(p+1) : (i+1)*(p+1)]
		pad := p - q.fed
		for j := range m {
			if j < pad {
				m[j] = 0
			} else {
				m[j] = 1
			}
		}
	}
	s.logits = growFloat32(s.logits, b*sp.Vocab)
	reserve(s.cache.next, e.r.kvLen(b, p+1), s.kvWant(s.rows, p+1))
	t0 := time.Now()
	err := e.r.run(&forward{
		b: b, s: 1, past: p,
		ids: s.ids, mask: s.mask, positions: s.posIDs,
		pastKV: s.cache.cur, presentKV: s.cache.next, logits: s.logits,
	})
	if err != nil {
		e.log.Error("decode step failed", "batch", b, "positions", p, "err", err)
		for _, q := range s.rows {
			s.fail(q, fmt.Errorf("engine: decode: %w", err))
		}
		s.rows = nil
		s.cache = newKVPair(e.r.kvTensors())
		s.positions = 0
		s.leaving = false
		return
	}
	now := time.Now()
	e.obs.Step("decode", b, b, now.Sub(t0)) // model work: the warm-up's steps count too
	s.cache.swap()
	s.positions = p + 1
	s.sampleRows()
	for i, q := range s.rows {
		q.fed++
		if q.finished {
			continue
		}
		s.accept(q, s.toks[i], now)
	}
	e.obs.GeneratedTokens(tracked(s.rows))
}

// tracked counts the sequences whose work is reported to the Observer (all but the
// warm-up).
func tracked(qs []*sequence) int {
	n := 0
	for _, q := range qs {
		if !q.untracked {
			n++
		}
	}
	return n
}

// accept records a sampled token: timing, text, stop conditions, deltas.
func (s *scheduler) accept(q *sequence, tok int, now time.Time) {
	e := s.e
	q.generated++
	q.unsent++
	if q.generated == 1 {
		q.ttft = now.Sub(q.submitted)
		if !q.untracked {
			e.obs.FirstToken(q.ttft)
		}
	} else if !q.untracked {
		e.obs.InterToken(now.Sub(q.lastTokAt))
	}
	q.lastTokAt = now
	q.lastToken = tok
	if tok == e.eos && !q.req.IgnoreEOS {
		s.complete(q, FinishStop, true, now)
		return
	}
	text, stopped := q.stop.add(q.dec.Add(tok))
	s.send(q, text)
	if stopped {
		s.complete(q, FinishStop, false, now)
		return
	}
	if q.generated >= q.maxNew {
		s.complete(q, FinishLength, true, now)
	}
}

// send emits text as a delta covering the tokens not yet covered by one.
func (s *scheduler) send(q *sequence, text string) {
	if text == "" {
		return
	}
	q.out.push(Delta{Text: text, Tokens: q.unsent})
	q.unsent = 0
}

// complete finishes q and posts the result. flush releases the text held back
// (partial UTF-8, a possible stop-string prefix); it is false when a stop string
// ended the sequence, since nothing after it may be emitted.
func (s *scheduler) complete(q *sequence, reason string, flush bool, now time.Time) {
	if flush {
		text, stopped := q.stop.add(q.dec.Flush())
		if stopped {
			reason = FinishStop
		} else {
			text += q.stop.flush()
		}
		s.send(q, text)
	}
	q.finished = true
	s.leaving = true
	s.retired++
	q.out.finish(Result{
		Text:             q.stop.result(),
		PromptTokens:     len(q.prompt),
		GeneratedTokens:  q.generated,
		MaxNewTokens:     q.maxNew,
		FinishReason:     reason,
		QueueTime:        q.admitted.Sub(q.submitted),
		TimeToFirstToken: q.ttft,
		Total:            now.Sub(q.submitted),
	}, nil)
}

func growInt64(b []int64, n int) []int64 {
	if cap(b) < n {
		return make([]int64, n+n/2)
	}
	return b[:cap(b)]
}

func growFloat32(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n+n/2)
	}
	return b[:cap(b)]
}

// sampleRows samples every row of the last decode step into s.toks. Rows are
// independent (each has its own sampler and random source), so large batches are
// split across goroutines while the model is idle between steps.
func (s *scheduler) sampleRows() {
	vocab := s.e.r.spec.Vocab
	b := len(s.rows)
	if cap(s.toks) < b {
		s.toks = make([]int, b, s.e.cfg.MaxBatchSize)
	}
	s.toks = s.toks[:b]
	one := func(i int, sc *sampleScratch) {
		if q := s.rows[i]; !q.finished {
			s.toks[i] = q.samp.sample(s.logits[i*vocab:(i+1)*vocab], sc)
		}
	}
	workers := min(len(s.scratch), b/4)
	if workers < 2 {
		for i := range b {
			one(i, &s.scratch[0])
		}
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < b; i += workers {
				one(i, &s.scratch[w])
			}
		}()
	}
	wg.Wait()
}

// checkPaddedPrefill verifies, on the loaded model, that a left-padded row of a
// batched prefill gives the same last-position logits as the same prompt alone.
// A graph whose attention turns a fully masked padding query into NaN (and so
// poisons the real rows through the cache) fails it, and the engine then prefills
// prompts one at a time.
func (e *Engine) checkPaddedPrefill() error {
	sp := e.r.spec
	if !sp.HasPositionIDs {
		return errors.New("the model has no position_ids input")
	}
	vocab := sp.Vocab
	t1, t2, t3 := int64(1%vocab), int64(2%vocab), int64(3%vocab)
	run := func(b, width int, ids, mask, pos []int64) ([]float32, error) {
		present := make([][]float32, e.r.kvTensors())
		growTo(present, e.r.kvLen(b, width), e.r.kvLen(b, width))
		logits := make([]float32, b*width*vocab)
		err := e.r.run(&forward{b: b, s: width, ids: ids, mask: mask, positions: pos,
			pastKV: make([][]float32, e.r.kvTensors()), presentKV: present, logits: logits})
		return logits, err
	}
	alone, err := run(1, 2, []int64{t1, t2}, []int64{1, 1}, []int64{0, 1})
	if err != nil {
		return fmt.Errorf("check padded prefill: %w", err)
	}
	// Row 0 is the same two tokens after one padding column; row 1 is three tokens.
	padded, err := run(2, 3, []int64{0, t1, t2, t1, t2, t3}, []int64{0, 1, 1, 1, 1, 1}, []int64{0, 0, 1, 0, 1, 2})
	if err != nil {
		return fmt.Errorf("check padded prefill: %w", err)
	}
	want, got := alone[vocab:2*vocab], padded[2*vocab:3*vocab]
	for i := range want {
		w, g := float64(want[i]), float64(got[i])
		if math.IsNaN(g) || math.IsInf(g, 0) || math.Abs(w-g) > 1e-3*(1+math.Abs(w)) {
			return fmt.Errorf("a left-padded row's logits differ from the unpadded prompt's (token %d: %g vs %g)", i, g, w)
		}
	}
	return nil
}
