package tokenizer

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// trickyTexts exercise every branch of the pre-tokenizer and many merges. They avoid
// U+0085 and U+FEFF, on which JavaScript's \s differs from Unicode's White_Space
// (TestPreTokenize covers them).
var trickyTexts = []string{
	"",
	"Hello, world!",
	"What are the symptoms of",
	"I'm sure they'll say it's what we'd've done, isn't it? You're right, we've DON'T 'S 'LL",
	"''s 'x '' ' 's's 'll'll don't've rock'n'roll",
	"   leading spaces",
	"trailing spaces   ",
	"trailing space ",
	"multiple     spaces between     words",
	" ", "  ", "\t", "\n", "\n\n", " \n ", "a  b", "a \tb", "a\t b", "a \n b",
	"line one\nline two\n\n\nline three\r\n\ttabbed\t\tend\n",
	"x                                        y",
	"1234567890 3.14159 -42 1,000,000 0x1F 2nd 10th 1e-9 +33 6 12 345 6789",
	"Roman Ⅻ, superscripts x² and ½, Arabic-Indic ١٢٣",
	"!!!??? ... --- ((( ))) [[]] {}{} \"quoted\" 'single' ;;; @#$%^&* ~~~ ```",
	"a,,,,b ,,,, , ,, ,,, ..,,..",
	"Café naïve façade résumé Ærøskøbing Straße ÀÉÎÕÜ ﬁ",
	"cafe\u0301 nai\u0308ve",
	"日本語のテキスト、中文文本。한국어 텍스트",
	"مرحبا بالعالم שלום हिन्दी ภาษาไทย Ελληνικά русский",
	"emoji 🙂🚀👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷 ❤️ 🫠",
	"Mixed: naïve 日本 123 🙂 it's\t\"ok\"  \n",
	"<|endoftext|> is not special here<|endoftext|>",
	"a\u00a0b\u2003c\u3000d\u2028e\u2029f \u00a0 g \x1c\x1d \x1f",
	"pneumonoultramicroscopicsilicovolcanoconiosis",
	strings.Repeat("a", 100) + " " + strings.Repeat("ab", 60) + strings.Repeat("!", 33),
	"func main() {\n\tfmt.Println(\"hi\")\n}\n",
	"https://example.com/path?q=1&r=two#frag user@example.org",
	"The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX! the Quick bRoWn",
}

// randomTexts builds reproducible strings from fragments that stress the pre-tokenizer
// boundaries (spaces before other classes, runs of whitespace, apostrophes).
func randomTexts(n int) []string {
	frags := []string{
		" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "a", "Z", "word", " the", "é", "ß",
		"日本", "🙂", "👍🏽", "1", "42", "3.5", "½", "'", "'s", "'re", "'ll", "'d", "'ve", "'m",
		"'t", ",", ".", "!?", "--", "\"", "(", ")", "$", "\u0301", "ǅ", "ﬀ", "_", "#", "\x7f",
	}
	r := rand.New(rand.NewPCG(2, 7))
	out := make([]string, n)
	for i := range out {
		var b strings.Builder
		for k := r.IntN(24); k >= 0; k-- {
			b.WriteString(frags[r.IntN(len(frags))])
		}
		out[i] = b.String()
	}
	return out
}

func TestMatchesGPT2Reference(t *testing.T) {
	dir := gpt2Dir(t)
	texts := append(slices.Clone(trickyTexts), randomTexts(400)...)
	want := referenceIDs(t, dir, texts)

	fromFiles := loadGPT2(t)
	tokenizers := map[string]*Tokenizer{"FromGPT2Files": fromFiles}
	for _, form := range []string{"strings", "pairs"} {
		tok, err := Load(writeHFJSON(t, dir, form))
		if err != nil {
			t.Fatalf("Load (merges as %s): %v", form, err)
		}
		tokenizers["Load/merges-as-"+form] = tok
	}
	for name, tok := range tokenizers {
		t.Run(name, func(t *testing.T) {
			for i, text := range texts {
				got := tok.Encode(text)
				if !slices.Equal(got, want[i]) {
					t.Errorf("Encode(%q)\n got %v\nwant %v", text, got, want[i])
				}
				if dec := tok.Decode(got); dec != text {
					t.Errorf("Decode(Encode(%q)) = %q", text, dec)
				}
			}
			if n := tok.VocabSize(); n != 50257 {
				t.Errorf("VocabSize() = %d, want GPT-2's 50257", n)
			}
			if id, ok := tok.TokenID("<|endoftext|>"); !ok || id != 50256 {
				t.Errorf(`TokenID("<|endoftext|>") = %d, %v; want 50256, true`, id, ok)
			}
			if id, ok := tok.TokenID("Ġthe"); !ok || tok.Decode([]int{id}) != " the" {
				t.Errorf(`TokenID("Ġthe") = %d, %v; it should name the token of " the"`, id, ok)
			}
			if _, ok := tok.TokenID(" the"); ok {
				t.Error(`TokenID(" the") found a token: ids are looked up by vocabulary form ("Ġthe")`)
			}
			if ids := tok.Encode("<|endoftext|>"); slices.Contains(ids, 50256) {
				t.Errorf("Encode parsed a special token written in the text: %v", ids)
			}
		})
	}
}

