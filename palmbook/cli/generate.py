"""``palmbook generate``: sample text from a model directory, a training run, or a shipped model.

palmbook generate runs/mini --prompt "ROMEO:" --max-new-tokens 100 --temperature 0.8 --seed 0
palmbook generate shakespeare-small --num-samples 3
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from ..generate import generate
from ..model import PaLM
from ..pretrained import find_tokenizer, resolve_model_dir
from ..tokenizer import Tokenizer

__all__ = ["add_cli", "run"]


def add_cli(subparsers: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``palmbook generate``: print each sample (prompt + continuation), separated by a rule."""
    # Flags first (before loading anything), each named as the user typed it.
    if args.num_samples < 1:
        raise ValueError(f"--num-samples must be >= 1; got {args.num_samples}")
    if args.max_new_tokens is not None and args.max_new_tokens < 0:
        raise ValueError(f"--max-new-tokens must be >= 0; got {args.max_new_tokens}")
    if not math.isfinite(args.temperature) or args.temperature < 0:
        raise ValueError(f"--temperature must be a finite number >= 0 (0 = greedy); got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1 (leave it out for no top-k filter); got {args.top_k}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise ValueError(f"--top-p must be in (0, 1] (leave it out for no nucleus filter); got {args.top_p}")
    model_dir = resolve_model_dir(args.model)
    tokenizer = Tokenizer.load(Path(args.tokenizer) if args.tokenizer else find_tokenizer(model_dir))
    model = PaLM.from_pretrained(model_dir, device=args.device)
    if model.config.vocab_size < tokenizer.vocab_size:
        raise ValueError(
            f"the tokenizer has {tokenizer.vocab_size} pieces but the model only {model.config.vocab_size}: "
            "use the model's own tokenizer.model (leave out --tokenizer)"
        )
    # An empty prompt starts a new document: the end-of-document token is what precedes one in training (§5).
    ids = tokenizer.encode(args.prompt) if args.prompt else [tokenizer.eod_id]
    room = model.config.max_seq_len - len(ids)
    if room < 1 or (args.max_new_tokens is not None and args.max_new_tokens > room):
        raise ValueError(
            f"the prompt is {len(ids)} tokens and this model's context is {model.config.max_seq_len} tokens, "
            f"so at most {max(room, 0)} new tokens fit"
            + (f" (--max-new-tokens asks for {args.max_new_tokens})" if args.max_new_tokens is not None else "")
            + f": shorten the prompt to at most {model.config.max_seq_len - 1} tokens"
            + (" or ask for fewer new tokens" if room >= 1 else "")
        )
    n = args.max_new_tokens if args.max_new_tokens is not None else min(200, room)
    idx = torch.tensor([ids] * args.num_samples, device=model.device)
    out = generate(
        model, idx, n, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        stop_token=tokenizer.eod_id, seed=args.seed,
    )  # fmt: skip
    for i, row in enumerate(out.tolist()):
        if i:
            print("-" * 40)
        body = row[len(ids) :]
        if tokenizer.eod_id in body:
            body = body[: body.index(tokenizer.eod_id)]
        print(args.prompt + tokenizer.decode(body))
    return 0
