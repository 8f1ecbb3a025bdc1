"""The implementations under test, each wrapped as three callables that do one unit of work.

    palmbook_contestant     palmbook's PaLM (optionally with torch.compile on its blocks and its decoding step)
    falcon_contestant       Hugging Face's FalconForCausalLM set as close to PaLM as Falcon allows
    palm_rlhf_contestant    lucidrains' palm-rlhf-pytorch, when installed (``pip install palmbook[peers]``)
    build_contestants       the line-up of one run, and the peers skipped with the reason

Every contestant trains with the same optimiser (:func:`make_adamw`), so the models are compared, not the
optimisers; each uses its own loss and its own ``generate``.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..flops import flops_per_token
from ..model import PaLM
from ..runtime import autocast
from .shapes import BenchData, BenchShape

__all__ = [
    "COMPILED",
    "FALCON",
    "PALMBOOK",
    "PALM_RLHF",
    "Contestant",
    "build_contestants",
    "check_falcon_shape",
    "dense_params",
    "falcon_config",
    "falcon_contestant",
    "make_adamw",
    "palm_rlhf_contestant",
    "palmbook_contestant",
]

PALMBOOK = "palmbook"
COMPILED = "palmbook+compile"
FALCON = "falcon"
PALM_RLHF = "palm-rlhf-pytorch"


@dataclass
class Contestant:
    """One implementation under test: its model and three callables, each doing one unit of work."""

    name: str
    model: nn.Module
    train_step: Callable[[], None]
    forward: Callable[[], None]
    generate: Callable[[], None] | None
    flops_per_token: float
    n_params: int
    note: str = ""


def dense_params(model: nn.Module) -> int:
    """Parameters of the weight matrices and embeddings (LayerNorm scales and biases left out, as in Table 1)."""
    return sum(p.numel() for p in model.parameters() if p.dim() > 1)


def make_adamw(model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """AdamW at lr 1e-4, fused (one kernel for all parameters) where torch has it: the same for every contestant."""
    try:
        return torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=device.type == "cuda")


def _peer_flops_per_token(model: nn.Module, shape: BenchShape) -> tuple[float, int]:
    """(FLOPs per token, dense parameters) of a peer by Appendix B: 6 N + 12 L H Q T."""
    n = dense_params(model)
    return 6.0 * n + 12.0 * shape.n_layers * shape.n_heads * shape.head_dim * shape.seq_len, n


def palmbook_contestant(
    shape: BenchShape, data: BenchData, device: torch.device, precision: str, compile_blocks: bool = False
) -> Contestant:
    """palmbook's PaLM at ``shape``; ``compile_blocks`` adds torch.compile on each block and the decoding step."""
    torch.manual_seed(0)
    cfg = shape.palm_config()
    model = PaLM(cfg).to(device)
    if compile_blocks:
        model.compile_blocks().compile_decoding()
    opt = make_adamw(model, device)

    def train_step() -> None:
        with autocast(device, precision):
            loss = model(data.inputs, targets=data.targets).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def forward() -> None:
        with autocast(device, precision):
            model(data.inputs)

    def generate() -> None:
        with autocast(device, precision):
            model.generate(data.prompt, shape.new_tokens)

    return Contestant(
        COMPILED if compile_blocks else PALMBOOK,
        model,
        train_step,
        forward,
        generate,
        flops_per_token(cfg, seq_len=shape.seq_len),
        cfg.num_parameters(include_norms=False),
        "torch.compile on each block and on the decoding step" if compile_blocks else "",
    )


def check_falcon_shape(shape: BenchShape) -> None:
    """Raise ValueError naming the fix when Falcon cannot take ``shape``: its head size is always d_model / n_heads."""
    if shape.d_model != shape.n_heads * shape.head_dim:
        raise ValueError(
            f"Falcon's head size is d_model / n_heads, so it needs d_model = n_heads * head_dim; got d_model="
            f"{shape.d_model}, n_heads={shape.n_heads}, head_dim={shape.head_dim}: change --shape, or use --no-peers"
        )
    if shape.head_dim % 2:
        raise ValueError(f"rotary positions need an even head_dim; got head_dim={shape.head_dim}: change --shape")


