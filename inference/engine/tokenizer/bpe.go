package tokenizer

// merge is one rule of the merge table: the pair's rank (its line in the merges list;
// lower merges first) and the id of the token the pair becomes.
type merge struct {
	rank int32
	id   int32
}

func pairKey(left, right int32) uint64 { return uint64(uint32(left))<<32 | uint64(uint32(right)) }

// symbol is a node of the doubly linked list of a word's current tokens; a symbol
// merged into its left neighbour gets id -1.
type symbol struct {
	id         int32
	prev, next int32
}

// candidate is a mergeable adjacent pair: the left symbol's position and both ids as
// they were when the pair was found (a later merge of either side makes it stale).
type candidate struct {
	rank        int32
	pos         int32
	left, right int32
	id          int32
}

func (c candidate) less(d candidate) bool {
	return c.rank < d.rank || (c.rank == d.rank && c.pos < d.pos)
}

// candHeap is a binary min-heap ordered by (rank, position).
type candHeap []candidate

func (h *candHeap) push(c candidate) {
	*h = append(*h, c)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s[i].less(s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *candHeap) pop() candidate {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && s[r].less(s[l]) {
			m = r
		}
		if !s[m].less(s[i]) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// bpe appends the token ids of one pre-token (raw bytes) to out.
//
// It gives exactly the result of GPT-2's reference loop — repeatedly take the adjacent
// pair of lowest merge rank and merge every occurrence of it, left to right — in
// O(n log n) instead of O(n²), so a long run without spaces cannot stall a request:
// all candidates of the lowest rank are merged as one left-to-right batch, and the
// pairs those merges create join the heap only after the batch. (A merge never creates
// a pair of its own rank: that would need A+B == A or A+B == B.)
func (t *Tokenizer) bpe(word string, out []int) []int {
	if len(word) == 1 {
		return append(out, int(t.byteID[word[0]]))
	}
	syms := make([]symbol, len(word))
	for i := range syms {
		syms[i] = symbol{id: t.byteID[word[i]], prev: int32(i - 1), next: int32(i + 1)}
	}
	syms[len(syms)-1].next = -1

	h := make(candHeap, 0, len(word))
	consider := func(pos int32) {
		if pos < 0 {
			return
		}
		next := syms[pos].next
		if next < 0 {
			return
		}
		l, r := syms[pos].id, syms[next].id
		if m, ok := t.merges[pairKey(l, r)]; ok {
			h.push(candidate{rank: m.rank, pos: pos, left: l, right: r, id: m.id})
		}
	}
	for i := range syms[:len(syms)-1] {
		consider(int32(i))
	}

	var merged []int32
	for len(h) > 0 {
		rank := h[0].rank
		merged = merged[:0]
		for len(h) > 0 && h[0].rank == rank {
			c := h.pop()
			s := &syms[c.pos]
			if s.id != c.left || s.next < 0 || syms[s.next].id != c.right {
				continue // stale: one side has merged since
			}
			gone := s.next
			s.id = c.id
			s.next = syms[gone].next
			if s.next >= 0 {
				syms[s.next].prev = c.pos
			}
			syms[gone].id = -1
			merged = append(merged, c.pos)
		}
		for _, pos := range merged {
			consider(syms[pos].prev)
			consider(pos)
		}
	}
	for i := int32(0); i >= 0; i = syms[i].next {
		out = append(out, int(syms[i].id))
	}
	return out
}
