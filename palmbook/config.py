"""The two configurations, validated dataclasses that round-trip through JSON.

    PaLMConfig    the model's hyper-parameters, with the paper's sizes and the book's (presets)
    TrainConfig   everything that decides a training run (:mod:`palmbook.train` reads it)

Every number in the three paper presets comes from Table 1 of Chowdhery et al. (2022),
"PaLM: Scaling Language Modeling with Pathways" (arXiv 2204.02311). The vocabulary is 256,000
SentencePiece pieces (§2, "Vocabulary"); that figure reproduces the paper's parameter counts exactly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .optim import LRSchedule
from .runtime import DISTRIBUTED_MODES, PRECISIONS

__all__ = ["OPTIMIZERS", "PRESETS", "RESUME_FIXED", "SCHEDULES", "UI_FIELDS", "PaLMConfig", "TrainConfig"]

OPTIMIZERS = ("palm", "adamw")
SCHEDULES = ("palm", "cosine", "constant")
# How a run is shown, not what it computes: never saved into checkpoints, never compared when a run resumes.
UI_FIELDS = ("progress",)
# TrainConfig fields a resumed run cannot change: they decide what is trained (optimiser state layout, data order
# and dropout RNG, the unit batch the data position counts, the validation set best/ is judged on).
RESUME_FIXED = ("optimizer", "seed", "batch_size", "eval_batches", "eval_batch_size")
DEFAULT_LR = {"palm": 1e-2, "adamw": 3e-4}  # palm: §5; adamw: a common choice for small GPT-style models


@dataclass(frozen=True)
class PaLMConfig:
    """The shape of a PaLM model.

    Attributes:
        vocab_size: number of tokens V; the embedding is (V, d_model) and is shared with the output layer.
        d_model: width of the residual stream ("model dimension" in Table 1).
        n_layers: number of parallel blocks.
        n_heads: number of query heads. Keys and values always have ONE head (multi-query attention, §2).
        head_dim: size h of each head. Its own field because PaLM does not tie it to d_model:
            at 540B, 48 heads x 256 = 12,288 != 18,432 = d_model.
            ``None`` means ``d_model // n_heads``.
        d_ff: hidden width of the SwiGLU feed-forward layer. ``None`` means 4 * d_model, the paper's choice.
        max_seq_len: longest sequence the model accepts (2048 in the paper, §5). Sets the RoPE table
            and the size of the preallocated KV cache.
        rope_base: the base of RoPE's frequencies. The paper does not state it; 10,000 is RoFormer's value.
        norm_eps: epsilon of LayerNorm.
        dropout: dropout on the residual branches. 0 in pre-training, 0.1 in most fine-tuning (§5).
    """

    vocab_size: int = 256_000
    d_model: int = 4096
    n_layers: int = 32
    n_heads: int = 16
    head_dim: int | None = None
    d_ff: int | None = None
    max_seq_len: int = 2048
    rope_base: float = 10_000.0
    norm_eps: float = 1e-5
    dropout: float = 0.0
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_seq_len"):
            _check_positive_int(name, getattr(self, name))
        if self.head_dim is None:
            if self.d_model % self.n_heads:
                raise ValueError(
                    f"head_dim is not set and d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                    "pass head_dim explicitly (PaLM uses head_dim=256 whatever d_model is)"
                )
            object.__setattr__(self, "head_dim", self.d_model // self.n_heads)
        _check_positive_int("head_dim", self.head_dim)
        if self.head_dim % 2:
            raise ValueError(
                f"head_dim must be even, because RoPE rotates pairs of dimensions; got head_dim={self.head_dim}"
            )
        if self.d_ff is None:
            object.__setattr__(self, "d_ff", 4 * self.d_model)  # §2: d_ff = 4 * d_model
        _check_positive_int("d_ff", self.d_ff)
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be at least 2 to predict anything; got {self.vocab_size}")
        if not (isinstance(self.rope_base, (int, float)) and 1 < self.rope_base < math.inf):
            raise ValueError(f"rope_base must be a number > 1 (10000 is standard); got {self.rope_base!r}")
        if not (isinstance(self.norm_eps, (int, float)) and 0 < self.norm_eps < 1):
            raise ValueError(f"norm_eps must be in (0, 1), e.g. 1e-5; got {self.norm_eps!r}")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise ValueError(
                f"dropout must be in [0, 1): 0.0 for pre-training, 0.1 for fine-tuning; got {self.dropout!r}"
            )

    # ---- derived sizes
    @property
    def qkv_dim(self) -> int:
        """Width of the attention part of the fused input projection: H*h queries + one key + one value head."""
        return self.n_heads * self.head_dim + 2 * self.head_dim

    @property
    def fused_dim(self) -> int:
        """Width of the fused input projection: [queries | key | value | SwiGLU gate | SwiGLU up]."""
        return self.qkv_dim + 2 * self.d_ff

    def num_parameters(self, include_norms: bool = True) -> int:
        """Parameters of a model of this shape, the shared embedding counted once.

        ``include_norms=False`` counts only dense kernels and the embedding, as the paper's Table 1 does
        (the LayerNorm scales add about 0.0004% at 540B).
        """
        d, h, hh, f = self.d_model, self.n_heads, self.head_dim, self.d_ff
        per_block = d * self.fused_dim + h * hh * d + f * d  # in-projection, attention out, feed-forward out
        total = self.vocab_size * d + self.n_layers * per_block
        if include_norms:
            total += (self.n_layers + 1) * d  # one LayerNorm scale per block, plus the final one
        return total

    # ---- presets and (de)serialisation
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> PaLMConfig:
        """A named configuration: the paper's ``palm-8b``, ``palm-62b``, ``palm-540b`` or one of the book's sizes.

        Keyword arguments override fields, e.g. ``PaLMConfig.preset("palm-tiny", vocab_size=512)``.
        """
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], "name": name, **overrides})

    @staticmethod
    def presets() -> list[str]:
        """Names accepted by :meth:`preset`."""
        return list(PRESETS)

    def replace(self, **changes: Any) -> PaLMConfig:
        """A copy with some fields changed (validated again).

        Derived fields follow what they derive from: a ``d_ff`` equal to 4 x the old ``d_model`` and a
        ``head_dim`` equal to the old ``d_model // n_heads`` are derived again from the new values unless given
        (``replace(d_model=128)`` of a 64-wide config gives d_ff 512, not a stale 256).
        """
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown PaLMConfig field(s) {unknown}; see help(PaLMConfig)")
        if "d_ff" not in changes and "d_model" in changes and self.d_ff == 4 * self.d_model:
            changes["d_ff"] = None
        shape_changed = "d_model" in changes or "n_heads" in changes
        if "head_dim" not in changes and shape_changed and self.head_dim * self.n_heads == self.d_model:
            changes["head_dim"] = None
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PaLMConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown PaLMConfig field(s) {unknown}; valid fields are {sorted(known)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> PaLMConfig:
        path = Path(path)
        data = _read_json(
            path,
            missing=f"no config file at {path}; expected the config.json written by save_pretrained",
            fix="; re-save it with PaLMConfig.save",
        )
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object of PaLMConfig fields")
        return cls.from_dict(data)

    def __str__(self) -> str:
        return (
            f"PaLMConfig({self.name}: V={self.vocab_size}, d={self.d_model}, L={self.n_layers}, "
            f"H={self.n_heads}x{self.head_dim}, d_ff={self.d_ff}, T={self.max_seq_len})"
        )


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer; got {name}={value!r}")


# Table 1 of the paper (d_ff = 4 * d_model and head size 256 in all three), plus the book's sizes.
PRESETS: dict[str, dict[str, Any]] = {
    "palm-8b": dict(vocab_size=256_000, d_model=4096, n_layers=32, n_heads=16, head_dim=256, max_seq_len=2048),
    "palm-62b": dict(vocab_size=256_000, d_model=8192, n_layers=64, n_heads=32, head_dim=256, max_seq_len=2048),
    "palm-540b": dict(vocab_size=256_000, d_model=18432, n_layers=118, n_heads=48, head_dim=256, max_seq_len=2048),
    # The book's sizes. "tiny" runs every test and the smoke profile in seconds; "small" is the reference
    # shape of the benchmark; "350m" and "1b" are for one GPU (head size 128 suits flash attention).
    "palm-tiny": dict(vocab_size=1024, d_model=64, n_layers=2, n_heads=4, head_dim=16, max_seq_len=128),
    "palm-mini": dict(vocab_size=4096, d_model=256, n_layers=4, n_heads=4, head_dim=64, max_seq_len=256),
    "palm-small": dict(vocab_size=8192, d_model=384, n_layers=6, n_heads=6, head_dim=64, max_seq_len=256),
    "palm-350m": dict(vocab_size=32768, d_model=1024, n_layers=24, n_heads=8, head_dim=128, max_seq_len=2048),
    "palm-1b": dict(vocab_size=32768, d_model=2048, n_layers=16, n_heads=16, head_dim=128, max_seq_len=2048),
}


# ---- training
@dataclass
class TrainConfig:
    """Everything that decides a training run (saved in every checkpoint, except the display's :data:`UI_FIELDS`).

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
        progress: show a tqdm progress bar (rank 0). (A live loss curve in a notebook is a callback:
            ``train(..., callbacks=[palmbook.viz.LivePlot()])``.)
        peak_flops: summed peak FLOP/s of the devices, for the MFU column (None: looked up for known GPUs).
    Batch-size schedule (§5: 512 sequences, 1024 from step 50k, 2048 from step 115k):
        batch_schedule: ((start_step, global_batch), ...), first start 0, starts increasing, every size a
            multiple of ``batch_size`` (the unit drawn from the data): step t accumulates
            :meth:`batch_units` (t) unit batches. The data stream does not depend on it, so a run resumes
            exactly across a change. None: every step is ``batch_size``. CLI: ``--batch-schedule 0:8,200:16``.

    What ``resume`` may change: :data:`RESUME_FIXED` fields are refused (they change what is trained); every
    other field takes effect from the next step (steps, lr and schedule, cadences, spike handling, display).
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
    peak_flops: float | None = None
    batch_schedule: tuple[tuple[int, int], ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.betas, list):
            self.betas = tuple(self.betas)
        if isinstance(self.batch_schedule, list):  # from JSON
            self.batch_schedule = tuple(tuple(e) if isinstance(e, list) else e for e in self.batch_schedule)
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
            ("distributed", DISTRIBUTED_MODES),
        )
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig.{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        for name in ("lr", "min_lr", "grad_clip", "spike_factor", "peak_flops"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf):
                raise ValueError(f"TrainConfig.{name} must be a finite number > 0 or None; got {name}={v!r}")
        if self.seed >= 2**63:  # torch.manual_seed and numpy's generators take at most 64 bits
            raise ValueError(f"TrainConfig.seed must be below 2**63; got seed={self.seed}")
        if self.min_lr is not None and self.min_lr > self.peak_lr:
            raise ValueError(
                f"min_lr={self.min_lr} exceeds the peak lr {self.peak_lr}: a cosine schedule would rise instead of "
                "decay; give a min_lr below --lr (default lr/10; only --schedule cosine uses it)"
            )
        if self.spike_factor is not None and self.spike_factor <= 1:
            raise ValueError(f"spike_factor must be > 1 (e.g. 2.0: twice the recent median); got {self.spike_factor}")
        if not (isinstance(self.z_loss, (int, float)) and 0 <= self.z_loss < math.inf):
            raise ValueError(f"z_loss must be a finite number >= 0 (PaLM uses 1e-4); got {self.z_loss!r}")
        if not (isinstance(self.weight_decay, (int, float)) and 0 <= self.weight_decay < math.inf):
            raise ValueError(f"weight_decay must be a finite number >= 0; got {self.weight_decay!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), e.g. (0.9, 0.95); got {self.betas!r}")
        self._validate_batch_schedule()
        try:
            if self.device != "auto":
                torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(
                f"device must be 'auto' or a torch device such as cpu, cuda, cuda:1; got {self.device!r}"
            ) from None

    def _validate_batch_schedule(self) -> None:
        sched = self.batch_schedule
        if sched is None:
            return
        example = f"e.g. ((0, {self.batch_size}), (1000, {2 * self.batch_size}))"
        ok = isinstance(sched, tuple) and len(sched) > 0
        ok = ok and all(
            isinstance(e, tuple) and len(e) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in e)
            for e in sched
        )
        if not ok:
            raise ValueError(
                f"batch_schedule must be (start_step, global_batch) integer pairs, {example}; got {sched!r}"
            )
        starts = [s for s, _ in sched]
        if starts[0] != 0 or sorted(set(starts)) != starts:
            raise ValueError(f"batch_schedule's start steps must begin at 0 and increase, {example}; got {starts}")
        for start, size in sched:
            if size < self.batch_size or size % self.batch_size:
                raise ValueError(
                    f"batch_schedule size {size} (from step {start}) must be a multiple of batch_size="
                    f"{self.batch_size}, the unit batch drawn from the data; {example}"
                )

    def batch_units(self, step: int) -> int:
        """Unit batches (of ``batch_size``) the optimiser step after ``step`` updates draws and accumulates."""
        if self.batch_schedule is None:
            return 1
        size = [size for start, size in self.batch_schedule if start <= step][-1]
        return size // self.batch_size

    def resume_conflicts(self, saved: dict[str, Any], step: int) -> list[str]:
        """Messages for the fields of this config that a resume at ``step`` cannot change from ``saved`` (the
        checkpoint's ``train_config``): :data:`RESUME_FIXED`, and batch_schedule entries at or before ``step``."""
        out = []
        for name in RESUME_FIXED:
            if name in saved and saved[name] != getattr(self, name):
                out.append(f"{name} (the run has {saved[name]!r}, now {getattr(self, name)!r})")
        old = [tuple(e) for e in saved.get("batch_schedule") or []]
        new = [tuple(e) for e in self.batch_schedule or []]
        if [e for e in old if e[0] <= step] != [e for e in new if e[0] <= step] and (old or new):
            out.append(f"batch_schedule entries at or before step {step} (the run has {old}, now {new})")
        return out

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
        if self.batch_schedule is not None:
            d["batch_schedule"] = [list(e) for e in self.batch_schedule]
        return d

    def run_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without the display's :data:`UI_FIELDS`: what checkpoints save and a resume compares."""
        return {k: v for k, v in self.to_dict().items() if k not in UI_FIELDS}

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
        return cls.from_dict(
            _read_json(path, missing=f"no training config at {path}; write a JSON object of TrainConfig fields")
        )

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


# ---- reading a config file
def _read_json(path: Path, *, missing: str, fix: str = "") -> Any:
    """The JSON in ``path``; FileNotFoundError(``missing``) or one ValueError naming the file (and ``fix``)."""
    if not path.is_file():
        raise FileNotFoundError(missing)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}){fix}") from None
