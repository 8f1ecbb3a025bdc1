"""Generation from scratch: the teaching version built in chapter 10 (``book/10_generation.ipynb``).

A language model gives, at every step, one score (logit) per vocabulary entry for the next token. Generating text
is choosing a token from those scores, appending it, and asking again. This module builds each piece in the
order the chapter does:

    greedy                      the most likely token, always (deterministic)
    with_temperature            divide the logits by t: t < 1 sharpens the distribution, t > 1 flattens it
    top_k_filter                keep the k most likely tokens, drop the rest (logit -inf)
    top_p_filter                nucleus: keep the smallest set of most likely tokens whose probability reaches p
    next_token_probs            temperature -> top-k -> top-p -> softmax: what a sampler draws from
    draw                        inverse-CDF sampling: one uniform number picks a token
    sample                      the whole sampler; the draw uses torch.multinomial, as the package does, so the
                                same generator seed gives the same tokens as ``palmbook.generate.sample_next``
    generate_recompute          generation with NO cache: the whole sequence so far goes through the model at
                                every step (cost grows with the square of the length)
    ScratchKVCache / forward_cached / generate_cached
                                a KV cache built from plain lists: each step computes keys and values for the
                                new token only and reuses every earlier one
    generate_until              generation that stops when the new tokens end with a stop SEQUENCE (e.g. the
                                blank line that ends a speech), not just one stop token
    sequence_log_prob / beam_search / best_by_brute_force
                                search instead of sampling: the continuation with the highest total probability,
                                kept to ``width`` candidates per step (beam search), checked against trying them all
    distinct_ngrams             a repetition measure: the fraction of a text's n-grams that are different

The package's versions (``palmbook.generate``) are faster and must agree with these; the chapter and
``tests/test_scratch_sampling.py`` assert that they do. Shapes: B batch, T positions, V vocabulary, h head size.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from .attention import attention, causal_mask

__all__ = [
    "ScratchKVCache",
    "beam_search",
    "best_by_brute_force",
    "distinct_ngrams",
    "draw",
    "entropy_bits",
    "forward_cached",
    "generate_cached",
    "generate_recompute",
    "generate_until",
    "greedy",
    "next_token_probs",
    "sample",
    "sequence_log_prob",
    "top_k_filter",
    "top_p_filter",
    "with_temperature",
]


# --------------------------------------------------------------------------------------------- choosing a token
def greedy(logits: Tensor) -> Tensor:
    """The highest-scoring token of each row: logits (B, V) -> ids (B,). Softmax never changes the order."""
    return logits.argmax(dim=-1)


def with_temperature(logits: Tensor, temperature: float) -> Tensor:
    """logits / t (as float32). softmax(z / t): t -> 0 approaches greedy, t = 1 is the model, t -> inf uniform."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 to divide by it (use greedy for t = 0); got {temperature!r}")
    return logits.float() / temperature


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Set every logit below the k-th largest of its row to -inf (probability 0 after softmax). logits: (B, V).

    Ties with the k-th largest are kept, so a row may keep more than k tokens when scores are equal.
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"top-k needs a positive integer k; got {k!r}")
    k = min(k, logits.shape[-1])
    kth_largest = logits.sort(dim=-1, descending=True).values[..., k - 1 : k]  # (B, 1)
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filtering (Holtzman et al., 2019): keep the most likely tokens until their probability reaches p.

    Walk the tokens from most to least likely, adding up probabilities; a token is kept if the mass of the tokens
    BEFORE it is still below p. So the most likely token is always kept, and the kept set is the smallest one
    whose total is at least p. logits: (B, V) -> (B, V) with the dropped entries at -inf.
    """
    if not 0 < p <= 1:
        raise ValueError(f"top-p needs 0 < p <= 1; got {p!r}")
    if p == 1:
        return logits
    probs = logits.softmax(dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs  # probability of the tokens ranked above each one
    drop_sorted = mass_before >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def next_token_probs(
    logits: Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> Tensor:
    """The distribution a sampler draws from: temperature first, then top-k, then top-p, then softmax. (B, V).

    The order matters: top-p measures probability AFTER the temperature and the top-k cut.
    """
    z = with_temperature(logits, temperature)
    if top_k is not None:
        z = top_k_filter(z, top_k)
    if top_p is not None:
        z = top_p_filter(z, top_p)
    return z.softmax(dim=-1)


def draw(probs: Tensor, u: Tensor) -> Tensor:
    """Inverse-CDF sampling: token i is chosen when u falls in [P(<i), P(<=i)). probs (B, V), u (B,) in [0, 1).

    Lay the probabilities end to end on [0, 1]; a uniform u lands in token i's stretch with probability p_i.
    """
    cdf = probs.double().cumsum(dim=-1)  # float64: the running sum must not drift below u at the end
    idx = torch.searchsorted(cdf, u.double()[:, None], right=True).squeeze(-1)
    return idx.clamp(max=probs.shape[-1] - 1)  # u just below 1 with a cdf summing to 1 - 1e-16


def sample(
    logits: Tensor,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Pick one token per row of logits (B, V) -> (B,). temperature 0 means greedy.

    The final draw is ``torch.multinomial``, which the package uses too, so with the same generator state this
    returns exactly the tokens of :func:`palmbook.generate.sample_next` (:func:`draw` is the same idea by hand:
    same distribution, but it consumes the random numbers differently).
    """
    if temperature == 0:
        return greedy(logits)
    probs = next_token_probs(logits, temperature, top_k, top_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# --------------------------------------------------------------------------------------------- no cache
@torch.no_grad()
def generate_recompute(
    model: torch.nn.Module,
    idx: Tensor,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Generation without a cache: idx (B, T) -> (B, T + max_new_tokens).

    Every step runs the model over the WHOLE sequence so far, although only the last position's prediction is
    used: step t redoes the work of steps 1..t-1. Only the last position is projected to logits (the rest would be
    thrown away), which makes this the fairest no-cache baseline.
    """
    model.eval()
    for _ in range(max_new_tokens):
        h = model.hidden(idx)[:, -1]  # (B, d): the whole prefix, recomputed
        nxt = sample(model.logits(h), temperature, top_k, top_p, generator)
        idx = torch.cat([idx, nxt[:, None]], dim=1)
    return idx


# --------------------------------------------------------------------------------------------- a KV cache
@dataclass
class ScratchKVCache:
    """Keys and values of every position seen so far, one list entry per layer.

    With multi-query attention (PaLM §2) a layer has ONE key head and ONE value head, each (B, 1, S, h), whatever
    the number of query heads: that is what makes PaLM's cache small (chapter 3).
    """

    keys: list[Tensor] = field(default_factory=list)
    values: list[Tensor] = field(default_factory=list)

    @property
    def length(self) -> int:
        """Positions stored (S)."""
        return 0 if not self.keys else self.keys[0].shape[2]

    def append(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add the new positions' k, v (B, 1, T, h) to layer's cache; return all of them (B, 1, S, h)."""
        if layer == len(self.keys):  # the first write to this layer
            self.keys.append(k)
            self.values.append(v)
        else:
            self.keys[layer] = torch.cat([self.keys[layer], k], dim=2)
            self.values[layer] = torch.cat([self.values[layer], v], dim=2)
        return self.keys[layer], self.values[layer]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


@torch.no_grad()
def forward_cached(model: torch.nn.Module, tokens: Tensor, cache: ScratchKVCache) -> Tensor:
    """Run the NEW tokens (B, T) through a PaLM, reading earlier positions from the cache -> logits (B, T, V).

    The tokens sit at positions S .. S+T-1 (S = what the cache already holds). Each block computes queries, keys
    and values for these positions only (its LayerNorm, fused projection and RoPE: ``block.project``), appends
    the keys and values to the cache, and lets the new queries attend over ALL cached keys. The rest of the
    parallel block (SwiGLU branch, residual sum) only ever looks at the token's own position, so nothing else
    needs remembering.
    """
    pos, T = cache.length, tokens.shape[1]
    cos, sin = model.rope_cos[pos : pos + T], model.rope_sin[pos : pos + T]
    x = model.embed(tokens)  # (B, T, d)
    for i, block in enumerate(model.blocks):
        q, k, v, gate, up = block.project(x, cos, sin)  # q (B, H, T, h); k, v (B, 1, T, h)
        keys, values = cache.append(i, k, v)  # (B, 1, S + T, h)
        mask = causal_mask(T, pos + T, device=tokens.device)  # query t sees keys 0 .. pos + t
        heads, _ = attention(q, keys, values, mask)  # (B, H, T, h): one key head broadcast over H query heads
        attn = heads.transpose(1, 2).flatten(2)  # (B, T, H*h)
        x = x + block.attn_out(attn) + block.ffn_out(F.silu(gate) * up)  # y = x + Attention + MLP
    return model.logits(model.norm_f(x))


@torch.no_grad()
def generate_cached(
    model: torch.nn.Module,
    idx: Tensor,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Generation with the scratch KV cache: prefill the prompt once, then feed one token per step. (B, T + n)."""
    model.eval()
    cache = ScratchKVCache()
    logits = forward_cached(model, idx, cache)[:, -1]  # prefill: the prompt's keys and values enter the cache
    out = [idx]
    for step in range(max_new_tokens):
        nxt = sample(logits, temperature, top_k, top_p, generator)
        out.append(nxt[:, None])
        if step + 1 < max_new_tokens:
            logits = forward_cached(model, nxt[:, None], cache)[:, -1]  # decode: ONE new position
    return torch.cat(out, dim=1)


@torch.no_grad()
def generate_until(
    model: torch.nn.Module,
    idx: Tensor,
    max_new_tokens: int,
    stop: Sequence[int],
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Generate for ONE sequence idx (1, T) until the new tokens end with ``stop`` (kept) or max_new_tokens.

    A stop sequence ends text where no single token marks the end: a blank line (two newline tokens) ends a
    speech in the plays. Same cache and sampler as :func:`generate_cached`, so the tokens are the same up to the stop.
    """
    if idx.shape[0] != 1 or not stop:
        raise ValueError(f"need one sequence (1, T) and a non-empty stop sequence; got {tuple(idx.shape)}, {stop!r}")
    model.eval()
    cache, new = ScratchKVCache(), []
    logits = forward_cached(model, idx, cache)[:, -1]
    while len(new) < max_new_tokens and new[-len(stop) :] != list(stop):
        nxt = sample(logits, temperature, top_k, top_p, generator)
        new.append(nxt.item())
        logits = forward_cached(model, nxt[:, None], cache)[:, -1]
    return torch.cat([idx, torch.tensor([new], dtype=idx.dtype, device=idx.device)], dim=1)


# --------------------------------------------------------------------------------------------- search
# A "log_probs" function maps token ids (B, T) to the log-probabilities of the next token (B, V): a trained
# model (``lambda ids: model(ids)[:, -1].log_softmax(-1)``) or a toy table of probabilities.
LogProbs = Callable[[Tensor], Tensor]


def sequence_log_prob(log_probs: LogProbs, prefix: Tensor, continuation: Sequence[int]) -> float:
    """log P(continuation | prefix) = the sum of each new token's log-probability given all tokens before it."""
    ids, total = prefix, 0.0
    for token in continuation:
        total += log_probs(ids[None])[0, token].item()
        ids = torch.cat([ids, ids.new_tensor([token])])
    return total


def beam_search(log_probs: LogProbs, prefix: Tensor, n_new: int, width: int) -> tuple[list[int], float]:
    """The most probable continuation of ``n_new`` tokens that beam search finds, and its log-probability.

    prefix (T,). Keep the ``width`` best partial continuations (the beam); at each step extend every one by every
    token, score each extension by its total log-probability, and keep the ``width`` best again. width 1 is greedy
    decoding; a width of V ** n_new would try every continuation (:func:`best_by_brute_force`).
    """
    if width < 1 or n_new < 1:
        raise ValueError(f"need width >= 1 and n_new >= 1; got width={width}, n_new={n_new}")
    beams = prefix[None]  # (beams, T + step): the candidates so far
    scores = torch.zeros(1, dtype=torch.float64)  # their log-probabilities
    for _ in range(n_new):
        logp = log_probs(beams).double()  # (beams, V)
        total = (scores[:, None] + logp).flatten()  # every candidate extended by every token
        best = total.topk(min(width, total.numel()))
        V = logp.shape[-1]
        beams = torch.cat([beams[best.indices // V], (best.indices % V)[:, None].to(beams.dtype)], dim=1)
        scores = best.values
    return beams[0, prefix.shape[0] :].tolist(), scores[0].item()


def best_by_brute_force(log_probs: LogProbs, prefix: Tensor, n_new: int, vocab_size: int) -> tuple[list[int], float]:
    """The most probable continuation, found by scoring all ``vocab_size ** n_new`` of them (tiny cases only)."""
    if vocab_size**n_new > 100_000:
        raise ValueError(f"{vocab_size}**{n_new} continuations are too many to try: use beam_search")
    scored = (
        (sequence_log_prob(log_probs, prefix, c), list(c)) for c in itertools.product(range(vocab_size), repeat=n_new)
    )
    score, best = max(scored, key=lambda sc: sc[0])
    return best, score


# --------------------------------------------------------------------------------------------- measuring
def distinct_ngrams(ids: Sequence[int], n: int = 3) -> float:
    """Fraction of the n-grams of ``ids`` that are different (1.0: no n-gram repeats; near 0: a loop)."""
    grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
    if not grams:
        raise ValueError(f"need at least n={n} tokens to count {n}-grams; got {len(ids)}")
    return len(set(grams)) / len(grams)


def entropy_bits(probs: Tensor) -> Tensor:
    """Shannon entropy in bits of each row of probs (B, V): log2 of the 'effective number of choices'."""
    logp = torch.where(probs > 0, probs.log2(), torch.zeros_like(probs))
    return -(probs * logp).sum(-1)