def falcon_config(shape: BenchShape, multi_query: bool = True) -> Any:
    """A ``transformers.FalconConfig`` as close to PaLM as Falcon allows.

    Parallel attention and MLP, multi-query attention, rotary positions, no biases, tied embeddings. Its MLP is
    GELU, so it gets a 6 d hidden width: the FLOPs and parameters of a 4 d SwiGLU.
    """
    check_falcon_shape(shape)
    import transformers
    from transformers import FalconConfig

    transformers.logging.set_verbosity_error()
    return FalconConfig(
        vocab_size=shape.vocab_size,
        hidden_size=shape.d_model,
        num_hidden_layers=shape.n_layers,
        num_attention_heads=shape.n_heads,
        multi_query=multi_query,
        parallel_attn=True,
        new_decoder_architecture=False,
        alibi=False,  # rotary positions instead
        bias=False,
        ffn_hidden_size=6 * shape.d_model,
        tie_word_embeddings=True,
        max_position_embeddings=shape.max_positions,
        attn_implementation="sdpa",
    )


def falcon_contestant(shape: BenchShape, data: BenchData, device: torch.device, precision: str) -> Contestant:
    """HF Falcon as close to PaLM as it goes (:func:`falcon_config`)."""
    from transformers import FalconForCausalLM

    fc = falcon_config(shape)
    torch.manual_seed(0)
    model = FalconForCausalLM(fc).to(device)
    opt = make_adamw(model, device)
    attention_mask = torch.ones_like(data.prompt)

    def train_step() -> None:
        with autocast(device, precision):
            # Falcon's own loss: labels are shifted inside, cross-entropy over the T-1 next-token predictions
            loss = model(input_ids=data.inputs, labels=data.inputs).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def forward() -> None:
        with autocast(device, precision):
            model(input_ids=data.inputs)

    def generate() -> None:
        with autocast(device, precision):
            model.generate(
                data.prompt,
                attention_mask=attention_mask,
                max_new_tokens=shape.new_tokens,
                min_new_tokens=shape.new_tokens,
                do_sample=False,
                use_cache=True,
                pad_token_id=0,
            )

    fpt, n = _peer_flops_per_token(model, shape)
    return Contestant(FALCON, model, train_step, forward, generate, fpt, n, "transformers Falcon")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence palm-rlhf-pytorch's FutureWarning about ``torch.backends.cuda.sdp_kernel`` (its code, not ours)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def palm_rlhf_contestant(shape: BenchShape, data: BenchData, device: torch.device, precision: str) -> Contestant | None:
    """lucidrains' PaLM (palm-rlhf-pytorch), or None when it is not installed."""
    try:
        from palm_rlhf_pytorch import PaLM as LucidPaLM
    except ImportError:
        return None
    torch.manual_seed(0)
    model = LucidPaLM(
        num_tokens=shape.vocab_size,
        dim=shape.d_model,
        depth=shape.n_layers,
        heads=shape.n_heads,
        dim_head=shape.head_dim,
        ff_mult=4,
        flash_attn=True,  # F.scaled_dot_product_attention, as palmbook and Falcon use
    ).to(device)
    opt = make_adamw(model, device)

    def train_step() -> None:
        with autocast(device, precision), _quiet():
            loss = model(data.tokens, return_loss=True)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def forward() -> None:
        with autocast(device, precision), _quiet():
            model(data.inputs)

    def generate() -> None:  # no KV cache: every step reruns the whole sequence
        with autocast(device, precision), _quiet():
            model.generate(shape.prompt_len + shape.new_tokens, prompt=data.prompt, temperature=0.0,
                           filter_logits_fn=None)  # fmt: skip

    fpt, n = _peer_flops_per_token(model, shape)
    return Contestant(PALM_RLHF, model, train_step, forward, generate, fpt, n, "lucidrains")


def build_contestants(
    shape: BenchShape, data: BenchData, device: torch.device, precision: str, compile_blocks: bool, peers: bool
) -> tuple[list[Contestant], dict[str, str]]:
    """palmbook first (the weight-reads bound is measured on its model), then the peers; and the peers skipped.

    The shape is checked against Falcon before any model is built, so a shape Falcon cannot take fails at once.
    """
    if peers:
        check_falcon_shape(shape)
    contestants = [palmbook_contestant(shape, data, device, precision)]
    if compile_blocks:
        contestants.append(palmbook_contestant(shape, data, device, precision, compile_blocks=True))
    skipped: dict[str, str] = {}
    if peers:
        contestants.append(falcon_contestant(shape, data, device, precision))
        lucid = palm_rlhf_contestant(shape, data, device, precision)
        if lucid is None:
            skipped[PALM_RLHF] = "not installed (pip install palmbook[peers])"
        else:
            contestants.append(lucid)
    return contestants, skipped
