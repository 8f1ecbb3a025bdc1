"""Sampling from a PaLM: greedy, temperature, top-k and top-p, decoding on a preallocated KV cache.

Generation has two phases. *Prefill* runs the whole prompt once, filling the cache with the prompt's keys and
values. *Decode* then feeds one token at a time: each step computes keys/values for the new position only and
attends over the cache. With multi-query attention the cache holds one key head and one value head per layer.

This module sits below :mod:`palmbook.model` (``PaLM.generate`` calls :func:`generate`), so it imports no model: it
drives any model that offers PaLM's decoding interface, ``config.max_seq_len``, ``check_input(idx)``,
``new_kv_cache(B, length)``, ``hidden(idx, kv_cache=, start_pos=)``, ``logits(h)`` and, for compiled decoding,
``decoding_compiled``, ``decode_cache_len(n)`` and ``decode_static(token, pos, cache, greedy=)``.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor
from tqdm.auto import tqdm

__all__ = ["filter_logits", "generate", "sample_next"]


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Mask (to -inf) the logits that top-k and/or nucleus (top-p) sampling exclude. logits: (B, V).

    top-k keeps the k largest; top-p keeps the smallest set of most likely tokens whose probabilities sum to at
    least p (the most likely token is always kept).
    """
    if top_k is not None:
        k = min(top_k, logits.shape[-1])
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = (cum - sorted_logits.softmax(-1)) >= top_p  # mass before this token already reaches p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next(
    logits: Tensor,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Pick one token per row of logits (B, V) -> (B,). temperature 0 means greedy (argmax).

    Below a temperature of 1e-3 the logits are first shifted so their maximum is 0 (softmax does not change): a
    tiny temperature (1e-45) then gives 0 for the best token and -inf for the rest, i.e. greedy, instead of
    overflowing to inf - inf = NaN. Above it the division cannot overflow for any finite logit a model makes, and
    is left exactly as written (the book's scratch sampler draws the same tokens from the same generator).
    """
    if temperature == 0.0:
        return logits.argmax(dim=-1)
    logits = logits.float()
    if temperature < 1e-3:
        logits = logits - logits.amax(dim=-1, keepdim=True)
    logits = filter_logits(logits / temperature, top_k, top_p)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _is_int(x: object) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)  # True is an int to Python, not a count


def _is_real(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _check_sampling(
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    stop_token: int | None = None,
    vocab_size: int | None = None,
) -> None:
    """One ValueError, naming the fix, for each sampling option that cannot mean anything."""
    if not _is_int(max_new_tokens) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a non-negative integer; got {max_new_tokens!r}")
    if not _is_real(temperature) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(
            f"temperature must be a finite number >= 0 (0 = greedy, 1 = the model's own distribution); "
            f"got {temperature!r}"
        )
    if top_k is not None and (not _is_int(top_k) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer (or None for no top-k filter); got {top_k!r}")
    if top_p is not None and (not _is_real(top_p) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be a number in (0, 1] (or None for no nucleus filter); got {top_p!r}")
    if stop_token is not None and (
        not _is_int(stop_token) or (vocab_size is not None and not 0 <= stop_token < vocab_size)
    ):
        limit = f" in [0, {vocab_size - 1}]" if vocab_size is not None else ""
        raise ValueError(f"stop_token must be a token id{limit} (e.g. tokenizer.eod_id) or None; got {stop_token!r}")


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    idx: Tensor,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_token: int | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    progress: bool = False,
) -> Tensor:
    """Continue every prompt in idx (B, T) -> (B, T + n), n <= max_new_tokens.

    Prompts in a batch share one length (no padding, so positions and RoPE stay exact). Generation stops early
    once every row has produced ``stop_token``; rows that stopped are filled with ``stop_token``. Sampling is
    reproducible with ``seed`` (or your own ``generator``). The model must fit T + max_new_tokens positions:
    asking for more raises a ValueError instead of silently sliding a window. ``progress=True`` shows a tqdm bar
    over the new tokens (off by default: a sampling loop in a chapter stays quiet).
    """
    _check_sampling(max_new_tokens, temperature, top_k, top_p, stop_token, model.config.vocab_size)
    if seed is not None and (not _is_int(seed) or not -(2**63) <= seed < 2**64):
        raise ValueError(f"seed must be an integer in [-2**63, 2**64) or None; got {seed!r}")
    model.check_input(idx, 0)
    B, T = idx.shape
    limit = model.config.max_seq_len
    if T + max_new_tokens > limit:
        raise ValueError(
            f"prompt length {T} + max_new_tokens {max_new_tokens} = {T + max_new_tokens} exceeds max_seq_len="
            f"{limit}: shorten the prompt or ask for at most {limit - T} new tokens"
        )
    if generator is None and seed is not None:
        generator = torch.Generator(device=idx.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        out = torch.empty(B, T + max_new_tokens, dtype=idx.dtype, device=idx.device)
        out[:, :T] = idx
        compiled = model.decoding_compiled  # after model.compile_decoding()
        cache_len = model.decode_cache_len(T + max_new_tokens) if compiled else T + max_new_tokens
        cache = model.new_kv_cache(B, cache_len)
        h = model.hidden(idx, kv_cache=cache, start_pos=0)[:, -1]  # prefill: only the last position is needed
        scores = model.logits(h)  # (B, V) logits, or (B,) ids once the compiled greedy step has taken the argmax
        greedy = compiled and temperature == 0.0
        pos = torch.tensor([T], device=idx.device)  # the compiled step's position, advanced in place by it
        done = torch.zeros(B, dtype=torch.bool, device=idx.device)
        n = 0
        for n in tqdm(range(1, max_new_tokens + 1), desc="generating", unit="token", disable=not progress, leave=False):
            nxt = scores if scores.dim() == 1 else sample_next(scores, temperature, top_k, top_p, generator)
            if stop_token is not None:
                nxt = nxt.masked_fill(done, stop_token)
                done |= nxt == stop_token
            out[:, T + n - 1] = nxt
            if n == max_new_tokens or (stop_token is not None and bool(done.all())):
                break
            if compiled:
                scores = model.decode_static(nxt, pos, cache, greedy=greedy)
            else:
                scores = model.logits(model.hidden(nxt[:, None], kv_cache=cache, start_pos=T + n - 1)[:, -1])
        return out[:, : T + n]
    finally:
        model.train(was_training)
