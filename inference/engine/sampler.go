package engine

import (
	"math"
	"math/rand/v2"
	"slices"
)

// sampler picks the next token of one sequence. Each sequence owns one, with its own
// random source, so a seeded sequence draws the same numbers whatever else runs in
// the batch.
type sampler struct {
	temperature float64
	topK        int
	topP        float64
	banned      int // token id never chosen (EOS under IgnoreEOS), or -1
	vocab       int // ids ≥ vocab are never chosen (model rows the tokenizer lacks)
	rng         *rand.Rand
}

// newSampler builds the sampler for a request. vocab bounds the ids that may be
// chosen; banned (or -1) is masked out.
func newSampler(req Request, vocab, banned int) *sampler {
	s := &sampler{
		temperature: req.Temperature,
		topK:        req.TopK,
		topP:        req.TopP,
		banned:      banned,
		vocab:       vocab,
	}
	if s.temperature > 0 {
		seed := req.Seed
		if !req.HasSeed {
			seed = rand.Uint64()
		}
		s.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	}
	return s
}

// sampleScratch holds the scheduler's reusable work buffers (one goroutine samples).
type sampleScratch struct {
	idx          []int32
	weights      []float64
	kept, tail   []int32
	keptW, tailW []float64
}

func (sc *sampleScratch) indices(n int) []int32 {
	if cap(sc.idx) < n {
		sc.idx = make([]int32, n)
	}
	return sc.idx[:n]
}

func (sc *sampleScratch) floats(n int) []float64 {
	if cap(sc.weights) < n {
		sc.weights = make([]float64, n)
	}
	return sc.weights[:n]
}

// logitAt returns the logit of id with NaN and the banned id mapped to -Inf.
func (s *sampler) logitAt(logits []float32, id int32) float64 {
	if int(id) == s.banned {
		return math.Inf(-1)
	}
	v := float64(logits[id])
	if v != v {
		return math.Inf(-1)
	}
	return v
}

// sample returns the next token given one position's logits (length ≥ s.vocab).
// Cost is linear in the vocabulary: top-k by a bounded heap, top-p by binning
// weights on their binary exponent and sorting only the bin where the nucleus ends.
func (s *sampler) sample(logits []float32, sc *sampleScratch) int {
	n := s.vocab
	if n > len(logits) {
		n = len(logits)
	}
	// A temperature so small that 1/T overflows is greedy decoding in the limit
	// (computing with an infinite 1/T would give 0·Inf = NaN weights).
	if s.temperature <= 0 || s.topK == 1 || math.IsInf(1/s.temperature, 1) {
		return s.argmax(logits[:n])
	}
	var cand []int32
	if s.topK > 0 && s.topK < n {
		cand = topKHeap(sc.indices(s.topK)[:0], logits[:n], s.topK, s.banned)
	} else {
		cand = sc.indices(n)
		for i := range cand {
			cand[i] = int32(i)
		}
	}
	// Softmax weights over the candidates at the requested temperature.
	maxL := math.Inf(-1)
	for _, id := range cand {
		if v := s.logitAt(logits, id); v > maxL {
			maxL = v
		}
	}
	if math.IsInf(maxL, -1) {
		return s.argmax(logits[:n])
	}
	w := sc.floats(len(cand))
	total := 0.0
	invT := 1 / s.temperature
	if len(cand) == n { // the whole vocabulary, in id order: no indirection
		for i, v := range logits[:n] {
			x := (float64(v) - maxL) * invT
			e := 0.0
			if x > -745 { // also false for NaN
				e = math.Exp(x)
			}
			w[i] = e
			total += e
		}
		if s.banned >= 0 && s.banned < n {
			total -= w[s.banned]
			w[s.banned] = 0
		}
	} else {
		for i, id := range cand {
			e := math.Exp((s.logitAt(logits, id) - maxL) * invT)
			w[i] = e
			total += e
		}
	}
	if s.topP > 0 && s.topP < 1 {
		cand, w, total = nucleus(cand, w, total, s.topP, sc)
	}
	u := s.rng.Float64() * total
	acc := 0.0
	for i, id := range cand {
		acc += w[i]
		if u < acc {
			return int(id)
		}
	}
	// Rounding left u at the very top: the last candidate with weight.
	for i := len(cand) - 1; i >= 0; i-- {
		if w[i] > 0 {
			return int(cand[i])
		}
	}
	return int(cand[0])
}

