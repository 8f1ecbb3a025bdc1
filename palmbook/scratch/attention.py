"""Attention from scratch: the teaching version built in chapter 3 (``book/03_attention.ipynb``).

Everything here is plain tensor algebra, written to be read next to the chapter's prose, one idea per function:

    softmax                     scores -> probabilities (with a temperature)
    causal_mask                 which keys each query may see in a decoder-only model
    attention                   scaled dot-product attention of one head: softmax(q k^T / sqrt(d_k)) v
    rope_frequencies / rotate   RoPE: turn pairs of dimensions by an angle proportional to the position
    multi_head_attention        H heads, each with its own queries, keys and values (Vaswani et al. 2017)
    multi_query_attention       H query heads sharing ONE key head and ONE value head (Shazeer 2019; PaLM §2)
    block_attention_weights     the four attention matrices hidden inside a ParallelBlock's fused in_proj
    block_attention_branch      Attention(LN(x)) of a ParallelBlock, recomputed from those weights
    block_attention_map         that branch's attention weights, (B, H, T, T): what model.attention_maps draws
    kv_cache_bytes_per_token    memory a KV cache needs per token, multi-head vs multi-query

Weights use the maths convention ``y = x @ W`` with W of shape (d_in, d_out); ``nn.Linear`` stores the transpose.
Shapes: B batch, T query positions, S key positions, d model width, H query heads, h head size.
The package's fast versions (``palmbook.model``) must agree with these; the chapter and
``tests/test_scratch_attention.py`` assert that they do.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from ..config import PaLMConfig

__all__ = [
    "AttentionWeights",
    "attention",
    "block_attention_branch",
    "block_attention_map",
    "block_attention_weights",
    "causal_mask",
    "kv_cache_bytes_per_token",
    "merge_heads",
    "multi_head_attention",
    "multi_query_attention",
    "rope_frequencies",
    "rotate",
    "softmax",
    "split_heads",
]


def softmax(scores: Tensor, dim: int = -1, temperature: float = 1.0) -> Tensor:
    """exp(s_i / t) / sum_j exp(s_j / t) along ``dim``: any real scores -> positive numbers summing to 1.

    Subtracting the maximum first changes nothing mathematically (it cancels between numerator and denominator)
    but keeps exp() from overflowing. A score of -inf (a masked position) gets probability exactly 0.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (t -> 0 approaches argmax); got {temperature}")
    s = scores / temperature
    e = torch.exp(s - s.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim, keepdim=True)


def causal_mask(T: int, S: int | None = None, device: torch.device | str | None = None) -> Tensor:
    """(T, S) booleans, True where query i may look at key j.

    The T queries are the LAST T of the S positions (S = T without a cache; S > T when earlier keys come from a
    KV cache), so query i sits at position S - T + i and may see keys 0 .. S - T + i: itself and the past.
    """
    S = T if S is None else S
    if S < T:
        raise ValueError(f"there must be at least as many keys as queries (S >= T); got T={T}, S={S}")
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Scaled dot-product attention of one head: ``softmax(q k^T / sqrt(d_k)) v``.

    q: (..., T, d_k), k: (..., S, d_k), v: (..., S, d_v); mask: (T, S) booleans (True = may attend) or None.
    Leading dimensions broadcast, so a single key/value head (..., 1, S, d_k) serves many query heads.
    Returns (output (..., T, d_v), weights (..., T, S)); each row of weights sums to 1.
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"queries and keys must have the same size d_k; got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"every key needs a value: got {k.shape[-2]} keys and {v.shape[-2]} values")
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T, S): one dot product per (query, key)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # exp(-inf) = 0: masked keys get no weight
    weights = softmax(scores, dim=-1)
    return weights @ v, weights


# --------------------------------------------------------------------------------------------- RoPE
def rope_frequencies(head_dim: int, base: float = 10_000.0, dtype: torch.dtype = torch.float32) -> Tensor:
    """The h/2 angular speeds theta_i = base^(-2i/h), i = 0 .. h/2 - 1 (radians per position).

    Pair 0 turns by one radian per position; the last pair almost not at all, so together they tell positions
    apart over a wide range of distances, like the hands of a clock.
    """
    if head_dim <= 0 or head_dim % 2:
        raise ValueError(f"RoPE rotates pairs of dimensions, so head_dim must be even and > 0; got {head_dim}")
    return base ** (-torch.arange(0, head_dim, 2, dtype=dtype) / head_dim)


