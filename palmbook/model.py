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

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .config import PaLMConfig
from .flops import check_fits_in_memory
from .generate import generate
from .hub import MODEL_CARD_TAGS, resolve_model_dir
from .io import CONFIG_NAME, WEIGHTS_NAME, atomic_write, load_safetensors, save_safetensors
from .loss import LMLoss, fused_lm_loss

__all__ = [
    "KVCache",
    "LayerNorm",
    "PaLM",
    "ParallelBlock",
    "apply_rope",
    "cached_attention",
    "model_files",
    "multi_query_attention",
    "rope_matrix",
    "rope_tables",
]


# ---- LayerNorm
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


# ---- RoPE
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

    x: (..., T, h); cos, sin: (T, h), or any shape that broadcasts to x's shape. This is the "rotate half" layout of
    GPT-NeoX; RoFormer pairs neighbouring dimensions instead. The two are the same rotation up to a fixed
    permutation of a head's dimensions, which the learned projections absorb, so the model family is identical; the
    half layout needs no strided gathers.

    In formulas, with x = (x1, x2) the two halves and c, s the cosines and sines of one half:
    ``rope(x) = (x1 c - x2 s, x2 c + x1 s)``, which equals ``x * cos + cat(-x2, x1) * sin``.
    """
    return _RoPE.apply(x, cos.to(x.dtype), sin.to(x.dtype))


def rope_matrix(cos: Tensor, sin: Tensor) -> Tensor:
    """RoPE at one position as an (h, h) matrix R, so that ``x @ R == apply_rope(x, cos, sin)`` for x (..., h).

    cos, sin: (h,), one row of :func:`rope_tables`. R is block-structured, [[C, S], [-S, C]] with C, S the
    diagonal matrices of one half's cosines and sines: one small matmul replaces the half-by-half arithmetic when
    only one position is rotated (decoding), where the number of operations, not their size, sets the speed.
    """
    half = cos.shape[-1] // 2
    s = sin[:half]  # both halves of a table row hold the same angles
    rot = torch.diag(cos)  # (h, h): C on both diagonal blocks
    rot[:half, half:] = torch.diag(s)  # out2 = x2 c + x1 s
    rot[half:, :half] = torch.diag(-s)  # out1 = x1 c - x2 s
    return rot


def _rope(x: Tensor, cos: Tensor, sin: Tensor, inverse: bool = False) -> Tensor:
    """The rotation itself, written half by half into one output buffer.

    Why not ``x * cos + rotate_half(x) * sin``: that formula costs five full-size kernels and five temporaries
    (neg, cat, mul, mul, add) and makes autograd keep x; here it is four half-size kernels and one buffer.
    ``inverse`` rotates by minus the angle (s -> -s): RoPE is orthogonal, so that is also its backward.
    """
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos[..., :half], sin[..., :half]  # both halves of the tables hold the same angles
    if inverse:
        s = -s
    if torch.compiler.is_compiling():  # the compiler fuses this into one kernel; out= buffers would only hinder it
        return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)  # the tables broadcast against x, never beyond
    o1, o2 = out[..., :half], out[..., half:]
    torch.mul(x1, c, out=o1).addcmul_(x2, s, value=-1.0)  # x1 c - x2 s
    torch.mul(x2, c, out=o2).addcmul_(x1, s)  # x2 c + x1 s
    return out


class _RoPE(torch.autograd.Function):
    """RoPE with a hand-written backward: the gradient of a rotation is the inverse rotation of the gradient.

    So nothing but the (small) tables is saved for backward: no copy of q and k is kept alive.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        ctx.save_for_backward(cos, sin)
        return _rope(x, cos, sin)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        cos, sin = ctx.saved_tensors
        return _rope(grad, cos, sin, inverse=True), None, None