// nucleus keeps the smallest set of candidates, taken in descending weight, whose
// mass reaches topP of total. Weights lie in [0, 1] (the top one is 1); they are
// binned on their binary exponent, whole bins are kept from the top down, and only
// the bin where the mass is reached is sorted to find the exact cut. The kept
// candidates come in a deterministic order (index order, then the sorted tail).
func nucleus(cand []int32, w []float64, total, topP float64, sc *sampleScratch) ([]int32, []float64, float64) {
	const bins = 64
	var mass [bins]float64
	binOf := func(x float64) int {
		if x <= 0 {
			return bins - 1
		}
		// The binary exponent: x in [2^-b, 2^(1-b)) lands in bin b (x ≤ 1: b ≥ 0).
		b := 1023 - int(math.Float64bits(x)>>52&0x7ff)
		if b >= bins-1 {
			return bins - 1
		}
		return b
	}
	for _, x := range w {
		mass[binOf(x)] += x
	}
	target := topP * total
	acc := 0.0
	last := bins - 1
	for b := 0; b < bins; b++ {
		if acc+mass[b] >= target {
			last = b
			break
		}
		acc += mass[b]
	}
	// Whole bins above `last` are in; bin `last` is sorted and cut.
	keptIDs, keptW := sc.kept[:0], sc.keptW[:0]
	tailIDs, tailW := sc.tail[:0], sc.tailW[:0]
	for i, x := range w {
		switch b := binOf(x); {
		case b < last:
			keptIDs, keptW = append(keptIDs, cand[i]), append(keptW, x)
		case b == last:
			tailIDs, tailW = append(tailIDs, cand[i]), append(tailW, x)
		}
	}
	sortTopWeighted(tailIDs, tailW)
	for i := range tailIDs {
		keptIDs, keptW = append(keptIDs, tailIDs[i]), append(keptW, tailW[i])
		acc += tailW[i]
		if acc >= target {
			break
		}
	}
	sc.kept, sc.keptW, sc.tail, sc.tailW = keptIDs, keptW, tailIDs, tailW
	sum := 0.0
	for _, x := range keptW {
		sum += x
	}
	return keptIDs, keptW, sum
}

// topKHeap returns the ids of the k largest logits (ties: lower id first; the banned
// id and NaN rank lowest) using a min-heap of size k: one comparison per logit for
// most of the vocabulary.
func topKHeap(heap []int32, logits []float32, k, banned int) []int32 {
	negInf := float32(math.Inf(-1))
	val := func(id int32) float32 {
		v := logits[id]
		if int(id) == banned || v != v {
			return negInf
		}
		return v
	}
	// below: a ranks below b (smaller value, or equal value and larger id).
	below := func(a, b int32) bool {
		va, vb := val(a), val(b)
		if va != vb {
			return va < vb
		}
		return a > b
	}
	for id := int32(0); int(id) < len(logits); id++ {
		if len(heap) < k {
			heap = append(heap, id)
			for i := len(heap) - 1; i > 0; {
				p := (i - 1) / 2
				if !below(heap[i], heap[p]) {
					break
				}
				heap[i], heap[p] = heap[p], heap[i]
				i = p
			}
			continue
		}
		// Later ids lose ties, so only a strictly larger value enters.
		if v := logits[id]; v > val(heap[0]) && int(id) != banned {
			heap[0] = id
			for i := 0; ; {
				l := 2*i + 1
				if l >= len(heap) {
					break
				}
				m := l
				if r := l + 1; r < len(heap) && below(heap[r], heap[l]) {
					m = r
				}
				if !below(heap[m], heap[i]) {
					break
				}
				heap[i], heap[m] = heap[m], heap[i]
				i = m
			}
		}
	}
	return heap
}

// argmax returns the first index of the largest logit (NaN and the banned id never win).
func (s *sampler) argmax(logits []float32) int {
	best, bestV := -1, float32(math.Inf(-1))
	// A comparison with NaN is false, so NaN is never chosen; the banned id is
	// skipped by scanning around it, which keeps the hot loop to one comparison.
	if b := s.banned; b >= 0 && b < len(logits) {
		best, bestV = argmaxFrom(logits[:b], 0, best, bestV)
		best, bestV = argmaxFrom(logits[b+1:], b+1, best, bestV)
	} else {
		best, bestV = argmaxFrom(logits, 0, best, bestV)
	}
	if best >= 0 {
		return best
	}
	// Every allowed logit is -Inf or NaN: the first that is not NaN.
	for i, v := range logits {
		if i != s.banned && v == v {
			return i
		}
	}
	return 0
}

// argmaxFrom continues a first-maximum search over xs, whose first element has id
// base; only values above bestV (strictly) replace the current best.
func argmaxFrom(xs []float32, base, best int, bestV float32) (int, float32) {
	for i, v := range xs {
		if v > bestV {
			best, bestV = base+i, v
		}
	}
	return best, bestV
}

// sortTopWeighted sorts parallel (id, weight) slices by descending weight, ties by id.
func sortTopWeighted(ids []int32, w []float64) {
	type pair struct {
		id int32
		w  float64
	}
	ps := make([]pair, len(ids))
	for i := range ids {
		ps[i] = pair{ids[i], w[i]}
	}
	slices.SortFunc(ps, func(a, b pair) int {
		switch {
		case a.w > b.w:
			return -1
		case a.w < b.w:
			return 1
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	for i, p := range ps {
		ids[i], w[i] = p.id, p.w
	}
}
