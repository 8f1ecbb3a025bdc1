"""``book_data(name)``: a file a command wrote for a chapter (e.g. ``benchmark.json``), found or fetched.

A notebook runs from the repository root or from ``book/``; Colab opens a chapter without the rest of the
repository, so there (or with ``fetch=True``) a missing file is downloaded once from this edition's tag into a
cache folder. The name is a path *inside* ``book/data/``: one that climbs out of it (``../x``, ``/etc/x``) is
refused before anything is read, downloaded or written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from .colab import in_colab
from .edition import installed_version, source_url

__all__ = ["book_data", "cache_dir"]


def cache_dir() -> Path:
    """Where downloaded book data of this edition lives: ``~/.cache/palmbook/book-data/v<version>/``."""
    return Path.home() / ".cache" / "palmbook" / "book-data" / f"v{installed_version()}"


def _checked_name(name: str) -> PurePosixPath:
    """``name`` as a relative path that stays inside ``book/data/``, or a ValueError naming the fix."""
    path = PurePosixPath(name.replace("\\", "/"))  # a Windows separator must not smuggle in a ".." part
    if not name.strip() or path.is_absolute() or ".." in path.parts or ":" in name or path == PurePosixPath("."):
        raise ValueError(
            f"book_data({name!r}): give a file name inside book/data/, such as 'benchmark.json' "
            "(no absolute path, no '..', no drive)"
        )
    return path


def book_data(name: str, *, fetch: bool | None = None, opener: Callable[[str], Any] | None = None) -> Path:
    """The path of ``book/data/<name>``, a file a command wrote for a chapter (e.g. ``benchmark.json``).

    Looked up in ``data/`` and ``book/data/`` (a notebook runs from the repository root or from ``book/``). In
    Colab (or with ``fetch=True``) a missing file is downloaded once from this edition's tag,
    ``<Source URL>/raw/v<version>/book/data/<name>``, into :func:`cache_dir`: the file the book shows, not a newer
    one. Elsewhere a missing file is an error that says which command writes it.

    Args:
        name: a path relative to ``book/data/``; absolute paths and ``..`` parts raise ValueError.
        fetch: download when missing; ``None``: only in Colab.
        opener: replaces ``urllib.request.urlopen`` (tests).
    """
    rel = _checked_name(name)
    for base in (Path("data"), Path("book") / "data"):
        if (base / rel).is_file():
            return base / rel
    if not (in_colab() if fetch is None else fetch):
        raise FileNotFoundError(
            f"book/data/{rel} is not here: run the chapter from the repository (root or book/), or run the "
            f"command the chapter shows to write it, or pass fetch=True to download this edition's copy"
        )
    cache = cache_dir()
    cached = cache / rel
    if not cached.resolve().is_relative_to(cache.resolve()):  # a symlink inside the cache pointing out of it
        raise ValueError(f"book_data({name!r}) resolves outside {cache}: remove that link from the cache folder")
    if not cached.is_file():
        import urllib.request

        url = f"{source_url()}/raw/v{installed_version()}/book/data/{quote(rel.as_posix())}"
        try:
            with (opener or urllib.request.urlopen)(url) as response:
                body = response.read()
        except OSError as e:  # urllib's HTTPError (e.g. 404: this edition has no such file) and URLError
            raise FileNotFoundError(f"book/data/{rel} could not be downloaded from {url}: {e}") from e
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(cached.suffix + ".part")
        tmp.write_bytes(body)
        tmp.replace(cached)  # atomic: an interrupted download never leaves a half file under the real name
    return cached
