package engine

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func randomLogits(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	l := make([]float32, n)
	for i := range l {
		l[i] = float32(r.NormFloat64() * 3)
	}
	return l
}

func TestGreedyPicksFirstMaximum(t *testing.T) {
	s := newSampler(Request{}, 6, -1)
	var sc sampleScratch
	if got := s.sample([]float32{1, 5, float32(math.NaN()), 5, 2, 0}, &sc); got != 1 {
		t.Errorf("greedy = %d, want 1 (first of the tied maxima, NaN ignored)", got)
	}
	banned := newSampler(Request{}, 6, 1)
	if got := banned.sample([]float32{1, 5, 0, 5, 2, 0}, &sc); got != 3 {
		t.Errorf("greedy with id 1 banned = %d, want 3", got)
	}
	// A temperature whose inverse overflows is greedy, not NaN weights picking id 0.
	for _, temp := range []float64{5e-324, 1e-310} {
		tiny := newSampler(Request{Temperature: temp, Seed: 1, HasSeed: true}, 6, -1)
		if got := tiny.sample([]float32{1, 2, 7, 3, 2, 0}, &sc); got != 2 {
			t.Errorf("temperature %g = %d, want the greedy 2", temp, got)
		}
	}
	// Ids beyond the tokenizer's vocabulary are never chosen.
	short := newSampler(Request{}, 3, -1)
	if got := short.sample([]float32{1, 2, 3, 9}, &sc); got != 2 {
		t.Errorf("greedy within vocab 3 = %d, want 2", got)
	}
}

func TestTopKHeapMatchesSort(t *testing.T) {
	for seed := uint64(0); seed < 20; seed++ {
		logits := randomLogits(500, seed)
		logits[7], logits[8] = logits[9], logits[9] // ties: lower ids first
		logits[11] = float32(math.NaN())
		const banned = 3
		logits[banned] = 100
		order := make([]int32, len(logits))
		for i := range order {
			order[i] = int32(i)
		}
		rank := func(id int32) float32 {
			if id == banned || logits[id] != logits[id] {
				return float32(math.Inf(-1))
			}
			return logits[id]
		}
		slices.SortStableFunc(order, func(a, b int32) int {
			switch ra, rb := rank(a), rank(b); {
			case ra > rb:
				return -1
			case ra < rb:
				return 1
			}
			return 0
		})
		for _, k := range []int{1, 2, 10, 64, 499} {
			got := topKHeap(nil, logits, k, banned)
			slices.Sort(got)
			want := slices.Clone(order[:k])
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("seed %d k %d: heap %v, sort %v", seed, k, got, want)
			}
		}
	}
}

// TestSamplingDistribution checks the empirical frequencies against the exact
// temperature / top-k / top-p distribution over a small vocabulary.
func TestSamplingDistribution(t *testing.T) {
	logits := []float32{2.0, 1.0, 0.5, 0.0, -1.0, -3.0}
	exact := func(temp float64, topK int, topP float64) []float64 {
		type tp struct {
			id int
			w  float64
		}
		var ps []tp
		for i, l := range logits {
			ps = append(ps, tp{i, math.Exp(float64(l) / temp)})
		}
		slices.SortFunc(ps, func(a, b tp) int {
			if a.w > b.w {
				return -1
			}
			return 1
		})
		if topK > 0 && topK < len(ps) {
			ps = ps[:topK]
		}
		var z float64
		for _, p := range ps {
			z += p.w
		}
		if topP > 0 && topP < 1 {
			acc := 0.0
			for i, p := range ps {
				acc += p.w / z
				if acc >= topP {
					ps = ps[:i+1]
					break
				}
			}
		}
		z = 0
		for _, p := range ps {
			z += p.w
		}
		out := make([]float64, len(logits))
		for _, p := range ps {
			out[p.id] = p.w / z
		}
		return out
	}
	var sc sampleScratch
	for _, c := range []struct {
		temp float64
		topK int
		topP float64
	}{{1, 0, 0}, {0.5, 0, 0}, {2, 3, 0}, {1, 0, 0.8}, {1.5, 4, 0.9}} {
		s := newSampler(Request{Temperature: c.temp, TopK: c.topK, TopP: c.topP, Seed: 7, HasSeed: true}, len(logits), -1)
		const n = 60000
		counts := make([]float64, len(logits))
		for i := 0; i < n; i++ {
			counts[s.sample(slices.Clone(logits), &sc)]++
		}
		want := exact(c.temp, c.topK, c.topP)
		for id := range logits {
			got := counts[id] / n
			if want[id] == 0 && got != 0 {
				t.Errorf("%+v: token %d sampled %.4f, but it is outside the cut", c, id, got)
			}
			if math.Abs(got-want[id]) > 0.01 {
				t.Errorf("%+v: token %d frequency %.4f, want %.4f", c, id, got, want[id])
			}
		}
	}
}

