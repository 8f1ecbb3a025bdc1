"""Training checkpoints: written atomically, verified on load, never unpickled.

One checkpoint is one directory, built under a temporary name and renamed into place only once every file in it
is written and fsynced, so a kill mid-write leaves the previous checkpoints untouched:

    <out_dir>/checkpoints/step_00001200/
        model.safetensors       the weights (PaLM state-dict keys): ``PaLM.from_pretrained(<this dir>)`` works
        config.json             the PaLMConfig
        tokenizer.model         the tokenizer, when the trainer was given one
        optimizer.safetensors   optimiser tensors ("optim/<parameter name>/<state name>") and the torch RNG
                                states of every rank ("rng/<rank>/torch", "rng/<rank>/cuda<i>")
        trainer.json            everything else, as JSON: step, TrainConfig, optimiser hyper-parameters,
                                scheduler, data position, python/numpy RNG, spike window, best validation
                                loss, and the sha256 of every file above (written last)

Loading checks every sha256, so a truncated or damaged file is detected (not just a missing one) and the trainer
falls back to the previous checkpoint.

This module knows the format and how to capture and restore a training state (weights, optimiser, RNG states of
every rank, under DDP or FSDP); what a run does with its checkpoints (when to save, which to keep, rollbacks) is
the trainer's. It imports nothing above :mod:`palmbook.model`.

    capture_training_state(model, optimizer, world_size)  every rank calls it (collective under FSDP)
    write_training_checkpoint(path, state, meta, ...)      rank 0 writes the directory
    load_training_checkpoint(path, model, optimizer, rank) every rank restores; returns trainer.json
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from .config import PaLMConfig
from .io import TOKENIZER_NAME, WEIGHTS_NAME, atomic_write, load_safetensors, save_safetensors
from .model import model_files

__all__ = [
    "CheckpointWriteError",
    "CorruptCheckpoint",
    "TrainingState",
    "capture_training_state",
    "checkpoint_path",
    "flatten_optimizer_state",
    "list_checkpoints",
    "load_tensors",
    "load_training_checkpoint",
    "read_checkpoint",
    "read_training_checkpoint",
    "unflatten_optimizer_state",
    "valid_checkpoints",
    "weights_files",
    "write_checkpoint",
    "write_training_checkpoint",
]

META_NAME = "trainer.json"
OPTIMIZER_NAME = "optimizer.safetensors"
FORMAT = "palmbook-checkpoint"
_STEP_DIR = re.compile(r"^step_(\d+)$")


class CorruptCheckpoint(ValueError):
    """A checkpoint directory that is incomplete, truncated or altered."""


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed (full disk, file-size limit, permissions); the earlier ones are untouched."""


# trainer.json fields a resume reads, and the type each must have: checked before anything is loaded, so a
# damaged or hand-edited file is "this checkpoint is damaged" (and the previous one is used), never a KeyError.
_TRAINING_FIELDS: dict[str, type | tuple[type, ...]] = {
    "step": int, "batches_seen": int, "tokens_seen": int, "train_config": dict, "scheduler": dict,
    "scaler": dict, "data": dict, "spike_window": list, "rollbacks": int, "evals_since_best": int,
    "optimizer": dict, "rng": list, "best_val_loss": (int, float, type(None)), "best_step": (int, type(None)),
}  # fmt: skip


def checkpoint_path(root: str | os.PathLike, step: int) -> Path:
    """``<root>/step_<step, 8 digits>``: names sort in step order."""
    return Path(root) / f"step_{step:08d}"


