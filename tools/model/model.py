"""A small GPT-2-style decoder-only transformer with an explicit KV cache.

Architecture: learned token and position embeddings, pre-LayerNorm blocks
(causal multi-head self-attention, then a GELU MLP), a final LayerNorm, and an
output projection tied to the token embedding.

The forward pass takes the inputs of Hugging Face Optimum's decoder layout:
``input_ids`` [batch, seq], ``attention_mask`` [batch, past+seq] (1 = real
token, 0 = padding), explicit ``position_ids`` [batch, seq] and, per layer, the
past keys and values [batch, heads, past, head_dim]. It returns the logits and
the present keys and values [batch, heads, past+seq, head_dim]. Masks are
computed from tensors only (no Python integers taken from shapes), so a traced
ONNX graph stays valid for every batch, sequence and past length.
"""

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class GPTConfig:
    """Model hyper-parameters."""

    vocab_size: int = 4096
    n_positions: int = 256
    n_embd: int = 256
    n_layer: int = 4
    n_head: int = 4
    dropout: float = 0.0

    def to_dict(self):
        """Return the configuration as a plain dict."""
        return asdict(self)


def attention_bias(attention_mask, seq_len_like, dtype):
    """Additive attention bias [batch, 1, seq, past+seq] from a padding mask.

    A query at absolute index past+i may attend key j when j <= past+i and
    attention_mask[:, j] == 1; other entries get the most negative finite
    value of dtype. seq_len_like is any [batch, seq] tensor (the input ids):
    its length is read through tensor ops so tracing keeps it dynamic.
    """
    ones_k = torch.ones_like(attention_mask)
    ones_q = torch.ones_like(seq_len_like)
    total = ones_k.sum(dim=1, keepdim=True)            # [B, 1] = past + seq
    seq = ones_q.sum(dim=1, keepdim=True)              # [B, 1] = seq
    k_pos = torch.cumsum(ones_k, dim=1) - 1            # [B, T]: 0..T-1
    q_pos = torch.cumsum(ones_q, dim=1) - 1 + (total - seq)  # [B, S]: past..T-1
    allowed = (k_pos.unsqueeze(1) <= q_pos.unsqueeze(2)) & (attention_mask.unsqueeze(1) > 0)
    zero = torch.zeros((), dtype=dtype)
    neg = torch.full((), torch.finfo(dtype).min, dtype=dtype)
    return torch.where(allowed, zero, neg).unsqueeze(1)


class Attention(nn.Module):
    """Causal multi-head self-attention with a KV cache."""

    def __init__(self, cfg):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0, "n_embd must be divisible by n_head"
        self.n_head = cfg.n_head
        self.head_dim = cfg.n_embd // cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, bias, past_key, past_value):
        """Attend over past and current keys; return (output, keys, values) with the past prepended."""
        b, s = x.shape[0], x.shape[1]
        q, k, v = self.c_attn(x).split(self.n_head * self.head_dim, dim=2)
        q = q.reshape(b, s, self.n_head, self.head_dim).transpose(1, 2)
        k = k.reshape(b, s, self.n_head, self.head_dim).transpose(1, 2)
        v = v.reshape(b, s, self.n_head, self.head_dim).transpose(1, 2)
        if past_key is not None:
            k = torch.cat([past_key, k], dim=2)
            v = torch.cat([past_value, v], dim=2)
        scores = torch.matmul(q, k.transpose(2, 3)) * (1.0 / math.sqrt(self.head_dim))
        # Clamp so that score + finfo.min never overflows to -inf: a fully
        # masked row (a padding query) then gets a uniform softmax, not NaN.
        scores = torch.maximum(scores + bias, torch.full((), torch.finfo(scores.dtype).min, dtype=scores.dtype))
        probs = self.dropout(torch.softmax(scores, dim=-1))
        y = torch.matmul(probs, v).transpose(1, 2).reshape(b, s, self.n_head * self.head_dim)
        return self.c_proj(y), k, v


class MLP(nn.Module):
    """Position-wise feed-forward network with a 4x GELU hidden layer."""

    def __init__(self, cfg):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):
        """Apply the MLP to every position."""
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    """One pre-LayerNorm transformer block."""

    def __init__(self, cfg):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(self, x, bias, past_key, past_value):
        """Residual attention then residual MLP; return (x, keys, values)."""
        a, k, v = self.attn(self.ln_1(x), bias, past_key, past_value)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, k, v


class GPT(nn.Module):
    """The decoder: embeddings, blocks, final LayerNorm, tied output layer."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.n_positions, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.reset_parameters()

    def reset_parameters(self):
        """GPT-2 initialisation: N(0, 0.02), residual projections scaled down."""
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02
                if name.endswith("c_proj.weight"):
                    std = 0.02 / math.sqrt(2 * self.cfg.n_layer)
                nn.init.normal_(p, mean=0.0, std=std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
        for m in self.modules():
            if isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def num_parameters(self):
        """Number of distinct parameters (the tied output layer counted once)."""
        return sum(p.numel() for p in self.parameters())

    def embed(self, input_ids):
        """Token embeddings [batch, seq, n_embd]."""
        return self.wte(input_ids)

    def unembed(self, h):
        """Logits [batch, seq, vocab] through the tied embedding matrix."""
        return torch.matmul(h, self.wte.weight.t())

    def forward(self, input_ids, attention_mask=None, position_ids=None, past=None):
        """Run the decoder.

        past is None or a list of (key, value) per layer. Returns
        (logits, presents) where presents is a list of (key, value).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0).expand_as(input_ids)
        x = self.drop(self.embed(input_ids) + self.wpe(position_ids))
        bias = attention_bias(attention_mask, input_ids, x.dtype)
        presents = []
        for i, block in enumerate(self.h):
            pk, pv = past[i] if past is not None else (None, None)
            x, k, v = block(x, bias, pk, pv)
            presents.append((k, v))
        return self.unembed(self.ln_f(x)), presents


class OnnxDecoder(nn.Module):
    """Export wrapper: flat inputs/outputs in Optimum's order, one shared matrix.

    The tied embedding is stored once, transposed ([n_embd, vocab]): the input
    lookup is a Gather along axis 1 and the output layer a plain MatMul, so
    the exported file holds a single copy and no Transpose of the weight runs
    at inference time.
    """

    def __init__(self, gpt):
        super().__init__()
        self.gpt = gpt
        self.wte_t = nn.Parameter(gpt.wte.weight.detach().t().contiguous())
        self.n_layer = gpt.cfg.n_layer

    def forward(self, input_ids, attention_mask, position_ids, *past_flat):
        """Return (logits, present.0.key, present.0.value, ...) for flat past tensors."""
        gpt = self.gpt
        b, s = input_ids.shape[0], input_ids.shape[1]
        tok = torch.index_select(self.wte_t, 1, input_ids.reshape(-1)).t().reshape(b, s, -1)
        x = tok + gpt.wpe(position_ids)
        bias = attention_bias(attention_mask, input_ids, x.dtype)
        outs = []
        for i, block in enumerate(gpt.h):
            x, k, v = block(x, bias, past_flat[2 * i], past_flat[2 * i + 1])
            outs.extend([k, v])
        logits = torch.matmul(gpt.ln_f(x), self.wte_t)
        return (logits, *outs)