func TestNucleusOnLargeVocabulary(t *testing.T) {
	// top_p without top_k over 50k ids exercises the growing partial selection.
	logits := randomLogits(50257, 3)
	s := newSampler(Request{Temperature: 1, TopP: 0.5, Seed: 1, HasSeed: true}, len(logits), -1)
	var sc sampleScratch
	// The nucleus is the smallest set of top tokens with mass ≥ 0.5; every sample
	// must come from it.
	order := make([]int, len(logits))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		if logits[a] > logits[b] {
			return -1
		}
		return 1
	})
	var z float64
	for _, l := range logits {
		z += math.Exp(float64(l))
	}
	in := map[int]bool{}
	acc := 0.0
	for _, id := range order {
		in[id] = true
		acc += math.Exp(float64(logits[id])) / z
		if acc >= 0.5 {
			break
		}
	}
	for i := 0; i < 2000; i++ {
		if id := s.sample(slices.Clone(logits), &sc); !in[id] {
			t.Fatalf("sample %d: id %d is outside the %d-token nucleus", i, id, len(in))
		}
	}
}

func TestSeededSamplerReproducible(t *testing.T) {
	logits := randomLogits(1000, 9)
	draw := func(seed uint64) []int {
		s := newSampler(Request{Temperature: 1, TopK: 100, Seed: seed, HasSeed: true}, len(logits), -1)
		var sc sampleScratch
		var out []int
		for i := 0; i < 50; i++ {
			out = append(out, s.sample(logits, &sc))
		}
		return out
	}
	if a, b := draw(5), draw(5); !slices.Equal(a, b) {
		t.Error("same seed, different draws")
	}
	if a, b := draw(5), draw(6); slices.Equal(a, b) {
		t.Error("different seeds, same 50 draws")
	}
}

func TestBannedNeverSampled(t *testing.T) {
	logits := []float32{0, 10, 0, 0}
	s := newSampler(Request{Temperature: 1, Seed: 1, HasSeed: true}, 4, 1)
	var sc sampleScratch
	for i := 0; i < 1000; i++ {
		if s.sample(logits, &sc) == 1 {
			t.Fatal("banned id sampled")
		}
	}
}

func TestStopFilter(t *testing.T) {
	for _, c := range []struct {
		name    string
		stops   []string
		pieces  []string
		deltas  []string // released after each piece
		stopped int      // index of the piece that completes a stop string, or -1
		result  string
	}{
		{"no stops", nil, []string{"ab", "c"}, []string{"ab", "c"}, -1, "abc"},
		{"hold back a possible prefix", []string{"END"}, []string{"xE", "N", "y"}, []string{"x", "", "ENy"}, -1, "xENy"},
		{"stop split across pieces", []string{"END"}, []string{"hello E", "N", "D more"}, []string{"hello ", "", ""}, 2, "hello "},
		{"stop inside one piece", []string{"\n\n"}, []string{"a\n\nb"}, []string{"a"}, 0, "a"},
		{"earliest of several", []string{"zz", "b"}, []string{"azzb"}, []string{"a"}, 0, "a"},
		{"overlapping prefixes", []string{"aab"}, []string{"a", "a", "a", "b"}, []string{"", "", "a", ""}, 3, "a"},
		{"multibyte", []string{"é!"}, []string{"café", "!"}, []string{"caf", ""}, 1, "caf"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newStopFilter(c.stops)
			stoppedAt := -1
			for i, p := range c.pieces {
				rel, stopped := f.add(p)
				if rel != c.deltas[i] {
					t.Errorf("piece %d %q released %q, want %q", i, p, rel, c.deltas[i])
				}
				if stopped {
					stoppedAt = i
					break
				}
			}
			if stoppedAt != c.stopped {
				t.Errorf("stopped at piece %d, want %d", stoppedAt, c.stopped)
			}
			if stoppedAt < 0 {
				f.flush()
			}
			if f.result() != c.result {
				t.Errorf("result %q, want %q", f.result(), c.result)
			}
			for _, s := range c.stops {
				if strings.Contains(f.result(), s) {
					t.Errorf("result %q contains stop %q", f.result(), s)
				}
			}
		})
	}
}

// referenceArgmax is the plain definition greedy sampling must match: the first
// maximum among the ids that are neither NaN nor banned (an -Inf counts), 0 if none.
func referenceArgmax(logits []float32, banned int) int {
	best, bestV := -1, float32(math.Inf(-1))
	for i, v := range logits {
		if i == banned || v != v {
			continue
		}
		if best < 0 || v > bestV {
			best, bestV = i, v
		}
	}
	return max(best, 0)
}

func TestGreedyMatchesReference(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	r := rand.New(rand.NewPCG(7, 7))
	for trial := range 2000 {
		n := 1 + r.IntN(40)
		l := make([]float32, n)
		for i := range l {
			switch r.IntN(8) {
			case 0:
				l[i] = nan
			case 1:
				l[i] = -inf
			case 2:
				l[i] = inf
			default:
				l[i] = float32(r.IntN(4)) // many ties
			}
		}
		banned := r.IntN(n+2) - 1 // -1 (none), an id, or one past the end
		s := newSampler(Request{}, n, banned)
		var sc sampleScratch
		if got, want := s.sample(l, &sc), referenceArgmax(l, banned); got != want {
			t.Fatalf("trial %d: logits %v banned %d: greedy %d, want %d", trial, l, banned, got, want)
		}
	}
}
