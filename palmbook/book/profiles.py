"""Run profiles: one switch that sets how big and how long every chapter (and its test) runs.

``PALMBOOK_PROFILE`` picks one of three profiles:

* ``smoke``: continuous integration. Every chapter runs top to bottom in well under a minute on 2 CPU cores.
  The numbers it produces are for checking that the code runs, not for reading.
* ``cpu``: a laptop. Minutes per chapter; the committed notebooks are executed with it (``make execute``).
* ``gpu``: Colab or better. A larger model trained for longer.

Why the ``gpu`` sizes fit Colab's free GPU, a T4 (16 GB, about 15 GB usable; fp16 tensor cores, 65 TFLOP/s peak;
no bf16 units, so training runs fp16 + GradScaler, and attention SDPA's memory-efficient kernel: flash attention
needs sm80+). :func:`t4_plan` computes the table with :func:`palmbook.flops.memory_estimate` (PaLM's optimiser,
fp32 master weights, fp16 activations, no rematerialisation) and :func:`palmbook.flops.flops_per_token`:

=========  ==============  ===========  =================  =======================  ========================
profile    model           tokens/step  training memory    FLOPs (3000 steps)       time on a T4 at 25% MFU
=========  ==============  ===========  =================  =======================  ========================
``gpu``    palm-small,     64 x 256     2.0 GB (13% of     1.0e8/token x 49M        about 5 min (13 min at
           15.8M params                 15 GB)             tokens = 5.0e15          10% MFU)
=========  ==============  ===========  =================  =======================  ========================

The MFU is an assumption (a 16M-parameter model keeps a T4 busy only in part), not a measurement: the ``gpu``
profile has not yet run on a T4. Memory leaves room for the chapters' other tensors and a second model.

Without the variable the profile is ``gpu`` when CUDA is available, else ``cpu``. Chapters never hard-code a
size: they read it from the profile, e.g. ``steps = P.train_steps``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..config import PaLMConfig

__all__ = ["ENV_DEVICE", "ENV_PROFILE", "PROFILES", "T4", "Profile", "default_profile_name", "profile", "t4_plan"]

ENV_PROFILE = "PALMBOOK_PROFILE"
ENV_DEVICE = "PALMBOOK_DEVICE"
# Colab's free GPU: peak fp16 tensor-core FLOP/s (palmbook.flops.PEAK_FLOPS), usable memory, an assumed MFU.
T4 = dict(name="Tesla T4", peak_flops=65e12, memory_bytes=15e9, mfu=0.25)


@dataclass(frozen=True)
class Profile:
    """The sizes a chapter uses. Every field is a knob a chapter may read; none is required.

    Attributes:
        name: ``"smoke"``, ``"cpu"`` or ``"gpu"``.
        device: the torch device string chapters put models and tensors on (``"cpu"``, ``"cuda"``).
            ``smoke`` and ``cpu`` always use the CPU (so results do not depend on the machine);
            ``gpu`` uses CUDA when present. ``PALMBOOK_DEVICE`` overrides it (e.g. ``mps``, opt-in).
        preset: the :meth:`PaLMConfig.preset` name of the model a chapter builds and trains;
            :meth:`config` returns it (its ``vocab_size`` is the size of the vocabulary chapters train).
        seq_len: tokens per training or evaluation sequence (at most the preset's ``max_seq_len``).
        batch_size: sequences per optimiser step (and per evaluation batch).
        train_steps: optimiser steps of a chapter's training loop.
        eval_batches: batches averaged when a chapter measures a loss, a perplexity or an accuracy.
        n_samples: how many items a chapter draws or evaluates one at a time: generated samples, prompts,
            examples of a downstream task, points of a sweep.
        max_new_tokens: length of generated continuations.
        corpus_chars: how many characters of the training corpus a chapter reads (``None``: all of it).
        seed: the seed :func:`palmbook.book.setup` gives ``torch``, ``numpy`` and ``random``.
        timing_rounds: rounds of a chapter's interleaved timings (``palmbook.book.interleaved``: every timed call
            once per round, the median kept); ``smoke`` times one round, only to check that the cell runs.
    """

    name: str
    device: str
    preset: str
    seq_len: int
    batch_size: int
    train_steps: int
    eval_batches: int
    n_samples: int
    max_new_tokens: int
    corpus_chars: int | None
    seed: int = 0
    timing_rounds: int = 5

    def config(self, **overrides) -> PaLMConfig:
        """The model configuration of this profile: ``PaLMConfig.preset(self.preset, **overrides)``."""
        return PaLMConfig.preset(self.preset, **overrides)

    @property
    def tokens_per_step(self) -> int:
        """Tokens one optimiser step sees: ``batch_size * seq_len``."""
        return self.batch_size * self.seq_len

    def __str__(self) -> str:
        corpus = "all" if self.corpus_chars is None else f"{self.corpus_chars:,}"
        return (
            f"profile {self.name!r} on {self.device}: model {self.preset}, {self.train_steps} steps of "
            f"{self.batch_size} x {self.seq_len} tokens, {self.eval_batches} eval batches, "
            f"{self.n_samples} samples of {self.max_new_tokens} tokens, corpus chars {corpus}"
        )


# The device is filled in by profile(); everything else is fixed per profile.
PROFILES: dict[str, dict] = {
    "smoke": dict(
        preset="palm-tiny", seq_len=64, batch_size=8, train_steps=30, eval_batches=2,
        n_samples=2, max_new_tokens=16, corpus_chars=300_000, timing_rounds=1,
    ),
    "cpu": dict(
        preset="palm-mini", seq_len=128, batch_size=16, train_steps=400, eval_batches=20,
        n_samples=8, max_new_tokens=100, corpus_chars=None,
    ),
    "gpu": dict(
        preset="palm-small", seq_len=256, batch_size=64, train_steps=3000, eval_batches=50,
        n_samples=16, max_new_tokens=200, corpus_chars=None,
    ),
}  # fmt: skip


def default_profile_name() -> str:
    """``$PALMBOOK_PROFILE`` if set, else ``gpu`` when CUDA is available, else ``cpu``."""
    name = os.environ.get(ENV_PROFILE, "").strip().lower()
    if name:
        return name
    return "gpu" if torch.cuda.is_available() else "cpu"


def profile(name: str | None = None) -> Profile:
    """The settings of a run profile, without side effects (no seeding, no printing).

    Args:
        name: ``"smoke"``, ``"cpu"`` or ``"gpu"``; ``None`` reads ``$PALMBOOK_PROFILE`` (see the module docstring).

    Returns:
        A frozen :class:`Profile`. Its device is ``cuda`` only for the ``gpu`` profile on a machine with CUDA,
        unless ``$PALMBOOK_DEVICE`` names another one.
    """
    name = (name or default_profile_name()).strip().lower()
    if name not in PROFILES:
        raise ValueError(
            f"unknown profile {name!r}: set {ENV_PROFILE} to one of {', '.join(PROFILES)} (or leave it unset)"
        )
    device = os.environ.get(ENV_DEVICE, "").strip()
    if not device:
        device = "cuda" if name == "gpu" and torch.cuda.is_available() else "cpu"
    else:
        try:
            torch.device(device)
        except RuntimeError:
            raise ValueError(
                f"{ENV_DEVICE}={device!r} is not a torch device; use e.g. cpu, cuda, cuda:1 or mps"
            ) from None
    return Profile(name=name, device=device, **PROFILES[name])


def t4_plan(name: str = "gpu", mfu: float = T4["mfu"]) -> dict[str, float]:
    """Estimated training memory (bytes) and time (seconds) of profile ``name`` on a T4 at ``mfu``; see the table
    in this module's docstring. Keys: tokens (per step), memory_bytes, flops (whole run), seconds."""
    from ..flops import flops_per_token, memory_estimate, training_time

    p = PROFILES[name]
    config = PaLMConfig.preset(p["preset"])
    tokens = p["batch_size"] * p["seq_len"]
    per_token = flops_per_token(config, seq_len=p["seq_len"])
    memory = memory_estimate(config, optimizer="palm", weight_bytes=4, activation_bytes=2).total(tokens)
    total = p["train_steps"] * tokens
    return {
        "tokens": tokens,
        "memory_bytes": memory,
        "flops": total * per_token,
        "seconds": training_time(total, per_token, T4["peak_flops"], mfu),
    }
