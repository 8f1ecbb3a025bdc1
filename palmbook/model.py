"""PaLM, top to bottom, in the order of the paper's §2.

    tokens (B, T)
      -> shared embedding E (V, d), N(0, 1) init, no positions added      [§2 "Shared Input-Output Embeddings"]
      -> n_layers x ParallelBlock:                                         [§2 "Parallel Layers"]
             y = x + Attention(LN(x)) + SwiGLU-MLP(LN(x))
             one fused matmul computes [queries | key | value | gate | up] from LN(x)
             multi-query attention: H query heads share ONE key head and ONE value head  [§2 "Multi-Query Attention"]
             RoPE rotates queries and keys by their positions                            [§2 "RoPE Embeddings"]
      -> final LayerNorm (a scale, no bias: PaLM has no biases anywhere)                 [§2 "No Biases"]
      -> logits = (h / sqrt(d)) E^T, the input embedding reused as the output layer      [§5 "Weight initialization"]

Nothing here is specific to one device: attention goes through ``F.scaled_dot_product_attention`` (flash kernels
on CUDA, a fused kernel on CPU), and the whole model runs under bf16 autocast, on the meta device (to count 540B
parameters without memory), and under ``torch.compile``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import PaLMConfig
from .io import atomic_write, load_safetensors

__all__ = ["KVCache", "LayerNorm", "PaLM", "ParallelBlock", "apply_rope", "rope_tables"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


# --------------------------------------------------------------------------------------------- LayerNorm
class LayerNorm(nn.Module):
    """LayerNorm with a learned scale and no bias (§2 "No Biases": removing biases improved training stability).

    The paper says LayerNorm, not RMSNorm: the mean is still subtracted.
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:  # (..., dim) -> (..., dim)
        return F.layer_norm(x, self.weight.shape, self.weight, None, self.eps)


