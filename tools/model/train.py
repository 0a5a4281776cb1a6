"""Train the bundled model on the WordNet gloss corpus.

Steps (each skipped when its output already exists and is current):

1. tokenize ``train.txt`` / ``valid.txt`` (from corpus.py) with the trained
   tokenizer into token streams: every document is preceded by
   ``<|endoftext|>``, so the model learns to end a definition with EOS;
2. train a GPT (model.py) on random windows of the training stream with
   AdamW, linear warm-up then cosine decay, gradient clipping, fixed seeds;
3. evaluate the mean next-token cross-entropy (nats/token) on the whole
   validation stream and on an equal-sized slice of the training stream, in
   non-overlapping windows, in eval mode;
4. write the checkpoint: ``model.npz`` (weights) and ``model.json``
   (configuration, hyper-parameters, losses, environment).

The script runs on CUDA when available (bf16 autocast), otherwise on CPU.

Usage:

    /usr/bin/python3 tools/model/train.py --data tools/model/out
"""

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bpe import load_tokenizer_json  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402


def tokenize_split(tok, text_path, ids_path, tok_hash):
    """Tokenize one split into a uint16 stream, cached next to the text."""
    meta_path = ids_path + ".json"
    if os.path.exists(ids_path) and os.path.exists(meta_path):
        with open(meta_path) as f:
            if json.load(f).get("tokenizer_sha256") == tok_hash:
                return np.load(ids_path)
    ids = []
    with open(text_path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                ids.append(tok.eos_id)
                ids.extend(tok.encode(line))
    ids.append(tok.eos_id)
    arr = np.asarray(ids, dtype=np.uint16)
    np.save(ids_path, arr)
    with open(meta_path, "w") as f:
        json.dump({"tokenizer_sha256": tok_hash, "tokens": int(arr.size)}, f)
    return arr


def evaluate(model, stream, ctx, batch, device, max_tokens=None):
    """Mean next-token cross-entropy over non-overlapping windows of stream."""
    model.eval()
    data = torch.from_numpy(stream.astype(np.int64))
    if max_tokens:
        data = data[:max_tokens + 1]
    n = (data.numel() - 1) // ctx
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, n, batch):
            rows = range(start, min(n, start + batch))
            x = torch.stack([data[r * ctx:r * ctx + ctx] for r in rows]).to(device)
            y = torch.stack([data[r * ctx + 1:r * ctx + ctx + 1] for r in rows]).to(device)
            logits, _ = model(x)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")
            total += loss.item()
            count += y.numel()
    model.train()
    return total / count


