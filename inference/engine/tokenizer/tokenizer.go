// Package tokenizer is a byte-level BPE tokenizer, the algorithm of GPT-2 and of the
// Hugging Face tokenizers used by most GPT-style models.
//
// Text is split into pre-tokens by GPT-2's pattern
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// each pre-token's UTF-8 bytes become one token each, and adjacent tokens are merged
// by the merge table's rank. Every byte sequence can be encoded and decoding is
// lossless. A Tokenizer comes from a Hugging Face tokenizer.json ([Load]) or from
// OpenAI's encoder.json and vocab.bpe ([FromGPT2Files]); it is safe for concurrent use.
//
// \s is Unicode's White_Space property, as in OpenAI's encoder (Python's regex
// module) and Hugging Face tokenizers. The JavaScript gpt-3-encoder differs on U+0085
// and U+FEFF only.
package tokenizer

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// cacheCapacity bounds the number of cached pre-tokens (about 100 bytes each).
const cacheCapacity = 1 << 16

// maxTokenID bounds the ids a vocabulary file may use, so that a corrupt file cannot
// make the decoder table huge.
const maxTokenID = 1<<24 - 1

// Tokenizer encodes text to token ids and back. It is immutable after loading, apart
// from an internal cache, and safe for concurrent use.
type Tokenizer struct {
	byteID  [256]int32       // the token of each single byte
	merges  map[uint64]merge // (left id, right id) → rank and merged id
	tokens  map[string]int   // vocabulary form → id, added tokens included (they win)
	pieces  [][]byte         // id → the bytes it decodes to; nil for an unused id
	matched []addedToken     // non-special added tokens, split out of the text by Encode

	addPrefixSpace bool
	useRegex       bool
	rawVocab       map[string]int // raw bytes → id; only with ignore_merges

	cache *bpeCache
}

// addedToken is a token outside the BPE model (Hugging Face "added_tokens").
type addedToken struct {
	id      int
	content string
	special bool
}

// spec is what both file formats are parsed into.
type spec struct {
	vocab          map[string]int
	merges         [][2]string
	added          []addedToken
	addPrefixSpace bool
	useRegex       bool
	ignoreMerges   bool
}

// build checks a spec and makes a Tokenizer from it.
func build(sp spec) (*Tokenizer, error) {
	if len(sp.vocab) == 0 {
		return nil, fmt.Errorf("the vocabulary is empty")
	}
	maxID := -1
	byID := make(map[int]string, len(sp.vocab))
	for tok, id := range sp.vocab {
		if id < 0 || id > maxTokenID {
			return nil, fmt.Errorf("vocabulary token %q has id %d, outside [0, %d]", tok, id, maxTokenID)
		}
		if other, dup := byID[id]; dup {
			if other > tok { // report the same pair whatever the map order
				other, tok = tok, other
			}
			return nil, fmt.Errorf("vocabulary tokens %q and %q share id %d", other, tok, id)
		}
		byID[id] = tok
		maxID = max(maxID, id)
	}
	for _, a := range sp.added {
		if a.content == "" {
			return nil, fmt.Errorf("added token %d has empty content", a.id)
		}
		if a.id < 0 || a.id > maxTokenID {
			return nil, fmt.Errorf("added token %q has id %d, outside [0, %d]", a.content, a.id, maxTokenID)
		}
		maxID = max(maxID, a.id)
	}

	t := &Tokenizer{
		merges:         make(map[uint64]merge, len(sp.merges)),
		tokens:         make(map[string]int, len(sp.vocab)+len(sp.added)),
		pieces:         make([][]byte, maxID+1),
		addPrefixSpace: sp.addPrefixSpace,
		useRegex:       sp.useRegex,
		cache:          newBPECache(cacheCapacity),
	}
	for b, r := range byteRunes {
		id, ok := sp.vocab[string(r)]
		if !ok {
			return nil, fmt.Errorf("the vocabulary has no token for byte 0x%02X (%q): not a byte-level BPE vocabulary", b, string(r))
		}
		t.byteID[b] = int32(id)
	}
	for tok, id := range sp.vocab {
		t.tokens[tok] = id
		t.pieces[id] = rawBytes(tok)
	}
	for i, m := range sp.merges {
		l, okL := sp.vocab[m[0]]
		r, okR := sp.vocab[m[1]]
		id, okM := sp.vocab[m[0]+m[1]]
		switch {
		case !okL:
			return nil, fmt.Errorf("merge %d (%q %q): %q is not in the vocabulary", i+1, m[0], m[1], m[0])
		case !okR:
			return nil, fmt.Errorf("merge %d (%q %q): %q is not in the vocabulary", i+1, m[0], m[1], m[1])
		case !okM:
			return nil, fmt.Errorf("merge %d (%q %q): the result %q is not in the vocabulary", i+1, m[0], m[1], m[0]+m[1])
		}
		// A repeated pair keeps its last rank, as in GPT-2's and Hugging Face's loaders.
		t.merges[pairKey(int32(l), int32(r))] = merge{rank: int32(i), id: int32(id)}
	}
	for _, a := range sp.added {
		t.tokens[a.content] = a.id
		t.pieces[a.id] = []byte(a.content) // added tokens decode to their literal text
		if !a.special {
			t.matched = append(t.matched, a)
		}
	}
	if sp.ignoreMerges {
		t.rawVocab = make(map[string]int, len(sp.vocab))
		for tok, id := range sp.vocab {
			t.rawVocab[string(rawBytes(tok))] = id
		}
	}
	return t, nil
}

