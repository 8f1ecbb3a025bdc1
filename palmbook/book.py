"""The one call a chapter's first code cell makes: ``from palmbook.book import setup; P = setup()``.

:func:`setup` prepares a notebook for the book, the same way in Jupyter, in Colab and under the tests:

* plotly figures render as ``plotly_mimetype+palmbook``: the mimetype part is what JupyterLab and VS Code draw,
  the ``palmbook`` part is a ``text/html`` div *without* plotly.js, which the static book draws with the one copy
  of plotly.min.js each page loads from the site (myst-nb ignores plotly's own mimetype, so without this the
  figures would vanish from the book). In Colab the renderer is left alone: Colab's own one must stay.
* ``torch``, ``numpy`` and ``random`` are seeded, so a chapter gives the same numbers on every run;
* the run profile (``PALMBOOK_PROFILE`` = smoke / cpu / gpu) and its device are picked and printed with the versions.

It installs nothing: in Colab the chapter's hidden first cell installs palmbook before this runs.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import platform
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import plotly
import plotly.io as pio
import torch
from plotly.io.base_renderers import MimetypeRenderer

from . import __version__
from .profiles import ENV_PROFILE, PROFILES, Profile, default_profile_name, profile

__all__ = ["BOOK_RENDERER", "add_cli", "book_data", "in_colab", "seed_everything", "setup", "use_book_renderer"]

RENDERER_NAME = "palmbook"
BOOK_RENDERER = f"plotly_mimetype+{RENDERER_NAME}"


def in_colab() -> bool:
    """True inside Google Colab (its kernel imports ``google.colab`` at start-up)."""
    return "google.colab" in sys.modules


def _source_url() -> str:
    """The repository this palmbook was installed from: the ``Source`` URL of the installed package's metadata."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        for entry in metadata("palmbook").get_all("Project-URL") or []:
            label, _, url = entry.partition(",")
            if label.strip().lower() == "source":
                return url.strip().rstrip("/")
    except PackageNotFoundError:
        pass
    raise FileNotFoundError("palmbook's package metadata names no Source repository to fetch book data from")


def book_data(name: str, *, fetch: bool | None = None, opener: Any = None) -> Path:
    """The path of ``book/data/<name>``, a file a command wrote for a chapter (e.g. ``benchmark.json``).

    Looked up in ``data/`` and ``book/data/`` (a notebook runs from the repository root or from ``book/``). Colab
    opens a chapter without the rest of the repository, so there (or with ``fetch=True``) a missing file is
    downloaded once from this edition's tag, ``<Source URL>/raw/v<version>/book/data/<name>``, into
    ``~/.cache/palmbook/book-data/v<version>/``: the file the book shows, not a newer one. Elsewhere a missing
    file is an error that says which command writes it. ``opener`` replaces ``urllib.request.urlopen`` (tests).
    """
    for base in (Path("data"), Path("book") / "data"):
        if (base / name).is_file():
            return base / name
    if not (in_colab() if fetch is None else fetch):
        raise FileNotFoundError(
            f"book/data/{name} is not here: run the chapter from the repository (root or book/), or run the "
            f"command the chapter shows to write it, or pass fetch=True to download this edition's copy"
        )
    cached = Path.home() / ".cache" / "palmbook" / "book-data" / f"v{__version__}" / name
    if not cached.is_file():
        import urllib.request

        url = f"{_source_url()}/raw/v{__version__}/book/data/{name}"
        try:
            with (opener or urllib.request.urlopen)(url) as response:
                body = response.read()
        except OSError as e:  # urllib's HTTPError (e.g. 404: this edition has no such file) and URLError
            raise FileNotFoundError(f"book/data/{name} could not be downloaded from {url}: {e}") from e
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(cached.suffix + ".part")
        tmp.write_bytes(body)
        tmp.replace(cached)  # atomic: an interrupted download never leaves a half file under the real name
    return cached


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def use_book_renderer() -> str:
    """Register the ``palmbook`` plotly renderer and make ``plotly_mimetype+palmbook`` the default.

    Returns the name of the default renderer. Safe to call more than once.
    """
    if RENDERER_NAME not in pio.renderers:
        pio.renderers[RENDERER_NAME] = _BookHtmlRenderer()
    pio.renderers.default = BOOK_RENDERER
    pio.templates.default = "plotly_white"
    return pio.renderers.default


def setup(name: str | None = None, *, seed: int | None = None, verbose: bool = True) -> Profile:
    """Prepare a chapter: plotly renderer, seeds, profile and device; print what was chosen.

    Args:
        name: profile name (``"smoke"``, ``"cpu"``, ``"gpu"``); ``None`` reads ``$PALMBOOK_PROFILE``
            (default: ``gpu`` with CUDA, else ``cpu``).
        seed: overrides the profile's seed (0).
        verbose: print versions, device and profile (chapters keep this on so every run says what it ran).

    Returns:
        The :class:`~palmbook.profiles.Profile` the chapter reads its sizes from.
    """
    prof = profile(name)
    if seed is not None:
        prof = dataclasses.replace(prof, seed=seed)
    if not in_colab():
        use_book_renderer()
    seed_everything(prof.seed)
    if verbose:
        print(_summary(prof))
    return prof


def add_cli(subparsers: Any) -> None:
    """Register ``palmbook book`` (called by :mod:`palmbook.cli`): the run profiles and the one that runs here."""
    p = subparsers.add_parser("book", help="the book's run profiles (smoke / cpu / gpu) and which one runs here")
    p.add_argument("--profile", choices=list(PROFILES), help="show only this profile")
    p.set_defaults(func=_run_cli)


def _run_cli(args: Any) -> int:
    here = default_profile_name()
    for name in [args.profile] if args.profile else list(PROFILES):
        print(("* " if name == here else "  ") + str(profile(name)))
    print(f"* runs here ({ENV_PROFILE}={os.environ.get(ENV_PROFILE) or 'unset'}); chapters call setup() to use it")
    return 0


def _summary(prof: Profile) -> str:
    if prof.device.startswith("cuda") and torch.cuda.is_available():
        where = f"{prof.device} ({torch.cuda.get_device_name(torch.device(prof.device))})"
    else:
        where = f"{prof.device} ({torch.get_num_threads()} threads)"
    return (
        f"palmbook {__version__} | torch {torch.__version__} | plotly {plotly.__version__} | "
        f"Python {platform.python_version()}\n"
        f"device {where} | {prof}\n"
        f"(set {ENV_PROFILE}=smoke|cpu|gpu before starting the kernel to change the profile)"
    )


class _BookHtmlRenderer(MimetypeRenderer):
    """A ``text/html`` bundle holding the figure's div and its ``Plotly.newPlot`` call, but not plotly.js.

    The div ids count up (``palmbook-fig-1``, ...) instead of plotly's random UUIDs, so re-executing a notebook
    does not rewrite every figure's output in the diff. The counter is global because plotly renders with a
    copy of the registered renderer object.
    """

    ids = itertools.count(1)

    def to_mimebundle(self, fig_dict: dict) -> dict[str, str]:
        html = pio.to_html(
            fig_dict,
            full_html=False,
            include_plotlyjs=False,  # the book loads plotly.min.js once per page, from the site
            include_mathjax=False,  # the book already runs MathJax 3; plotly's option would add a CDN script
            validate=False,
            div_id=f"palmbook-fig-{next(self.ids)}",
            config={"displaylogo": False, "responsive": True},
        )
        return {"text/html": html}