def rotate(x: Tensor, positions: Tensor, base: float = 10_000.0) -> Tensor:
    """Rotary position embedding: rotate every pair of x by ``position * theta_i``.

    x: (..., T, h); positions: (T,) integers. Pair i is (x[..., i], x[..., i + h/2]), the "rotate half" layout the
    package uses (RoFormer pairs neighbours 2i, 2i+1 instead: the same rotation of permuted dimensions). Each pair
    (a, b) turned by angle phi becomes (a cos phi - b sin phi, a sin phi + b cos phi), a 2-D rotation.
    Angles are computed in float32 like the package's tables, or in float64 for float64 inputs.
    """
    h = x.shape[-1]
    if positions.shape != (x.shape[-2],):
        raise ValueError(
            f"need one position per row of x: x has {x.shape[-2]} rows, positions {tuple(positions.shape)}"
        )
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    angles = positions.to(dtype)[:, None] * rope_frequencies(h, base, dtype)  # (T, h/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    a, b = x[..., : h // 2], x[..., h // 2 :]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


# --------------------------------------------------------------------------------------------- heads
def split_heads(x: Tensor, n_heads: int) -> Tensor:
    """(B, T, H*h) -> (B, H, T, h): the width is cut into H consecutive slices, one per head."""
    B, T, width = x.shape
    if n_heads <= 0 or width % n_heads:
        raise ValueError(f"width {width} does not split into n_heads={n_heads} equal heads; pick a divisor")
    return x.view(B, T, n_heads, width // n_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, T, h) -> (B, T, H*h): the heads' outputs laid side by side (the inverse of split_heads)."""
    B, H, T, h = x.shape
    return x.transpose(1, 2).reshape(B, T, H * h)


def _positions_and_mask(T: int, causal: bool, device: torch.device) -> tuple[Tensor, Tensor | None]:
    return torch.arange(T, device=device), (causal_mask(T, device=device) if causal else None)


def multi_head_attention(
    x: Tensor,
    w_q: Tensor,
    w_k: Tensor,
    w_v: Tensor,
    w_o: Tensor,
    n_heads: int,
    causal: bool = True,
    rope_base: float | None = None,
) -> Tensor:
    """Multi-head attention: every head has its own queries, keys AND values.

    x: (B, T, d); w_q, w_k, w_v: (d, H*h); w_o: (H*h, d). RoPE (rope_base not None) rotates queries and keys.
    Returns (B, T, d).
    """
    q, k, v = split_heads(x @ w_q, n_heads), split_heads(x @ w_k, n_heads), split_heads(x @ w_v, n_heads)
    positions, mask = _positions_and_mask(x.shape[1], causal, x.device)
    if rope_base is not None:
        q, k = rotate(q, positions, rope_base), rotate(k, positions, rope_base)
    out, _ = attention(q, k, v, mask)  # (B, H, T, h)
    return merge_heads(out) @ w_o


def multi_query_attention(
    x: Tensor,
    w_q: Tensor,
    w_k: Tensor,
    w_v: Tensor,
    w_o: Tensor,
    n_heads: int,
    causal: bool = True,
    rope_base: float | None = None,
) -> Tensor:
    """Multi-query attention (Shazeer 2019; PaLM §2): H query heads, ONE key head and ONE value head for all.

    x: (B, T, d); w_q: (d, H*h); w_k, w_v: (d, h); w_o: (H*h, d). Returns (B, T, d).
    The only change from multi_head_attention: k and v have one head, (B, 1, T, h), and broadcasting hands that
    same head to every query head.
    """
    h = w_q.shape[1] // n_heads
    if w_k.shape[1] != h or w_v.shape[1] != h:
        raise ValueError(
            f"multi-query attention has one key and one value head of size h = {h}; "
            f"got w_k {tuple(w_k.shape)}, w_v {tuple(w_v.shape)}: they must be (d, {h})"
        )
    q = split_heads(x @ w_q, n_heads)  # (B, H, T, h)
    k, v = (x @ w_k).unsqueeze(1), (x @ w_v).unsqueeze(1)  # (B, 1, T, h): one head, shared
    positions, mask = _positions_and_mask(x.shape[1], causal, x.device)
    if rope_base is not None:
        q, k = rotate(q, positions, rope_base), rotate(k, positions, rope_base)
    out, _ = attention(q, k, v, mask)  # (B, H, T, h)
    return merge_heads(out) @ w_o


# --------------------------------------------------------------------------------------------- the package's block
class AttentionWeights(NamedTuple):
    """The attention matrices of one block, in the ``x @ W`` convention."""

    w_q: Tensor  # (d, H*h)
    w_k: Tensor  # (d, h)
    w_v: Tensor  # (d, h)
    w_o: Tensor  # (H*h, d)


def block_attention_weights(block: torch.nn.Module) -> AttentionWeights:
    """Cut a ``palmbook.model.ParallelBlock``'s fused ``in_proj`` into its attention matrices.

    ``in_proj.weight`` is (fused_dim, d) with output rows [queries H*h | key h | value h | gate d_ff | up d_ff];
    the last two belong to the feed-forward layer (chapter 4).
    """
    Hh, h = block.n_heads * block.head_dim, block.head_dim
    w = block.in_proj.weight
    return AttentionWeights(
        w_q=w[:Hh].T, w_k=w[Hh : Hh + h].T, w_v=w[Hh + h : Hh + 2 * h].T, w_o=block.attn_out.weight.T
    )


def block_attention_branch(block: torch.nn.Module, x: Tensor, rope_base: float = 10_000.0) -> Tensor:
    """``Attention(LN(x))`` of a ParallelBlock, from scratch: the attention half of ``y = x + Attn + MLP``.

    x: (B, T, d) at positions 0..T-1 -> (B, T, d). LN is PaLM's LayerNorm: subtract the mean, divide by the
    standard deviation, multiply by a learned scale, and no bias (§2 "No Biases").
    """
    w = block_attention_weights(block)
    return multi_query_attention(_layer_norm(block, x), *w, n_heads=block.n_heads, causal=True, rope_base=rope_base)


def block_attention_map(block: torch.nn.Module, x: Tensor, rope_base: float = 10_000.0) -> Tensor:
    """The attention weights of a ParallelBlock's branch, from scratch: x (B, T, d) -> (B, H, T, T).

    LN, the query and key matrices, RoPE on both, then the causal softmax: row i of head j is how query i of head j
    spreads its weight over keys 0..i. ``PaLM.attention_maps`` returns these for every layer.
    """
    w = block_attention_weights(block)
    ln = _layer_norm(block, x)
    q, k = split_heads(ln @ w.w_q, block.n_heads), (ln @ w.w_k).unsqueeze(1)  # (B, H, T, h), (B, 1, T, h)
    positions, mask = _positions_and_mask(x.shape[1], True, x.device)
    q, k = rotate(q, positions, rope_base), rotate(k, positions, rope_base)
    _, weights = attention(q, k, k, mask)  # the values do not change the weights
    return weights


def _layer_norm(block: torch.nn.Module, x: Tensor) -> Tensor:
    """PaLM's LayerNorm (chapter 2): subtract the mean, divide by the standard deviation, multiply by the scale."""
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + block.norm.eps) * block.norm.weight


# --------------------------------------------------------------------------------------------- memory
def kv_cache_bytes_per_token(config: PaLMConfig, kv_heads: int = 1, bytes_per_number: int = 2) -> int:
    """Bytes a KV cache holds per token of context, for one sequence.

    Each layer stores a key and a value vector of size h for each of ``kv_heads`` heads:
    2 x n_layers x kv_heads x h numbers. kv_heads = 1 is multi-query attention (PaLM); kv_heads = n_heads is
    multi-head attention. bytes_per_number = 2 for bf16, 4 for float32.
    """
    if kv_heads <= 0 or bytes_per_number <= 0:
        raise ValueError(f"kv_heads and bytes_per_number must be > 0; got {kv_heads}, {bytes_per_number}")
    return 2 * config.n_layers * kv_heads * config.head_dim * bytes_per_number
