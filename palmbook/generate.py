"""Sampling from a PaLM: greedy, temperature, top-k and top-p, decoding on a preallocated KV cache.

Generation has two phases. *Prefill* runs the whole prompt once, filling the cache with the prompt's keys and
values. *Decode* then feeds one token at a time: each step computes keys/values for the new position only and
attends over the cache. With multi-query attention the cache holds one key head and one value head per layer.
"""

from __future__ import annotations

import torch
from torch import Tensor

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
    """Pick one token per row of logits (B, V) -> (B,). temperature 0 means greedy (argmax)."""
    if temperature == 0.0:
        return logits.argmax(dim=-1)
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _check_sampling(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a non-negative integer; got {max_new_tokens!r}")
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy); got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None; got {top_k!r}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] or None; got {top_p!r}")


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
) -> Tensor:
    """Continue every prompt in idx (B, T) -> (B, T + n), n <= max_new_tokens.

    Prompts in a batch share one length (no padding, so positions and RoPE stay exact). Generation stops early
    once every row has produced ``stop_token``; rows that stopped are filled with ``stop_token``. Sampling is
    reproducible with ``seed`` (or your own ``generator``). The model must fit T + max_new_tokens positions:
    asking for more raises a ValueError instead of silently sliding a window.
    """
    _check_sampling(max_new_tokens, temperature, top_k, top_p)
    model._check_input(idx, 0)
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
        compiled = getattr(model, "_compiled_decode", None) is not None  # after model.compile_decoding()
        cache_len = model.decode_cache_len(T + max_new_tokens) if compiled else T + max_new_tokens
        cache = model.new_kv_cache(B, cache_len)
        h = model.hidden(idx, kv_cache=cache, start_pos=0)[:, -1]  # prefill: only the last position is needed
        scores = model.logits(h)  # (B, V) logits, or (B,) ids once the compiled greedy step has taken the argmax
        greedy = compiled and temperature == 0.0
        pos = torch.tensor([T], device=idx.device)  # the compiled step's position, advanced in place by it
        done = torch.zeros(B, dtype=torch.bool, device=idx.device)
        n = 0
        for n in range(1, max_new_tokens + 1):
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


# --------------------------------------------------------------------------------------------- command line
def add_cli(subparsers) -> None:  # type: ignore[no-untyped-def]
    """Register ``palmbook generate`` (called by :mod:`palmbook.cli`)."""
    p = subparsers.add_parser(
        "generate",
        help="sample text from a trained model",
        description="Continue a prompt with a model directory (model.safetensors + config.json + tokenizer.model), "
        "a training out_dir (its best/ or newest checkpoint) or a shipped model name.",
    )
    p.add_argument("model", help="model directory, training out_dir, or shipped model name")
    p.add_argument("--prompt", default="", help="text to continue (default: start a new document)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="tokens to add (default: up to 200)")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default 0.8)")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--seed", type=int, default=None, help="make sampling reproducible")
    p.add_argument("--tokenizer", default=None, help="tokenizer.model (default: the one next to the model)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps (default cpu)")
    p.set_defaults(func=run_cli)


def run_cli(args) -> int:  # type: ignore[no-untyped-def]
    """``palmbook generate``: print each sample (prompt + continuation), separated by a rule."""
    from pathlib import Path

    from .checkpoint import resolve_model_dir
    from .model import PaLM
    from .tokenizer import Tokenizer

    model_dir = resolve_model_dir(args.model)
    tok_path = Path(args.tokenizer) if args.tokenizer else model_dir / "tokenizer.model"
    if not tok_path.is_file() and args.tokenizer is None and (model_dir.parent.parent / "tokenizer.model").is_file():
        tok_path = model_dir.parent.parent / "tokenizer.model"  # a checkpoint inside <out_dir>/checkpoints/
    tokenizer = Tokenizer.load(tok_path)
    model = PaLM.from_pretrained(model_dir, device=args.device)
    if args.num_samples < 1:
        raise ValueError(f"--num-samples must be >= 1; got {args.num_samples}")
    # An empty prompt starts a new document: the end-of-document token is what precedes one in training (§5).
    ids = tokenizer.encode(args.prompt) if args.prompt else [tokenizer.eod_id]
    room = model.config.max_seq_len - len(ids)
    n = args.max_new_tokens if args.max_new_tokens is not None else min(200, room)
    idx = torch.tensor([ids] * args.num_samples, device=model.device)
    out = generate(model, idx, n, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                   stop_token=tokenizer.eod_id, seed=args.seed)  # fmt: skip
    for i, row in enumerate(out.tolist()):
        if i:
            print("-" * 40)
        body = row[len(ids) :]
        if tokenizer.eod_id in body:
            body = body[: body.index(tokenizer.eod_id)]
        print(args.prompt + tokenizer.decode(body))
    return 0
