"""Evaluation sample, sample continuations and the model card of the bundled model."""

import random

import torch
import torch.nn.functional as F

PROMPT = "What are the symptoms of"

# The WordNet 3.0 licence, which must accompany every copy of a derived work.
WORDNET_LICENSE = """\
This software and database is being provided to you, the LICENSEE, by
Princeton University under the following license.  By obtaining, using
and/or copying this software and database, you agree that you have
read, understood, and will comply with these terms and conditions.:

Permission to use, copy, modify and distribute this software and
database and its documentation for any purpose and without fee or
royalty is hereby granted, provided that you agree to comply with
the following copyright notice and statements, including the disclaimer,
and that the same appear on ALL copies of the software, database and
documentation, including modifications that you make for internal
use or for distribution.

WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved.

THIS SOFTWARE AND DATABASE IS PROVIDED "AS IS" AND PRINCETON
UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES, EXPRESS OR
IMPLIED.  BY WAY OF EXAMPLE, BUT NOT LIMITATION, PRINCETON
UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES OF MERCHANT-
ABILITY OR FITNESS FOR ANY PARTICULAR PURPOSE OR THAT THE USE
OF THE LICENSED SOFTWARE, DATABASE OR DOCUMENTATION WILL NOT
INFRINGE ANY THIRD PARTY PATENTS, COPYRIGHTS, TRADEMARKS OR
OTHER RIGHTS.

The name of Princeton University or Princeton may not be used in
advertising or publicity pertaining to distribution of the software
and/or database.  Title to copyright in this software, database and
any associated documentation shall at all times remain with
Princeton University and LICENSEE agrees to preserve same.
"""


def validation_sample(valid_path, target_bytes=4096, seed=1234):
    """Pick whole validation documents (seeded) until about target_bytes of text."""
    with open(valid_path, encoding="utf-8") as f:
        docs = [line.rstrip("\n") for line in f if line.strip()]
    rng = random.Random(seed)
    rng.shuffle(docs)
    out, size = [], 0
    for d in docs:
        if size + len(d) + 1 > target_bytes:
            break
        out.append(d)
        size += len(d.encode("utf-8")) + 1
    return "".join(d + "\n" for d in out)


def sample_loss(gpt, tok, text):
    """Mean next-token cross-entropy (nats/token) of text, one document per line.

    Protocol (the one the server reproduces): each non-empty line is encoded
    as [EOS] + tokens(line) + [EOS], cut to the context length, and every
    token after the first is predicted; the mean is over all predicted tokens.
    """
    total, count = 0.0, 0
    n_ctx = gpt.cfg.n_positions
    with torch.no_grad():
        for line in text.split("\n"):
            if not line.strip():
                continue
            ids = ([tok.eos_id] + tok.encode(line) + [tok.eos_id])[:n_ctx]
            x = torch.tensor([ids])
            logits, _ = gpt(x)
            loss = F.cross_entropy(logits[0, :-1], x[0, 1:], reduction="sum")
            total += loss.item()
            count += len(ids) - 1
    return total / count


def generate(gpt, tok, prompt, max_new_tokens=48, temperature=0.0, top_k=0, seed=0):
    """Generate with the KV cache (greedy when temperature is 0); stop at EOS."""
    g = torch.Generator().manual_seed(seed)
    ids = tok.encode(prompt)
    cfg = gpt.cfg
    hd = cfg.n_embd // cfg.n_head
    past = [(torch.zeros(1, cfg.n_head, 0, hd), torch.zeros(1, cfg.n_head, 0, hd)) for _ in range(cfg.n_layer)]
    x = torch.tensor([ids])
    pos = torch.arange(len(ids)).unsqueeze(0)
    out = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            total = len(ids) + len(out)
            logits, past = gpt(x, torch.ones(1, total, dtype=torch.long), pos, past)
            logits = logits[0, -1]
            if temperature <= 0:
                nxt = int(logits.argmax())
            else:
                logits = logits / temperature
                if top_k:
                    kth = torch.topk(logits, top_k).values[-1]
                    logits = torch.where(logits < kth, torch.full_like(logits, float("-inf")), logits)
                nxt = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=g))
            if nxt == tok.eos_id:
                break
            out.append(nxt)
            x = torch.tensor([[nxt]])
            pos = torch.tensor([[total]])
    return tok.decode(out)


def samples(gpt, tok, prompt=PROMPT):
    """Greedy and seeded sampled continuations, as (settings, text) pairs."""
    res = [("greedy", generate(gpt, tok, prompt))]
    for seed in (1, 2):
        res.append((f"temperature 0.8, top_k 40, seed {seed}",
                    generate(gpt, tok, prompt, temperature=0.8, top_k=40, seed=seed)))
    for seed in (1, 2, 3):
        res.append((f"temperature 1.0, seed {seed}", generate(gpt, tok, prompt, temperature=1.0, seed=seed)))
    return res