// TestAddedTokensAndPrefixSpace checks add_prefix_space and non-special added tokens
// against the reference encoder applied to the pieces Hugging Face would encode.
func TestAddedTokensAndPrefixSpace(t *testing.T) {
	dir := gpt2Dir(t)
	var doc map[string]any
	readJSON(t, writeHFJSON(t, dir, "strings"), &doc)
	doc["pre_tokenizer"].(map[string]any)["add_prefix_space"] = true
	doc["added_tokens"] = []map[string]any{
		{"id": 50256, "content": "<|endoftext|>", "special": true},
		{"id": 50257, "content": "<|user|>", "special": false},
		{"id": 50258, "content": "<|user|>:", "special": false},
		{"id": 50259, "content": "<|sys|>", "special": true},
	}
	tok, err := Load(writeJSON(t, doc))
	if err != nil {
		t.Fatal(err)
	}
	ref := referenceIDs(t, dir, []string{" Hello world", " hi", " there", " a<|sys|>b", " x"})
	cat := func(parts ...[]int) []int { return slices.Concat(parts...) }
	tests := []struct {
		text string
		want []int
	}{
		{"Hello world", ref[0]},
		{" Hello world", ref[0]},
		{"hi<|user|>there", cat(ref[1], []int{50257}, ref[2])},
		{"hi<|user|>:there", cat(ref[1], []int{50258}, ref[2])}, // longest match wins
		{"<|user|><|user|>x", cat([]int{50257, 50257}, ref[4])},
		{"a<|sys|>b", ref[3]}, // special: not parsed
	}
	for _, tt := range tests {
		if got := tok.Encode(tt.text); !slices.Equal(got, tt.want) {
			t.Errorf("Encode(%q) = %v, want %v", tt.text, got, tt.want)
		}
	}
	if got := tok.Decode([]int{50257, 50259}); got != "<|user|><|sys|>" {
		t.Errorf("Decode of added tokens = %q", got)
	}
	if n := tok.VocabSize(); n != 50260 {
		t.Errorf("VocabSize() = %d, want 50260 (largest added id + 1)", n)
	}
}

func TestLongWordMatchesReferenceBPE(t *testing.T) {
	tok := loadGPT2(t)
	r := rand.New(rand.NewPCG(1, 1))
	letters := "etaoinshrdlucmfwyp"
	for _, n := range []int{2, 3, 17, 300, 3000} {
		var b strings.Builder
		for range n {
			b.WriteByte(letters[r.IntN(len(letters))])
		}
		w := b.String()
		if got, want := tok.bpe(w, nil), referenceBPE(tok, w); !slices.Equal(got, want) {
			t.Errorf("bpe of a %d-letter word differs from GPT-2's loop:\n got %v\nwant %v", n, got, want)
		}
	}
	// A huge word without spaces must encode in O(n log n), not O(n²).
	huge := strings.Repeat("abcdefghij", 20_000)
	if got := tok.Decode(tok.Encode(huge)); got != huge {
		t.Error("round trip of a 200 kB word failed")
	}
}

func TestStreamDecoderGPT2(t *testing.T) {
	tok := loadGPT2(t)
	text := "Emoji 🙂🚀👍🏽 and 日本語 and 👨‍👩‍👧‍👦, then ASCII."
	ids := tok.Encode(text)
	split := 0
	for _, id := range ids {
		if !utf8.Valid(tok.piece(id)) {
			split++
		}
	}
	if split == 0 {
		t.Fatalf("no token of %q holds a partial character; the test proves nothing", text)
	}
	d := tok.NewStreamDecoder()
	var got strings.Builder
	for _, id := range ids {
		piece := d.Add(id)
		if !utf8.ValidString(piece) {
			t.Fatalf("Add returned invalid UTF-8 %q", piece)
		}
		got.WriteString(piece)
	}
	got.WriteString(d.Flush())
	if got.String() != text || tok.Decode(ids) != text {
		t.Errorf("streamed %q, decoded %q, want %q", got.String(), tok.Decode(ids), text)
	}
}

