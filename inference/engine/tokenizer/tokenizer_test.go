package tokenizer

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// synthDoc is a minimal valid tokenizer.json: the 256 byte tokens (ids 0..255 in byte
// order) plus the given merges, whose results get the next ids.
func synthDoc(merges ...string) map[string]any {
	vocab := map[string]int{}
	for b, r := range byteRunes {
		vocab[string(r)] = b
	}
	for _, m := range merges {
		tok := strings.Replace(m, " ", "", 1)
		if _, ok := vocab[tok]; !ok {
			vocab[tok] = len(vocab)
		}
	}
	return map[string]any{
		"added_tokens":  []any{},
		"normalizer":    nil,
		"pre_tokenizer": map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true},
		"decoder":       map[string]any{"type": "ByteLevel"},
		"model":         map[string]any{"type": "BPE", "vocab": vocab, "merges": merges},
	}
}

func loadDoc(t *testing.T, doc map[string]any) *Tokenizer {
	t.Helper()
	tok, err := Load(writeJSON(t, doc))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return tok
}

func ids(t *testing.T, tok *Tokenizer, tokens ...string) []int {
	t.Helper()
	out := make([]int, len(tokens))
	for i, s := range tokens {
		id, ok := tok.TokenID(s)
		if !ok {
			t.Fatalf("no token %q", s)
		}
		out[i] = id
	}
	return out
}

// TestMergeAllOccurrencesFirst pins GPT-2's rule on a merge table where it matters:
// every occurrence of the best pair merges before pairs that those merges create,
// even when such a pair ranks higher ("ab a" ranks before "a b" here).
func TestMergeAllOccurrencesFirst(t *testing.T) {
	tok := loadDoc(t, synthDoc("a b", "ab a", "b b"))
	doc := synthDoc("ab a", "a b") // "ab a" before "a b": only possible in a hand-made table
	tok2 := loadDoc(t, doc)
	tests := []struct {
		tok  *Tokenizer
		text string
		want []string
	}{
		{tok, "abab", []string{"ab", "ab"}},
		{tok, "aba", []string{"aba"}},
		{tok, "aaaa", []string{"a", "a", "a", "a"}},
		{tok, "bbb", []string{"bb", "b"}}, // overlapping occurrences merge left to right
		{tok, "bbbb", []string{"bb", "bb"}},
		{tok2, "abab", []string{"ab", "ab"}}, // a one-at-a-time merger would give "aba", "b"
		{tok2, "aba", []string{"aba"}},
	}
	for _, tt := range tests {
		if got, want := tt.tok.Encode(tt.text), ids(t, tt.tok, tt.want...); !slices.Equal(got, want) {
			t.Errorf("Encode(%q) = %v, want %v %q", tt.text, got, want, tt.want)
		}
		if got, want := tt.tok.bpe(tt.text, nil), referenceBPE(tt.tok, tt.text); !slices.Equal(got, want) {
			t.Errorf("bpe(%q) = %v, reference loop %v", tt.text, got, want)
		}
	}
}

func TestIgnoreMergesAndNoRegex(t *testing.T) {
	doc := synthDoc("a b")
	vocab := doc["model"].(map[string]any)["vocab"].(map[string]int)
	vocab["abc"] = len(vocab) // reachable by no merge
	vocab["abĠab"] = len(vocab)
	plain := loadDoc(t, doc)
	if got, want := plain.Encode("abc"), ids(t, plain, "ab", "c"); !slices.Equal(got, want) {
		t.Errorf("without ignore_merges: %v, want %v", got, want)
	}
	doc["model"].(map[string]any)["ignore_merges"] = true
	ignore := loadDoc(t, doc)
	if got, want := ignore.Encode("abc ab"), ids(t, ignore, "abc", "Ġ", "ab"); !slices.Equal(got, want) {
		t.Errorf("with ignore_merges: %v, want %v", got, want)
	}
	doc["pre_tokenizer"].(map[string]any)["use_regex"] = false
	whole := loadDoc(t, doc)
	if got, want := whole.Encode("ab ab"), ids(t, whole, "abĠab"); !slices.Equal(got, want) {
		t.Errorf("with use_regex false (one pre-token): %v, want %v", got, want)
	}
}

