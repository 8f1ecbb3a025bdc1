"""Scaling up from scratch: the teaching version built in chapter 14 (``book/14_scaling_up.ipynb``).

    forward_flops_per_token     the matmul FLOPs of one token's forward pass, component by component, read off
                                the model's shapes; training costs three times that (PaLM Appendix B)
    training_flops_per_token    3 x forward = 6 N + 12 L H Q T, the formula ``palmbook.flops`` implements
    compute_optimal             Chinchilla's rule of thumb (Hoffmann et al., 2022): ~20 tokens per parameter
    optimizer_state_floats      what Adam, PaLM's unfactored Adafactor and the original factored Adafactor keep
    column_parallel_matmul      tensor (model) parallelism: split a weight matrix by columns, gather the outputs
    row_parallel_matmul         ... or by rows, and add the partial products up (an all-reduce)
    tensor_parallel_block       a whole parallel block over n devices: column-parallel input matrices, row-parallel
                                output matrices, ONE all-reduce per block (Megatron-LM's split of PaLM's block)
    data_parallel_gradients     data parallelism: split the batch, average the gradients (an all-reduce)
    shard / unshard             fully sharded data parallelism (FSDP, ZeRO-3): every device keeps 1/n of a tensor

Everything runs in one process: a "device" here is a slice of a tensor, and the collective operations
(all-gather, all-reduce) are a ``torch.cat`` and a sum. That is enough to see that each scheme computes exactly
what the single-device model computes, which is what ``torch.distributed`` then does across real devices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from ..config import PaLMConfig
from .attention import multi_query_attention
from .feed_forward import swiglu_ffn
from .palm import ScratchBlock, layer_norm

__all__ = [
    "CHINCHILLA_TOKENS_PER_PARAM",
    "column_parallel_matmul",
    "compute_optimal",
    "data_parallel_gradients",
    "forward_flops_per_token",
    "optimizer_state_floats",
    "row_parallel_matmul",
    "shard",
    "tensor_parallel_block",
    "training_flops_per_token",
    "unshard",
]

# Hoffmann et al. (2022), Table 3: compute-optimal tokens are ~20x the parameters (20.2x at 1B, 21.2x at 1T).
CHINCHILLA_TOKENS_PER_PARAM = 20


# --------------------------------------------------------------------------------------------- FLOPs
def forward_flops_per_token(config: PaLMConfig, seq_len: int) -> dict[str, float]:
    """Multiply-add FLOPs of one token's forward pass through a PaLM, by matmul (2 FLOPs per multiply-add).

    A token meets each weight of a dense matmul once: (1 x n_in) @ (n_in x n_out) is n_in * n_out multiply-adds.
    Attention has no weights but multiplies the token's query with the keys of seq_len positions (scores) and
    its attention weights with as many values, per head and layer. Like the paper, every one of the seq_len
    positions is counted, although the causal mask hides half of them on average.
    """
    c, T = config, seq_len
    d, L, H, Q = c.d_model, c.n_layers, c.n_heads, c.head_dim
    return {
        "fused input projection": 2 * L * d * c.fused_dim,  # queries, key, value, gate, up
        "attention output": 2 * L * H * Q * d,
        "feed-forward output": 2 * L * c.d_ff * d,
        "output layer (shared embedding)": 2 * d * c.vocab_size,
        "attention scores q.k": 2 * L * H * Q * T,
        "attention-weighted values": 2 * L * H * Q * T,
    }


def training_flops_per_token(config: PaLMConfig, seq_len: int) -> float:
    """Forward + backward FLOPs of one training token: 3 x forward.

    The backward pass of ``y = x W`` needs two matmuls of the same size (dx = dy W^T and dW = x^T dy), so it
    costs twice the forward; the attention products likewise. Rematerialisation (recomputing the forward in the
    backward pass) is NOT counted: it is work the hardware does, not work the model needs (§4.1).
    """
    return 3.0 * sum(forward_flops_per_token(config, seq_len).values())


def compute_optimal(flops: float, tokens_per_param: float = CHINCHILLA_TOKENS_PER_PARAM) -> tuple[float, float]:
    """(parameters N, tokens D) that spend ``flops`` = 6 N D with D = tokens_per_param x N (Chinchilla's rule)."""
    n = math.sqrt(flops / (6.0 * tokens_per_param))
    return n, tokens_per_param * n


# --------------------------------------------------------------------------------------------- memory
def optimizer_state_floats(shapes: Iterable[torch.Size | tuple[int, ...]], kind: str) -> int:
    """Numbers an optimiser keeps besides the weights, for parameters of the given shapes.

    - ``"adam"``: a first moment m and a second moment v for every weight: 2 per weight.
    - ``"palm"``: PaLM's "Adafactor without factorization" with momentum beta1 = 0.9 (§5): the same m and v,
      so the same 2 per weight as Adam.
    - ``"adafactor"``: the original, factored Adafactor (Shazeer & Stern, 2018) without momentum: the second
      moment of an (r x c) matrix is stored as r row sums and c column sums; vectors keep a full v.
    - ``"sgd"``: plain SGD keeps nothing.
    """
    total = 0
    for shape in shapes:
        numel = math.prod(shape)
        if kind in ("adam", "palm"):
            total += 2 * numel
        elif kind == "adafactor":
            total += sum(shape[-2:]) * math.prod(shape[:-2]) if len(shape) >= 2 else numel
        elif kind == "sgd":
            continue
        else:
            raise ValueError(f"unknown optimiser kind {kind!r}; choose adam, palm, adafactor or sgd")
    return total


# --------------------------------------------------------------------------------------------- parallelism
def _split(n: int, size: int, what: str) -> int:
    if n < 1 or size % n:
        raise ValueError(f"{what} of size {size} does not split into {n} equal shards; pick a divisor of {size}")
    return size // n


def column_parallel_matmul(x: Tensor, w: Tensor, n: int) -> Tensor:
    """x @ w computed by n "devices", each holding a vertical slice of w (d_in x d_out/n).

    Device i computes x @ w_i, the output columns it owns; concatenating the slices (an all-gather) gives x @ w.
    No communication is needed before the matmul, only to reassemble (or not at all, if the next layer is
    row-parallel: Megatron-LM pairs the two).
    """
    width = _split(n, w.shape[1], "the output dimension")
    outputs = [x @ w[:, i * width : (i + 1) * width] for i in range(n)]  # one per device
    return torch.cat(outputs, dim=-1)  # all-gather


def row_parallel_matmul(x: Tensor, w: Tensor, n: int) -> Tensor:
    """x @ w computed by n "devices", each holding a horizontal slice of w (d_in/n x d_out) and x's matching columns.

    Device i computes a partial product x_i @ w_i of the full output size; the sum over devices (an all-reduce)
    is x @ w, because a matrix product is a sum over the inner dimension.
    """
    rows = _split(n, w.shape[0], "the input dimension")
    partials = [x[..., i * rows : (i + 1) * rows] @ w[i * rows : (i + 1) * rows] for i in range(n)]
    return torch.stack(partials).sum(0)  # all-reduce (sum)


def tensor_parallel_block(block: ScratchBlock, x: Tensor, n: int) -> tuple[Tensor, int]:
    """One parallel block computed by n "devices" of a tensor-parallel group; returns (output, all-reduces used).

    Megatron-LM's split, applied to PaLM's block ``x + Attn(LN(x)) + MLP(LN(x))``: every device holds the whole
    input x and computes LN(x) itself (it is cheap). The matrices that READ LN(x) are split by columns
    (column-parallel): device i gets the queries of H/n heads and d_ff/n of SwiGLU's gate and up columns, plus the
    one shared key and value head (multi-query: too small to split, so every device keeps a copy). Its heads'
    attention and its slice of Swish(gate) * up need nothing from the other devices. The matrices that WRITE to the
    residual stream are split by rows (row-parallel): device i multiplies its own heads' outputs by its rows of
    w_o, and its SwiGLU slice by its rows of w_down, giving a partial sum of the full width d. Because the block
    ADDS attention and MLP, both partial sums travel together: one all-reduce per block in the forward pass (a
    serial block needs two; the backward pass needs one more for dx).
    """
    H, h = block.n_heads, block.w_k.shape[1]
    heads = _split(n, H, "the number of query heads")
    cols = _split(n, block.w_gate.shape[1], "d_ff")
    u = layer_norm(x, block.ln, block.eps)  # every device: the whole (B, T, d) input
    partials = []
    for i in range(n):  # device i
        q_cols, ff = slice(i * heads * h, (i + 1) * heads * h), slice(i * cols, (i + 1) * cols)
        attn = multi_query_attention(  # its heads' queries (columns), the shared key/value, its rows of w_o
            u, block.w_q[:, q_cols], block.w_k, block.w_v, block.w_o[q_cols], heads, rope_base=block.rope_base
        )
        mlp = swiglu_ffn(u, block.w_gate[:, ff], block.w_up[:, ff], block.w_down[ff])  # columns, then rows
        partials.append(attn + mlp)  # (B, T, d): a partial sum, no communication so far
    return x + torch.stack(partials).sum(0), 1  # the one all-reduce (sum) of the block


def data_parallel_gradients(
    model: nn.Module, loss_fn: Callable[[nn.Module, Tensor, Tensor], Tensor], x: Tensor, y: Tensor, n: int
) -> dict[str, Tensor]:
    """Gradients of the mean loss over the batch, computed by n "replicas" that each see 1/n of it.

    Each replica runs forward and backward on its slice; averaging their gradients (an all-reduce) gives the
    gradient of the whole batch's mean loss, because the mean over the batch is the mean of the slices' means
    (equal slices). This is DistributedDataParallel, and PaLM's two-way data parallelism across its two pods.
    """
    size = _split(n, x.shape[0], "the batch")
    grads: dict[str, Tensor] = {}
    for i in range(n):
        model.zero_grad(set_to_none=True)
        loss_fn(model, x[i * size : (i + 1) * size], y[i * size : (i + 1) * size]).backward()
        for name, p in model.named_parameters():
            if p.grad is not None:
                grads[name] = grads.get(name, 0) + p.grad / n  # all-reduce (mean)
    model.zero_grad(set_to_none=True)
    return grads


def shard(t: Tensor, n: int) -> list[Tensor]:
    """Flatten t, pad it to a multiple of n, and cut it into n equal shards: what FSDP keeps on each device."""
    flat = t.detach().reshape(-1)
    per = -(-flat.numel() // n)  # ceil
    flat = torch.cat([flat, flat.new_zeros(per * n - flat.numel())])
    return list(flat.split(per))


def unshard(shards: list[Tensor], shape: torch.Size | tuple[int, ...]) -> Tensor:
    """All-gather: put the shards back together and drop the padding. The inverse of :func:`shard`."""
    return torch.cat(shards)[: math.prod(shape)].view(shape)
