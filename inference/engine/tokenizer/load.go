package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrUnsupported is wrapped by the errors of Load for a tokenizer.json that uses a
// feature this package does not implement; loading fails rather than tokenizing
// differently from the model's own tokenizer.
var ErrUnsupported = errors.New("unsupported tokenizer feature")

// Load reads a Hugging Face tokenizer.json holding a byte-level BPE tokenizer: a "BPE"
// model (merges as "a b" strings or as ["a", "b"] pairs), a ByteLevel pre-tokenizer
// (add_prefix_space and use_regex are honoured) and a ByteLevel decoder. Added tokens
// keep their ids; special ones are never produced by Encode, non-special ones are
// split out of the text. Unsupported features — other model types, normalizers,
// other pre-tokenizers or decoders, BPE dropout, subword prefixes or suffixes — give
// an error wrapping ErrUnsupported. Truncation and padding settings are ignored, and
// the post-processor is not applied (Encode adds no special tokens).
func Load(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
	t, err := parseHF(data)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer %s: %w", path, err)
	}
	return t, nil
}

type hfFile struct {
	AddedTokens   []hfAddedToken  `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         *hfModel        `json:"model"`
}

type hfAddedToken struct {
	ID         *int   `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Special    bool   `json:"special"`
}

type hfModel struct {
	Type                    string          `json:"type"`
	Dropout                 *float64        `json:"dropout"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	IgnoreMerges            bool            `json:"ignore_merges"`
	Vocab                   map[string]int  `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
}

// hfComponent is the union of the fields read from normalizers, pre-tokenizers,
// decoders and post-processors.
type hfComponent struct {
	Type           string            `json:"type"`
	AddPrefixSpace *bool             `json:"add_prefix_space"`
	UseRegex       *bool             `json:"use_regex"`
	Normalizers    []json.RawMessage `json:"normalizers"`
	Pretokenizers  []json.RawMessage `json:"pretokenizers"`
	Decoders       []json.RawMessage `json:"decoders"`
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || bytes.Equal(raw, []byte("null"))
}

func parseComponent(what string, raw json.RawMessage) (hfComponent, error) {
	var c hfComponent
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("%s: %w", what, err)
	}
	return c, nil
}

// single unwraps a Sequence of exactly one component.
func single(what string, c hfComponent, items []json.RawMessage) (hfComponent, error) {
	if c.Type != "Sequence" {
		return c, nil
	}
	if len(items) != 1 {
		return c, fmt.Errorf("%s: a Sequence of %d components: %w (only a single ByteLevel)", what, len(items), ErrUnsupported)
	}
	return parseComponent(what, items[0])
}