def model_card(meta, cfg, n_params, sample_list, sample_loss_value, sample_bytes):
    """Render MODEL_CARD.md."""
    hp = meta["hyperparameters"]
    lines = [
        f"# {meta['model_name']} {meta['model_version']}",
        "",
        "A tiny GPT-2-style language model trained by this project on WordNet's glosses, bundled so",
        "that the inference server answers out of the box. It writes short dictionary-style",
        "definitions. It is a demonstration and test fixture, not a source of facts.",
        "",
        "## Model",
        "",
        f"- Decoder-only transformer: {cfg.n_layer} pre-LayerNorm blocks, width {cfg.n_embd}, "
        f"{cfg.n_head} heads, GELU MLP (4x),",
        "  learned positional embeddings, output layer tied to the token embedding;",
        f"  {n_params:,} parameters; context {cfg.n_positions} tokens.",
        "- Byte-level BPE tokenizer (GPT-2's byte mapping and pre-tokenization),",
        f"  vocabulary {cfg.vocab_size} including `<|endoftext|>` (id {cfg.vocab_size - 1}, EOS and BOS).",
        "- Files: `model.onnx` (ONNX opset 17, Hugging Face Optimum's decoder layout with KV cache:",
        "  `input_ids`, `attention_mask`, `position_ids`, `past_key_values.N.key/value` → `logits`,",
        "  `present.N.key/value`), `tokenizer.json` (Hugging Face format), `config.json`,",
        "  `generation_config.json`, `validation.txt`.",
        "",
        "## Training data",
        "",
        "- Corpus: the glosses (definitions and example sentences) of WordNet 3.0, read from the",
        "  Debian package `wordnet-base` (`/usr/share/wordnet/data.{noun,verb,adj,adv}`). Each synset",
        "  becomes a document `lemma: definition. Also called …. Examples.`; noun synsets about the",
        "  body, states (diseases), processes, substances, foods, organisms, artifacts and people get a",
        "  second document `What is a lemma? A lemma is definition.` (tools/model/corpus.py).",
        "- Split: by a SHA-256 hash of the synset's file and offset, 2% of synsets held out for",
        f"  validation. {meta['train_tokens']:,} training tokens, {meta['validation_tokens']:,} validation tokens.",
        "  Documents are separated by `<|endoftext|>`.",
        "- Licence: the WordNet 3.0 licence (permissive; redistribution allowed with its notice,",
        "  reproduced in full at the end of this card). Attribution: WordNet 3.0, Princeton University.",
        "",
        "## Training",
        "",
        f"- {meta['steps_done']} AdamW steps (β = 0.9, 0.95) of {hp['batch_size']} random windows × "
        f"{cfg.n_positions} tokens",
        f"  ({meta['tokens_seen']:,} tokens, about {meta['tokens_seen'] / meta['train_tokens']:.0f} passes over the data).",
        f"- Peak learning rate {hp['lr']}, {hp['warmup']} warm-up steps, cosine decay to 10%;",
        f"  weight decay {hp['weight_decay']} on matrices; dropout {hp['dropout']}; gradient clipping at 1.0;",
        f"  seed {hp['seed']}.",
        f"- Trained on {meta['device']} with PyTorch {meta['torch_version']} (bf16 autocast) in "
        f"{meta['train_seconds']:.0f} s; exported with Debian's PyTorch.",
        "",
        "## Results (mean next-token cross-entropy, nats/token)",
        "",
        "| split | loss | perplexity |",
        "| --- | --- | --- |",
        f"| training (a slice the size of the validation set) | {meta['training_loss']:.4f} | "
        f"{_exp(meta['training_loss']):.1f} |",
        f"| validation (all held-out synsets) | {meta['validation_loss']:.4f} | {_exp(meta['validation_loss']):.1f} |",
        f"| `validation.txt` ({sample_bytes} bytes, per-document protocol below) | {sample_loss_value:.4f} | "
        f"{_exp(sample_loss_value):.1f} |",
        "",
        "`validation.txt` is a seeded sample of whole validation documents, one per line. Its loss is",
        "computed document by document: `[EOS] + tokens(line) + [EOS]`, cut to the context length,",
        "every token after the first predicted, mean over all predicted tokens.",
        "",
        "## Sample continuations of \"What are the symptoms of\" (no BOS; stops at EOS or 48 tokens)",
        "",
    ]
    for settings, text in sample_list:
        lines.append(f"- {settings}: \"What are the symptoms of{_oneline(text)}\"")
    lines += [
        "",
        "## Intended use and limits",
        "",
        "- Intended for demonstrations, tests and benchmarks of the serving stack.",
        "- It has seen only dictionary glosses: it continues any prompt with a definition-like",
        "  sentence, often fluent and often wrong. It knows nothing about symptoms or medicine beyond",
        "  the wording of WordNet glosses. Never use its output as medical or any other advice.",
        "- English only; 256-token context; no instruction following, no safety tuning.",
        "",
        "## WordNet licence",
        "",
        "The training corpus, and therefore this model, derive from WordNet 3.0:",
        "",
        "```",
        WORDNET_LICENSE.rstrip("\n"),
        "```",
        "",
    ]
    return "\n".join(lines)


def _exp(x):
    import math
    return math.exp(x)


def _oneline(s):
    return s.replace("\n", "\\n").replace('"', "'")
