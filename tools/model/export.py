"""Export a decoder to ONNX in Hugging Face Optimum's KV-cache layout.

The model directory written here holds:

* ``model.onnx``: inputs ``input_ids`` int64 [batch, seq], ``attention_mask``
  int64 [batch, past+seq], ``position_ids`` int64 [batch, seq] and
  ``past_key_values.N.key`` / ``.value`` float32 [batch, heads, past, head_dim]
  for each layer N; outputs ``logits`` float32 [batch, seq, vocab] and
  ``present.N.key`` / ``.value`` [batch, heads, past+seq, head_dim]. Every
  batch, sequence and past dimension is dynamic; opset 17.
* ``tokenizer.json`` (copied), ``config.json``, ``generation_config.json``,
  and, when given, ``validation.txt`` and ``MODEL_CARD.md``.

Usage:

    # a trained checkpoint (see train.py): also writes validation.txt and MODEL_CARD.md
    /usr/bin/python3 tools/model/export.py --checkpoint tools/model/out --out inference/model/default
    # random weights of a given shape, with an existing tokenizer
    /usr/bin/python3 tools/model/export.py --random-init --tokenizer out/tokenizer.json --out DIR
"""

import argparse
import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import card  # noqa: E402
from bpe import EOS_TOKEN, load_tokenizer_json  # noqa: E402
from model import GPT, GPTConfig, OnnxDecoder  # noqa: E402
from train import load_checkpoint, save_checkpoint  # noqa: E402

OPSET = 17


