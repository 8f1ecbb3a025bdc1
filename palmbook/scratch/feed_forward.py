"""Chapter 4, from scratch: activation functions, the SwiGLU feed-forward layer, and the serial block.

Notation follows Shazeer (2020), "GLU Variants Improve Transformer" (arXiv 2002.05202), which PaLM cites (§2):

    FFN_SwiGLU(x) = (Swish(x W) * (x V)) W2          W, V: (d, d_ff)   W2: (d_ff, d)   no biases (PaLM §2)

Weights here are in the math layout ``x @ W`` (inputs on the rows). ``torch.nn.Linear`` stores the transpose,
``(out_features, in_features)``; :func:`swiglu_weights` converts a package block's weights to this layout.

The serial block is the standard pre-LayerNorm Transformer layer PaLM did NOT use; it is here so chapter 4 can compare
it with PaLM's parallel block (:class:`palmbook.model.ParallelBlock`) at the same shape.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..config import PaLMConfig
from ..model import LayerNorm, ParallelBlock, apply_rope, multi_query_attention

__all__ = [
    "SerialBlock",
    "UnfusedParallelBlock",
    "d_gelu",
    "d_relu",
    "d_swish",
    "ffn_costs",
    "gelu",
    "relu",
    "swiglu_ffn",
    "swiglu_weights",
    "swish",
]


# --------------------------------------------------------------------------------------------- activations
def relu(x: Tensor) -> Tensor:
    """ReLU(x) = max(0, x), elementwise (Nair & Hinton 2010; the original Transformer's MLP)."""
    return torch.where(x > 0, x, torch.zeros_like(x))


def gelu(x: Tensor) -> Tensor:
    """GELU(x) = x * Phi(x), Phi the standard normal CDF (Hendrycks & Gimpel 2016; BERT, GPT-2). Exact erf form."""
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def swish(x: Tensor, beta: float = 1.0) -> Tensor:
    """Swish_beta(x) = x * sigmoid(beta * x) (Ramachandran et al. 2017). beta = 1 is SiLU, PaLM's choice.

    beta -> 0 gives x / 2 (a line); beta -> infinity gives ReLU.
    """
    return x * torch.sigmoid(beta * x)


def d_relu(x: Tensor) -> Tensor:
    """dReLU/dx: 1 for x > 0, else 0 (the value at exactly 0 is a convention; PyTorch uses 0)."""
    return (x > 0).to(x.dtype)


def d_gelu(x: Tensor) -> Tensor:
    """dGELU/dx = Phi(x) + x * phi(x), phi the standard normal density."""
    phi = torch.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0))) + x * phi


def d_swish(x: Tensor, beta: float = 1.0) -> Tensor:
    """dSwish/dx = s + beta * x * s * (1 - s) with s = sigmoid(beta * x). Negative for x below about -1.28/beta."""
    s = torch.sigmoid(beta * x)
    return s + beta * x * s * (1.0 - s)


# --------------------------------------------------------------------------------------------- SwiGLU FFN
def swiglu_ffn(x: Tensor, w: Tensor, v: Tensor, w2: Tensor) -> Tensor:
    """PaLM's feed-forward layer: ``(Swish(x W) * (x V)) W2``.

    x: (..., d); w (gate), v (up): (d, d_ff); w2 (down): (d_ff, d). Returns (..., d).
    The gate ``Swish(x W)`` decides, per hidden unit, how much of the value ``x V`` passes through.
    """
    if w.shape != v.shape or w.shape[0] != x.shape[-1] or w2.shape != (w.shape[1], w.shape[0]):
        raise ValueError(
            f"expected x (..., d), W and V (d, d_ff), W2 (d_ff, d); got x {tuple(x.shape)}, W {tuple(w.shape)}, "
            f"V {tuple(v.shape)}, W2 {tuple(w2.shape)}"
        )
    gate = swish(x @ w)  # (..., d_ff)
    up = x @ v  # (..., d_ff)
    return (gate * up) @ w2  # (..., d)


def swiglu_weights(block: ParallelBlock) -> tuple[Tensor, Tensor, Tensor]:
    """The (W, V, W2) of a package block, in the math layout of :func:`swiglu_ffn`.

    ``block.in_proj.weight`` is (fused_dim, d) with output rows [queries | key | value | gate | up]; the gate and up
    rows are the last 2 * d_ff. ``block.ffn_out.weight`` is (d, d_ff), i.e. W2 transposed.
    """
    d_ff = block.ffn_out.in_features
    fused = block.in_proj.weight  # (fused_dim, d)
    w = fused[-2 * d_ff : -d_ff].T  # (d, d_ff)
    v = fused[-d_ff:].T  # (d, d_ff)
    return w, v, block.ffn_out.weight.T


