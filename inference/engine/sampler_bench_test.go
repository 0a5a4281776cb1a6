package engine

import "testing"

// BenchmarkSample measures one sampling decision over a GPT-2-sized vocabulary.
func BenchmarkSample(b *testing.B) {
	logits := randomLogits(50257, 3)
	for _, c := range []struct {
		name string
		req  Request
	}{
		{"greedy", Request{}},
		{"temperature", Request{Temperature: 0.8}},
		{"top_k=50", Request{Temperature: 0.8, TopK: 50}},
		{"top_p=0.9", Request{Temperature: 0.8, TopP: 0.9}},
		{"top_k=50,top_p=0.9", Request{Temperature: 0.8, TopK: 50, TopP: 0.9}},
	} {
		b.Run(c.name, func(b *testing.B) {
			s := newSampler(c.req, len(logits), -1)
			var sc sampleScratch
			for b.Loop() {
				s.sample(logits, &sc)
			}
		})
	}
}