def input_output_names(n_layer):
    """Return (input_names, output_names) in Optimum's order."""
    inputs = ["input_ids", "attention_mask", "position_ids"]
    outputs = ["logits"]
    for i in range(n_layer):
        inputs += [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
        outputs += [f"present.{i}.key", f"present.{i}.value"]
    return inputs, outputs


def export_onnx(gpt, path):
    """Trace gpt through OnnxDecoder and write path (ONNX, opset 17)."""
    cfg = gpt.cfg
    gpt = gpt.eval()
    wrapper = OnnxDecoder(gpt).eval()
    head_dim = cfg.n_embd // cfg.n_head
    # Trace with sizes that are all different and above 1, so no dimension is
    # mistaken for a broadcastable constant.
    batch, seq, past = 2, 3, 5
    input_ids = torch.randint(0, cfg.vocab_size, (batch, seq), dtype=torch.int64)
    attention_mask = torch.ones(batch, past + seq, dtype=torch.int64)
    attention_mask[0, :2] = 0
    position_ids = (torch.arange(seq) + past).unsqueeze(0).repeat(batch, 1)
    pasts = []
    for _ in range(cfg.n_layer):
        pasts += [torch.randn(batch, cfg.n_head, past, head_dim), torch.randn(batch, cfg.n_head, past, head_dim)]
    inputs, outputs = input_output_names(cfg.n_layer)
    axes = {
        "input_ids": {0: "batch_size", 1: "sequence_length"},
        "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
        "position_ids": {0: "batch_size", 1: "sequence_length"},
        "logits": {0: "batch_size", 1: "sequence_length"},
    }
    for i in range(cfg.n_layer):
        for kv in ("key", "value"):
            axes[f"past_key_values.{i}.{kv}"] = {0: "batch_size", 2: "past_sequence_length"}
            axes[f"present.{i}.{kv}"] = {0: "batch_size", 2: "total_sequence_length"}
    with torch.no_grad():
        torch.onnx.export(
            wrapper, (input_ids, attention_mask, position_ids, *pasts), path,
            input_names=inputs, output_names=outputs, dynamic_axes=axes,
            opset_version=OPSET, do_constant_folding=True, export_params=True)
    check_onnx(path, cfg)


def check_onnx(path, cfg):
    """Run onnx.checker and verify the graph's names, types and dynamic axes."""
    import onnx

    onnx.checker.check_model(path)
    m = onnx.load(path, load_external_data=False)
    inputs, outputs = input_output_names(cfg.n_layer)
    got_in = [i.name for i in m.graph.input]
    got_out = [o.name for o in m.graph.output]
    if got_in != inputs or got_out != outputs:
        raise RuntimeError(f"export: unexpected graph signature: inputs {got_in}, outputs {got_out}")
    for vi in list(m.graph.input) + list(m.graph.output):
        t = vi.type.tensor_type
        want = onnx.TensorProto.INT64 if vi.name in inputs[:3] else onnx.TensorProto.FLOAT
        if t.elem_type != want:
            raise RuntimeError(f"export: {vi.name} has element type {t.elem_type}, want {want}")
        dims = t.shape.dim
        if not dims[0].dim_param:
            raise RuntimeError(f"export: {vi.name} batch dimension is not dynamic")
        if vi.name.startswith(("past_", "present.")):
            if not dims[2].dim_param or dims[1].dim_value != cfg.n_head or dims[3].dim_value != cfg.n_embd // cfg.n_head:
                raise RuntimeError(f"export: {vi.name} has shape {dims}")
    big = [i.name for i in m.graph.initializer if cfg.vocab_size in i.dims]
    if len(big) != 1:
        raise RuntimeError(f"export: want one vocabulary-sized initializer (tied embedding), got {big}")


def model_config(cfg, eos_id, meta):
    """The config.json document: Hugging Face GPT-2 keys plus our metadata."""
    doc = {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.n_positions,
        "n_ctx": cfg.n_positions,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": 4 * cfg.n_embd,
        "activation_function": "gelu",
        "layer_norm_epsilon": 1e-5,
        "tie_word_embeddings": True,
        "bos_token_id": eos_id,
        "eos_token_id": eos_id,
        "torch_dtype": "float32",
    }
    doc.update(meta)
    return doc


def write_model_dir(gpt, tokenizer_path, out_dir, meta, validation_text=None, model_card=None):
    """Write a complete model directory (see the module docstring)."""
    os.makedirs(out_dir, exist_ok=True)
    with open(tokenizer_path, encoding="utf-8") as f:
        tok = json.load(f)
    vocab = tok["model"]["vocab"]
    if len(vocab) != gpt.cfg.vocab_size or EOS_TOKEN not in vocab:
        raise SystemExit(f"export: tokenizer has {len(vocab)} tokens, model expects {gpt.cfg.vocab_size} with {EOS_TOKEN}")
    eos_id = vocab[EOS_TOKEN]
    export_onnx(gpt, os.path.join(out_dir, "model.onnx"))
    if os.path.abspath(tokenizer_path) != os.path.abspath(os.path.join(out_dir, "tokenizer.json")):
        shutil.copyfile(tokenizer_path, os.path.join(out_dir, "tokenizer.json"))
    _write_json(os.path.join(out_dir, "config.json"), model_config(gpt.cfg, eos_id, meta))
    _write_json(os.path.join(out_dir, "generation_config.json"), {
        "bos_token_id": eos_id, "eos_token_id": eos_id, "max_length": gpt.cfg.n_positions,
    })
    if validation_text is not None:
        with open(os.path.join(out_dir, "validation.txt"), "w", encoding="utf-8") as f:
            f.write(validation_text)
    if model_card is not None:
        with open(os.path.join(out_dir, "MODEL_CARD.md"), "w", encoding="utf-8") as f:
            f.write(model_card)


def _write_json(path, doc):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def main(argv=None):
    """Command-line entry point."""
    p = argparse.ArgumentParser(description="Export a decoder to ONNX (Optimum KV-cache layout).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="directory with model.npz, model.json, tokenizer.json, valid.txt (train.py)")
    src.add_argument("--random-init", action="store_true", help="export random weights (for tests and benchmarks)")
    p.add_argument("--tokenizer", help="tokenizer.json (required with --random-init)")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--seed", type=int, default=1234, help="random-init seed (default %(default)s)")
    p.add_argument("--n-positions", type=int, default=256)
    p.add_argument("--n-embd", type=int, default=256)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--validation-text", help="random-init: file copied to validation.txt; checkpoint: "
                   "validation split to sample validation.txt from (default CHECKPOINT/valid.txt)")
    p.add_argument("--model-name", default="inferstack-random", help="config.json model_name (random-init only)")
    p.add_argument("--model-version", default="1.0.0", help="config.json model_version (default %(default)s)")
    p.add_argument("--save-checkpoint", help="also save the random weights as a checkpoint directory (for selftest.py)")
    args = p.parse_args(argv)

    if args.random_init:
        if not args.tokenizer:
            p.error("--random-init needs --tokenizer")
        with open(args.tokenizer, encoding="utf-8") as f:
            vocab_size = len(json.load(f)["model"]["vocab"])
        torch.manual_seed(args.seed)
        cfg = GPTConfig(vocab_size=vocab_size, n_positions=args.n_positions, n_embd=args.n_embd,
                        n_layer=args.n_layer, n_head=args.n_head)
        gpt = GPT(cfg)
        meta = {"model_name": args.model_name, "model_version": "0.0.0-random", "random_init": True, "seed": args.seed}
        validation = None
        if args.validation_text:
            with open(args.validation_text, encoding="utf-8") as f:
                validation = f.read()
        write_model_dir(gpt, args.tokenizer, args.out, meta, validation)
        if args.save_checkpoint:
            os.makedirs(args.save_checkpoint, exist_ok=True)
            save_checkpoint(args.save_checkpoint, gpt, dict(meta, config=cfg.to_dict()))
    else:
        gpt, ckpt = load_checkpoint(args.checkpoint)
        cfg = gpt.cfg
        tok_path = args.tokenizer or os.path.join(args.checkpoint, "tokenizer.json")
        valid_path = args.validation_text or os.path.join(args.checkpoint, "valid.txt")
        tok = load_tokenizer_json(tok_path)
        validation = card.validation_sample(valid_path)
        sample_loss = card.sample_loss(gpt, tok, validation)
        sample_list = card.samples(gpt, tok)
        meta = {
            "model_name": args.model_name if args.model_name != "inferstack-random" else "inferstack-tiny-gloss",
            "model_version": args.model_version,
            "training_loss": round(ckpt["training_loss"], 4),
            "validation_loss": round(ckpt["validation_loss"], 4),
            "validation_sample_loss": round(sample_loss, 4),
        }
        text = card.model_card(dict(ckpt, **meta), cfg, gpt.num_parameters(), sample_list, sample_loss,
                               len(validation.encode("utf-8")))
        write_model_dir(gpt, tok_path, args.out, meta, validation, text)
        for settings, sample in sample_list:
            print(f"sample ({settings}): What are the symptoms of{sample}")
        print(f"export: training loss {meta['training_loss']}, validation loss {meta['validation_loss']}, "
              f"validation.txt loss {meta['validation_sample_loss']}")
    print(f"export: wrote {args.out} ({os.path.getsize(os.path.join(args.out, 'model.onnx')) / 1e6:.1f} MB model.onnx)")


if __name__ == "__main__":
    main()
