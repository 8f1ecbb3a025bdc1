"""Safe file I/O: the names of a model directory's files, atomic writes, and safetensors that never unpickle.

A model directory (``PaLM.save_pretrained``, a training checkpoint, a shipped model) holds:

    model.safetensors   WEIGHTS_NAME     the weights, written by :func:`save_safetensors` only
    config.json         CONFIG_NAME      the PaLMConfig
    tokenizer.model     TOKENIZER_NAME   the SentencePiece tokenizer
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

__all__ = [
    "CONFIG_NAME",
    "TOKENIZER_NAME",
    "WEIGHTS_NAME",
    "apply_umask",
    "atomic_write",
    "load_safetensors",
    "save_safetensors",
    "umask_mode",
]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
TOKENIZER_NAME = "tokenizer.model"
# Written into every safetensors file palmbook saves: "format": "pt" is what transformers' loaders look for.
_SAFETENSORS_METADATA = {"format": "pt", "palmbook": "1"}


_UMASK_LOCK = threading.Lock()


def umask_mode() -> int:
    """The process's umask (e.g. 0o022), read without changing it where the OS allows.

    Linux reports it in /proc/self/status; elsewhere it is read by setting and restoring it, which is only safe
    while no other thread creates files, so that swap is serialised here.
    """
    with (
        contextlib.suppress(OSError, ValueError, IndexError),
        open("/proc/self/status", encoding="ascii", errors="replace") as f,
    ):
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike, *, directory: bool | None = None) -> int:
    """Give ``path`` the mode ``open()`` / ``mkdir()`` would have: 0o666 (files) or 0o777 (directories) & ~umask.

    For temporaries made by ``tempfile.mkstemp`` (always 0600) or ``mkdtemp`` (0700): call it before the atomic
    rename, so run.json, checkpoints and ``best/`` are as readable as any other file the user writes (shared
    file systems, other group members). Returns the mode set.
    """
    path = Path(path)
    if directory is None:
        directory = path.is_dir()
    mode = (0o777 if directory else 0o666) & ~umask_mode()
    os.chmod(path, mode)
    return mode


def atomic_write(target: str | os.PathLike, write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)``, fsync, then rename over ``target`` (with the mode the umask gives new files).

    Readers see the old file or the new one, never half of one: a kill mid-write leaves the last good file intact.
    Every failure to write (a full disk, a file-size limit, a writer library's own error type such as
    safetensors') is raised as an OSError naming ``target``; the temporary is removed.
    """
    target = Path(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        try:
            write(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        except OSError as e:
            raise OSError(e.errno, f"could not write {target}: {e.strerror or e}") from e
        except Exception as e:  # safetensors raises SafetensorError (not an OSError) on EFBIG / ENOSPC
            raise OSError(f"could not write {target}: {e}") from e
        apply_umask(tmp, directory=False)
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
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(
            f"device {device!r} is not a device torch knows ({e}); use 'cpu', 'cuda', 'cuda:0' or 'mps'"
        ) from None
    if device.type == "meta":
        raise ValueError("device 'meta' holds no data, so weights cannot be loaded onto it; use 'cpu' or a GPU")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for, but this torch build sees no CUDA GPU; use 'cpu'")
    try:
        return load_file(str(path), device=str(device))
    except Exception as e:  # safetensors raises its own error type for every kind of corruption
        raise ValueError(
            f"{path} is not a valid safetensors file ({e}); it may be truncated or tampered with: "
            "re-download or re-save it"
        ) from None