func parseHF(data []byte) (*Tokenizer, error) {
	var f hfFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("parse JSON: %w", err)
	}
	if f.Model == nil {
		return nil, errors.New(`no "model" object: not a tokenizer.json`)
	}
	m := f.Model
	if m.Type != "BPE" && !(m.Type == "" && !isNull(m.Merges)) {
		return nil, fmt.Errorf("model type %q: %w (only BPE)", m.Type, ErrUnsupported)
	}
	if m.Dropout != nil && *m.Dropout != 0 {
		return nil, fmt.Errorf("BPE dropout %g: %w", *m.Dropout, ErrUnsupported)
	}
	if m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "" {
		return nil, fmt.Errorf("continuing_subword_prefix %q: %w", *m.ContinuingSubwordPrefix, ErrUnsupported)
	}
	if m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "" {
		return nil, fmt.Errorf("end_of_word_suffix %q: %w", *m.EndOfWordSuffix, ErrUnsupported)
	}

	if !isNull(f.Normalizer) {
		c, err := parseComponent("normalizer", f.Normalizer)
		if err != nil {
			return nil, err
		}
		if c.Type != "Sequence" || len(c.Normalizers) != 0 {
			return nil, fmt.Errorf("normalizer %q: %w (none is)", c.Type, ErrUnsupported)
		}
	}

	if isNull(f.PreTokenizer) {
		return nil, fmt.Errorf("no pre_tokenizer: %w (a ByteLevel one is required)", ErrUnsupported)
	}
	pre, err := parseComponent("pre_tokenizer", f.PreTokenizer)
	if err != nil {
		return nil, err
	}
	if pre, err = single("pre_tokenizer", pre, pre.Pretokenizers); err != nil {
		return nil, err
	}
	if pre.Type != "ByteLevel" {
		return nil, fmt.Errorf("pre_tokenizer %q: %w (only ByteLevel)", pre.Type, ErrUnsupported)
	}
	if pre.AddPrefixSpace == nil {
		return nil, errors.New("pre_tokenizer ByteLevel: add_prefix_space is missing")
	}
	sp := spec{addPrefixSpace: *pre.AddPrefixSpace, useRegex: pre.UseRegex == nil || *pre.UseRegex, ignoreMerges: m.IgnoreMerges}

	if isNull(f.Decoder) {
		return nil, fmt.Errorf("no decoder: %w (a ByteLevel one is required)", ErrUnsupported)
	}
	dec, err := parseComponent("decoder", f.Decoder)
	if err != nil {
		return nil, err
	}
	if dec, err = single("decoder", dec, dec.Decoders); err != nil {
		return nil, err
	}
	if dec.Type != "ByteLevel" {
		return nil, fmt.Errorf("decoder %q: %w (only ByteLevel)", dec.Type, ErrUnsupported)
	}

	if !isNull(f.PostProcessor) {
		c, err := parseComponent("post_processor", f.PostProcessor)
		if err != nil {
			return nil, err
		}
		switch c.Type {
		case "ByteLevel", "TemplateProcessing", "RobertaProcessing", "BertProcessing", "Sequence":
			// They only add special tokens and adjust offsets; Encode adds none.
		default:
			return nil, fmt.Errorf("post_processor %q: %w", c.Type, ErrUnsupported)
		}
	}

	sp.vocab = m.Vocab
	if sp.merges, err = parseMerges(m.Merges); err != nil {
		return nil, err
	}
	for i, a := range f.AddedTokens {
		if a.ID == nil {
			return nil, fmt.Errorf("added token %d (%q) has no id", i, a.Content)
		}
		if !a.Special && (a.SingleWord || a.LStrip || a.RStrip) {
			return nil, fmt.Errorf("added token %q: single_word, lstrip and rstrip: %w", a.Content, ErrUnsupported)
		}
		sp.added = append(sp.added, addedToken{id: *a.ID, content: a.Content, special: a.Special})
	}
	return build(sp)
}

// parseMerges accepts both forms tokenizers has written: ["a b", ...] and, since
// version 0.20, [["a", "b"], ...].
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var lines []string
	if err := json.Unmarshal(raw, &lines); err == nil {
		merges := make([][2]string, len(lines))
		for i, line := range lines {
			parts := strings.Split(line, " ")
			if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
				return nil, fmt.Errorf("merge %d %q: want two tokens separated by one space", i+1, line)
			}
			merges[i] = [2]string{parts[0], parts[1]}
		}
		return merges, nil
	}
	var pairs [][]string
	if err := json.Unmarshal(raw, &pairs); err != nil {
		return nil, errors.New(`model.merges: want a list of "a b" strings or of ["a", "b"] pairs`)
	}
	merges := make([][2]string, len(pairs))
	for i, p := range pairs {
		if len(p) != 2 || p[0] == "" || p[1] == "" {
			return nil, fmt.Errorf("merge %d %q: want a pair of non-empty tokens", i+1, p)
		}
		merges[i] = [2]string{p[0], p[1]}
	}
	return merges, nil
}

// FromGPT2Files reads OpenAI's original GPT-2 files: encoder.json (token → id) and
// vocab.bpe (a "#version" line, then one merge "a b" per line, by rank). As in OpenAI's
// encoder, no prefix space is added. "<|endoftext|>" (id 50256 in GPT-2) is an
// ordinary vocabulary entry that no merge produces, so Encode never returns it.
func FromGPT2Files(encoderJSON, vocabBPE string) (*Tokenizer, error) {
	data, err := os.ReadFile(encoderJSON)
	if err != nil {
		return nil, fmt.Errorf("load GPT-2 encoder: %w", err)
	}
	var vocab map[string]int
	if err := json.Unmarshal(data, &vocab); err != nil {
		return nil, fmt.Errorf("load GPT-2 encoder %s: parse JSON: %w", encoderJSON, err)
	}
	data, err = os.ReadFile(vocabBPE)
	if err != nil {
		return nil, fmt.Errorf("load GPT-2 merges: %w", err)
	}
	var merges [][2]string
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if (i == 0 && strings.HasPrefix(line, "#version")) || strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("load GPT-2 merges %s: line %d %q: want two tokens", vocabBPE, i+1, line)
		}
		merges = append(merges, [2]string{f[0], f[1]})
	}
	t, err := build(spec{vocab: vocab, merges: merges, useRegex: true})
	if err != nil {
		return nil, fmt.Errorf("load GPT-2 files %s, %s: %w", encoderJSON, vocabBPE, err)
	}
	return t, nil
}