def list_checkpoints(root: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of every finished checkpoint directory under ``root``, oldest first.

    Temporary directories of an interrupted write (``.step_*.tmp-*``) are not listed.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return sorted(found)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms (Windows) cannot open directories; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_checkpoint(path: str | os.PathLike, files: dict[str, Callable[[str], object]], meta: dict[str, Any]) -> Path:
    """Write a checkpoint directory atomically.

    Args:
        path: the final directory, e.g. ``checkpoint_path(root, step)``; replaced if it exists.
        files: file name -> ``write(tmp_path)``; each is written with :func:`palmbook.io.atomic_write`.
        meta: JSON-able dict, saved as ``trainer.json`` with the sha256 of every file added under "files".

    Raises :class:`CheckpointWriteError` (an OSError) when any write fails; nothing is left behind then.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        hashes = {}
        for name, write in files.items():
            atomic_write(tmp / name, write)
            hashes[name] = _sha256(tmp / name)
        meta = {"format": FORMAT, "version": 1, **meta, "files": hashes}
        text = json.dumps(meta, indent=1) + "\n"
        atomic_write(tmp / META_NAME, lambda p: Path(p).write_text(text, encoding="utf-8"))
        _fsync_dir(tmp)
        old = None
        if path.exists():  # rewriting a step (after a rollback): move the old one aside, then swap
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        raise CheckpointWriteError(
            e.errno,
            f"could not write checkpoint {path} ({e.strerror or e}); the earlier checkpoints are intact: free space "
            f"(or lift the file-size limit) and continue with: palmbook train --out-dir {path.parent.parent} --resume",
        ) from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The ``trainer.json`` of a checkpoint after checking every file against its recorded sha256.

    Raises :class:`CorruptCheckpoint` (a ValueError) naming what is wrong, FileNotFoundError if there is none.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint directory at {path}")
    meta_path = path / META_NAME
    if not meta_path.is_file():
        raise CorruptCheckpoint(f"checkpoint {path} has no {META_NAME}: it was not completely written")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptCheckpoint(f"{meta_path} is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("files"), dict):
        raise CorruptCheckpoint(f"{meta_path} is not a palmbook training checkpoint")
    for name, digest in meta["files"].items():
        f = path / name
        if not f.is_file():
            raise CorruptCheckpoint(f"checkpoint {path} is missing {name}")
        if _sha256(f) != digest:
            raise CorruptCheckpoint(f"{f} does not match its recorded sha256: it is truncated or was altered")
    return meta


def read_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """:func:`read_checkpoint`, plus the fields a resume needs, each of the right type (a ``trainer.json`` without
    "scheduler" or with ``rng: []`` is :class:`CorruptCheckpoint`, so the trainer falls back to an older one)."""
    meta = read_checkpoint(path)
    for name, kind in _TRAINING_FIELDS.items():
        value = meta.get(name)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            raise CorruptCheckpoint(f"{Path(path) / META_NAME} has no valid {name!r} field: it is not resumable")
    rng, optim = meta["rng"], meta["optimizer"]
    if not rng or not all(isinstance(r, dict) and {"python", "numpy"} <= r.keys() for r in rng):
        raise CorruptCheckpoint(f"{Path(path) / META_NAME} has no valid 'rng' states: it is not resumable")
    if not {"param_groups", "scalars", "int_keys"} <= optim.keys():
        raise CorruptCheckpoint(f"{Path(path) / META_NAME} has no valid 'optimizer' state: it is not resumable")
    return meta


def load_tensors(path: str | os.PathLike, name: str, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Tensors of one safetensors file of a checkpoint (already verified by :func:`read_checkpoint`)."""
    return load_safetensors(Path(path) / name, device)


def valid_checkpoints(
    root: str | os.PathLike | None, on_corrupt: Callable[[Path, Exception], None] | None = None
) -> list[tuple[int, Path]]:
    """(step, path) of the checkpoints under ``root`` that pass :func:`read_checkpoint`, oldest first.

    Damaged ones are passed over and reported to ``on_corrupt(path, error)``.
    """
    good = []
    for step, path in list_checkpoints(root) if root is not None else []:
        try:
            read_checkpoint(path)
        except (CorruptCheckpoint, FileNotFoundError) as e:
            if on_corrupt is not None:
                on_corrupt(path, e)
            continue
        good.append((step, path))
    return good


# ---- optimiser state
def flatten_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimiser state dict into tensors (for safetensors) and JSON (everything else).

    Works for ``optimizer.state_dict()`` (integer keys) and for ``get_optimizer_state_dict`` (parameter-name keys).
    """
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for key, per_param in state["state"].items():
        for name, value in per_param.items():
            if isinstance(value, Tensor):
                tensors[f"optim/{key}/{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(key), {})[name] = value
    keys_are_ints = all(isinstance(k, int) for k in state["state"])
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars, "int_keys": keys_are_ints}


def unflatten_optimizer_state(tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`flatten_optimizer_state`."""
    convert = int if meta["int_keys"] else str
    state: dict[Any, dict[str, Any]] = {}
    for full, value in tensors.items():
        if not full.startswith("optim/"):
            continue
        key, name = full[len("optim/") :].rsplit("/", 1)
        state.setdefault(convert(key), {})[name] = value
    for key, values in meta["scalars"].items():
        state.setdefault(convert(key), {}).update(values)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


# ---- RNG states
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


# ---- a training state: capture, write, load
@dataclass
class TrainingState:
    """What :func:`capture_training_state` gathered: full (unsharded) CPU copies, complete on rank 0."""

    model: dict[str, Tensor]  # state-dict name -> tensor
    optimizer: dict[str, Any]  # get_optimizer_state_dict's, keyed by parameter name
    rng_tensors: dict[str, Tensor]  # "rng/<rank>/torch", "rng/<rank>/cuda<i>"
    rng: list[dict[str, Any]]  # per rank: python's and numpy's states as JSON


def capture_training_state(model: nn.Module, optimizer: torch.optim.Optimizer, world_size: int) -> TrainingState:
    """The weights, optimiser state and every rank's RNG states. Every rank must call it: under FSDP it gathers
    the shards (rank 0 receives full CPU tensors), and the RNG states are all-gathered."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=options)
    optim_state = get_optimizer_state_dict(model, optimizer, options=options)
    rng_tensors, rng = _gather_rng(world_size)
    return TrainingState({k: v.detach().contiguous().cpu() for k, v in weights.items()}, optim_state, rng_tensors, rng)


def weights_files(
    model: nn.Module, weights: dict[str, Tensor], tokenizer: Any = None
) -> dict[str, Callable[[str], object]]:
    """A loadable model directory's files: the weights, ``config.json`` (for a PaLM) and the tokenizer (an object
    with ``save(path)``), so ``PaLM.from_pretrained(d)`` + ``Tokenizer.load(d)`` work on a checkpoint."""
    config = getattr(model, "config", None)
    files = model_files(weights, config if isinstance(config, PaLMConfig) else None)
    if tokenizer is not None:
        files[TOKENIZER_NAME] = tokenizer.save
    return files


def write_training_checkpoint(
    path: str | os.PathLike, model: nn.Module, state: TrainingState, meta: dict[str, Any], tokenizer: Any = None
) -> Path:
    """Write a resumable checkpoint directory (rank 0 only): the weights files, ``optimizer.safetensors``
    (optimiser tensors and torch RNG states) and ``trainer.json`` (``meta`` plus the optimiser's and python's /
    numpy's RNG states as JSON)."""
    tensors, optim_meta = flatten_optimizer_state(state.optimizer)
    tensors.update(state.rng_tensors)
    files = weights_files(model, state.model, tokenizer)
    files[OPTIMIZER_NAME] = lambda p: save_safetensors(tensors, p)
    return write_checkpoint(path, files, {**meta, "optimizer": optim_meta, "rng": state.rng})


def load_training_checkpoint(
    path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer, rank: int
) -> dict[str, Any]:
    """Verify a checkpoint, load its weights and optimiser state into ``model`` / ``optimizer`` (sharding them
    under FSDP), restore this rank's RNG states, and return its ``trainer.json`` for the rest of the trainer's
    state. Every rank calls it."""
    path = Path(path)
    meta = read_training_checkpoint(path)
    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, load_tensors(path, WEIGHTS_NAME), options=options)
    tensors = load_tensors(path, OPTIMIZER_NAME)
    optim_state = unflatten_optimizer_state(tensors, meta["optimizer"])
    set_optimizer_state_dict(model, optimizer, optim_state, options=options)
    _set_rng(tensors, meta["rng"], rank)
    return meta
