package engine

import "testing"

func TestReserve(t *testing.T) {
	bufs := make([][]float32, 2)
	reserve(bufs, 10, 100)
	for k, b := range bufs {
		if len(b) != 100 {
			t.Fatalf("buffer %d: len %d after reserve(10, want 100), want 100", k, len(b))
		}
	}
	first := &bufs[0][0]
	reserve(bufs, 60, 100) // fits: kept, no reallocation
	if &bufs[0][0] != first || len(bufs[0]) != 100 {
		t.Errorf("a buffer large enough was replaced or resliced short (len %d)", len(bufs[0]))
	}
	reserve(bufs, 150, 120) // must grow: at least n
	if len(bufs[0]) != 150 {
		t.Errorf("grown to %d, want n=150 when want < n", len(bufs[0]))
	}
	big := [][]float32{make([]float32, 8<<20)}
	reserve(big, 10, 1<<20) // over 4× the need and over 1M floats: shrunk
	if len(big[0]) != 1<<20 {
		t.Errorf("oversized buffer kept at %d floats, want shrunk to %d", len(big[0]), 1<<20)
	}
	small := [][]float32{make([]float32, 1000)}
	reserve(small, 10, 10) // oversized but small: kept
	if len(small[0]) != 1000 {
		t.Errorf("small buffer reallocated to %d", len(small[0]))
	}
}
