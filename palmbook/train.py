"""Training: one :class:`Trainer` from a laptop CPU to many GPUs (PaLM §5 "Training Setup", §5.1).

    blocks (N, T+1) -> Batches (global batch, resumable) -> micro-batches (gradient accumulation)
      -> PaLM under autocast (bf16; fp16 + GradScaler on GPUs without bf16; fp32 on request)
      -> lm_loss (cross-entropy + z-loss 1e-4) -> backward -> global-norm clip 1.0
      -> loss-spike check (§5.1: roll back ~100 steps, skip ~200-500 batches)
      -> optimiser (PaLM's Adafactor-style or AdamW) -> lr schedule
      -> metrics.jsonl, progress bar, callbacks (a notebook's live plot: palmbook.viz.LivePlot)
      -> evaluation, best model, checkpoints (atomic, bit-exact resume)

In a notebook::

    result = train(model, train_blocks, val_blocks, TrainConfig(steps=300, batch_size=16, out_dir="runs/a"))
    result.losses            # one per optimiser step

From a shell, ``palmbook train`` (:mod:`palmbook.cli.train`, which also shows the ``torchrun`` commands).

Scaling out is ``torchrun`` around the same code: never a home-made distributed layer. Each process runs one
:class:`Trainer`; ``batch_size`` stays the GLOBAL batch, split across processes, so a run gives the same result
on 1 or 8 processes (up to floating-point summation order). ``distributed="ddp"`` replicates the model
(``DistributedDataParallel``); ``"fsdp"`` shards parameters, gradients and optimiser state over the processes
(``torch.distributed.fsdp.fully_shard``, FSDP2: one unit per block) for models that do not fit one device. Rank 0
alone writes logs and checkpoints; every rank reads them back, so ``out_dir`` must be on a shared file system.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from .checkpoint import (
    capture_training_state,
    load_training_checkpoint,
    read_training_checkpoint,
    valid_checkpoints,
    weights_files,
    write_checkpoint,
    write_training_checkpoint,
)
from .config import PaLMConfig, TrainConfig
from .data import Batches, as_batches
from .evaluate import evaluate_lm, lm_loss_parts
from .flops import devices_peak_flops, flops_per_token
from .optim import build_optimizer, build_scheduler, restart_scheduler
from .rundir import BEST_DIR, Prepared, RunDirectory, RunDirectoryError, append_record, load_metrics
from .runtime import autocast, init_distributed, pick_device, resolve_distributed_mode, resolve_precision
from .train_hooks import Callback, SpikeDetector, TrainingDiverged, TrainResult

__all__ = [
    "Callback",
    "SpikeDetector",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "load_metrics",
    "train",
]


# ---- the trainer
class Trainer:
    """Train a :class:`~palmbook.PaLM` (or any module mapping (B, T) ids to (B, T, V) logits).

    Args:
        model: the model, on any device (it is moved to the trainer's device).
        config: a :class:`TrainConfig`.
        train_data: packed blocks, a LongTensor (N, T + 1) (see ``palmbook.data.lm_blocks``), or a
            :class:`~palmbook.data.Batches` built with this process's rank and world size.
        val_data: validation blocks (N, T + 1), or None.
        tokenizer: saved into every checkpoint and ``best/`` (an object with ``save(path)``), so a checkpoint
            directory is a complete model: ``PaLM.from_pretrained(d)`` + ``Tokenizer.load(d)``.
        chars_per_token: for the per-character validation loss (see :func:`evaluate_lm`).
        callbacks: :class:`Callback` objects (e.g. ``palmbook.viz.LivePlot()``, a notebook's live loss curve).
        run_dir, prepared: an already locked and prepared :class:`~palmbook.rundir.RunDirectory` for
            ``config.out_dir`` (``palmbook train`` takes it before writing anything); by default :meth:`fit`
            locks and prepares ``out_dir`` itself and holds it until it returns.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        train_data: Tensor | Batches,
        val_data: Tensor | None = None,
        *,
        tokenizer: Any = None,
        chars_per_token: float | Tensor | None = None,
        callbacks: Sequence[Callback] = (),
        run_dir: RunDirectory | None = None,
        prepared: Prepared | None = None,
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig; got {type(config).__name__}")
        config.validate()
        self.config = cfg = config
        self.tokenizer = tokenizer
        self.chars_per_token = chars_per_token
        self.callbacks = list(callbacks)
        self.rank, self.world_size, local_rank = init_distributed(cfg.distributed, cfg.device)
        self.device = pick_device(cfg.device, local_rank, self.world_size)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.mode = resolve_distributed_mode(cfg.distributed, self.world_size)

        # ---- data
        self.batches = as_batches(train_data, cfg.batch_size, seed=cfg.seed, rank=self.rank, world_size=self.world_size)
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
        self.scheduler = build_scheduler(self.optimizer, self.schedule)
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
        self.run_dir, self._prepared = run_dir, prepared
        self._vouched: set[int] = set()  # checkpoint steps this run wrote or verified: the only ones pruning deletes
        self._pending_skip: list[int] | None = None  # [at, to]: a rollback's skipped data window (unit batches)
        self._repair_log = True
        model_config = getattr(self.model, "config", None)
        seq_len = int(self.batches.blocks.shape[1]) - 1
        self._flops_per_token = flops_per_token(model_config, seq_len) if isinstance(model_config, PaLMConfig) else None
        self._peak = cfg.peak_flops or devices_peak_flops(self.device, self.world_size)

    # ---- set-up helpers
    def _wrap(self, model: nn.Module) -> nn.Module:
        """DDP or FSDP2 around the model when distributed, then ``torch.compile`` if asked."""
        wrapped: nn.Module = model
        # Imported here: only torchrun runs need them, and torch builds without distributed support lack them.
        if self.mode == "ddp":
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            # RoPE tables are buffers derived from the config, identical everywhere: no need to sync them each
            # forward. (torch >= 2.12 renamed the switch.)
            renamed = "forward_sync_buffers" in inspect.signature(DDP).parameters
            quiet = "forward_sync_buffers" if renamed else "broadcast_buffers"
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

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.precision)

    def _no_sync(self, last: bool) -> contextlib.AbstractContextManager:
        """Skip the gradient all-reduce on all but the last micro-batch (it would be repeated work)."""
        if self.mode == "ddp" and not last:
            module = getattr(self.train_model, "_orig_mod", self.train_model)
            return module.no_sync()
        if self.mode == "fsdp":
            self.model.set_requires_gradient_sync(last)
        return contextlib.nullcontext()

    # ---- one step
    def train_step(self) -> dict[str, Any] | None:
        """Draw one global batch, accumulate its gradients, clip, and update. Returns the step's record, or
        None when the step was a loss spike (handled by rolling back or skipping the update)."""
        cfg = self.config
        self.train_model.train()
        x, y = self._draw(cfg.batch_units(self.step))
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
                parts = lm_loss_parts(self.train_model, xm, ym, cfg.z_loss)
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

    def _draw(self, units: int) -> tuple[Tensor, Tensor]:
        """``units`` unit batches, concatenated (a batch-size schedule's step), jumping over a rollback's window."""
        xs, ys = [], []
        for _ in range(units):
            if self._pending_skip is not None and self.batches_seen >= self._pending_skip[0]:
                to = self._pending_skip[1]
                self.batches.skip(to - self.batches_seen)
                self.batches_seen, self._pending_skip = to, None
            x, y = next(self.batches)
            self.batches_seen += 1
            xs.append(x)
            ys.append(y)
        return (xs[0], ys[0]) if units == 1 else (torch.cat(xs), torch.cat(ys))

    # ---- the loop
    def fit(self, resume: bool | str | os.PathLike = False, overwrite: bool = False) -> TrainResult:
        """Train until ``config.steps``, a stop signal, or early stopping.

        resume: False (a new run: ``out_dir`` must be empty unless ``overwrite``), True (continue from the newest
            valid checkpoint in out_dir; raises :class:`~palmbook.rundir.NothingToResume` when there is none,
            deleting nothing), or a checkpoint directory. SIGINT / SIGTERM save a checkpoint and return
            (``result.interrupted``); a second SIGINT interrupts at once.
        overwrite: delete the previous run's files in ``out_dir`` (checkpoints, best/, logs, run.json) first.
        ``out_dir`` is locked for the whole call: a second run on it fails at once naming this one.
        """
        if resume and overwrite:
            raise ValueError("resume and overwrite exclude each other: resume continues the run, overwrite deletes it")
        if resume is True and self.out_dir is None:
            raise ValueError("resume=True needs config.out_dir (the run directory to continue)")
        owned = None
        if self.rank == 0 and self.out_dir is not None and self.run_dir is None:
            owned = self.run_dir = RunDirectory(self.out_dir, command=sys.argv, say=_say).acquire()
        try:
            return self._fit(resume, overwrite)
        finally:
            if owned is not None:
                owned.release()
                self.run_dir, self._prepared = None, None

    def _open_run(self, resume: bool | str | os.PathLike, overwrite: bool) -> Path | None:
        """Prepare out_dir (rank 0) and agree on the checkpoint to resume from (every rank); None: start."""
        error, latest = None, None
        if self.rank == 0 and self.run_dir is not None:
            try:
                if self._prepared is None:
                    mode = "resume" if resume is True else "overwrite" if overwrite else "fresh"
                    self._prepared = self.run_dir.prepare(mode, validate=read_training_checkpoint)
                    if mode == "fresh":
                        self.run_dir.root.mkdir(parents=True, exist_ok=True)
                self._vouched = {s for s, _ in self._prepared.valid}
                for _, path, reason in self._prepared.damaged:
                    self._event("corrupt_checkpoint", path=str(path), error=reason)
                latest = self._prepared.latest
            except RunDirectoryError as e:
                error = e
        if self.world_size > 1:
            box = [None if error is None else str(error), None if latest is None else str(latest)]
            dist.broadcast_object_list(box, src=0)
            if box[0] is not None and error is None:
                raise RunDirectoryError(box[0])
            latest = None if box[1] is None else Path(box[1])
        if error is not None:
            raise error
        if resume is True:
            return latest
        return Path(resume) if resume else None

    def _fit(self, resume: bool | str | os.PathLike, overwrite: bool) -> TrainResult:
        cfg = self.config
        result = self._result = TrainResult(out_dir=self.out_dir)
        start_from = self._open_run(resume, overwrite)
        if start_from is not None:
            self._resume(start_from)
        start_step = self.step
        with self._signal_handlers(), _progress(cfg, self.rank, start_step) as bar:
            facts = {"world_size": self.world_size, "mode": self.mode, "precision": self.precision}
            self._event("start", step=self.step, device=str(self.device), **facts)
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
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    self.evaluate_and_track()
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                if result.stopped_early:
                    break
            if self._should_stop():
                result.interrupted = self._stop or "signal"
                self._event("stop", step=self.step, reason=result.interrupted)
            elif not result.stopped_early and self.val_blocks is not None and self._evaluated_step != self.step:
                self.evaluate_and_track()
            if (
                self.out_dir is not None
                and self._saved_step != self.step
                and self.step > 0
                and self.step != cfg.steps + 1
            ):
                self.save_checkpoint()
            for cb in self.callbacks:
                cb.on_fit_end(self, result)
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

    # ---- evaluation
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
            self._event("early_stop", step=self.step, best_step=self.best_step, best_val_loss=self.best_val_loss)
        return record

    # ---- checkpoints
    @property
    def checkpoint_root(self) -> Path | None:
        return None if self.out_dir is None else RunDirectory(self.out_dir).checkpoints

    def save_checkpoint(self) -> Path | None:
        """Write ``out_dir/checkpoints/step_<step>`` (every rank must call it; rank 0 writes)."""
        if self.checkpoint_root is None:
            return None
        state = capture_training_state(self.model, self.optimizer, self.world_size)
        path = RunDirectory(self.out_dir).checkpoint_dir(self.step)
        if self.rank == 0:
            write_training_checkpoint(path, self.model, state, self._progress_state(), self.tokenizer)
            self._vouched.add(self.step)
            protect = []  # the checkpoint a loss spike now would roll back to
            if self.config.spike_factor is not None:
                protect = [s for s in sorted(self._vouched) if s <= self.step - self.config.spike_rollback][-1:]
            if self.run_dir is not None:
                self.run_dir.prune(self.config.keep, self._vouched, protect=protect)
        self._barrier()
        self._saved_step = self.step
        self._event("checkpoint", quiet=True, step=self.step, path=str(path))
        return path

    def _progress_state(self) -> dict[str, Any]:
        """The trainer's own state for ``trainer.json``: where the run is and what it has learnt about itself."""
        config = getattr(self.model, "config", None)
        return {
            "step": self.step,
            "batches_seen": self.batches_seen,
            "tokens_seen": self.tokens_seen,
            "train_config": self.config.run_dict(),
            "model_config": config.to_dict() if isinstance(config, PaLMConfig) else None,
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "data": self.batches.state_dict(),
            "spike_window": list(self.spike.history),
            "rollbacks": self.rollbacks,
            "best_val_loss": None if math.isinf(self.best_val_loss) else self.best_val_loss,
            "best_step": self.best_step,
            "evals_since_best": self.evals_since_best,
            "world_size": self.world_size,
            "pending_skip": self._pending_skip,
        }

    def _save_best(self, record: dict[str, Any]) -> None:
        if self.out_dir is None:
            return
        state = capture_training_state(self.model, self.optimizer, self.world_size)
        if self.rank == 0:
            files = weights_files(self.model, state.model, self.tokenizer)
            write_checkpoint(self.out_dir / BEST_DIR, files, {"kind": "best", **record})
        self._barrier()

    def _valid_checkpoints(self) -> list[tuple[int, Path]]:
        """Checkpoints that pass verification, oldest first; damaged ones are reported and passed over."""

        def report(path: Path, error: Exception) -> None:
            self._event("corrupt_checkpoint", path=str(path), error=str(error))

        return valid_checkpoints(self.checkpoint_root, on_corrupt=report)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore everything saved by :meth:`save_checkpoint`: weights, optimiser, schedule, scaler, data
        position, RNG states, spike window and best-so-far (``rollbacks`` is kept: it counts this run)."""
        try:
            meta = load_training_checkpoint(path, self.model, self.optimizer, self.rank)
        except (RuntimeError, KeyError) as e:  # a checkpoint of another model shape or optimiser
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ValueError(
                f"checkpoint {path} does not fit this model and optimiser ({first}); resume with the run's own "
                "model config and optimizer, or start a new run with another out_dir"
            ) from None
        self._apply_config_changes(meta["train_config"])
        self.scheduler = restart_scheduler(self.optimizer, self.schedule, int(meta["step"]))
        if meta["scaler"] and self.scaler.is_enabled():
            self.scaler.load_state_dict(meta["scaler"])
        self.batches.load_state_dict(meta["data"])
        self.step = int(meta["step"])
        self.batches_seen = int(meta["batches_seen"])
        self.tokens_seen = int(meta["tokens_seen"])
        self.spike.history.clear()
        self.spike.history.extend(meta["spike_window"])
        best = meta["best_val_loss"]
        self.best_val_loss = math.inf if best is None else float(best)
        self.best_step = meta["best_step"]
        self.evals_since_best = int(meta["evals_since_best"])
        self._pending_skip = meta.get("pending_skip")
        self._saved_step = self.step

    def _apply_config_changes(self, saved: dict[str, Any]) -> None:
        """After the optimiser state is loaded (with the run's old hyper-parameters): refuse what a resume
        cannot change, and put this config's weight decay and betas into the param groups that had the old."""
        conflicts = self.config.resume_conflicts(saved, self.step)
        if conflicts:
            raise ValueError(
                f"a resumed run cannot change {'; '.join(conflicts)}: they decide what is trained; keep the run's "
                "values, or start a new run with another out_dir"
            )
        for name in ("weight_decay", "betas"):
            old, new = saved.get(name), getattr(self.config, name)
            old = tuple(old) if isinstance(old, list) else old
            for group in self.optimizer.param_groups:
                value = tuple(group[name]) if isinstance(group.get(name), list) else group.get(name)
                if name in group and value == old and old != new:
                    group[name] = new

    def _resume(self, path: Path) -> None:
        meta = read_training_checkpoint(path)
        self.load_checkpoint(path)
        self.rollbacks = int(meta.get("rollbacks", 0))
        saved = meta["train_config"]
        changed = {k: (saved.get(k), v) for k, v in self.config.run_dict().items() if saved.get(k) != v}
        self._event("resume", step=self.step, path=str(path), changed_config={k: list(v) for k, v in changed.items()})

    # ---- loss spikes (§5.1)
    def _handle_spike(self, loss: float) -> None:
        cfg = self.config
        spike_step = self.step + 1
        self._event("spike", step=spike_step, loss=loss, median=self.spike.median(), batches_seen=self.batches_seen)
        self.rollbacks += 1
        if self.rollbacks > cfg.max_rollbacks:
            raise TrainingDiverged(
                f"the loss spiked {self.rollbacks} times (last at step {spike_step}, loss {loss:.4g}); "
                "lower the learning rate, raise max_rollbacks, or inspect the data around that step"
            )
        candidates = [(s, p) for s, p in self._valid_checkpoints() if s < spike_step]
        if not candidates:
            # No checkpoint yet (or no out_dir): drop this batch's update and carry on, the cheap half of the cure.
            self._event("skip_update", step=spike_step, reason="no checkpoint to roll back to")
            return
        far_enough = [(s, p) for s, p in candidates if s <= spike_step - cfg.spike_rollback]
        _, target = far_enough[-1] if far_enough else candidates[0]
        spike_batch = self.batches_seen  # the spiking step drew unit batches [.. , spike_batch)
        self.load_checkpoint(target)
        # Skip the batches around the spike, [s, e), which always holds the spiking step's: batches from the
        # checkpoint up to s are replayed (as if from a checkpoint at s), then the stream jumps to e.
        s = max(self.batches_seen, spike_batch - cfg.spike_rollback * cfg.batch_units(spike_step - 1))
        e = max(s + cfg.spike_skip, spike_batch)
        self._pending_skip = [s, e]
        self._event("rollback", spike_step=spike_step, to_step=self.step, path=str(target), skip_batches=[s, e])

    # ---- logging
    def _write_metrics(self, record: dict[str, Any]) -> None:
        if self.rank != 0 or self.out_dir is None:
            return
        append_record(RunDirectory(self.out_dir).metrics_file, record, repair=self._repair_log)
        self._repair_log = False

    def _event(self, kind: str, quiet: bool = False, **fields: Any) -> None:
        """Record an event (start, spike, rollback, checkpoint, resume, stop, ...): in the result, the metrics log,
        the callbacks, and one printed line unless ``quiet``."""
        event = {"event": kind, **fields, "time": time.time()}
        self._result.events.append(event)
        self._write_metrics(event)
        for cb in self.callbacks:
            cb.on_event(self, event)
        if not quiet and self.rank == 0 and kind != "start":
            details = ", ".join(f"{k}={v}" for k, v in fields.items() if k != "data")
            _say(f"[{kind}] {details}")

    def _barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def train(
    model: nn.Module,
    train_data: Tensor | Batches,
    val_data: Tensor | None = None,
    config: TrainConfig | None = None,
    *,
    resume: bool | str | os.PathLike = False,
    overwrite: bool = False,
    tokenizer: Any = None,
    chars_per_token: float | Tensor | None = None,
    callbacks: Sequence[Callback] = (),
    **overrides: Any,
) -> TrainResult:
    """Train in one call, for notebooks: ``train(model, blocks, val_blocks, steps=200, batch_size=16)``.

    ``overrides`` are :class:`TrainConfig` fields applied on top of ``config``; ``callbacks`` are
    :class:`Callback` objects (in a notebook, ``palmbook.viz.LivePlot()`` draws the loss curve as it trains).
    ``out_dir`` must be empty or new unless ``resume=True`` (continue it) or ``overwrite=True`` (delete the run
    that is there: re-running a notebook cell).
    """
    config = (config or TrainConfig()).replace(**overrides) if overrides else (config or TrainConfig())
    trainer = Trainer(
        model, config, train_data, val_data, tokenizer=tokenizer, chars_per_token=chars_per_token, callbacks=callbacks
    )
    return trainer.fit(resume=resume, overwrite=overwrite)


# ---- helpers
def _say(message: str) -> None:
    """Print above the progress bar (a plain print would break it)."""
    tqdm.write(message)


@contextlib.contextmanager
def _progress(cfg: TrainConfig, rank: int, initial: int) -> Iterator[Any]:
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
