"""Chapter 6, from scratch: the whole PaLM assembled from the pieces of chapters 2-5.

    ids (B, T)
      -> E[ids]                                   embedding lookup, chapter 2        (B, T, d)
      -> L x  x + Attn(LN(x)) + MLP(LN(x))        parallel block, chapters 3 and 4   (B, T, d)
      -> LN_f                                     final LayerNorm, a scale and no bias
      -> LN_f(x) E^T / sqrt(d)                    tied output layer, chapter 5       (B, T, V)

This module holds what the chapter's short model cell leans on, so that tests cover it:

    layer_norm             PaLM's LayerNorm: subtract the mean, divide by the standard deviation, scale; no bias
    PaLMFromScratch        the assembled model (the chapter's ``MyPaLM``), weights in the maths layout ``x @ W``
    weight_map             which slice of which package tensor becomes which from-scratch weight
    scratch_state_dict     a ``palmbook.PaLM`` state_dict renamed, cut and transposed into PaLMFromScratch's names

Weights use the maths convention ``y = x @ W`` with W of shape (d_in, d_out), as the earlier scratch modules do;
``nn.Linear`` (the package) stores the transpose. The package fuses the five input matrices of a block into one
``in_proj`` (chapter 4); here they are five separate matrices, so the mapping cuts ``in_proj`` into rows.
Shapes: B batch, T positions, V vocabulary, d model width, L layers, H query heads, h head size, d_ff the SwiGLU
width. ``tests/test_scratch_palm.py`` checks this model's logits against ``palmbook.PaLM``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..config import PaLMConfig
from .attention import multi_query_attention
from .embeddings import embed_by_lookup
from .feed_forward import swiglu_ffn
from .loss import output_logits

__all__ = ["PaLMFromScratch", "ScratchBlock", "WeightMapping", "layer_norm", "scratch_state_dict", "weight_map"]


def layer_norm(x: Tensor, weight: Tensor, eps: float = 1e-5) -> Tensor:
    """PaLM's LayerNorm over the last dimension: ``(x - mean) / sqrt(var + eps) * weight``. x (..., d) -> (..., d).

    A learned scale ``weight`` (d,) and no bias (§2 "No Biases"). It is LayerNorm, not RMSNorm: the mean is
    subtracted. The variance is the plain mean of squares (divided by d, not d - 1), as ``F.layer_norm`` computes it.
    """
    if weight.shape != x.shape[-1:]:
        raise ValueError(f"weight must have shape ({x.shape[-1]},), one scale per feature; got {tuple(weight.shape)}")
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).pow(2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight


def _kernel(fan_in: int, fan_out: int) -> nn.Parameter:
    """A (fan_in, fan_out) weight drawn from N(0, 1/sqrt(fan_in)) (standard deviation), PaLM's init (§5)."""
    return nn.Parameter(torch.randn(fan_in, fan_out) / fan_in**0.5)


class ScratchBlock(nn.Module):
    """One parallel block from the earlier chapters' functions: ``x + Attn(LN(x)) + MLP(LN(x))``. (B, T, d) -> same."""

    def __init__(self, c: PaLMConfig) -> None:
        super().__init__()
        d, H, h, f = c.d_model, c.n_heads, c.head_dim, c.d_ff
        self.n_heads, self.rope_base, self.eps = H, c.rope_base, c.norm_eps
        self.ln = nn.Parameter(torch.ones(d))  # one LayerNorm shared by both branches (the common reading of §2)
        self.w_q, self.w_k, self.w_v = _kernel(d, H * h), _kernel(d, h), _kernel(d, h)  # one key and value head
        self.w_o = _kernel(H * h, d)
        self.w_gate, self.w_up, self.w_down = _kernel(d, f), _kernel(d, f), _kernel(f, d)

    def forward(self, x: Tensor) -> Tensor:
        u = layer_norm(x, self.ln, self.eps)
        attn = multi_query_attention(u, self.w_q, self.w_k, self.w_v, self.w_o, self.n_heads, rope_base=self.rope_base)
        mlp = swiglu_ffn(u, self.w_gate, self.w_up, self.w_down)
        return x + attn + mlp  # the residual stream: each block adds to it


class PaLMFromScratch(nn.Module):
    """A whole PaLM from the scratch pieces: ids (B, T) -> logits (B, T, V). Same function as ``palmbook.PaLM``."""

    def __init__(self, c: PaLMConfig) -> None:
        super().__init__()
        self.eps = c.norm_eps
        self.E = nn.Parameter(torch.randn(c.vocab_size, c.d_model))  # N(0, 1): no LayerNorm on embeddings (§5)
        self.blocks = nn.ModuleList(ScratchBlock(c) for _ in range(c.n_layers))
        self.ln_f = nn.Parameter(torch.ones(c.d_model))

    def forward(self, ids: Tensor) -> Tensor:
        x = embed_by_lookup(ids, self.E)  # (B, T, d)
        for block in self.blocks:
            x = block(x)
        return output_logits(layer_norm(x, self.ln_f, self.eps), self.E)  # the same E, transposed (§2)


class WeightMapping(NamedTuple):
    """One package tensor (or a band of its rows) and the from-scratch weight it becomes.

    ``package`` and ``scratch`` name state_dict entries; in per-block entries ``{i}`` stands for the block number.
    ``rows`` is (start, stop) of the package tensor's rows, or None for all of them. ``transpose``: the package
    stores ``nn.Linear``'s (d_out, d_in), the scratch model the maths layout (d_in, d_out).
    """

    package: str
    rows: tuple[int, int] | None
    scratch: str
    transpose: bool


def weight_map(config: PaLMConfig) -> list[WeightMapping]:
    """Every from-scratch weight and where it comes from in a ``palmbook.PaLM`` of this config.

    A block's ``in_proj.weight`` (H*h + 2h + 2 d_ff, d) holds, row band by row band, the queries, the key, the
    value, the SwiGLU gate and the SwiGLU up-projection (chapter 4's fused matmul).
    """
    Hh, h, f = config.n_heads * config.head_dim, config.head_dim, config.d_ff
    bands = {"w_q": Hh, "w_k": h, "w_v": h, "w_gate": f, "w_up": f}
    rows = []
    start = 0
    for name, width in bands.items():
        rows.append(WeightMapping("blocks.{i}.in_proj.weight", (start, start + width), f"blocks.{{i}}.{name}", True))
        start += width
    return [
        WeightMapping("embed.weight", None, "E", False),
        WeightMapping("blocks.{i}.norm.weight", None, "blocks.{i}.ln", False),
        *rows,
        WeightMapping("blocks.{i}.attn_out.weight", None, "blocks.{i}.w_o", True),
        WeightMapping("blocks.{i}.ffn_out.weight", None, "blocks.{i}.w_down", True),
        WeightMapping("norm_f.weight", None, "ln_f", False),
    ]


def scratch_state_dict(state: dict[str, Tensor], config: PaLMConfig) -> dict[str, Tensor]:
    """A ``palmbook.PaLM`` state_dict as PaLMFromScratch's: renamed, cut into bands of rows and transposed.

    Every number of ``state`` lands in exactly one scratch weight (the tests check it); the results are copies,
    so loading them never ties the two models' weights together.
    """
    out = {}
    for m in weight_map(config):
        for i in range(config.n_layers) if "{i}" in m.package else [None]:
            w = state[m.package.format(i=i)]
            if m.rows is not None:
                w = w[m.rows[0] : m.rows[1]]
            out[m.scratch.format(i=i)] = (w.T if m.transpose else w).clone()
    return out