def ffn_costs(d_model: int, d_ff: int, gated: bool) -> dict[str, int]:
    """Parameters and forward FLOPs per token of one feed-forward layer (no biases).

    A matmul of a (1, m) row by an (m, n) matrix costs 2*m*n FLOPs (a multiply and an add per weight); the
    elementwise activation and gating are O(d_ff) and left out, as in PaLM's Appendix B.
    """
    n_matrices = 3 if gated else 2
    params = n_matrices * d_model * d_ff
    return {"params": params, "flops_per_token": 2 * params}


# --------------------------------------------------------------------------------------------- serial vs parallel
class _TwoProjectionBlock(nn.Module):
    """Shared parts of the two unfused blocks: attention and MLP each have their own input projection."""

    def __init__(self, config: PaLMConfig) -> None:
        super().__init__()
        c = config
        self.n_heads, self.head_dim = c.n_heads, c.head_dim
        self.norm1 = LayerNorm(c.d_model, c.norm_eps)
        self.norm2 = LayerNorm(c.d_model, c.norm_eps)
        self.attn_in = nn.Linear(c.d_model, c.qkv_dim, bias=False)  # [queries | key | value]
        self.attn_out = nn.Linear(c.n_heads * c.head_dim, c.d_model, bias=False)
        self.ffn_in = nn.Linear(c.d_model, 2 * c.d_ff, bias=False)  # [gate | up]
        self.ffn_out = nn.Linear(c.d_ff, c.d_model, bias=False)
        with torch.no_grad():  # PaLM's kernel init, N(0, 1/sqrt(fan_in)) (§5)
            for lin in (self.attn_in, self.attn_out, self.ffn_in, self.ffn_out):
                nn.init.normal_(lin.weight, std=lin.in_features**-0.5)

    @classmethod
    def from_parallel(cls, block: ParallelBlock) -> _TwoProjectionBlock:
        """A copy of a package block's weights, split into two projections (both norms get its one scale)."""
        c = block.ffn_out
        config = PaLMConfig(
            vocab_size=2,
            d_model=c.out_features,
            n_layers=1,
            n_heads=block.n_heads,
            head_dim=block.head_dim,
            d_ff=c.in_features,
            norm_eps=block.norm.eps,
        )
        weight = block.in_proj.weight
        new = cls(config).to(device=weight.device, dtype=weight.dtype)  # same device and dtype as the source block
        qkv = config.qkv_dim
        with torch.no_grad():
            new.norm1.weight.copy_(block.norm.weight)
            new.norm2.weight.copy_(block.norm.weight)
            new.attn_in.weight.copy_(block.in_proj.weight[:qkv])
            new.ffn_in.weight.copy_(block.in_proj.weight[qkv:])
            new.attn_out.weight.copy_(block.attn_out.weight)
            new.ffn_out.weight.copy_(block.ffn_out.weight)
        return new

    def attention(self, u: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """Multi-query attention of an already-normalised u (B, T, d) -> (B, T, d)."""
        B, T, _ = u.shape
        q, k, v = self.attn_in(u).split([self.n_heads * self.head_dim, self.head_dim, self.head_dim], dim=-1)
        q = apply_rope(q.view(B, T, self.n_heads, self.head_dim).transpose(1, 2), cos, sin)
        k = apply_rope(k.unsqueeze(1), cos, sin)
        return self.attn_out(multi_query_attention(q, k, v.unsqueeze(1)))

    def mlp(self, u: Tensor) -> Tensor:
        """SwiGLU of an already-normalised u (B, T, d) -> (B, T, d)."""
        gate, up = self.ffn_in(u).chunk(2, dim=-1)
        return self.ffn_out(swish(gate) * up)


class SerialBlock(_TwoProjectionBlock):
    """The standard pre-LN Transformer layer: ``y = x + Attn(LN1(x))``, then ``y + MLP(LN2(y))``.

    The MLP must wait for attention: its input depends on attention's output, so the two input projections
    cannot be one matmul. x: (B, T, d); cos, sin: (T, head_dim). Returns (B, T, d).
    """

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        y = x + self.attention(self.norm1(x), cos, sin)
        return y + self.mlp(self.norm2(y))


class UnfusedParallelBlock(_TwoProjectionBlock):
    """PaLM's parallel formula with two separate input projections: ``x + Attn(LN(x)) + MLP(LN(x))``.

    Same function as :class:`palmbook.model.ParallelBlock` (when both norms share one scale), but without the fused
    matmul: it isolates how much of the parallel block's speed comes from the fusion. Uses ``norm1`` only.
    """

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        u = self.norm1(x)
        return x + self.attention(u, cos, sin) + self.mlp(u)
