"""Training: one :class:`Trainer` from a laptop CPU to many GPUs (PaLM §5 "Training Setup", §5.1).

    blocks (N, T+1) -> Batches (global batch, resumable) -> micro-batches (gradient accumulation)
      -> PaLM under autocast (bf16; fp16 + GradScaler on GPUs without bf16; fp32 on request)
      -> lm_loss (cross-entropy + z-loss 1e-4) -> backward -> global-norm clip 1.0
      -> loss-spike check (§5.1: roll back ~100 steps, skip ~200-500 batches)
      -> optimiser (PaLM's Adafactor-style or AdamW) -> lr schedule
      -> metrics.jsonl, progress bar, live plot -> evaluation, best model, checkpoints (atomic, bit-exact resume)

In a notebook::

    result = train(model, train_blocks, val_blocks, TrainConfig(steps=300, batch_size=16, out_dir="runs/a"))
    result.losses            # one per optimiser step

From a shell, the same through the CLI::

    palmbook train --preset palm-mini --steps 2000 --out-dir runs/mini           # one process
    palmbook train --out-dir runs/mini --resume                                  # continue after a stop

Scaling out is ``torchrun`` around the same command: never a home-made distributed layer. Each process runs one
:class:`Trainer`; ``batch_size`` stays the GLOBAL batch, split across processes, so a run gives the same result
on 1 or 8 processes (up to floating-point summation order)::

    torchrun --nproc_per_node 8 -m palmbook train --preset palm-1b --out-dir runs/1b                  # DDP
    torchrun --nproc_per_node 8 -m palmbook train --preset palm-1b --distributed fsdp --out-dir ...   # FSDP2
    # several machines: the same command on each, plus torchrun's rendezvous flags
    torchrun --nnodes 4 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST0:29500 --rdzv_id RUN \\
        -m palmbook train ... --out-dir /shared/runs/1b

``distributed="ddp"`` replicates the model (``DistributedDataParallel``); ``"fsdp"`` shards parameters, gradients
and optimiser state over the processes (``torch.distributed.fsdp.fully_shard``, FSDP2: one unit per block)
for models that do not fit one device. The backend is NCCL on GPUs and gloo on CPUs. Rank 0 alone writes logs
and checkpoints; every rank reads them back, so ``out_dir`` must be on a file system all machines share.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import signal
import statistics
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from .checkpoint import (
    CorruptCheckpoint,
    checkpoint_path,
    flatten_optimizer_state,
    list_checkpoints,
    load_tensors,
    read_checkpoint,
    unflatten_optimizer_state,
    write_checkpoint,
)
from .config import PaLMConfig
from .flops import flops_per_token, peak_flops_for
from .loss import LMLoss, lm_loss
from .model import PaLM
from .optim import LRSchedule, build_optimizer, make_scheduler

__all__ = [
    "Callback",
    "LMData",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "evaluate_lm",
    "load_metrics",
    "prepare_lm_data",
    "train",
]

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
OPTIMIZERS = ("palm", "adamw")
SCHEDULES = ("palm", "cosine", "constant")
DISTRIBUTED = ("auto", "none", "ddp", "fsdp")
DEFAULT_LR = {"palm": 1e-2, "adamw": 3e-4}  # palm: §5; adamw: a common choice for small GPT-style models


def _is_palm(model: nn.Module) -> bool:
    """A PaLM, possibly inside DDP (``.module``) or FSDP2 (a PaLM subclass): its forward takes ``targets``."""
    return isinstance(getattr(model, "module", model), PaLM)


def _loss_parts(model: nn.Module, x: Tensor, y: Tensor, z_loss: float) -> LMLoss:
    """The loss and its parts for inputs x and next tokens y: through PaLM's fused output layer + loss (no
    (B, T, V) logits held) when the model is a PaLM, through :func:`lm_loss` of its logits otherwise."""
    if _is_palm(model):
        return model(x, targets=y, z_loss=z_loss)
    return lm_loss(model(x), y, z_loss=z_loss, return_parts=True)


class TrainingDiverged(RuntimeError):
    """The loss kept spiking after ``max_rollbacks`` rollbacks: lower the lr or inspect the data."""


# ============================================================================================ configuration
@dataclass
class TrainConfig:
    """Everything that decides a training run (saved in every checkpoint).

    Batch and steps:
        steps: optimiser steps to reach (a resumed run continues up to this number).
        batch_size: GLOBAL sequences per optimiser step, over all processes (PaLM 540B: 512 -> 2048).
        micro_batch_size: sequences per forward/backward in one process; the local batch
            (batch_size / world_size) is accumulated from micro-batches of this size. None: no accumulation.
    Optimiser (§5):
        optimizer: ``"palm"`` (:class:`~palmbook.optim.PaLMAdafactor`: weight decay lr^2) or ``"adamw"``.
        lr: peak learning rate; None: 1e-2 for "palm" (the paper), 3e-4 for "adamw".
        schedule: ``"palm"`` (constant for ``constant_steps``, then 1/sqrt(step)), ``"cosine"`` (linear
            ``warmup_steps`` then cosine to ``min_lr``, default lr/10 over ``steps``) or ``"constant"``.
        weight_decay, betas: AdamW only.
        grad_clip: global gradient-norm clip (1.0 in the paper); None disables it (the norm is still logged).
        z_loss: coefficient of the z-loss (1e-4 in the paper).
    Numerics and speed:
        precision: ``"auto"`` (bf16 where the device supports it fast, fp16 + GradScaler on older GPUs, fp32 on
            CPUs without bf16 units), ``"bf16"``, ``"fp16"`` (CUDA only) or ``"fp32"``. Weights and optimiser
            state stay float32 in every mode (autocast).
        compile: wrap the model in ``torch.compile`` (opt-in: compiling takes a while).
        device: ``"auto"`` (the process's GPU under torchrun, else CUDA if present, else CPU), or a torch device.
        distributed: ``"auto"`` (DDP when launched by torchrun with several processes), ``"none"``, ``"ddp"``,
            ``"fsdp"``.
    Evaluation and checkpoints:
        eval_every: evaluate every this many steps (0: only at the end); eval_batches batches of
            eval_batch_size (default: the micro-batch) sequences from the start of the validation blocks.
        checkpoint_every: save every this many steps (0: only at the end and on a stop); needs out_dir.
        keep: how many recent checkpoints to keep (plus the one a spike would roll back to, and ``best/``).
        keep_best: save the weights with the lowest validation loss to ``out_dir/best``.
        early_stopping_patience: stop after this many evaluations without a lower validation loss (None: never).
        out_dir: where checkpoints, ``metrics.jsonl`` and ``best/`` go (None: nothing is written).
        seed: seeds the data order and torch's RNG (dropout).
    Loss spikes (§5.1):
        spike_factor: a step whose loss exceeds spike_factor x the median of the last spike_window steps is a
            spike (a non-finite loss always is). None disables detection.
        spike_rollback: restart from the newest checkpoint at least this many steps before the spike (paper ~100)
        spike_skip: then skip this many batches (paper: 200-500), so the batches around the spike are not seen.
        max_rollbacks: give up (:class:`TrainingDiverged`) after this many.
    Output:
        log_every: steps between metrics lines and progress-bar updates.
        progress: show a tqdm progress bar (rank 0).
        live_plot: a live loss curve in notebooks (None: when running in one).
        peak_flops: summed peak FLOP/s of the devices, for the MFU column (None: looked up for known GPUs).
    """

    steps: int = 1000
    batch_size: int = 32
    micro_batch_size: int | None = None
    optimizer: str = "palm"
    lr: float | None = None
    schedule: str = "palm"
    constant_steps: int = 10_000
    warmup_steps: int = 0
    min_lr: float | None = None
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0
    z_loss: float = 1e-4
    precision: str = "auto"
    compile: bool = False
    device: str = "auto"
    distributed: str = "auto"
    eval_every: int = 0
    eval_batches: int = 20
    eval_batch_size: int | None = None
    checkpoint_every: int = 0
    keep: int = 3
    keep_best: bool = True
    early_stopping_patience: int | None = None
    out_dir: str | None = None
    seed: int = 0
    spike_factor: float | None = 2.0
    spike_window: int = 50
    spike_rollback: int = 100
    spike_skip: int = 200
    max_rollbacks: int = 10
    log_every: int = 10
    progress: bool = True
    live_plot: bool | None = None
    peak_flops: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.betas, list):
            self.betas = tuple(self.betas)
        if self.out_dir is not None:
            self.out_dir = str(self.out_dir)
        self.validate()

    def validate(self) -> None:
        """Raise one ValueError naming the first bad field and how to fix it."""

        def positive_int(name: str, minimum: int = 1) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise ValueError(f"TrainConfig.{name} must be an integer >= {minimum}; got {name}={v!r}")

        for name in ("steps", "batch_size", "eval_batches", "keep", "spike_window", "log_every", "constant_steps"):
            positive_int(name)
        for name in (
            "warmup_steps",
            "eval_every",
            "checkpoint_every",
            "spike_rollback",
            "spike_skip",
            "seed",
            "max_rollbacks",
        ):
            positive_int(name, 0)
        for name in ("micro_batch_size", "eval_batch_size", "early_stopping_patience"):
            if getattr(self, name) is not None:
                positive_int(name)
        if self.micro_batch_size is not None and self.micro_batch_size > self.batch_size:
            raise ValueError(
                f"micro_batch_size={self.micro_batch_size} exceeds batch_size={self.batch_size}; "
                "the micro-batch is a part of the batch"
            )
        choices = (
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("precision", PRECISIONS),
            ("distributed", DISTRIBUTED),
        )
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig.{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        for name in ("lr", "min_lr", "grad_clip", "spike_factor", "peak_flops"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0):
                raise ValueError(f"TrainConfig.{name} must be a number > 0 or None; got {name}={v!r}")
        if self.spike_factor is not None and self.spike_factor <= 1:
            raise ValueError(f"spike_factor must be > 1 (e.g. 2.0: twice the recent median); got {self.spike_factor}")
        if not (isinstance(self.z_loss, (int, float)) and self.z_loss >= 0):
            raise ValueError(f"z_loss must be >= 0 (PaLM uses 1e-4); got {self.z_loss!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0; got {self.weight_decay!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), e.g. (0.9, 0.95); got {self.betas!r}")
        try:
            if self.device != "auto":
                torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(
                f"device must be 'auto' or a torch device such as cpu, cuda, cuda:1; got {self.device!r}"
            ) from None

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    def lr_schedule(self) -> LRSchedule:
        return LRSchedule(self.schedule, self.peak_lr, self.constant_steps, self.warmup_steps, self.steps, self.min_lr)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; see help(TrainConfig)")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        if not isinstance(data, dict):
            raise ValueError(f"a TrainConfig is a JSON object of fields; got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; valid fields are {sorted(known)}")
        return cls(**data)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no training config at {path}; write a JSON object of TrainConfig fields")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e})") from None
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


# ============================================================================================ results and hooks
@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` did in this call.

    history: one dict per optimiser step taken (step, loss, ce, z_loss, log_z, lr, grad_norm, tokens, ...).
    evals: one dict per evaluation (step, val_loss, val_ppl, val_nats_per_char, ...).
    events: spikes, rollbacks, checkpoints, resumes, stops, in order.
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    step: int = 0
    interrupted: str | None = None
    stopped_early: bool = False
    best_val_loss: float | None = None
    best_step: int | None = None
    out_dir: Path | None = None

    @property
    def losses(self) -> list[float]:
        """Training loss (cross-entropy + z-loss) of each step taken in this call."""
        return [r["loss"] for r in self.history]


class Callback:
    """Hooks into the training loop; override what you need (all are optional no-ops).

    on_batch(trainer, x, y) -> (x, y): see or replace a batch before it is used (e.g. corrupt one in a test).
    on_loss(trainer, loss) -> loss: see or replace each micro-batch's loss before backward.
    on_before_optimizer_step(trainer): gradients are accumulated, unscaled and clipped; the update comes next.
    on_step_end(trainer, record), on_eval(trainer, record), on_event(trainer, event).
    """

    def on_batch(self, trainer: Trainer, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return x, y

    def on_loss(self, trainer: Trainer, loss: Tensor) -> Tensor:
        return loss

    def on_before_optimizer_step(self, trainer: Trainer) -> None:
        pass

    def on_step_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        pass

    def on_eval(self, trainer: Trainer, record: dict[str, Any]) -> None:
        pass

    def on_event(self, trainer: Trainer, event: dict[str, Any]) -> None:
        pass


class SpikeDetector:
    """§5.1's loss spikes, detected as: loss > factor x median(last ``window`` losses), or a non-finite loss.

    The paper gives no rule (it watched the curves); this one never fires while the loss is falling, and its
    window is saved in checkpoints so a resumed run decides exactly as an uninterrupted one.
    """

    def __init__(self, factor: float | None, window: int) -> None:
        self.factor = factor
        self.history: deque[float] = deque(maxlen=window)

    def median(self) -> float | None:
        return statistics.median(self.history) if self.history else None

    def is_spike(self, loss: float) -> bool:
        if not math.isfinite(loss):
            return True
        if self.factor is None or len(self.history) < (self.history.maxlen or 0):
            return False
        return loss > self.factor * statistics.median(self.history)

    def update(self, loss: float) -> None:
        self.history.append(loss)


# ============================================================================================ evaluation
@torch.no_grad()
def evaluate_lm(
    model: nn.Module,
    blocks: Tensor,
    batch_size: int,
    max_batches: int | None = None,
    chars_per_token: float | Tensor | None = None,
    device: torch.device | str | None = None,
    autocast: contextlib.AbstractContextManager | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> dict[str, float]:
    """Validation loss of ``model`` on the first ``max_batches * batch_size`` rows of ``blocks`` (N, T+1).

    Returns val_loss (cross-entropy, nats per token, no z-loss), val_ppl, val_tokens and, with
    ``chars_per_token``, val_nats_per_char = total nats / total characters and val_bits_per_char. Per character,
    models with different tokenizers are comparable (per token they are not: a bigger vocabulary makes fewer,
    harder tokens). ``chars_per_token``: a float (characters / tokens of the evaluated text, e.g. of the whole
    validation split) or a (vocab_size,) tensor of characters per token id, summed over the targets evaluated.
    With several processes each takes every world_size-th row and the sums are all-reduced.
    """
    if not isinstance(blocks, Tensor) or blocks.dim() != 2 or blocks.shape[1] < 2:
        raise ValueError("validation blocks must be a LongTensor (N, T + 1), as palmbook.data.lm_blocks returns")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    n = blocks.shape[0] if max_batches is None else min(blocks.shape[0], max_batches * batch_size)
    n -= n % world_size  # every rank runs the same number of forwards (FSDP's collectives need that)
    if n == 0:
        raise ValueError(f"{blocks.shape[0]} validation blocks are too few for {world_size} process(es)")
    rows = blocks[:n][rank::world_size]
    table = chars_per_token.to(device) if isinstance(chars_per_token, Tensor) else None
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # nats, tokens, characters
    for start in range(0, rows.shape[0], batch_size):
        chunk = rows[start : start + batch_size].to(device)
        x, y = chunk[:, :-1], chunk[:, 1:]
        with autocast or contextlib.nullcontext():
            ce = _loss_parts(model, x, y, z_loss=0.0).ce
        tokens = y.numel()
        chars = table[y].sum().double() if table is not None else tokens * float(chars_per_token or 0.0)
        sums += torch.stack(
            [
                ce.double() * tokens,
                torch.tensor(float(tokens), device=device).double(),
                torch.as_tensor(chars, device=device).double(),
            ]
        )
    model.train(was_training)
    if world_size > 1:
        dist.all_reduce(sums)
    nats, tokens, chars = sums.tolist()
    out = {"val_loss": nats / tokens, "val_ppl": math.exp(min(nats / tokens, 700.0)), "val_tokens": int(tokens)}
    if chars_per_token is not None and chars > 0:
        out["val_nats_per_char"] = nats / chars
        out["val_bits_per_char"] = nats / chars / math.log(2)
    return out


# ============================================================================================ the trainer
class Trainer:
    """Train a :class:`~palmbook.PaLM` (or any module mapping (B, T) ids to (B, T, V) logits).

    Args:
        model: the model, on any device (it is moved to the trainer's device).
        config: a :class:`TrainConfig`.
        train_data: packed blocks, a LongTensor (N, T + 1) (see ``palmbook.data.lm_blocks``), or a
            ``palmbook.data.Batches`` built with this process's rank and world size.
        val_data: validation blocks (N, T + 1), or None.
        tokenizer: saved into every checkpoint and ``best/`` (an object with ``save(path)``), so a checkpoint
            directory is a complete model: ``PaLM.from_pretrained(d)`` + ``Tokenizer.load(d)``.
        chars_per_token: for the per-character validation loss (see :func:`evaluate_lm`).
        callbacks: :class:`Callback` objects.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        train_data: Any,
        val_data: Tensor | None = None,
        *,
        tokenizer: Any = None,
        chars_per_token: float | Tensor | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig; got {type(config).__name__}")
        config.validate()
        self.config = cfg = config
        self.tokenizer = tokenizer
        self.chars_per_token = chars_per_token
        self.callbacks = list(callbacks)
        self.rank, self.world_size, local_rank = _init_distributed(cfg)
        self.device = _pick_device(cfg.device, local_rank, self.world_size)
        self.precision = _resolve_precision(cfg.precision, self.device)
        self.mode = _resolve_mode(cfg.distributed, self.world_size)

        # ---- data
        from .data import Batches

        if isinstance(train_data, Tensor):
            self.batches = Batches(
                train_data, cfg.batch_size, seed=cfg.seed, shuffle=True, rank=self.rank, world_size=self.world_size
            )
        elif all(hasattr(train_data, a) for a in ("__next__", "state_dict", "load_state_dict", "skip")):
            self.batches = train_data
            if getattr(train_data, "batch_size", cfg.batch_size) != cfg.batch_size:
                raise ValueError(
                    f"the Batches have batch_size={train_data.batch_size} but TrainConfig.batch_size="
                    f"{cfg.batch_size}; make them equal (both are the global batch)"
                )
        else:
            raise TypeError(
                "train_data must be packed blocks, a LongTensor (N, T + 1) from palmbook.data.lm_blocks, or a "
                f"palmbook.data.Batches; got {type(train_data).__name__}"
            )
        if cfg.batch_size % self.world_size:
            raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the {self.world_size} processes")
        local = cfg.batch_size // self.world_size
        self.micro_batch_size = min(cfg.micro_batch_size or local, local)
        if local % self.micro_batch_size:
            raise ValueError(
                f"each of the {self.world_size} process(es) gets {local} sequences per step, which is not a "
                f"multiple of micro_batch_size={self.micro_batch_size}; pick a divisor of {local}"
            )
        if val_data is not None and (not isinstance(val_data, Tensor) or val_data.dim() != 2):
            raise TypeError("val_data must be validation blocks, a LongTensor (N, T + 1), or None")
        self.val_blocks = val_data

        # ---- model, optimiser, schedule
        torch.manual_seed(cfg.seed + self.rank)  # dropout; the weights are the caller's
        self.model = model.to(self.device)
        self.train_model = self._wrap(self.model)
        self.optimizer = build_optimizer(self.model, cfg.optimizer, cfg.peak_lr, cfg.weight_decay, cfg.betas)
        self.schedule = cfg.lr_schedule()
        self.scheduler = make_scheduler(self.optimizer, self.schedule)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

        # ---- progress state (all of it goes into checkpoints)
        self.step = 0  # optimiser updates done
        self.batches_seen = 0  # global batches drawn from the data, skipped ones included
        self.tokens_seen = 0
        self.spike = SpikeDetector(cfg.spike_factor, cfg.spike_window)
        self.rollbacks = 0
        self.best_val_loss = math.inf
        self.best_step: int | None = None
        self.evals_since_best = 0
        self._saved_step: int | None = None
        self._evaluated_step: int | None = None
        self._stop: str | None = None
        self._stop_agreed = False
        self._result = TrainResult()
        self.out_dir = Path(cfg.out_dir) if cfg.out_dir else None
        if self.out_dir is not None and self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self._flops_per_token = self._model_flops_per_token()
        self._peak = cfg.peak_flops or self._lookup_peak()

    # ------------------------------------------------------------------ set-up helpers
    def _wrap(self, model: nn.Module) -> nn.Module:
        """DDP or FSDP2 around the model when distributed, then ``torch.compile`` if asked."""
        wrapped: nn.Module = model
        if self.mode == "ddp":
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            # RoPE tables are buffers derived from the config, identical everywhere: no need to sync them each
            # forward. (torch >= 2.12 renamed the switch.)
            import inspect

            quiet = (
                "forward_sync_buffers"
                if "forward_sync_buffers" in inspect.signature(DDP).parameters
                else ("broadcast_buffers")
            )
            wrapped = DDP(model, device_ids=ids, **{quiet: False})
        elif self.mode == "fsdp":
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.fsdp import fully_shard

            with torch.no_grad():  # FSDP shards what each rank holds: start every rank from rank 0's weights
                for t in model.state_dict().values():
                    dist.broadcast(t, src=0)
            mesh = init_device_mesh(self.device.type, (self.world_size,))
            for block in getattr(model, "blocks", []):
                fully_shard(block, mesh=mesh)
            fully_shard(model, mesh=mesh)
        if self.config.compile:
            blocks = getattr(model, "blocks", None)
            if isinstance(blocks, nn.ModuleList):
                # Compile each block in place: PaLM.forward's input checks read values (.item()) and would break
                # the graph, and in-place compilation keeps parameter names (checkpoints) unchanged.
                for block in blocks:
                    block.compile()
            else:
                wrapped = torch.compile(wrapped)
        return wrapped

    def _model_flops_per_token(self) -> float | None:
        cfg = getattr(self.model, "config", None)
        if not isinstance(cfg, PaLMConfig):
            return None
        T = int(self.batches.blocks.shape[1]) - 1 if hasattr(self.batches, "blocks") else cfg.max_seq_len
        return flops_per_token(cfg, seq_len=T)

    def _lookup_peak(self) -> float | None:
        if self.device.type != "cuda":
            return None
        per_device = peak_flops_for(torch.cuda.get_device_name(self.device))
        return per_device * self.world_size if per_device else None

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _no_sync(self, last: bool) -> contextlib.AbstractContextManager:
        """Skip the gradient all-reduce on all but the last micro-batch (it would be repeated work)."""
        if self.mode == "ddp" and not last:
            module = getattr(self.train_model, "_orig_mod", self.train_model)
            return module.no_sync()
        if self.mode == "fsdp":
            self.model.set_requires_gradient_sync(last)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, Any] | None:
        """Draw one global batch, accumulate its gradients, clip, and update. Returns the step's record, or
        None when the step was a loss spike (handled by rolling back or skipping the update)."""
        cfg = self.config
        self.train_model.train()
        x, y = next(self.batches)
        self.batches_seen += 1
        for cb in self.callbacks:
            x, y = cb.on_batch(self, x, y)
        pin = self.device.type == "cuda"
        x = x.to(self.device, non_blocking=pin)
        y = y.to(self.device, non_blocking=pin)
        start = time.perf_counter()
        xs, ys = x.split(self.micro_batch_size), y.split(self.micro_batch_size)
        sums = torch.zeros(4, device=self.device)  # loss, ce, z-loss, log Z: averaged over micro-batches
        for i, (xm, ym) in enumerate(zip(xs, ys, strict=True)):
            weight = xm.shape[0] / x.shape[0]  # equal-sized micro-batches: the mean of means is the mean
            with self._no_sync(i == len(xs) - 1), self._autocast():
                parts = _loss_parts(self.train_model, xm, ym, cfg.z_loss)
                loss = parts.loss
                for cb in self.callbacks:
                    loss = cb.on_loss(self, loss)
            self.scaler.scale(loss * weight).backward()
            sums += torch.stack([loss.detach().float(), parts.ce, parts.z_loss, parts.log_z]) * weight
        self.scaler.unscale_(self.optimizer)
        max_norm = cfg.grad_clip if cfg.grad_clip is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        if hasattr(grad_norm, "full_tensor"):  # FSDP2: a DTensor
            grad_norm = grad_norm.full_tensor()
        stop = torch.tensor([1.0 if self._stop else 0.0], device=self.device)
        packet = torch.cat([sums, stop])
        if self.world_size > 1:  # every rank must see the same loss to take the same spike decision
            dist.all_reduce(packet)
            packet[:4] /= self.world_size
        loss_v, ce_v, z_v, logz_v, stop_v = packet.tolist()
        self._stop_agreed = stop_v > 0
        grad_norm_v = float(grad_norm)
        for cb in self.callbacks:
            cb.on_before_optimizer_step(self)
        bad_grads = not math.isfinite(grad_norm_v) and self.precision != "fp16"  # fp16: the scaler skips them
        if self.spike.is_spike(loss_v) or bad_grads:
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler.is_enabled():
                self.scaler.update()  # closes this step's unscale_ bookkeeping
            self._handle_spike(loss_v)
            return None
        lr = self.optimizer.param_groups[0]["lr"]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        self.spike.update(loss_v)
        step_tokens = x.numel() * self.world_size
        self.tokens_seen += step_tokens
        seconds = time.perf_counter() - start  # .tolist() above synchronised the device
        record = {
            "step": self.step, "loss": loss_v, "ce": ce_v, "z_loss": z_v, "log_z": logz_v, "lr": lr,
            "grad_norm": grad_norm_v, "tokens": self.tokens_seen, "seconds": seconds,
            "tokens_per_s": step_tokens / max(seconds, 1e-9),
        }  # fmt: skip
        if self._peak and self._flops_per_token:
            record["mfu"] = record["tokens_per_s"] * self._flops_per_token / self._peak
        return record

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: bool | str | os.PathLike = False) -> TrainResult:
        """Train until ``config.steps``, a stop signal, or early stopping.

        resume: False (start here), True (continue from the newest valid checkpoint in out_dir, if any), or a
            checkpoint directory. SIGINT / SIGTERM save a checkpoint and return (``result.interrupted``);
            a second SIGINT interrupts at once.
        """
        cfg = self.config
        result = self._result = TrainResult(out_dir=self.out_dir)
        if resume:
            self._resume(resume)
        start_step = self.step
        with self._signal_handlers(), _progress(cfg, self.rank, start_step) as bar:
            plot = _LivePlot.maybe(cfg.live_plot) if self.rank == 0 else None
            self._event(
                {
                    "event": "start",
                    "step": self.step,
                    "world_size": self.world_size,
                    "mode": self.mode,
                    "precision": self.precision,
                    "device": str(self.device),
                }
            )
            while self.step < cfg.steps:
                if self._should_stop():
                    break
                record = self.train_step()
                if record is None:
                    bar.n = self.step
                    bar.refresh()
                    continue
                result.history.append(record)
                for cb in self.callbacks:
                    cb.on_step_end(self, record)
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    self._write_metrics(record)
                    bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}", refresh=False)
                    if plot:
                        plot.add("train", self.step, record["loss"])
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    ev = self.evaluate_and_track()
                    if plot and ev:
                        plot.add("validation", self.step, ev["val_loss"])
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                if result.stopped_early:
                    break
            if self._should_stop():
                result.interrupted = self._stop or "signal"
                self._event({"event": "stop", "step": self.step, "reason": result.interrupted})
            elif not result.stopped_early and self.val_blocks is not None and self._evaluated_step != self.step:
                self.evaluate_and_track()
            if self.out_dir is not None and self._saved_step != self.step and self.step > 0:
                self.save_checkpoint()
            if plot:
                plot.flush(final=True)
        result.step = self.step
        result.best_val_loss = None if math.isinf(self.best_val_loss) else self.best_val_loss
        result.best_step = self.best_step
        return result

    def _should_stop(self) -> bool:
        return self._stop is not None if self.world_size == 1 else self._stop_agreed

    def request_stop(self, reason: str = "request") -> None:
        """Ask the loop to save and return after the current step (what SIGINT / SIGTERM do)."""
        self._stop = self._stop or reason

    @contextlib.contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be set in the main thread
            return

        def handler(signum: int, frame: Any) -> None:
            name = signal.Signals(signum).name
            if self._stop is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C: stop now, without saving
            self._stop = name
            if self.rank == 0:
                _say(f"{name}: stopping after this step and saving a checkpoint (Ctrl-C again to abort)")

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, float] | None:
        """Validation metrics now (see :func:`evaluate_lm`), or None without validation data."""
        if self.val_blocks is None:
            return None
        model = self.model if self.mode == "ddp" else self.train_model
        return evaluate_lm(
            model, self.val_blocks, self.config.eval_batch_size or self.micro_batch_size, self.config.eval_batches,
            self.chars_per_token, self.device, self._autocast(), self.rank, self.world_size,
        )  # fmt: skip

    def evaluate_and_track(self) -> dict[str, Any] | None:
        """Evaluate, log, keep the best weights and count evaluations without improvement (early stopping)."""
        metrics = self.evaluate()
        if metrics is None:
            return None
        self._evaluated_step = self.step
        record = {"step": self.step, **metrics}
        improved = metrics["val_loss"] < self.best_val_loss
        if improved:
            self.best_val_loss, self.best_step, self.evals_since_best = metrics["val_loss"], self.step, 0
            if self.config.keep_best:
                self._save_best(record)
        else:
            self.evals_since_best += 1
        record["best"] = improved
        self._result.evals.append(record)
        self._write_metrics(record)
        for cb in self.callbacks:
            cb.on_eval(self, record)
        patience = self.config.early_stopping_patience
        if patience is not None and self.evals_since_best >= patience:
            self._result.stopped_early = True
            self._event(
                {
                    "event": "early_stop",
                    "step": self.step,
                    "best_step": self.best_step,
                    "best_val_loss": self.best_val_loss,
                }
            )
        return record

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_root(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / "checkpoints"

    def _full_model_state(self) -> dict[str, Tensor]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        # Collective under FSDP (gathers the shards); rank 0 receives full CPU tensors.
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        state = get_model_state_dict(self.model, options=options)
        return {k: v.detach().contiguous().cpu() for k, v in state.items()}

    def _full_optimizer_state(self) -> dict[str, Any]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_optimizer_state_dict(self.model, self.optimizer, options=options)

    def _model_files(self, state: dict[str, Tensor]) -> dict[str, Any]:
        from safetensors.torch import save_file

        files: dict[str, Any] = {
            "model.safetensors": lambda p: save_file(state, p, metadata={"format": "pt", "palmbook": "1"}),
        }
        config = getattr(self.model, "config", None)
        if isinstance(config, PaLMConfig):
            text = json.dumps(config.to_dict(), indent=2) + "\n"
            files["config.json"] = lambda p: Path(p).write_text(text, encoding="utf-8")
        if self.tokenizer is not None:
            files["tokenizer.model"] = lambda p: self.tokenizer.save(p)
        return files

    def save_checkpoint(self) -> Path | None:
        """Write ``out_dir/checkpoints/step_<step>`` (every rank must call it; rank 0 writes)."""
        if self.checkpoint_root is None:
            return None
        model_state = self._full_model_state()
        optim_state = self._full_optimizer_state()
        rng_tensors, rng_json = _gather_rng(self.world_size)
        path = checkpoint_path(self.checkpoint_root, self.step)
        if self.rank == 0:
            tensors, optim_meta = flatten_optimizer_state(optim_state)
            tensors.update(rng_tensors)
            from safetensors.torch import save_file

            files = self._model_files(model_state)
            files["optimizer.safetensors"] = lambda p: save_file(tensors, p, metadata={"palmbook": "1"})
            meta = {
                "step": self.step,
                "batches_seen": self.batches_seen,
                "tokens_seen": self.tokens_seen,
                "train_config": self.config.to_dict(),
                "model_config": _config_dict(self.model),
                "optimizer": optim_meta,
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "data": self.batches.state_dict(),
                "rng": rng_json,
                "spike_window": list(self.spike.history),
                "rollbacks": self.rollbacks,
                "best_val_loss": None if math.isinf(self.best_val_loss) else self.best_val_loss,
                "best_step": self.best_step,
                "evals_since_best": self.evals_since_best,
                "world_size": self.world_size,
            }
            write_checkpoint(path, files, meta)
            self._prune_checkpoints()
        self._barrier()
        self._saved_step = self.step
        self._event({"event": "checkpoint", "step": self.step, "path": str(path)}, quiet=True)
        return path

    def _save_best(self, record: dict[str, Any]) -> None:
        if self.out_dir is None:
            return
        state = self._full_model_state()
        if self.rank == 0:
            write_checkpoint(self.out_dir / "best", self._model_files(state), {"kind": "best", **record})
        self._barrier()

    def _prune_checkpoints(self) -> None:
        """Keep the newest ``keep`` checkpoints, and the newest one at least ``spike_rollback`` steps old
        (the one a loss spike would roll back to)."""
        found = list_checkpoints(self.checkpoint_root)
        keep = {p for _, p in found[-self.config.keep :]}
        if self.config.spike_factor is not None:
            old = [p for s, p in found if s <= self.step - self.config.spike_rollback]
            if old:
                keep.add(old[-1])
        import shutil

        for _, p in found:
            if p not in keep:
                shutil.rmtree(p, ignore_errors=True)

    def _valid_checkpoints(self) -> list[tuple[int, Path]]:
        """Checkpoints that pass verification, oldest first; damaged ones are reported and passed over."""
        good = []
        for step, path in list_checkpoints(self.checkpoint_root) if self.checkpoint_root else []:
            try:
                read_checkpoint(path)
            except (CorruptCheckpoint, FileNotFoundError) as e:
                self._event({"event": "corrupt_checkpoint", "path": str(path), "error": str(e)})
                continue
            good.append((step, path))
        return good

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore everything saved by :meth:`save_checkpoint`: weights, optimiser, schedule, scaler, data
        position, RNG states, spike window and best-so-far (``rollbacks`` is kept: it counts this run)."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        path = Path(path)
        meta = read_checkpoint(path)
        options = StateDictOptions(full_state_dict=True)
        set_model_state_dict(self.model, load_tensors(path, "model.safetensors"), options=options)
        tensors = load_tensors(path, "optimizer.safetensors")
        optim_state = unflatten_optimizer_state(tensors, meta["optimizer"])
        set_optimizer_state_dict(self.model, self.optimizer, optim_state, options=options)
        self.scheduler.load_state_dict(meta["scheduler"])
        if meta["scaler"]:
            self.scaler.load_state_dict(meta["scaler"])
        self.batches.load_state_dict(meta["data"])
        _set_rng(tensors, meta["rng"], self.rank)
        self.step = int(meta["step"])
        self.batches_seen = int(meta["batches_seen"])
        self.tokens_seen = int(meta["tokens_seen"])
        self.spike.history.clear()
        self.spike.history.extend(meta["spike_window"])
        best = meta["best_val_loss"]
        self.best_val_loss = math.inf if best is None else float(best)
        self.best_step = meta["best_step"]
        self.evals_since_best = int(meta["evals_since_best"])
        self._saved_step = self.step

    def _resume(self, resume: bool | str | os.PathLike) -> None:
        if resume is True:
            candidates = self._valid_checkpoints()
            if not candidates:
                self._event({"event": "fresh_start", "reason": f"no valid checkpoint under {self.checkpoint_root}"})
                return
            path = candidates[-1][1]
        else:
            path = Path(resume)
        meta = read_checkpoint(path)
        self.load_checkpoint(path)
        self.rollbacks = int(meta.get("rollbacks", 0))
        saved = meta["train_config"]
        changed = {k: (saved.get(k), v) for k, v in self.config.to_dict().items() if saved.get(k) != v}
        self._event(
            {
                "event": "resume",
                "step": self.step,
                "path": str(path),
                "changed_config": {k: list(v) for k, v in changed.items()},
            }
        )

    # ------------------------------------------------------------------ loss spikes (§5.1)
    def _handle_spike(self, loss: float) -> None:
        cfg = self.config
        spike_step = self.step + 1
        self._event(
            {
                "event": "spike",
                "step": spike_step,
                "loss": loss,
                "median": self.spike.median(),
                "batches_seen": self.batches_seen,
            }
        )
        self.rollbacks += 1
        if self.rollbacks > cfg.max_rollbacks:
            raise TrainingDiverged(
                f"the loss spiked {self.rollbacks} times (last at step {spike_step}, loss {loss:.4g}); "
                "lower the learning rate, raise max_rollbacks, or inspect the data around that step"
            )
        candidates = [(s, p) for s, p in self._valid_checkpoints() if s < spike_step]
        if not candidates:
            # No checkpoint yet (or no out_dir): drop this batch's update and carry on, the cheap half of the cure.
            self._event({"event": "skip_update", "step": spike_step, "reason": "no checkpoint to roll back to"})
            return
        far_enough = [(s, p) for s, p in candidates if s <= spike_step - cfg.spike_rollback]
        _, target = far_enough[-1] if far_enough else candidates[0]
        self.load_checkpoint(target)
        self.batches.skip(cfg.spike_skip)
        self.batches_seen += cfg.spike_skip
        self._event(
            {
                "event": "rollback",
                "spike_step": spike_step,
                "to_step": self.step,
                "path": str(target),
                "skipped_batches": cfg.spike_skip,
                "batches_seen": self.batches_seen,
                "data": self.batches.state_dict(),
            }
        )

    # ------------------------------------------------------------------ logging
    def _write_metrics(self, record: dict[str, Any]) -> None:
        if self.rank != 0 or self.out_dir is None:
            return
        with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _event(self, event: dict[str, Any], quiet: bool = False) -> None:
        event = {**event, "time": time.time()}
        self._result.events.append(event)
        self._write_metrics(event)
        for cb in self.callbacks:
            cb.on_event(self, event)
        if not quiet and self.rank == 0 and event["event"] not in ("start",):
            details = ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("event", "time", "data"))
            _say(f"[{event['event']}] {details}")

    def _barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def train(
    model: nn.Module,
    train_data: Any,
    val_data: Tensor | None = None,
    config: TrainConfig | None = None,
    *,
    resume: bool | str | os.PathLike = False,
    tokenizer: Any = None,
    chars_per_token: float | Tensor | None = None,
    callbacks: Sequence[Callback] = (),
    **overrides: Any,
) -> TrainResult:
    """Train in one call, for notebooks: ``train(model, blocks, val_blocks, steps=200, batch_size=16)``.

    ``overrides`` are :class:`TrainConfig` fields applied on top of ``config``.
    """
    config = (config or TrainConfig()).replace(**overrides) if overrides else (config or TrainConfig())
    trainer = Trainer(
        model, config, train_data, val_data, tokenizer=tokenizer, chars_per_token=chars_per_token, callbacks=callbacks
    )
    return trainer.fit(resume=resume)


