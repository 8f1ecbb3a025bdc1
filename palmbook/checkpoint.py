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
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .io import atomic_write, load_safetensors

__all__ = [
    "CorruptCheckpoint",
    "checkpoint_path",
    "flatten_optimizer_state",
    "list_checkpoints",
    "load_tensors",
    "read_checkpoint",
    "resolve_model_dir",
    "unflatten_optimizer_state",
    "write_checkpoint",
]

META_NAME = "trainer.json"
FORMAT = "palmbook-checkpoint"
_STEP_DIR = re.compile(r"^step_(\d+)$")


class CorruptCheckpoint(ValueError):
    """A checkpoint directory that is incomplete, truncated or altered."""


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
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
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


def load_tensors(path: str | os.PathLike, name: str, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Tensors of one safetensors file of a checkpoint (already verified by :func:`read_checkpoint`)."""
    return load_safetensors(Path(path) / name, device)


# --------------------------------------------------------------------------------------------- optimiser state
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


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """The directory holding a model (``model.safetensors`` + ``config.json``) that ``path`` points at.

    ``path`` may be such a directory itself, a training ``out_dir`` (its ``best/`` if there is one, else its
    newest checkpoint that passes verification), or the name of a model shipped with the package.
    """
    p = Path(path)
    if not p.exists():
        from .pretrained import available_pretrained, pretrained_dir

        if str(path) in available_pretrained():
            return pretrained_dir(str(path))
        raise FileNotFoundError(
            f"no model at {p}: give a directory written by PaLM.save_pretrained, a training out_dir, or a shipped "
            f"model name ({', '.join(available_pretrained()) or 'none installed'})"
        )
    if not p.is_dir():
        raise NotADirectoryError(f"{p} is a file; give the directory that holds model.safetensors and config.json")
    if (p / "model.safetensors").is_file():
        return p
    if (p / "best" / "model.safetensors").is_file():
        return p / "best"
    for _, ckpt in reversed(list_checkpoints(p / "checkpoints")):
        try:
            read_checkpoint(ckpt)
        except (CorruptCheckpoint, FileNotFoundError):
            continue
        return ckpt
    raise FileNotFoundError(f"{p} holds no model.safetensors, best/ or valid checkpoints/; is it the right directory?")
