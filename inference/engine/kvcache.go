package engine

import (
	"runtime"
	"sync"
)

// kvPair is a double-buffered KV cache: cur holds the past of the next forward pass,
// next receives its present; swap exchanges them. Each side holds one flat float32
// buffer per KV tensor (a key and a value per layer), laid out
// [rows, heads, positions, head_dim]. ONNX Runtime writes the present straight into
// next, so a step whose batch does not change copies nothing on the Go side.
type kvPair struct {
	cur, next [][]float32
}

func newKVPair(tensors int) kvPair {
	return kvPair{cur: make([][]float32, tensors), next: make([][]float32, tensors)}
}

func (p *kvPair) swap() { p.cur, p.next = p.next, p.cur }

// growTo makes every buffer of bufs hold at least n floats. A buffer that must grow
// is replaced (its contents are not kept: callers only grow buffers they are about
// to overwrite), with headroom so that a sequence growing one position per step
// reallocates rarely; limit caps the headroom. A buffer far larger than needed is
// shrunk, so one long burst does not pin its memory forever.
func growTo(bufs [][]float32, n, limit int) {
	for k, b := range bufs {
		c := cap(b)
		switch {
		case c < n:
			want := n + n/2
			if want > limit {
				want = limit
			}
			if want < n {
				want = n
			}
			bufs[k] = make([]float32, want)
		case c > 4*n && c > 1<<20:
			bufs[k] = make([]float32, n+n/2)
		default:
			bufs[k] = b[:c]
		}
	}
}

// reserve makes every buffer of bufs hold at least n floats. A buffer that must
// grow is replaced by one of max(n, want) floats (contents not kept), so a caller
// that knows how far a buffer will grow (a batch whose rows have at most r tokens
// left grows by r positions) allocates once instead of at every 50% of growth: each
// reallocation of a large cache costs page faults on fresh memory. A buffer more
// than four times larger than that is shrunk.
func reserve(bufs [][]float32, n, want int) {
	want = max(n, want)
	for k, b := range bufs {
		c := cap(b)
		switch {
		case c < n, c > 4*want && c > 1<<20:
			bufs[k] = make([]float32, want)
		default:
			bufs[k] = b[:c]
		}
	}
}

// rowSource names where one row of a rebuilt batch cache comes from: row `row` of a
// buffer set laid out with `positions` positions, of which the last `length` are valid.
type rowSource struct {
	bufs      [][]float32
	row       int
	positions int
	length    int
}

// gatherRows writes rows into dst (one buffer per KV tensor) laid out
// [len(rows), heads, p, headDim]: row j's valid positions are right-aligned, the
// padding before them is zeroed (masked positions must hold finite values, or a
// NaN would survive the mask). The copies run in parallel over the KV tensors.
func gatherRows(dst [][]float32, rows []rowSource, heads, headDim, p int) {
	work := func(k int) {
		d := dst[k]
		for j, src := range rows {
			s := src.bufs[k]
			for h := 0; h < heads; h++ {
				dBase := ((j * heads) + h) * p * headDim
				pad := (p - src.length) * headDim
				clear(d[dBase : dBase+pad])
				sBase := ((src.row*heads)+h)*src.positions*headDim + (src.positions-src.length)*headDim
				copy(d[dBase+pad:dBase+p*headDim], s[sBase:sBase+src.length*headDim])
			}
		}
	}
	total := len(rows) * heads * p * headDim * len(dst)
	workers := runtime.GOMAXPROCS(0)
	if workers > len(dst) {
		workers = len(dst)
	}
	if total < 1<<18 || workers < 2 {
		for k := range dst {
			work(k)
		}
		return
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for k := w; k < len(dst); k += workers {
				work(k)
			}
		}(w)
	}
	wg.Wait()
}