def load_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` as one timeline: step and evaluation records that a later resume or
    rollback superseded (steps after the checkpoint it went back to) are dropped; events are kept."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics log at {path}; it is written to <out_dir>/metrics.jsonl")
    out: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        back_to = None
        if rec.get("event") == "rollback":
            back_to = rec["to_step"]
        elif rec.get("event") == "resume":
            back_to = rec["step"]
        if back_to is not None:
            out = [r for r in out if "event" in r or r.get("step", 0) <= back_to]
        out.append(rec)
    return out


# ============================================================================================ helpers
def _say(message: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(message)


def _config_dict(model: nn.Module) -> dict[str, Any] | None:
    config = getattr(model, "config", None)
    return config.to_dict() if isinstance(config, PaLMConfig) else None


def _init_distributed(cfg: TrainConfig) -> tuple[int, int, int]:
    """(rank, world_size, local_rank); joins the process group torchrun describes in the environment."""
    if cfg.distributed == "none":
        return 0, 1, 0  # every process trains alone
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if cfg.distributed in ("ddp", "fsdp") and world < 2 and not dist.is_initialized():
        raise ValueError(
            f"distributed={cfg.distributed!r} needs several processes: launch with "
            "torchrun --nproc_per_node N ... (or use distributed='auto')"
        )
    if world > 1 and not dist.is_initialized():
        use_cuda = torch.cuda.is_available() if cfg.device == "auto" else str(cfg.device).startswith("cuda")
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def cleanup_distributed() -> None:
    """Leave the process group (call once at the end of a torchrun script)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def _pick_device(name: str, local_rank: int, world_size: int) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but CUDA is not available here; use device='cpu' or 'auto'")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
    if device.type == "mps":
        import warnings

        warnings.warn("MPS is opt-in and less tested: some kernels fall back to the CPU", stacklevel=3)
    return device


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has bf16 matrix units (AVX512-BF16 or AMX): there bf16 autocast trains ~2x faster."""
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(torch.cpu, probe, None)
        if fn is not None and fn():
            return True
    return False


def _resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision='fp16' (with a GradScaler) needs a CUDA GPU; use 'bf16' or 'fp32' here")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


def _resolve_mode(distributed: str, world_size: int) -> str:
    if distributed == "auto":
        return "ddp" if world_size > 1 else "none"
    return distributed if world_size > 1 else "none"


def _gather_rng(world_size: int) -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
    """Every rank's RNG states: torch's as tensors ("rng/<rank>/torch"), python's and numpy's as JSON."""
    mine_t: dict[str, Tensor] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            mine_t[f"cuda{i}"] = s
    py = random.getstate()
    npst = np.random.get_state()
    mine_j = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [npst[0], npst[1].tolist(), int(npst[2]), int(npst[3]), float(npst[4])],
    }
    everyone = [(mine_t, mine_j)]
    if world_size > 1:
        everyone = [None] * world_size
        dist.all_gather_object(everyone, ({k: v.cpu() for k, v in mine_t.items()}, mine_j))
    tensors = {f"rng/{r}/{k}": v for r, (t, _) in enumerate(everyone) for k, v in t.items()}
    return tensors, [j for _, j in everyone]


def _set_rng(tensors: dict[str, Tensor], rng_json: list[dict[str, Any]], rank: int) -> None:
    r = rank if rank < len(rng_json) else 0  # a run resumed on more processes: the extra ranks reuse rank 0's
    torch.set_rng_state(tensors[f"rng/{r}/torch"])
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            if f"rng/{r}/cuda{i}" in tensors:
                torch.cuda.set_rng_state(tensors[f"rng/{r}/cuda{i}"], i)
    py = rng_json[r]["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = rng_json[r]["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))


@contextlib.contextmanager
def _progress(cfg: TrainConfig, rank: int, initial: int) -> Iterator[Any]:
    from tqdm.auto import tqdm

    bar = tqdm(
        total=cfg.steps,
        initial=initial,
        desc="train",
        unit="step",
        dynamic_ncols=True,
        disable=not cfg.progress or rank != 0,
    )
    try:
        yield bar
    finally:
        bar.close()


class _LivePlot:
    """A loss curve that redraws while a notebook trains. Optional and cheap: at most one redraw a second.

    A plotly FigureWidget when the widget stack (ipywidgets + anywidget) is there; otherwise one display output
    updated in place with plotly's own mimetype, and drawn a last time through the notebook's default plotly
    renderer (the book's, Colab's), so a saved notebook keeps the final curve.
    """

    def __init__(self) -> None:
        import plotly.graph_objects as go
        from IPython.display import display

        fig = go.Figure()
        fig.update_layout(xaxis_title="step", yaxis_title="loss (nats/token)", height=320)
        fig.add_scatter(x=[], y=[], name="train", mode="lines")
        fig.add_scatter(x=[], y=[], name="validation", mode="lines+markers")
        self.points: dict[str, tuple[list[float], list[float]]] = {"train": ([], []), "validation": ([], [])}
        self.last = 0.0
        self.handle = None
        try:
            self.fig = go.FigureWidget(fig)
            display(self.fig)
        except Exception:  # no anywidget: update a plain display output instead
            self.fig = fig
            self.handle = display(self._bundle(final=False), raw=True, display_id=True)

    def _bundle(self, final: bool) -> dict[str, Any]:
        if final:
            import plotly.io as pio

            with contextlib.suppress(Exception):
                return pio.renderers._build_mime_bundle(self.fig.to_dict())  # what fig.show() would display
        # IPython's display-id updates do not reach plotly's own _ipython_display_, hence raw bundles.
        return {"application/vnd.plotly.v1+json": self.fig.to_plotly_json(), "text/plain": "<loss curve>"}

    @classmethod
    def maybe(cls, wanted: bool | None) -> _LivePlot | None:
        if wanted is False or (wanted is None and not _in_notebook()):
            return None
        try:
            return cls()
        except Exception:  # a plot must never stop training
            return None

    def add(self, name: str, step: int, value: float) -> None:
        xs, ys = self.points[name]
        xs.append(step)
        ys.append(value)
        if time.monotonic() - self.last > 1.0:
            self.flush()

    def flush(self, final: bool = False) -> None:
        self.last = time.monotonic()
        with contextlib.suppress(Exception):
            for trace in self.fig.data:
                trace.x, trace.y = self.points[trace.name]
            if self.handle is not None:
                self.handle.update(self._bundle(final), raw=True)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


# ============================================================================================ data for a run
@dataclass
class LMData:
    """What a training run reads: the tokenizer, train / validation blocks (N, T + 1), and the validation
    text's characters per token (for the per-character loss)."""

    tokenizer: Any
    train: Tensor
    validation: Tensor | None
    chars_per_token: float | None


def prepare_lm_data(
    source: Any = "shakespeare",
    *,
    seq_len: int,
    tokenizer: Any = None,
    vocab_size: int | None = None,
    sample_by: str = "document",
    cache_dir: str | os.PathLike | None = None,
) -> LMData:
    """Load a corpus, train a tokenizer on its train split unless one is given, and pack both splits into
    blocks of ``seq_len + 1`` tokens (documents joined by the end-of-document token, §5).

    ``source`` is :func:`palmbook.data.load_corpus`'s ("shakespeare", a path, "hub:owner/name").
    ``chars_per_token`` = characters / tokens of the whole validation split (end-of-document tokens counted).
    """
    from .data import load_corpus, pack, tokenize
    from .tokenizer import Tokenizer

    corpus = load_corpus(source, sample_by=sample_by)
    if tokenizer is None:
        if vocab_size is None:
            raise ValueError("give a tokenizer or the vocab_size of one to train")
        tokenizer = Tokenizer.train(corpus["train"]["text"], vocab_size=vocab_size)
    train_ids = tokenize(corpus["train"], tokenizer, cache_dir=cache_dir)
    train_blocks = pack(train_ids, seq_len + 1, tokenizer.eod_id)
    val_blocks, cpt = None, None
    if "validation" in corpus and len(corpus["validation"]):
        val_ids = tokenize(corpus["validation"], tokenizer, cache_dir=cache_dir)
        texts = [t for t in corpus["validation"]["text"] if t]
        n_tokens = sum(len(ids) + 1 for ids in val_ids["input_ids"] if len(ids))
        cpt = sum(len(t) for t in texts) / max(n_tokens, 1)
        try:
            val_blocks = pack(val_ids, seq_len + 1, tokenizer.eod_id)
        except ValueError as e:
            raise ValueError(f"validation split of {source!r}: {e}") from None
    return LMData(tokenizer, train_blocks, val_blocks, cpt)


# ============================================================================================ command line
_CHOICES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "precision": PRECISIONS, "distributed": DISTRIBUTED}
RUN_FILE = "run.json"


def add_cli(subparsers: Any) -> None:
    """Register ``palmbook train`` (called by :mod:`palmbook.cli`)."""
    import argparse

    p = subparsers.add_parser(
        "train",
        help="train a PaLM on a corpus (one process, or many under torchrun)",
        description="Train a PaLM. Sizes default to the profile (PALMBOOK_PROFILE); every TrainConfig field is a "
        "flag. Under torchrun the same command trains with DDP (or --distributed fsdp).",
    )
    p.add_argument(
        "--out-dir",
        dest="out_dir",
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="where checkpoints, metrics.jsonl, best/ and tokenizer.model go (required)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out-dir from its newest valid checkpoint"
    )
    p.add_argument("--preset", help=f"model size: {', '.join(PaLMConfig.presets())} (default: the profile's)")
    p.add_argument("--model-config", metavar="JSON", help="a PaLMConfig JSON file instead of --preset")
    p.add_argument("--seq-len", type=int, metavar="T", help="training sequence length (default: the profile's)")
    p.add_argument("--vocab-size", type=int, metavar="V", help="vocabulary size of the model and its tokenizer")
    p.add_argument("--dropout", type=float, help="residual dropout (0 in pre-training, §5)")
    p.add_argument("--config", metavar="JSON", help="a TrainConfig JSON file; explicit flags override it")
    p.add_argument(
        "--data",
        default="shakespeare",
        help="corpus: 'shakespeare' (default, offline), a text file or directory, or hub:owner/name",
    )
    p.add_argument(
        "--sample-by",
        default="document",
        choices=("document", "paragraph", "line"),
        help="for text files: one training document per file, paragraph or line",
    )
    p.add_argument("--tokenizer", metavar="PATH", help="a tokenizer.model to use (default: train one on the data)")
    g = p.add_argument_group("training options (TrainConfig fields; see help(palmbook.TrainConfig))")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "out_dir":
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type).replace(" | None", "")
        kw: dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS, help=f"(default: {f.default!r})")
        if kind == "bool":
            g.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif kind.startswith("tuple"):
            g.add_argument(flag, type=float, nargs=2, metavar=("B1", "B2"), **kw)
        else:
            convert = {"int": int, "float": float, "str": str}[kind]
            if "None" in str(f.type):  # "--grad-clip none" turns a feature off
                convert = _or_none(convert)
                kw["help"] += "; 'none' to unset"
            g.add_argument(flag, type=convert, choices=_CHOICES.get(f.name), **kw)
    p.set_defaults(func=run_cli)


def _or_none(convert: Any) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() == "none" else convert(text)

    parse.__name__ = convert.__name__  # argparse names the type in its error message
    return parse


def run_cli(args: Any) -> int:
    """``palmbook train``: build (or reload) the model, data and config, then train. Returns the exit code."""
    from .io import atomic_write
    from .profiles import profile
    from .tokenizer import Tokenizer

    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    if "out_dir" not in flags:
        raise ValueError("palmbook train needs --out-dir DIR (checkpoints, logs and the tokenizer go there)")
    out = Path(flags["out_dir"])
    run_path = out / RUN_FILE
    prof = profile()
    command = list(getattr(args, "argv", sys.argv))
    previous: dict[str, Any] = {}
    if args.resume and run_path.is_file():
        previous = json.loads(run_path.read_text(encoding="utf-8"))
        model_config = PaLMConfig.from_dict(previous["model_config"])
        base = previous["train_config"]
        source, seq_len, sample_by = previous["data"], previous["seq_len"], previous.get("sample_by", "document")
        tokenizer_path: Path | None = out / "tokenizer.model"
    else:
        if args.resume:
            raise FileNotFoundError(f"nothing to resume: {run_path} does not exist; drop --resume to start a new run")
        if args.model_config:
            model_config = PaLMConfig.load(args.model_config)
        else:
            model_config = PaLMConfig.preset(args.preset or prof.preset)
        for name in ("vocab_size", "dropout"):
            if getattr(args, name) is not None:
                model_config = model_config.replace(**{name: getattr(args, name)})
        seq_len = args.seq_len or min(prof.seq_len, model_config.max_seq_len)
        if seq_len > model_config.max_seq_len:
            raise ValueError(f"--seq-len {seq_len} exceeds the model's max_seq_len={model_config.max_seq_len}")
        steps = flags.get("steps", prof.train_steps)
        base = dict(steps=steps, batch_size=prof.batch_size, eval_batches=prof.eval_batches, seed=prof.seed,
                    eval_every=max(1, steps // 10), checkpoint_every=max(1, steps // 10))  # fmt: skip
        if args.config:
            base.update(TrainConfig.load(args.config).to_dict())
        source, sample_by = args.data, args.sample_by
        tokenizer_path = Path(args.tokenizer) if args.tokenizer else None
        if tokenizer_path is not None and not tokenizer_path.exists():
            raise FileNotFoundError(f"no tokenizer at {tokenizer_path}")
    config = TrainConfig.from_dict({**base, **flags, "out_dir": str(out)})

    rank, world, _ = _init_distributed(config)  # before the data: rank 0 trains the tokenizer, the rest wait
    try:
        data = None
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            tok = Tokenizer.load(tokenizer_path) if tokenizer_path is not None else None
            data = prepare_lm_data(source, seq_len=seq_len, tokenizer=tok, vocab_size=model_config.vocab_size,
                                   sample_by=sample_by)  # fmt: skip
            data.tokenizer.save(out / "tokenizer.model")
            if data.tokenizer.vocab_size > model_config.vocab_size:
                raise ValueError(
                    f"the tokenizer has {data.tokenizer.vocab_size} pieces but the model only "
                    f"{model_config.vocab_size}; use a model config with vocab_size >= {data.tokenizer.vocab_size}"
                )
            run = {"model_config": model_config.to_dict(), "train_config": config.to_dict(), "data": source,
                   "seq_len": seq_len, "sample_by": sample_by, "argv": command}  # fmt: skip
            if previous:  # a resume keeps the command that started the run and records each resume after it
                run["argv"] = previous.get("argv", [])
                run["resumed_with"] = [*previous.get("resumed_with", []), command]
            text = json.dumps(run, indent=2) + "\n"
            atomic_write(run_path, lambda p: Path(p).write_text(text, encoding="utf-8"))
        if world > 1:
            dist.barrier()
        if data is None:  # other ranks: the tokenizer and tokenized corpus are now on disk and in the cache
            data = prepare_lm_data(source, seq_len=seq_len, tokenizer=Tokenizer.load(out / "tokenizer.model"),
                                   sample_by=sample_by)  # fmt: skip
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        model = PaLM(model_config)
        trainer = Trainer(model, config, data.train, data.validation, tokenizer=data.tokenizer,
                          chars_per_token=data.chars_per_token)  # fmt: skip
        if rank == 0:
            n = model.num_parameters()
            _say(
                f"palmbook train: {model_config} ({n:,} parameters), {data.train.shape[0]:,} training blocks of "
                f"{seq_len} tokens, {world} process(es), {trainer.precision}, mode {trainer.mode} -> {out}"
            )
        result = trainer.fit(resume=args.resume)
        if rank == 0:
            summary = f"step {result.step}"
            if result.best_val_loss is not None:
                summary += f", best val loss {result.best_val_loss:.4f} at step {result.best_step}"
            if result.interrupted:
                _say(
                    f"stopped by {result.interrupted} at {summary}; continue with: palmbook train --out-dir {out} "
                    "--resume"
                )
            else:
                _say(f"done: {summary}; model in {out / 'best' if result.best_step else out / 'checkpoints'}")
        return {"SIGINT": 130, "SIGTERM": 143}.get(result.interrupted or "", 0)
    finally:
        cleanup_distributed()
