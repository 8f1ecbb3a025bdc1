"""Activation memory: what autograd keeps for the backward pass, measured, and activation checkpointing.

Chapter 14 (scaling up) measures it; chapter 7's backward formulas explain it: they need tensors from the forward
pass (a linear layer's dW = dy^T x needs x; the attention backward needs Q, K, V and the softmax statistics).
Autograd saves them during the forward pass and frees them during the backward pass. This module measures that
memory two independent ways:

* :func:`saved_tensors` — every tensor autograd saves, through ``torch.autograd.graph.saved_tensors_hooks``,
  counted once per storage and split into activations vs. model state (parameters, buffers);
* :func:`memory_trace` — the CPU allocator's own record of every allocation and free over a training step
  (``torch.profiler`` with ``profile_memory=True``), giving the peak;

and reduces it with activation checkpointing ("rematerialisation", PaLM §4.1 and Appendix B):
:func:`hidden_with_checkpointing` keeps only each block's input and recomputes the block during the backward pass.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..config import PaLMConfig

__all__ = [
    "MemoryTrace",
    "SavedTensor",
    "SavedTensors",
    "block_activation_floats_per_token",
    "hidden_with_checkpointing",
    "memory_trace",
    "saved_tensors",
]


class SavedTensor(NamedTuple):
    """One tensor autograd saved: its shape and dtype, the bytes of the storage behind it, what that storage is,
    and the operation that produced the tensor (its ``grad_fn`` without "Backward0"; "" when it has none: a leaf,
    or an output the operation saves itself before autograd links it)."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    storage_bytes: int
    kind: str  # "activation" (a storage counted here), "view" (of a storage already counted), "model state"
    producer: str


@dataclass
class SavedTensors:
    """What autograd saved for backward while a function ran.

    activation_bytes: bytes of the distinct storages saved that are not model state (the activations).
    state_bytes: bytes of saved storages that belong to the model (weights, RoPE tables): saved by reference, they
        cost no extra memory, so they are reported apart.
    shapes: every save, in order, as a :class:`SavedTensor`; a storage saved again (directly or through a view)
        is listed with kind "view" and not counted twice.
    """

    activation_bytes: int
    state_bytes: int
    shapes: list[SavedTensor] = field(repr=False)


def saved_tensors(fn: Callable[[], Any], model: nn.Module | None = None) -> tuple[Any, SavedTensors]:
    """Run ``fn()`` and record every tensor autograd saves for the backward pass. Returns (fn's result, record).

    Views share their base's storage, so each storage is counted once, at its full size: a small view keeps the
    whole storage alive. Storages of ``model``'s parameters and buffers are model state, not activations.

    Saves made inside :func:`torch.utils.checkpoint.checkpoint` (non-reentrant) are intercepted by the checkpoint's
    own hooks and never reach these: only what checkpointing really keeps (the block inputs) is counted.
    """
    state = set()
    if model is not None:
        state = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    sizes: dict[int, tuple[int, bool]] = {}
    shapes: list[SavedTensor] = []

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        ptr, nbytes = storage.data_ptr(), storage.nbytes()
        is_state = ptr in state
        kind = "model state" if is_state else ("view" if ptr in sizes else "activation")
        sizes[ptr] = (nbytes, is_state)
        producer = type(t.grad_fn).__name__.removesuffix("Backward0") if t.grad_fn is not None else ""
        shapes.append(SavedTensor(tuple(t.shape), t.dtype, nbytes, kind, producer))
        return t  # keep the tensor itself: we only look, autograd behaves exactly as without the hook

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = fn()
    activation = sum(n for n, is_state in sizes.values() if not is_state)
    return result, SavedTensors(activation, sum(n for n, s in sizes.values() if s), shapes)