// referenceBPE is GPT-2's merge loop, transcribed on ids: merge every occurrence of
// the lowest-ranked adjacent pair, left to right, until no pair has a rank.
func referenceBPE(t *Tokenizer, word string) []int {
	syms := make([]int32, len(word))
	for i := range syms {
		syms[i] = t.byteID[word[i]]
	}
	for len(syms) > 1 {
		best, found := merge{}, false
		var bl, br int32
		for i := 0; i+1 < len(syms); i++ {
			if m, ok := t.merges[pairKey(syms[i], syms[i+1])]; ok && (!found || m.rank < best.rank) {
				best, found, bl, br = m, true, syms[i], syms[i+1]
			}
		}
		if !found {
			break
		}
		next := syms[:0:0]
		for i := 0; i < len(syms); {
			if i+1 < len(syms) && syms[i] == bl && syms[i+1] == br {
				next = append(next, best.id)
				i += 2
			} else {
				next = append(next, syms[i])
				i++
			}
		}
		syms = next
	}
	out := make([]int, len(syms))
	for i, s := range syms {
		out[i] = int(s)
	}
	return out
}

func TestBundledModelTokenizer(t *testing.T) {
	path := filepath.Join(moduleRoot(t), "inference", "model", "default", "tokenizer.json")
	tok, err := Load(path)
	if err != nil {
		if strings.Contains(err.Error(), "no such file") {
			t.Skipf("bundled model tokenizer not there yet (%s): it comes with the trained model", path)
		}
		t.Fatal(err)
	}
	for _, text := range append(slices.Clone(trickyTexts), randomTexts(100)...) {
		want := text
		if tok.addPrefixSpace && text != "" && !strings.HasPrefix(text, " ") {
			want = " " + text // Hugging Face's decoder keeps the added space too
		}
		if got := tok.Decode(tok.Encode(text)); got != want {
			t.Errorf("Decode(Encode(%q)) = %q", text, got)
		}
	}
	english := "What are the symptoms of the common cold? A sore throat, a runny nose and a cough."
	if ids := tok.Encode(english); len(ids) >= len(english) {
		t.Errorf("%d tokens for %d bytes of English: the merges are not applied", len(ids), len(english))
	}
}

// TestBundledTokenizerMatchesTrainingEncoder compares with the Python encoder that
// tokenized the bundled model's training corpus (tools/model/bpe.py): serving must
// feed the model the same ids it was trained on.
func TestBundledTokenizerMatchesTrainingEncoder(t *testing.T) {
	root := moduleRoot(t)
	path := filepath.Join(root, "inference", "model", "default", "tokenizer.json")
	script := filepath.Join(root, "tools", "model", "bpe.py")
	for _, f := range []string{path, script} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%v: it comes with the bundled model", err)
		}
	}
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found: install python3 and python3-regex to compare with the training encoder")
	}
	if err := exec.Command(python, "-c", "import regex").Run(); err != nil {
		t.Skip("python3 module regex not found: apt-get install python3-regex")
	}
	tok, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	const code = `
import json, sys
sys.path.insert(0, sys.argv[1])
import bpe
tok = bpe.load_tokenizer_json(sys.argv[2])
json.dump([tok.encode(s) for s in json.load(sys.stdin)], sys.stdout)`
	texts := append(slices.Clone(trickyTexts), randomTexts(300)...)
	if data, err := os.ReadFile(filepath.Join(root, "inference", "model", "default", "validation.txt")); err == nil {
		texts = append(texts, string(data))
	}
	want := runEncoder(t, exec.Command(python, "-c", code, filepath.Dir(script), path), texts)
	for i, text := range texts {
		if got := tok.Encode(text); !slices.Equal(got, want[i]) {
			t.Errorf("Encode(%q)\n got %v\nwant %v (tools/model/bpe.py)", text, got, want[i])
		}
	}
}

const benchParagraph = `It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, it was the season of Darkness, it was the spring of hope, it was the winter of despair, we had everything before us, we had nothing before us, we were all going direct to Heaven, we were all going direct the other way – in short, the period was so far like the present period, that some of its noisiest authorities insisted on its being received, for good or for evil, in the superlative degree of comparison only.`

// BenchmarkEncode measures steady-state encoding (the pre-token cache warm).
func BenchmarkEncode(b *testing.B) {
	tok := loadGPT2(b)
	b.SetBytes(int64(len(benchParagraph)))
	for b.Loop() {
		tok.Encode(benchParagraph)
	}
}

// BenchmarkEncodeUncached measures encoding with an empty cache every time.
func BenchmarkEncodeUncached(b *testing.B) {
	tok := loadGPT2(b)
	b.SetBytes(int64(len(benchParagraph)))
	for b.Loop() {
		tok.cache = newBPECache(cacheCapacity)
		tok.Encode(benchParagraph)
	}
}

func BenchmarkDecode(b *testing.B) {
	tok := loadGPT2(b)
	ids := tok.Encode(benchParagraph)
	b.SetBytes(int64(len(benchParagraph)))
	for b.Loop() {
		tok.Decode(ids)
	}
}
