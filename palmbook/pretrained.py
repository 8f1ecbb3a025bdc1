"""Models that ship inside the package, loadable offline with one call.

    model, tokenizer = palmbook.pretrained("shakespeare-small")

Each lives in ``palmbook/pretrained/<name>/``: ``model.safetensors`` + ``config.json`` (as written by
``PaLM.save_pretrained``), ``tokenizer.model`` (SentencePiece), and the record of how it was made:
``TRAINING.md`` (the exact command, data, CPU time, final metrics) and ``metrics.jsonl`` (the training log).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .model import PaLM

__all__ = ["available_pretrained", "export_pretrained", "pretrained", "pretrained_dir"]

_ROOT = Path(__file__).parent / "pretrained"


def available_pretrained() -> list[str]:
    """Names of the models shipped with this installation."""
    if not _ROOT.is_dir():
        return []
    return sorted(p.name for p in _ROOT.iterdir() if (p / "model.safetensors").is_file())


def pretrained_dir(name: str = "shakespeare-small") -> Path:
    """The directory holding a shipped model's files."""
    path = _ROOT / name
    if not (path / "model.safetensors").is_file():
        have = available_pretrained()
        raise FileNotFoundError(
            f"no shipped model named {name!r}; available: {have or 'none in this installation'}. "
            "Train one with `palmbook train` and load it with PaLM.from_pretrained(<dir>)"
        )
    return path


def pretrained(name: str = "shakespeare-small", device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """Load a shipped model and its tokenizer: ``(PaLM, Tokenizer)``, in eval mode, offline.

    Weights ship in bfloat16 (half the bytes of float32, and the precision they were trained in under
    autocast); they are loaded as ``dtype``, float32 by default, so CPU arithmetic stays exact-as-usual.
    """
    from .tokenizer import Tokenizer

    path = pretrained_dir(name)
    model = PaLM.from_pretrained(path, device=device, dtype=dtype)
    return model, Tokenizer.load(path / "tokenizer.model")


def export_pretrained(model_dir: str | Path, dest: str | Path, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Copy a trained model (e.g. a run's ``best/``) into ``dest`` for shipping, weights cast to ``dtype``.

    Writes ``model.safetensors``, ``config.json`` and ``tokenizer.model`` (from ``model_dir`` or its parent run).
    """
    import shutil

    model_dir, dest = Path(model_dir), Path(dest)
    model = PaLM.from_pretrained(model_dir, dtype=dtype)
    model.save_pretrained(dest)
    for candidate in (model_dir / "tokenizer.model", model_dir.parent / "tokenizer.model"):
        if candidate.is_file():
            shutil.copyfile(candidate, dest / "tokenizer.model")
            break
    else:
        raise FileNotFoundError(f"no tokenizer.model in {model_dir} or its parent: ship the tokenizer the model used")
    return dest