func TestPreTokenize(t *testing.T) {
	split := func(s string) []string {
		var out []string
		for i := 0; i < len(s); {
			j := nextPiece(s, i)
			out = append(out, s[i:j])
			i = j
		}
		return out
	}
	tests := []struct {
		in   string
		want []string
	}{
		{"Hello world", []string{"Hello", " world"}},
		{"a   b", []string{"a", "  ", " b"}},
		{"a \t b", []string{"a", " \t", " b"}},
		{"a\t\tb", []string{"a", "\t", "\t", "b"}},
		{"end  ", []string{"end", "  "}},
		{"x\u3000\u3000y", []string{"x", "\u3000", "\u3000", "y"}},
		{"it's 'S", []string{"it", "'s", " '", "S"}},
		{"we'll've", []string{"we", "'ll", "'ve"}},
		{"!'s", []string{"!'", "s"}},
		{" 42x", []string{" 42", "x"}},
		{"cafe\u0301!", []string{"cafe", "\u0301!"}},
		{"a\xffb\xfe", []string{"a", "\xff", "b", "\xfe"}},
		{" \xff\xfe ", []string{" \xff\xfe", " "}},
		// As Python's regex module (OpenAI's encoder) splits them: White_Space has
		// U+0085 but neither U+001C nor U+FEFF.
		{"a\x1c\x1cb", []string{"a", "\x1c\x1c", "b"}},
		{"a\u0085\u0085b", []string{"a", "\u0085", "\u0085", "b"}},
		{"a\ufeff\ufeffb", []string{"a", "\ufeff\ufeff", "b"}},
	}
	for _, tt := range tests {
		if got := split(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("pre-tokens of %q = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	set := func(path string, v any) func(map[string]any) {
		return func(doc map[string]any) {
			keys := strings.Split(path, ".")
			m := doc
			for _, k := range keys[:len(keys)-1] {
				m = m[k].(map[string]any)
			}
			m[keys[len(keys)-1]] = v
		}
	}
	tests := []struct {
		name        string
		edit        func(map[string]any)
		unsupported bool
		msg         string
	}{
		{"WordPiece model", set("model.type", "WordPiece"), true, `model type "WordPiece"`},
		{"Unigram model", set("model.type", "Unigram"), true, `model type "Unigram"`},
		{"NFC normalizer", set("normalizer", map[string]any{"type": "NFC"}), true, `normalizer "NFC"`},
		{"Metaspace pre-tokenizer", set("pre_tokenizer", map[string]any{"type": "Metaspace"}), true, `pre_tokenizer "Metaspace"`},
		{"no pre-tokenizer", set("pre_tokenizer", nil), true, "no pre_tokenizer"},
		{"Split+ByteLevel", set("pre_tokenizer", map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split"}, map[string]any{"type": "ByteLevel", "add_prefix_space": false}}}), true, "Sequence of 2"},
		{"WordPiece decoder", set("decoder", map[string]any{"type": "WordPiece"}), true, `decoder "WordPiece"`},
		{"no decoder", set("decoder", nil), true, "no decoder"},
		{"dropout", set("model.dropout", 0.1), true, "dropout 0.1"},
		{"subword prefix", set("model.continuing_subword_prefix", "##"), true, "continuing_subword_prefix"},
		{"word suffix", set("model.end_of_word_suffix", "</w>"), true, "end_of_word_suffix"},
		{"unknown post-processor", set("post_processor", map[string]any{"type": "Shuffle"}), true, `post_processor "Shuffle"`},
		{"lstrip added token", set("added_tokens", []any{map[string]any{"id": 300, "content": "<x>", "lstrip": true}}), true, `added token "<x>"`},
		{"add_prefix_space missing", set("pre_tokenizer", map[string]any{"type": "ByteLevel"}), false, "add_prefix_space is missing"},
		{"no model", func(d map[string]any) { delete(d, "model") }, false, `no "model"`},
		{"merge of unknown token", set("model.merges", []string{"a b", "q zz"}), false, `"zz" is not in the vocabulary`},
		{"merge result missing", set("model.merges", []string{"x y"}), false, `the result "xy" is not in the vocabulary`},
		{"malformed merge", set("model.merges", []string{"a b c"}), false, "want two tokens"},
		{"malformed pair", set("model.merges", [][]string{{"a"}}), false, "want a pair"},
		{"merges not a list", set("model.merges", 7), false, "model.merges"},
		{"byte missing", func(d map[string]any) {
			delete(d["model"].(map[string]any)["vocab"].(map[string]int), "Ġ")
		}, false, "no token for byte 0x20"},
		{"negative id", func(d map[string]any) {
			d["model"].(map[string]any)["vocab"].(map[string]int)["zz"] = -1
		}, false, `"zz" has id -1`},
		{"shared id", func(d map[string]any) {
			d["model"].(map[string]any)["vocab"].(map[string]int)["zz"] = 5
		}, false, "share id 5"},
		{"added token without id", set("added_tokens", []any{map[string]any{"content": "<x>"}}), false, "has no id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := synthDoc("a b")
			tt.edit(doc)
			path := writeJSON(t, doc)
			_, err := Load(path)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if !strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q should name %q and the file", err, tt.msg)
			}
			if errors.Is(err, ErrUnsupported) != tt.unsupported {
				t.Errorf("errors.Is(%q, ErrUnsupported) = %v, want %v", err, !tt.unsupported, tt.unsupported)
			}
		})
	}

	dir := t.TempDir()
	missing := filepath.Join(dir, "absent.json")
	if _, err := Load(missing); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Load of a missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"model": {"type": "BPE",`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), "parse JSON") {
		t.Errorf("Load of malformed JSON: %v", err)
	}
	if _, err := FromGPT2Files(missing, missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("FromGPT2Files of missing files: %v", err)
	}
	if _, err := FromGPT2Files(bad, missing); err == nil || !strings.Contains(err.Error(), "parse JSON") {
		t.Errorf("FromGPT2Files of malformed JSON: %v", err)
	}
	enc := filepath.Join(dir, "encoder.json")
	if err := os.WriteFile(enc, []byte(`{"a": 0}`), 0o644); err != nil {
		t.Fatal(err)
	}
	merges := filepath.Join(dir, "vocab.bpe")
	if err := os.WriteFile(merges, []byte("#version: 0.2\na b\nabc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := FromGPT2Files(enc, merges); err == nil || !strings.Contains(err.Error(), `line 3 "abc"`) {
		t.Errorf("FromGPT2Files of a malformed merge line: %v", err)
	}
}

func TestValidUTF8(t *testing.T) {
	// Expected outputs follow Unicode's "maximal subpart" practice (§3.9, Table 3-8).
	tests := []struct{ in, want string }{
		{"plain ascii", "plain ascii"},
		{"é日🙂", "é日🙂"},
		{"\xe2\x82a", "\ufffda"},
		{"\xe2\x82", "\ufffd"},
		{"\xf0\x9f\x99", "\ufffd"},
		{"\xf0\x80\x80", "\ufffd\ufffd\ufffd"},
		{"\xed\xa0\x80", "\ufffd\ufffd\ufffd"},
		{"\xc0\xaf", "\ufffd\ufffd"},
		{"\xf4\x90\x80\x80", "\ufffd\ufffd\ufffd\ufffd"},
		{"\xff\xfe", "\ufffd\ufffd"},
		{"a\x80b", "a\ufffdb"},
		{"\xe2\x82\xe2\x82\xac", "\ufffd€"},
	}
	for _, tt := range tests {
		got, rest := appendValidUTF8(nil, []byte(tt.in), true)
		if string(got) != tt.want || len(rest) != 0 {
			t.Errorf("appendValidUTF8(%q) = %q, rest %q; want %q", tt.in, got, rest, tt.want)
		}
	}
}

// TestStreamDecoder feeds random byte tokens (valid and invalid UTF-8) one token at a
// time: each piece must be valid UTF-8 and the pieces must add up to Decode.
func TestStreamDecoder(t *testing.T) {
	tok := loadDoc(t, synthDoc())
	r := rand.New(rand.NewPCG(3, 4))
	texts := []string{"🙂 日本語 é", "\xe2\x82a\xf0\x9f\x99", "\xf0\x9f", "\xc3", "ok\xed\xa0\x80!", ""}
	for range 300 {
		b := make([]byte, r.IntN(12))
		for i := range b {
			b[i] = []byte{'a', 0xc3, 0xa9, 0xe6, 0x97, 0xa5, 0xf0, 0x9f, 0x99, 0x82, 0x80, 0xff}[r.IntN(12)]
		}
		texts = append(texts, string(b))
	}
	for _, text := range texts {
		var idList []int
		for i := 0; i < len(text); i++ {
			idList = append(idList, int(tok.byteID[text[i]])) // one token per byte
		}
		d := tok.NewStreamDecoder()
		var got strings.Builder
		for _, id := range idList {
			piece := d.Add(id)
			if !utf8.ValidString(piece) {
				t.Fatalf("%q: Add returned invalid UTF-8 %q", text, piece)
			}
			got.WriteString(piece)
		}
		got.WriteString(d.Flush())
		want := tok.Decode(idList)
		if got.String() != want {
			t.Errorf("%q: streamed %q, Decode %q", text, got.String(), want)
		}
		if utf8.ValidString(text) && want != text {
			t.Errorf("Decode of valid %q gave %q", text, want)
		}
		if d.Flush() != "" {
			t.Error("a second Flush returned text")
		}
	}
	d := tok.NewStreamDecoder()
	if got := d.Add(int(tok.byteID[0xf0])) + d.Add(int(tok.byteID[0x9f])); got != "" {
		t.Errorf("incomplete emoji was emitted early: %q", got)
	}
	if got := d.Flush(); got != "\ufffd" {
		t.Errorf("Flush of a dangling sequence = %q, want U+FFFD", got)
	}
	if got := d.Add(-1) + d.Add(1<<30); got != "" {
		t.Errorf("unknown ids decoded to %q", got)
	}
}

func TestConcurrentEncode(t *testing.T) {
	tok := loadDoc(t, synthDoc("h e", "l l", "he ll", "hell o", "Ġ w"))
	want := tok.Encode("hello world hello")
	done := make(chan []int)
	for range 8 {
		go func() { done <- tok.Encode("hello world hello") }()
	}
	for range 8 {
		if got := <-done; !slices.Equal(got, want) {
			t.Errorf("concurrent Encode = %v, want %v", got, want)
		}
	}
	if got := tok.Decode(want); got != "hello world hello" {
		t.Errorf("Decode = %q", got)
	}
}

func TestCacheBounded(t *testing.T) {
	c := newBPECache(cacheShards * 4)
	for i := range 10_000 {
		c.put(strings.Repeat("x", i%50)+string(rune('a'+i%26))+strings.Repeat("y", i/50), []int{i})
	}
	n := 0
	for i := range c.shards {
		n += len(c.shards[i].m)
	}
	if n > cacheShards*4 {
		t.Errorf("cache holds %d entries, bound %d", n, cacheShards*4)
	}
	c.put(strings.Repeat("z", cacheMaxKey+1), []int{1})
	if _, ok := c.get(strings.Repeat("z", cacheMaxKey+1)); ok {
		t.Error("a key over cacheMaxKey was cached")
	}
}

// FuzzRoundTrip checks Decode(Encode(s)) == s for valid UTF-8, and that the O(n log n)
// merge loop agrees with GPT-2's reference loop on every pre-token.
func FuzzRoundTrip(f *testing.F) {
	for _, s := range trickyTexts {
		f.Add(s)
	}
	tok := loadGPT2(f)
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			t.Skip("round trip holds for valid UTF-8 only")
		}
		if got := tok.Decode(tok.Encode(s)); got != s {
			t.Fatalf("Decode(Encode(%q)) = %q", s, got)
		}
		for i := 0; i < len(s); {
			j := nextPiece(s, i)
			if j <= i || j > len(s) {
				t.Fatalf("nextPiece(%q, %d) = %d", s, i, j)
			}
			if got, want := tok.bpe(s[i:j], nil), referenceBPE(tok, s[i:j]); !slices.Equal(got, want) {
				t.Fatalf("bpe(%q) = %v, reference %v", s[i:j], got, want)
			}
			i = j
		}
	})
}
