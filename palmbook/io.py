"""Safe file I/O: the names of a model directory's files, atomic writes, and safetensors that never unpickle.

A model directory (``PaLM.save_pretrained``, a training checkpoint, a shipped model) holds:

    model.safetensors   WEIGHTS_NAME     the weights, written by :func:`save_safetensors` only
    config.json         CONFIG_NAME      the PaLMConfig
    tokenizer.model     TOKENIZER_NAME   the SentencePiece tokenizer
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

__all__ = ["CONFIG_NAME", "TOKENIZER_NAME", "WEIGHTS_NAME", "atomic_write", "load_safetensors", "save_safetensors"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
TOKENIZER_NAME = "tokenizer.model"
# Written into every safetensors file palmbook saves: "format": "pt" is what transformers' loaders look for.
_SAFETENSORS_METADATA = {"format": "pt", "palmbook": "1"}


def atomic_write(target: str | os.PathLike, write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)``, fsync, then rename over ``target``.

    Readers see the old file or the new one, never half of one: a kill mid-write leaves the last good file intact.
    """
    target = Path(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_safetensors(tensors: dict[str, Tensor], path: str | os.PathLike) -> None:
    """Write tensors to ``path`` as safetensors (contiguous CPU copies), with palmbook's metadata.

    The one writer of weights files: ``PaLM.save_pretrained`` and training checkpoints both call it. Not atomic by
    itself; wrap it in :func:`atomic_write` (``atomic_write(target, lambda p: save_safetensors(t, p))``).
    """
    state = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    save_file(state, str(path), metadata=_SAFETENSORS_METADATA)


def load_safetensors(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """Read a safetensors file, refusing anything else (pickles, truncated or tampered files) with a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights at {path}; expected a .safetensors file written by palmbook")
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:1] == b"\x80" or head[:4] == b"PK\x03\x04":
        raise ValueError(
            f"{path} is a pickle (torch.save) file, not safetensors; palmbook never unpickles weights because "
            "unpickling runs arbitrary code. Convert it with safetensors.torch.save_file from a trusted session"
        )
    try:
        return load_file(str(path), device=str(device))
    except Exception as e:  # safetensors raises its own error type for every kind of corruption
        raise ValueError(
            f"{path} is not a valid safetensors file ({e}); it may be truncated or tampered with: "
            "re-download or re-save it"
        ) from None