def lr_at(step, steps, warmup, lr, min_ratio=0.1):
    """Linear warm-up, then cosine decay to min_ratio * lr."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def save_checkpoint(out_dir, model, meta):
    """Write model.npz and model.json."""
    state = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    np.savez(os.path.join(out_dir, "model.npz"), **state)
    with open(os.path.join(out_dir, "model.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")


def load_checkpoint(out_dir):
    """Load (GPT in eval mode, meta) from model.npz and model.json."""
    with open(os.path.join(out_dir, "model.json")) as f:
        meta = json.load(f)
    model = GPT(GPTConfig(**meta["config"]))
    arrays = np.load(os.path.join(out_dir, "model.npz"))
    model.load_state_dict({k: torch.from_numpy(arrays[k]) for k in arrays.files})
    return model.eval(), meta


def main(argv=None):
    """Command-line entry point."""
    p = argparse.ArgumentParser(description="Train the bundled gloss model.")
    p.add_argument("--data", required=True, help="directory with train.txt, valid.txt, tokenizer.json; checkpoint goes here")
    p.add_argument("--steps", type=int, default=8000, help="optimizer steps (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="sequences per step (default %(default)s)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default %(default)s)")
    p.add_argument("--warmup", type=int, default=200, help="warm-up steps (default %(default)s)")
    p.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay on matrices (default %(default)s)")
    p.add_argument("--dropout", type=float, default=0.15, help="dropout (default %(default)s)")
    p.add_argument("--n-positions", type=int, default=256, help="context length (default %(default)s)")
    p.add_argument("--n-embd", type=int, default=256, help="width (default %(default)s)")
    p.add_argument("--n-layer", type=int, default=4, help="blocks (default %(default)s)")
    p.add_argument("--n-head", type=int, default=4, help="attention heads (default %(default)s)")
    p.add_argument("--seed", type=int, default=1234, help="seed for init and batch sampling (default %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default %(default)s)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    p.add_argument("--eval-every", type=int, default=1000, help="validation every N steps (default %(default)s)")
    p.add_argument("--max-minutes", type=float, default=0, help="stop early after this many minutes (0: no limit)")
    p.add_argument("--prepare-only", action="store_true", help="tokenize the corpus and exit")
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"

    tok_path = os.path.join(args.data, "tokenizer.json")
    with open(tok_path, "rb") as f:
        tok_hash = hashlib.sha256(f.read()).hexdigest()
    tok = load_tokenizer_json(tok_path)
    train_ids = tokenize_split(tok, os.path.join(args.data, "train.txt"), os.path.join(args.data, "train_ids.npy"), tok_hash)
    valid_ids = tokenize_split(tok, os.path.join(args.data, "valid.txt"), os.path.join(args.data, "valid_ids.npy"), tok_hash)
    print(f"train: {train_ids.size} training and {valid_ids.size} validation tokens", flush=True)
    if args.prepare_only:
        return

    cfg = GPTConfig(vocab_size=len(tok.vocab), n_positions=args.n_positions, n_embd=args.n_embd,
                    n_layer=args.n_layer, n_head=args.n_head, dropout=args.dropout)
    model = GPT(cfg).to(device)
    decay = [p_ for n, p_ in model.named_parameters() if p_.dim() >= 2]
    no_decay = [p_ for n, p_ in model.named_parameters() if p_.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95))
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)

    data = torch.from_numpy(train_ids.astype(np.int64)).to(device)
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    ctx = cfg.n_positions
    offsets = torch.arange(ctx + 1, device=device)
    print(f"train: {model.num_parameters()} parameters on {device}, {args.steps} steps of "
          f"{args.batch_size}x{ctx} tokens", flush=True)

    t0 = time.time()
    history = []
    running = None
    step = 0
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.warmup, args.lr)
        starts = torch.randint(0, data.numel() - ctx - 1, (args.batch_size,), generator=gen).to(device)
        chunk = data[starts.unsqueeze(1) + offsets]
        x, y = chunk[:, :-1], chunk[:, 1:]
        with autocast:
            logits, _ = model(x)
            loss = F.cross_entropy(logits.float().reshape(-1, cfg.vocab_size), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lv = loss.item() if (step % 50 == 0 or step == args.steps - 1) else None
        if lv is not None:
            running = lv if running is None else 0.9 * running + 0.1 * lv
            print(f"step {step:5d}  loss {lv:.4f}  lr {opt.param_groups[0]['lr']:.2e}  {time.time() - t0:6.1f}s", flush=True)
        if args.eval_every and step > 0 and step % args.eval_every == 0:
            with autocast:
                vl = evaluate(model, valid_ids, ctx, 64, device)
            history.append({"step": step, "validation_loss": vl, "seconds": time.time() - t0})
            print(f"step {step:5d}  validation loss {vl:.4f}", flush=True)
        if args.max_minutes and time.time() - t0 > args.max_minutes * 60:
            print(f"train: stopping after {args.max_minutes} minutes at step {step}", flush=True)
            break
    train_seconds = time.time() - t0
    steps_done = step + 1

    model.eval()
    val_loss = evaluate(model, valid_ids, ctx, 64, device)
    train_loss = evaluate(model, train_ids, ctx, 64, device, max_tokens=valid_ids.size)
    print(f"train: final training loss {train_loss:.4f}, validation loss {val_loss:.4f} (nats/token)", flush=True)

    meta = {
        "config": cfg.to_dict(),
        "hyperparameters": {k: v for k, v in vars(args).items() if k not in ("data", "prepare_only")},
        "steps_done": steps_done,
        "tokens_seen": steps_done * args.batch_size * ctx,
        "train_tokens": int(train_ids.size),
        "validation_tokens": int(valid_ids.size),
        "training_loss": train_loss,
        "validation_loss": val_loss,
        "history": history,
        "train_seconds": train_seconds,
        "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "torch_version": torch.__version__,
        "tokenizer_sha256": tok_hash,
    }
    save_checkpoint(args.data, model.cpu(), meta)
    print(f"train: checkpoint written to {args.data}/model.npz and model.json", flush=True)


if __name__ == "__main__":
    main()