# --------------------------------------------------------------------------------------------- RoPE
def rope_tables(
    max_seq_len: int, head_dim: int, base: float = 10_000.0, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    """cos and sin tables for rotary position embeddings, each (max_seq_len, head_dim), float32.

    Pair i of a head (dimensions i and i + head_dim/2) turns by angle ``pos * base^(-2i/head_dim)``.
    """
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(max_seq_len, device=device, dtype=torch.float32), inv_freq)  # (T, h/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, h): both halves of a pair share one angle
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate each pair (x[i], x[i + h/2]) of the last dimension by its angle.

    x: (..., T, h); cos, sin: (T, h). This is the "rotate half" layout of GPT-NeoX; RoFormer pairs neighbouring
    dimensions instead. The two are the same rotation up to a fixed permutation of a head's dimensions, which the
    learned projections absorb, so the model family is identical; the half layout needs no strided gathers.
    """
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


# --------------------------------------------------------------------------------------------- KV cache
class KVCache:
    """Preallocated keys and values for incremental decoding.

    Multi-query attention stores ONE key head and ONE value head per layer, so the cache holds
    (n_layers, B, 1, max_len, head_dim) per tensor: n_heads times less than multi-head attention.
    Buffers are allocated on the first write, in the dtype of the keys (bf16 under autocast).
    """

    def __init__(self, n_layers: int, batch_size: int, max_len: int, head_dim: int) -> None:
        self.shape = (n_layers, batch_size, 1, max_len, head_dim)
        self.k: Tensor | None = None
        self.v: Tensor | None = None

    def update(self, layer: int, k: Tensor, v: Tensor, pos: int) -> tuple[Tensor, Tensor]:
        """Write k, v (B, 1, T, h) at positions pos..pos+T-1; return all keys/values so far (B, 1, pos+T, h)."""
        if self.k is None:
            self.k = torch.empty(self.shape, dtype=k.dtype, device=k.device)
            self.v = torch.empty(self.shape, dtype=v.dtype, device=v.device)
        end = pos + k.shape[2]
        if end > self.shape[3]:
            raise ValueError(f"KV cache holds {self.shape[3]} positions; writing up to position {end}")
        self.k[layer, :, :, pos:end] = k
        self.v[layer, :, :, pos:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def nbytes(self) -> int:
        """Bytes held by the cache (0 until the first write)."""
        return 0 if self.k is None else 2 * self.k.numel() * self.k.element_size()


# --------------------------------------------------------------------------------------------- the block
class ParallelBlock(nn.Module):
    """One PaLM layer: ``y = x + Attention(LN(x)) + MLP(LN(x))`` (§2 "Parallel Layers", after GPT-J).

    Attention and MLP read the same normalised input, so their four input matmuls fuse into ONE matmul
    ``in_proj`` with output columns [queries (H*h) | key (h) | value (h) | gate (d_ff) | up (d_ff)].
    The paper reports ~15% faster training at large scale from this. One shared LayerNorm per block is the
    common reading of the paper (it does not say).
    """

    def __init__(self, config: PaLMConfig) -> None:
        super().__init__()
        c = config
        self.n_heads, self.head_dim, self.dropout = c.n_heads, c.head_dim, c.dropout
        self.splits = [c.n_heads * c.head_dim, c.head_dim, c.head_dim, c.d_ff, c.d_ff]
        self.norm = LayerNorm(c.d_model, c.norm_eps)
        self.in_proj = nn.Linear(c.d_model, c.fused_dim, bias=False)
        self.attn_out = nn.Linear(c.n_heads * c.head_dim, c.d_model, bias=False)
        self.ffn_out = nn.Linear(c.d_ff, c.d_model, bias=False)

    def project(self, x: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """LN + the fused projection + RoPE. x (B, T, d) -> q (B, H, T, h), k, v (B, 1, T, h), gate, up (B, T, d_ff)."""
        B, T, _ = x.shape
        q, k, v, gate, up = self.in_proj(self.norm(x)).split(self.splits, dim=-1)
        q = q.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k, v = k.unsqueeze(1), v.unsqueeze(1)  # one shared head: (B, 1, T, h)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v, gate, up

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache | None = None, layer: int = 0, pos: int = 0
    ) -> Tensor:
        """x: (B, T, d) at positions pos..pos+T-1; cos, sin: (T, h) for those positions. Returns (B, T, d)."""
        q, k, v, gate, up = self.project(x, cos, sin)
        if cache is not None:
            k, v = cache.update(layer, k, v, pos)
        attn = multi_query_attention(q, k, v, pos, self.dropout if self.training else 0.0)  # (B, T, H*h)
        mlp = F.silu(gate) * up  # SwiGLU: Swish(xW) * (xV)  [§2 "SwiGLU Activation"]
        if self.training and self.dropout > 0:
            return x + F.dropout(self.attn_out(attn), self.dropout) + F.dropout(self.ffn_out(mlp), self.dropout)
        return x + self.attn_out(attn) + self.ffn_out(mlp)


def multi_query_attention(q: Tensor, k: Tensor, v: Tensor, pos: int = 0, dropout: float = 0.0) -> Tensor:
    """Causal attention of H query heads over one shared key/value head.

    q: (B, H, T, h) at positions pos..pos+T-1; k, v: (B, 1, S, h) for positions 0..S-1 with S = pos + T.
    Returns (B, T, H*h), the heads laid side by side.
    """
    B, H, T, h = q.shape
    if T == 1:
        # One new token sees every cached position, so no mask is needed, and because all heads share one key
        # head, the H queries can be stacked as H rows of ONE head: a single (H x h) @ (h x S) product per sequence.
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k, v)  # (B, 1, H, h)
        return out.reshape(B, 1, H * h)
    S = k.shape[2]
    k, v = k.expand(B, H, S, h), v.expand(B, H, S, h)  # a view: broadcast the one head, no copy
    if S == T:
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
    else:  # a chunk of new tokens after a cached prefix: query i may see keys 0..pos+i
        mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(diagonal=S - T)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
    return out.transpose(1, 2).reshape(B, T, H * h)


# --------------------------------------------------------------------------------------------- the model
class PaLM(nn.Module):
    """A decoder-only PaLM language model.

    >>> model = PaLM(PaLMConfig.preset("palm-tiny"))
    >>> logits = model(torch.zeros(2, 8, dtype=torch.long))   # (B, T) -> (B, T, vocab_size)
    """

    def __init__(self, config: PaLMConfig) -> None:
        super().__init__()
        if not isinstance(config, PaLMConfig):
            raise TypeError(f"PaLM expects a PaLMConfig, e.g. PaLMConfig.preset('palm-tiny'); got {type(config)}")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(ParallelBlock(config) for _ in range(config.n_layers))
        self.norm_f = LayerNorm(config.d_model, config.norm_eps)
        cos, sin = rope_tables(config.max_seq_len, config.head_dim, config.rope_base, device=self.embed.weight.device)
        self.register_buffer("rope_cos", cos, persistent=False)  # derived from the config: not saved
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The paper's initialisation (§5 "Weight initialization").

        Kernels: N(0, 1/sqrt(fan_in)) (standard deviation). Input embeddings: N(0, 1), because no LayerNorm is
        applied to them. LayerNorm scales: 1. RoPE tables are recomputed (needed after ``to_empty``).
        """
        nn.init.normal_(self.embed.weight, mean=0.0, std=1.0)
        for block in self.blocks:
            block.norm.weight.fill_(1.0)
            for linear in (block.in_proj, block.attn_out, block.ffn_out):
                nn.init.normal_(linear.weight, mean=0.0, std=linear.in_features**-0.5)
        self.norm_f.weight.fill_(1.0)
        c = self.config
        cos, sin = rope_tables(c.max_seq_len, c.head_dim, c.rope_base, device=self.rope_cos.device)
        self.rope_cos.copy_(cos)
        self.rope_sin.copy_(sin)

    # ------------------------------------------------------------------ forward
    def forward(self, idx: Tensor, *, kv_cache: KVCache | None = None, start_pos: int = 0) -> Tensor:
        """idx: token ids (B, T) at positions start_pos..start_pos+T-1 -> logits (B, T, vocab_size).

        With ``kv_cache`` the keys and values of these positions are stored and earlier ones are read from it.
        """
        self._check_input(idx, start_pos)
        return self.logits(self.hidden(idx, kv_cache=kv_cache, start_pos=start_pos))

    def hidden(self, idx: Tensor, *, kv_cache: KVCache | None = None, start_pos: int = 0) -> Tensor:
        """The final normalised hidden states (B, T, d_model), before the output layer. No input checks."""
        T = idx.shape[1]
        cos = self.rope_cos[start_pos : start_pos + T]
        sin = self.rope_sin[start_pos : start_pos + T]
        x = self.embed(idx)
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, kv_cache, i, start_pos)
        return self.norm_f(x)

    def logits(self, h: Tensor) -> Tensor:
        """h (..., d) -> logits (..., V) through the shared embedding, scaled by 1/sqrt(d_model) (§2).

        Scaling h before the product equals scaling the logits after it, and touches d numbers instead of V.
        """
        return F.linear(h * self.config.d_model**-0.5, self.embed.weight)

    @torch.no_grad()
    def attention_maps(self, idx: Tensor) -> Tensor:
        """Attention probabilities of every layer and head: (n_layers, B, n_heads, T, T). For pictures, not speed."""
        self._check_input(idx, 0)
        T = idx.shape[1]
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
        x, maps = self.embed(idx), []
        for block in self.blocks:
            q, k, _, _, _ = block.project(x, cos, sin)
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(block.head_dim)  # (B, H, T, T)
            maps.append(scores.masked_fill(~causal, float("-inf")).softmax(-1))
            x = block(x, cos, sin)
        return torch.stack(maps)

    def _check_input(self, idx: Any, start_pos: int) -> None:
        """One clear error for each way an input can be wrong, instead of a shape error deep inside."""
        if not isinstance(idx, Tensor):
            raise TypeError(
                f"idx must be a torch.Tensor of token ids with shape (batch, seq); got {type(idx).__name__}"
            )
        if idx.dtype not in (torch.long, torch.int32):
            raise TypeError(f"idx must hold integer token ids (torch.long); got dtype {idx.dtype}: use idx.long()")
        if idx.dim() != 2:
            fix = " (add a batch dimension with idx.unsqueeze(0))" if idx.dim() == 1 else ""
            raise ValueError(f"idx must have shape (batch, seq); got shape {tuple(idx.shape)}{fix}")
        B, T = idx.shape
        if B == 0 or T == 0:
            raise ValueError(f"idx is empty (shape {tuple(idx.shape)}): give at least one token per sequence")
        limit = self.config.max_seq_len
        if start_pos < 0 or start_pos + T > limit:
            raise ValueError(
                f"positions {start_pos}..{start_pos + T - 1} exceed max_seq_len={limit}: keep the last {limit} "
                f"tokens (idx[:, -{limit}:]) or use a config with a larger max_seq_len"
            )
        if idx.device.type != "meta":
            lo, hi = torch.aminmax(idx)
            if lo.item() < 0 or hi.item() >= self.config.vocab_size:
                bad = lo.item() if lo.item() < 0 else hi.item()
                raise ValueError(
                    f"token id {bad} is out of range for vocab_size={self.config.vocab_size}: ids must be in "
                    f"[0, {self.config.vocab_size - 1}]; was the text encoded with this model's tokenizer?"
                )

    # ------------------------------------------------------------------ utilities
    def num_parameters(self, include_norms: bool = True) -> int:
        """Number of parameters; the shared embedding/output matrix is counted once (it is one tensor).

        ``include_norms=False`` drops the LayerNorm scales, as the paper's Table 1 does.
        """
        return sum(p.numel() for p in self.parameters() if include_norms or p.dim() > 1)

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    def new_kv_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        """An empty cache for ``batch_size`` sequences of up to ``max_len`` (default max_seq_len) positions."""
        c = self.config
        return KVCache(c.n_layers, batch_size, max_len or c.max_seq_len, c.head_dim)

    def generate(self, idx: Tensor, max_new_tokens: int, **sampling: Any) -> Tensor:
        """Continue each prompt in idx (B, T) by up to max_new_tokens tokens -> (B, T + n).

        Sampling options (see :func:`palmbook.generate.generate`): temperature (0 = greedy), top_k, top_p,
        stop_token, generator, seed.
        """
        from .generate import generate

        return generate(self, idx, max_new_tokens, **sampling)

    # ------------------------------------------------------------------ save / load (safetensors only)
    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into directory ``path``, each atomically.

        Each file is written to a temporary name in the same directory and renamed over the old one, so a crash
        mid-write leaves the previous file intact.
        """
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        atomic_write(path / WEIGHTS_NAME, lambda p: save_file(state, p, metadata={"format": "pt", "palmbook": "1"}))
        text = json.dumps(self.config.to_dict(), indent=2) + "\n"
        atomic_write(path / CONFIG_NAME, lambda p: Path(p).write_text(text, encoding="utf-8"))
        return path

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, device: torch.device | str = "cpu", dtype: torch.dtype | None = None
    ) -> PaLM:
        """Load a model written by :meth:`save_pretrained`. Reads safetensors only: nothing is ever unpickled."""
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"no model directory at {path}; expected one written by PaLM.save_pretrained")
        config = PaLMConfig.load(path / CONFIG_NAME)
        state = load_safetensors(path / WEIGHTS_NAME, device)
        with torch.device("meta"):
            model = cls(config)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in state.items()}
        if expected != got:
            missing, extra = sorted(expected.keys() - got.keys()), sorted(got.keys() - expected.keys())
            wrong = sorted(k for k in expected.keys() & got.keys() if expected[k] != got[k])
            raise ValueError(
                f"{path / WEIGHTS_NAME} does not match {path / CONFIG_NAME}: missing {missing}, unexpected {extra}, "
                f"wrong shape {wrong}; re-save the model with save_pretrained"
            )
        model.load_state_dict(state, strict=True, assign=True)
        c = config
        cos, sin = rope_tables(c.max_seq_len, c.head_dim, c.rope_base, device=device)
        model.rope_cos, model.rope_sin = cos, sin
        if dtype is not None:
            model.to(dtype)
        return model.eval()
