"""Models that ship inside the package, loadable offline with one call, and finding a model on disk.

    model, tokenizer = palmbook.pretrained("shakespeare-small")
    resolve_model_dir("runs/mini")   -> runs/mini/best (or its newest valid checkpoint), or a shipped model's dir
    find_tokenizer(model_dir)        -> the tokenizer.model beside a model, or the one of the run it came from

Each shipped model lives in ``palmbook/pretrained/<name>/``: ``model.safetensors`` + ``config.json`` (as written by
``PaLM.save_pretrained``), ``tokenizer.model`` (SentencePiece), and the record of how it was made:
``TRAINING.md`` (the exact command, data, CPU time, final metrics) and ``metrics.jsonl`` (the training log).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from ..checkpoint import list_checkpoints, valid_checkpoints
from ..io import CONFIG_NAME, TOKENIZER_NAME, WEIGHTS_NAME
from ..model import PaLM
from ..tokenizer import Tokenizer

__all__ = [
    "available_pretrained",
    "export_pretrained",
    "find_tokenizer",
    "pretrained",
    "pretrained_dir",
    "resolve_model_dir",
]

_ROOT = Path(__file__).parent


def available_pretrained() -> list[str]:
    """Names of the models shipped with this installation."""
    if not _ROOT.is_dir():
        return []
    return sorted(p.name for p in _ROOT.iterdir() if (p / WEIGHTS_NAME).is_file())


def pretrained_dir(name: str = "shakespeare-small") -> Path:
    """The directory holding a shipped model's files."""
    path = _ROOT / name
    if not (path / WEIGHTS_NAME).is_file():
        have = available_pretrained()
        raise FileNotFoundError(
            f"no shipped model named {name!r}; available: {have or 'none in this installation'}. "
            "Train one with `palmbook train` and load it with PaLM.from_pretrained(<dir>)"
        )
    return path


def pretrained(
    name: str = "shakespeare-small", device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[PaLM, Tokenizer]:
    """Load a shipped model and its tokenizer: ``(PaLM, Tokenizer)``, in eval mode, offline.

    Weights ship in bfloat16 (half the bytes of float32, and the precision they were trained in under
    autocast); they are loaded as ``dtype``, float32 by default, so CPU arithmetic stays exact-as-usual.
    """
    path = pretrained_dir(name)
    model = PaLM.from_pretrained(path, device=device, dtype=dtype)
    return model, Tokenizer.load(path / TOKENIZER_NAME)


def export_pretrained(model_dir: str | Path, dest: str | Path, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Copy a trained model (e.g. a run's ``best/``) into ``dest`` for shipping, weights cast to ``dtype``.

    Writes ``model.safetensors``, ``config.json`` and ``tokenizer.model`` (see :func:`find_tokenizer`).
    """
    model_dir, dest = Path(model_dir), Path(dest)
    tokenizer = find_tokenizer(model_dir)
    model = PaLM.from_pretrained(model_dir, dtype=dtype)
    model.save_pretrained(dest)
    shutil.copyfile(tokenizer, dest / TOKENIZER_NAME)
    return dest


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """The directory holding a model (``model.safetensors`` + ``config.json``) that ``path`` points at.

    ``path`` may be such a directory itself, a training ``out_dir`` (its ``best/`` if there is one, else its
    newest checkpoint that passes verification), or the name of a model shipped with the package.
    """
    p = Path(path)
    if not p.exists():
        if str(path) in available_pretrained():
            return pretrained_dir(str(path))
        raise FileNotFoundError(
            f"no model at {p}: give a directory written by PaLM.save_pretrained, a training out_dir, or a shipped "
            f"model name ({', '.join(available_pretrained()) or 'none installed'})"
        )
    if not p.is_dir():
        raise NotADirectoryError(f"{p} is a file; give the directory that holds {WEIGHTS_NAME} and {CONFIG_NAME}")
    if (p / WEIGHTS_NAME).is_file():
        return p
    if (p / "best" / WEIGHTS_NAME).is_file():
        return p / "best"
    valid = valid_checkpoints(p / "checkpoints")
    if valid:
        return valid[-1][1]
    raise FileNotFoundError(
        f"{p} holds no {WEIGHTS_NAME}, best/ or valid checkpoints/; is it the right directory?"
        + (" (its checkpoints are all damaged)" if list_checkpoints(p / "checkpoints") else "")
    )


def find_tokenizer(model_dir: str | os.PathLike) -> Path:
    """The ``tokenizer.model`` a model directory was trained with: the one inside it, else the one of the run it
    belongs to (``<out_dir>/best/`` -> ``<out_dir>``, ``<out_dir>/checkpoints/step_N/`` -> ``<out_dir>``)."""
    model_dir = Path(model_dir)
    for candidate in (model_dir, model_dir.parent, model_dir.parent.parent):
        if (candidate / TOKENIZER_NAME).is_file():
            return candidate / TOKENIZER_NAME
    raise FileNotFoundError(
        f"no {TOKENIZER_NAME} in {model_dir} or the run it belongs to: give the tokenizer the model was trained with"
    )