// Encode returns the token ids of text. It never fails: any byte sequence, valid UTF-8
// or not, has an encoding.
//
// Special tokens written in the text (such as "<|endoftext|>") are NOT recognised: they
// are tokenized as the ordinary characters they consist of, so user input can never
// inject a control token. Add special tokens by id where they belong. Non-special
// added tokens of a tokenizer.json are recognised, as Hugging Face does. No special
// tokens are added around the result (Hugging Face's add_special_tokens=False).
func (t *Tokenizer) Encode(text string) []int {
	ids := make([]int, 0, len(text)/4+1)
	for len(t.matched) > 0 && text != "" {
		pos, a := t.findAdded(text)
		if pos < 0 {
			break
		}
		ids = t.encodeSegment(text[:pos], ids)
		ids = append(ids, a.id)
		text = text[pos+len(a.content):]
	}
	return t.encodeSegment(text, ids)
}

// findAdded returns the leftmost, then longest, non-special added token in text.
func (t *Tokenizer) findAdded(text string) (int, addedToken) {
	best, found := -1, addedToken{}
	for _, a := range t.matched {
		limit := text
		if best >= 0 {
			limit = text[:min(len(text), best+len(a.content))] // only earlier or equal starts
		}
		i := strings.Index(limit, a.content)
		if i < 0 {
			continue
		}
		if best < 0 || i < best || (i == best && len(a.content) > len(found.content)) {
			best, found = i, a
		}
	}
	return best, found
}

// encodeSegment encodes text that holds no added token.
func (t *Tokenizer) encodeSegment(s string, ids []int) []int {
	if s == "" {
		return ids
	}
	if t.addPrefixSpace && s[0] != ' ' {
		s = " " + s
	}
	if !t.useRegex {
		return t.encodeWord(s, ids)
	}
	for i := 0; i < len(s); {
		j := nextPiece(s, i)
		ids = t.encodeWord(s[i:j], ids)
		i = j
	}
	return ids
}

// encodeWord appends the ids of one pre-token.
func (t *Tokenizer) encodeWord(w string, ids []int) []int {
	if len(w) == 1 {
		return append(ids, int(t.byteID[w[0]]))
	}
	if t.rawVocab != nil {
		if id, ok := t.rawVocab[w]; ok {
			return append(ids, id)
		}
	}
	cacheable := len(w) <= cacheMaxKey
	if cacheable {
		if cached, ok := t.cache.get(w); ok {
			return append(ids, cached...)
		}
	}
	start := len(ids)
	ids = t.bpe(w, ids)
	if cacheable {
		t.cache.put(w, slices.Clone(ids[start:]))
	}
	return ids
}

// Decode returns the text of ids: their bytes concatenated, then made valid UTF-8 by
// replacing each ill-formed sequence with U+FFFD. A character split across several
// tokens therefore decodes whole. Added and special tokens decode to their literal
// text; an id outside the vocabulary decodes to nothing.
func (t *Tokenizer) Decode(ids []int) string {
	buf := make([]byte, 0, 4*len(ids))
	for _, id := range ids {
		buf = append(buf, t.piece(id)...)
	}
	if utf8.Valid(buf) {
		return string(buf)
	}
	out, _ := appendValidUTF8(make([]byte, 0, len(buf)+8), buf, true)
	return string(out)
}

func (t *Tokenizer) piece(id int) []byte {
	if id < 0 || id >= len(t.pieces) {
		return nil
	}
	return t.pieces[id]
}

// VocabSize returns one more than the largest token id, added tokens included: the
// size a model's embedding and output layers must have at least.
func (t *Tokenizer) VocabSize() int { return len(t.pieces) }

// TokenID returns the id of a token given as written in the vocabulary file: an added
// token by its content (for example "<|endoftext|>"), a BPE token in its byte-level
// form (for example "Ġthe" for " the"), as Hugging Face's token_to_id does.
func (t *Tokenizer) TokenID(content string) (int, bool) {
	id, ok := t.tokens[content]
	return id, ok
}