def block_activation_floats_per_token(config: PaLMConfig) -> int:
    """Numbers one :class:`palmbook.model.ParallelBlock` saves for backward, per token, in PyTorch's eager mode.

    Read off the block's code and checked against :func:`saved_tensors` in the tests (PyTorch's CPU flash-attention
    kernel, which saves Q, K, V, the output and one log-sum-exp per query and head, never the T x T matrix):

        LayerNorm input x, its mean and 1/std, its output     d + 2 + d
        the fused projection [q | k | v | gate | up]          H h + 2 h + 2 d_ff   (v, gate, up are views of it)
        q and k after RoPE                                    H h + h
        attention output, its log-sum-exp per head            H h + H
        Swish(gate) and Swish(gate) * up                      2 d_ff
    """
    c = config
    hh = c.n_heads * c.head_dim
    return (2 * c.d_model + 2) + (hh + 2 * c.head_dim + 2 * c.d_ff) + (hh + c.head_dim) + (hh + c.n_heads) + 2 * c.d_ff


def hidden_with_checkpointing(model: nn.Module, idx: Tensor) -> Tensor:
    """``model.hidden(idx)`` with every block wrapped in activation checkpointing. (B, T) -> (B, T, d_model).

    During the forward pass each block runs without saving its activations; only its input is kept. During the
    backward pass the block is run again from that input (the *recomputation*, one extra forward per block) and then
    differentiated. Gradients are the same as without checkpointing; memory for activations drops from
    n_layers x (a block's activations) to n_layers x (one (B, T, d) input) + one block's activations at a time.

    ``use_reentrant=False`` is PyTorch's recommended variant: it works with inputs that need no grad, with
    ``torch.autograd.grad`` and with keyword arguments.
    """
    T = idx.shape[1]
    cos, sin = model.rope_cos[:T], model.rope_sin[:T]
    x = model.embed(idx)
    for block in model.blocks:
        x = checkpoint(block, x, cos, sin, use_reentrant=False)
    return model.norm_f(x)


@dataclass
class MemoryTrace:
    """Bytes allocated on the CPU over one run, relative to the start, from the allocator's own events.

    times_ms[i], allocated[i]: after the i-th allocation or free. phases: name -> (start_ms, end_ms) of each phase
    given to :func:`memory_trace`. peak: the maximum of ``allocated``; final: its last value.
    """

    times_ms: list[float]
    allocated: list[int]
    phases: dict[str, tuple[float, float]]
    peak: int
    final: int


def memory_trace(phases: dict[str, Callable[[], Any]]) -> MemoryTrace:
    """Run ``phases`` (e.g. {"forward": ..., "backward": ...}) in order under the profiler and trace CPU memory.

    Every allocation and free of PyTorch's CPU allocator is an event with a signed size; their running sum is the
    memory held by tensors. Memory held by the Python interpreter or by other libraries is not included.
    """
    from torch.profiler import ProfilerActivity, profile, record_function

    # Kineto (the profiler's engine) prints "profiler_start/stop" lines to stderr at its default log level; 6 keeps
    # it quiet. Read when a profile starts; a level the user set is left alone.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    tags = {name: f"palmbook.phase.{name}" for name in phases}
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for name, fn in phases.items():
            with record_function(tags[name]):  # marks the phase on the profiler's own clock
                fn()
    results = getattr(prof.profiler, "kineto_results", None)
    if results is None:
        raise RuntimeError("this PyTorch's profiler exposes no raw events (profiler.kineto_results): need torch >= 2.0")
    raw = list(results.events())
    events = sorted((e for e in raw if e.name() == "[memory]"), key=lambda e: e.start_ns())
    spans = {e.name(): (e.start_ns(), e.start_ns() + e.duration_ns()) for e in raw if e.name() in tags.values()}
    if not events or len(spans) != len(tags):
        raise RuntimeError("the profiler recorded no memory events or phases: was profile_memory=True honoured?")
    t0 = min(s for s, _ in spans.values())
    times, allocated, total = [], [], 0
    for e in events:
        total += e.nbytes()
        times.append((e.start_ns() - t0) / 1e6)
        allocated.append(total)
    phases_ms = {name: ((spans[tag][0] - t0) / 1e6, (spans[tag][1] - t0) / 1e6) for name, tag in tags.items()}
    return MemoryTrace(times, allocated, phases_ms, max(allocated), allocated[-1])
