"""Safe file I/O: atomic writes and safetensors reads that never unpickle."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["atomic_write", "load_safetensors"]


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


def load_safetensors(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """Read a safetensors file, refusing anything else (pickles, truncated or tampered files) with a clear error."""
    from safetensors.torch import load_file

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