# ---- KV cache
class KVCache:
    """Preallocated keys and values for incremental decoding.

    Multi-query attention stores ONE key head and ONE value head per layer, so the cache holds, per layer,
    keys and values of shape (B, 1, max_len, head_dim): n_heads times less than multi-head attention.
    Buffers are allocated on the first write, in the dtype of the keys (bf16 under autocast).
    """

    def __init__(self, n_layers: int, batch_size: int, max_len: int, head_dim: int) -> None:
        self.shape = (n_layers, batch_size, 1, max_len, head_dim)
        self.keys: list[Tensor] = []  # per layer (B, 1, max_len, h)
        self.values: list[Tensor] = []
        self._rows: list[tuple[Tensor, Tensor]] = []  # per layer: keys and values viewed as (B, max_len, h)

    def _allocate(self, like: Tensor) -> None:
        # One tensor per layer rather than one (L, ...) tensor: a compiled decoding step writes each layer's cache
        # in place, and writing into a slice of a shared input would make the compiler rebuild the whole input.
        # Zeros, not torch.empty: the static decoding step weighs every cached row, unwritten ones by probability 0,
        # and 0 times a NaN left in uninitialised memory would still be NaN.
        n_layers, *layer_shape = self.shape
        self.keys = [torch.zeros(layer_shape, dtype=like.dtype, device=like.device) for _ in range(n_layers)]
        self.values = [torch.zeros(layer_shape, dtype=like.dtype, device=like.device) for _ in range(n_layers)]
        # Views made once, so that a decoding step indexes a layer's cache without building them again.
        self._rows = [(k[:, 0], v[:, 0]) for k, v in zip(self.keys, self.values, strict=True)]

    @property
    def k(self) -> Tensor | None:
        """Every layer's keys stacked, (n_layers, B, 1, max_len, h): a copy, for looking at (None before a write)."""
        return torch.stack(self.keys) if self.keys else None

    @property
    def v(self) -> Tensor | None:
        """Every layer's values stacked, like :attr:`k`."""
        return torch.stack(self.values) if self.values else None

    def update(self, layer: int, k: Tensor, v: Tensor, pos: int) -> tuple[Tensor, Tensor]:
        """Write k, v (B, 1, T, h) at positions pos..pos+T-1; return all keys/values so far (B, 1, pos+T, h)."""
        if not self.keys:
            self._allocate(k)
        end = pos + k.shape[2]
        if end > self.shape[3]:
            raise ValueError(f"KV cache holds {self.shape[3]} positions; writing up to position {end}")
        keys, values = self.keys[layer], self.values[layer]
        keys[:, :, pos:end] = k
        values[:, :, pos:end] = v
        return keys[:, :, :end], values[:, :, :end]

    def append(self, layer: int, k: Tensor, v: Tensor, pos: int) -> tuple[Tensor, Tensor]:
        """:meth:`update` for ONE position, with k, v (B, h): the decoding step's cheaper form."""
        if not self.keys:
            self._allocate(k)
        if pos >= self.shape[3]:
            raise ValueError(f"KV cache holds {self.shape[3]} positions; writing up to position {pos + 1}")
        key_rows, value_rows = self._rows[layer]
        key_rows.select(1, pos).copy_(k)
        value_rows.select(1, pos).copy_(v)
        return self.keys[layer][:, :, : pos + 1], self.values[layer][:, :, : pos + 1]

    def nbytes(self) -> int:
        """Bytes held by the cache (0 until the first write)."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)


# ---- the block
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
        H, h = self.n_heads, self.head_dim
        # Queries and the key sit side by side in the fused output: split them off together as H+1 heads and
        # rotate them all at once, one RoPE call instead of two. Head H is the shared key. (One split for all the
        # pieces: its backward is one concatenation, where a separate slice would zero-fill a full-size gradient.)
        qk, v, gate, up = self.in_proj(self.norm(x)).split([(H + 1) * h, h, self.splits[3], self.splits[4]], dim=-1)
        qk = apply_rope(qk.unflatten(-1, (H + 1, h)), cos[:, None], sin[:, None])  # (B, T, H+1, h)
        q = qk[:, :, :H].transpose(1, 2)  # (B, H, T, h), a view
        k = qk[:, :, H:].transpose(1, 2)  # one shared head: (B, 1, T, h)
        return q, k, v.unsqueeze(1), gate, up

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

    def decode(self, x: Tensor, rotation: Tensor, cache: KVCache, layer: int, pos: int) -> Tensor:
        """The same layer for ONE new token per sequence on the KV cache, inference only. x: (B, d) -> (B, d).

        ``rotation`` (h, h) is RoPE at position ``pos`` written as a matrix (:func:`rope_matrix`), made once per
        token for all layers. Batch-1 decoding of a small model is bound by per-operation overhead, not
        arithmetic (a step's matmuls read the weights once and are done in microseconds), so this path computes
        exactly what :meth:`forward` computes with far fewer operations: RoPE on the H query heads and the key as
        one small matmul, the key and value written straight into the cache, SwiGLU in place in the fused
        buffer, and the residual additions folded into the output matmuls (``addmm``) when autocast is off.
        """
        H, h = self.n_heads, self.head_dim
        B = x.shape[0]
        fused = self.in_proj(self.norm(x))  # (B, F)
        qk = torch.matmul(fused[:, : (H + 1) * h].view(B, H + 1, h), rotation.to(fused.dtype))  # (B, H+1, h)
        keys, values = cache.append(layer, qk[:, H], fused[:, (H + 1) * h : (H + 2) * h], pos)  # (B, 1, pos+1, h)
        # All H queries are rows of one head over the single shared key head: (B, 1, H, h) x (B, 1, S, h).
        attn = F.scaled_dot_product_attention(qk[:, None, :H], keys, values).view(B, H * h)
        gate, up = fused[:, (H + 2) * h :].chunk(2, dim=-1)
        mlp = F.silu(gate, inplace=True).mul_(up)  # the fused buffer is a temporary: reuse it
        # Under autocast keep forward()'s dtypes (a float32 residual stream). Output layers without a weight tensor
        # (int8 layers from torch's quantize_dynamic, Chapter 13) run their own forward: addmm needs the tensor.
        plain = isinstance(self.attn_out.weight, Tensor) and isinstance(self.ffn_out.weight, Tensor)
        if torch.is_autocast_enabled(x.device.type) or not plain:
            return x + self.attn_out(attn) + self.ffn_out(mlp)
        return torch.addmm(torch.addmm(x, attn, self.attn_out.weight.t()), mlp, self.ffn_out.weight.t())

    def decode_static(
        self, x: Tensor, cos: Tensor, sin: Tensor, keys: Tensor, values: Tensor, pos: Tensor, visible: Tensor
    ) -> Tensor:
        """:meth:`decode` with shapes that never change from token to token, written for ``torch.compile``.

        x (B, d); cos, sin (1, h) at the new position; keys, values (B, 1, S, h), this layer's whole cache, written
        at ``pos`` (a (1,) long tensor); visible (1, S) bool, True for cache positions 0..pos. Returns (B, d).
        Python ints (a position, a cache length so far) would make the compiler specialise on every value; tensors
        and a mask over the whole cache keep one compiled graph valid for every position.
        """
        H, h = self.n_heads, self.head_dim
        B = x.shape[0]
        fused = self.in_proj(self.norm(x))  # (B, F)
        qk = _rope(fused[:, : (H + 1) * h].view(B, H + 1, h), cos, sin)  # (B, H+1, h): queries and the key, rotated
        keys[:, :, pos] = qk[:, None, H:].to(keys.dtype)  # (B, 1, 1, h) into (B, 1, S, h) at pos
        values[:, :, pos] = fused[:, None, None, (H + 1) * h : (H + 2) * h].to(values.dtype)
        attn = cached_attention(qk[:, :H], keys[:, 0], values[:, 0], visible)  # (B, H*h)
        gate, up = fused[:, (H + 2) * h :].chunk(2, dim=-1)
        return x + self.attn_out(attn) + self.ffn_out(F.silu(gate) * up)


def cached_attention(q: Tensor, keys: Tensor, values: Tensor, visible: Tensor) -> Tensor:
    """Attention of one new token's H query heads over a multi-query cache, as plain products and sums.

    q (B, H, h); keys, values (B, S, h), the one shared head; visible (1, S) bool. Returns (B, H*h), float32
    arithmetic whatever the input dtype. Written out instead of calling ``F.scaled_dot_product_attention`` for
    the compiler: a few thousand multiply-adds per head are less work than one attention kernel's setup (~30 us
    on a CPU), and as products and sums they fuse into the compiled step's own loops. Eager, it equals
    ``softmax(q k^T / sqrt(h)) v`` over the visible positions (tests check it against SDPA).
    """
    scores = (q.float()[:, :, None] * keys.float()[:, None]).sum(-1) * q.shape[-1] ** -0.5  # (B, H, S)
    probs = scores.masked_fill(~visible, float("-inf")).softmax(-1)
    out = (probs[..., None] * values.float()[:, None]).sum(2)  # (B, H, h)
    return out.to(q.dtype).flatten(1)


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


# ---- the model
class PaLM(nn.Module, PyTorchModelHubMixin, library_name="palmbook", tags=MODEL_CARD_TAGS):
    """A decoder-only PaLM language model.

    Hub interop comes from ``huggingface_hub``'s ``PyTorchModelHubMixin``: :meth:`from_pretrained` takes a local
    directory or an ``owner/name`` repository, :meth:`push_to_hub` uploads ``config.json`` + ``model.safetensors``
    (+ a model card). The files are palmbook's own, written and read by the methods below.

    >>> model = PaLM(PaLMConfig.preset("palm-tiny"))
    >>> logits = model(torch.zeros(2, 8, dtype=torch.long))   # (B, T) -> (B, T, vocab_size)
    """

    def __init__(self, config: PaLMConfig) -> None:
        super().__init__()
        if not isinstance(config, PaLMConfig):
            raise TypeError(f"PaLM expects a PaLMConfig, e.g. PaLMConfig.preset('palm-tiny'); got {type(config)}")
        self.config = config
        if torch.empty(()).device.type == "cpu":  # not under `with torch.device("meta")`, where nothing is allocated
            check_fits_in_memory(config, training=False)  # one ValueError instead of an allocator failure
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(ParallelBlock(config) for _ in range(config.n_layers))
        self.norm_f = LayerNorm(config.d_model, config.norm_eps)
        cos, sin = rope_tables(config.max_seq_len, config.head_dim, config.rope_base, device=self.embed.weight.device)
        self.register_buffer("rope_cos", cos, persistent=False)  # derived from the config: not saved
        self.register_buffer("rope_sin", sin, persistent=False)
        # Activation checkpointing (opt-in): keep only each block's input during the forward pass and recompute
        # the block during backward. Memory for activations drops from ~L blocks' worth to ~1, for ~1/3 more
        # compute. The paper's rematerialisation (§4.1) is this; MFU does not count the recomputation.
        self.gradient_checkpointing = False
        self._compiled_blocks: list[nn.Module] | None = None  # set by compile_blocks()
        self._compiled_decode: Any = None  # set by compile_decoding()
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

    # ---- forward
    def forward(
        self,
        idx: Tensor,
        *,
        kv_cache: KVCache | None = None,
        start_pos: int = 0,
        targets: Tensor | None = None,
        z_loss: float = 1e-4,
        ignore_index: int = -100,
    ) -> Tensor | LMLoss:
        """idx: token ids (B, T) at positions start_pos..start_pos+T-1 -> logits (B, T, vocab_size).

        With ``kv_cache`` the keys and values of these positions are stored and earlier ones are read from it.
        With ``targets`` (B, T) it returns the training loss instead, an :class:`LMLoss` (loss, ce, z_loss, log_z)
        equal to ``lm_loss(model(idx), targets, z_loss, ignore_index, return_parts=True)``, computed by
        :func:`fused_lm_loss` without ever holding the (B, T, V) logits: ~2 x B x T x V x 4 bytes lighter (as fast
        on a 2-core CPU). Going through ``forward`` (not a separate method) keeps DDP and FSDP wrappers in the loop.

        Raises:
            TypeError: ``idx`` is not a tensor, or holds floats instead of integer token ids.
            ValueError: ``idx`` is not (batch, seq) or is empty; positions ``start_pos..start_pos+T-1`` exceed
                ``max_seq_len``; a token id is outside ``[0, vocab_size)``; a KV cache is too short; ``targets``
                does not have ``idx``'s shape. Each message names the fix.
        """
        self.check_input(idx, start_pos)
        if targets is not None:
            if not isinstance(targets, Tensor) or targets.shape != idx.shape:
                got = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
                raise ValueError(
                    f"targets must be token ids with idx's shape {tuple(idx.shape)} (the next token at each "
                    f"position, e.g. tokens[:, 1:] for idx = tokens[:, :-1]); got {got}"
                )
            self._check_targets(targets, z_loss, ignore_index)
            h = self.hidden(idx, kv_cache=kv_cache, start_pos=start_pos)
            return fused_lm_loss(h, self.embed.weight, targets, self.config.d_model**-0.5, z_loss, ignore_index)
        return self.logits(self.hidden(idx, kv_cache=kv_cache, start_pos=start_pos))

    def hidden(self, idx: Tensor, *, kv_cache: KVCache | None = None, start_pos: int = 0) -> Tensor:
        """The final normalised hidden states (B, T, d_model), before the output layer. No input checks."""
        T = idx.shape[1]
        cos = self.rope_cos[start_pos : start_pos + T]
        sin = self.rope_sin[start_pos : start_pos + T]
        x = self.embed(idx)
        if kv_cache is not None and T == 1 and not torch.is_grad_enabled() and not self.training:
            # one token on the cache: the lean decoding path, on (B, d) rows, one RoPE matrix for all layers
            rotation, x = rope_matrix(cos[0], sin[0]), x[:, 0]
            for i, block in enumerate(self.blocks):
                x = block.decode(x, rotation, kv_cache, i, start_pos)
            return self.norm_f(x)[:, None]
        compiled = self._compiled_blocks is not None and kv_cache is None
        blocks = self._compiled_blocks if compiled else self.blocks
        remat = self.gradient_checkpointing and torch.is_grad_enabled() and kv_cache is None
        for i, block in enumerate(blocks):
            if remat:
                x = checkpoint(block, x, cos, sin, use_reentrant=False)
            else:
                x = block(x, cos, sin, kv_cache, i, start_pos)
        return self.norm_f(x)

    def compile_blocks(self, **options: Any) -> PaLM:
        """Opt in to ``torch.compile`` for the blocks' full-sequence forward (training, scoring, prefill).

        Each block is wrapped by ``torch.compile(block, **options)``; the wrappers share the blocks' parameters
        and are not submodules, so ``state_dict`` names, saving and the eager path stay as they were. Decoding
        on a KV cache keeps the eager :meth:`ParallelBlock.decode`. All blocks run the same code on the same
        shapes, so one compilation serves them all. The first call compiles (tens of seconds on a laptop CPU).
        Returns the model, so ``model = PaLM(cfg).compile_blocks()`` reads naturally.
        """
        self._compiled_blocks = [torch.compile(block, **options) for block in self.blocks]
        return self

    def decode_static(self, token: Tensor, pos: Tensor, kv_cache: KVCache, greedy: bool = False) -> Tensor:
        """One decoding step whose shapes do not depend on the position: what :meth:`compile_decoding` compiles.

        token (B,) ids at position ``pos``, a (1,) long tensor that this step advances by one (in place);
        ``kv_cache`` has already been filled up to pos (by a prefill through :meth:`forward`). Returns the logits
        (B, V) of the next token, or with ``greedy`` their argmax (B,). Every position up to the cache's length
        uses the same code on the same shapes, so one compiled graph serves them all. Runs compiled after
        :meth:`compile_decoding`, eager otherwise.
        """
        if not kv_cache.keys:
            raise ValueError("decode_static needs a filled KV cache: run the prompt through model(idx, kv_cache=...)")
        step = self._compiled_decode or self._decode_step
        return step(token, pos, kv_cache.keys, kv_cache.values, greedy)

    def _decode_step(
        self, token: Tensor, pos: Tensor, keys: list[Tensor], values: list[Tensor], greedy: bool
    ) -> Tensor:
        """:meth:`decode_static` on the cache's per-layer tensors (B, 1, S, h): plain tensors in, for the
        compiler (a KVCache object would be one more thing for its guards to check)."""
        x = self.embed(token)  # (B, d)
        dtype = keys[0].dtype  # the cache holds what the projections produce (bf16 under autocast)
        cos, sin = self.rope_cos.index_select(0, pos).to(dtype), self.rope_sin.index_select(0, pos).to(dtype)
        visible = (torch.arange(keys[0].shape[2], device=pos.device) <= pos)[None]  # (1, S)
        for i, block in enumerate(self.blocks):
            x = block.decode_static(x, cos, sin, keys[i], values[i], pos, visible)
        logits = self.logits(self.norm_f(x))
        pos.add_(1)
        return logits.argmax(-1) if greedy else logits

    @property
    def decoding_compiled(self) -> bool:
        """True after :meth:`compile_decoding`: generation then steps through :meth:`decode_static`."""
        return self._compiled_decode is not None

    def compile_decoding(self, **options: Any) -> PaLM:
        """Opt in to ``torch.compile`` for token-by-token decoding (:meth:`generate` then uses it).

        Batch-1 decoding of a small model is bound by per-operation overhead: compiling :meth:`decode_static`
        fuses the small operations between the weight matrix-vector products into a few loops, and on a CPU
        inductor's C++ wrapper (``cpp_wrapper``) calls them without going back to Python. Generation then keeps
        its KV cache at a power-of-two length (one compiled graph per batch size and length, not one per
        prompt). ``options`` go to ``torch.compile`` and override these defaults. The first generation compiles
        (tens of seconds on a laptop CPU). Call it after moving the model to its device: the defaults depend on it.
        Returns the model.
        """
        settings: dict[str, Any] = {"fullgraph": True, "dynamic": False}
        if self.device.type == "cpu":
            settings["options"] = {"cpp_wrapper": True}
        settings.update(options)
        self._compiled_decode = torch.compile(self._decode_step, **settings)
        return self

    def decode_cache_len(self, needed: int) -> int:
        """The KV-cache length compiled decoding uses for ``needed`` positions: a power of two >= 64, at most
        max_seq_len, so that few lengths, hence few compiled graphs, ever occur."""
        return min(self.config.max_seq_len, max(64, 1 << (max(needed, 1) - 1).bit_length()))

    def logits(self, h: Tensor) -> Tensor:
        """h (..., d) -> logits (..., V) through the shared embedding, scaled by 1/sqrt(d_model) (§2).

        Scaling h before the product equals scaling the logits after it, and touches d numbers instead of V.
        """
        return F.linear(h * self.config.d_model**-0.5, self.embed.weight)

    @torch.no_grad()
    def attention_maps(self, idx: Tensor) -> Tensor:
        """Attention probabilities of every layer and head: (n_layers, B, n_heads, T, T). For pictures, not speed."""
        self.check_input(idx, 0)
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

    def check_input(self, idx: Any, start_pos: int = 0) -> None:
        """Raise one clear error for each way token ids ``idx`` (B, T) at positions start_pos.. can be wrong for
        this model (type, dtype, shape, length, id range), instead of a shape error deep inside."""
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

    def _check_targets(self, targets: Tensor, z_loss: float, ignore_index: int) -> None:
        """targets (B, T): integer ids in [0, vocab_size) or ``ignore_index``; z_loss a finite weight >= 0."""
        if isinstance(z_loss, bool) or not isinstance(z_loss, (int, float)) or not 0 <= z_loss < math.inf:
            raise ValueError(f"z_loss must be a finite weight >= 0 (PaLM uses 1e-4, 0 turns it off); got {z_loss!r}")
        if targets.dtype not in (torch.long, torch.int32):
            raise TypeError(f"targets must hold integer token ids (torch.long); got dtype {targets.dtype}")
        if targets.device.type == "meta":
            return
        real = targets.masked_fill(targets == ignore_index, 0)  # same shape: no data-dependent indexing
        lo, hi = torch.aminmax(real)
        if lo.item() < 0 or hi.item() >= self.config.vocab_size:
            bad = lo.item() if lo.item() < 0 else hi.item()
            raise ValueError(
                f"target id {bad} is out of range for vocab_size={self.config.vocab_size}: targets must be in "
                f"[0, {self.config.vocab_size - 1}] or ignore_index={ignore_index} (positions not scored)"
            )

    # ---- utilities
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
        stop_token, generator, seed, progress (a tqdm bar over the new tokens).
        """
        return generate(self, idx, max_new_tokens, **sampling)

    # ---- save / load (safetensors only)
    def save_pretrained(  # type: ignore[override]  # the mixin's, with palmbook's own files
        self,
        path: str | os.PathLike,
        *,
        config: PaLMConfig | None = None,
        model_card_kwargs: dict[str, Any] | None = None,
        push_to_hub: bool = False,
        repo_id: str | None = None,
        **push_to_hub_kwargs: Any,
    ) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into directory ``path``, each atomically.

        Each file is written to a temporary name in the same directory and renamed over the old one, so a crash
        mid-write leaves the previous file intact. ``push_to_hub=True`` then uploads them (``repo_id``, default
        the folder's name). ``config`` and ``model_card_kwargs`` are the mixin's: :meth:`push_to_hub` passes them;
        a model card (README.md) is written only on the way to the Hub.
        """
        if config is not None and config != self.config:
            raise ValueError("save_pretrained writes the model's own config; build the model from the one you want")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name, write in model_files(self.state_dict(), self.config).items():
            atomic_write(path / name, write)
        if model_card_kwargs is not None:
            self.generate_model_card(**model_card_kwargs).save(path / "README.md")
        if push_to_hub:
            self.push_to_hub(repo_id or path.name, **push_to_hub_kwargs)
        return path

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:  # type: ignore[override]
        """Upload ``config.json``, ``model.safetensors`` and a model card to the Hub repository ``repo_id``
        (created if missing; needs ``hf auth login`` or ``token=``). Other keywords: the mixin's."""
        kwargs["model_card_kwargs"] = kwargs.get("model_card_kwargs") or {}
        return super().push_to_hub(repo_id, **kwargs)

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        path: str | os.PathLike,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
        **hub: Any,
    ) -> PaLM:
        """Load a model written by :meth:`save_pretrained`. Reads safetensors only: nothing is ever unpickled.

        ``path`` is a local directory, or a Hub repository ``owner/name`` that is not one (its config.json and
        model.safetensors only are fetched; ``hub``: revision, cache_dir, local_files_only, token).
        """
        path = resolve_model_dir(path, **hub)
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


def model_files(state: dict[str, Tensor], config: PaLMConfig | None) -> dict[str, Callable[[str], object]]:
    """A model directory's files as name -> ``write(path)``: the weights and ``config.json`` (when there is a
    config: a trainer may train any module).

    Shared by :meth:`PaLM.save_pretrained` and training checkpoints, so both write the same files the same way.
    """
    files: dict[str, Callable[[str], object]] = {WEIGHTS_NAME: lambda p: save_safetensors(state, p)}
    if config is not None:
        files[CONFIG_NAME] = config.save
    return files
