"""Which edition of palmbook runs here: its version and the repository it was installed from.

Both come from the installed package's metadata, which ``pip install`` writes from pyproject.toml (whose
``Source`` URL ``tools/edition.py`` keeps equal to ``_config.yml``'s repository, the address's one home). In Colab
the chapter's install cell installs the edition's tag, so these name the edition the reader is reading.

Read from the metadata rather than from ``palmbook.__version__``: ``import palmbook`` imports this package (the
run profiles live here), so importing ``palmbook`` back from here would be an import circle.
tests/test_publishing.py checks that the metadata's version is ``palmbook.__version__`` (else: reinstall).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, metadata

__all__ = ["installed_version", "source_url"]


def installed_version() -> str:
    """The version of the installed palmbook (``X.Y.Z``); the edition's tag is ``vX.Y.Z``."""
    try:
        return metadata("palmbook")["Version"]
    except PackageNotFoundError:
        raise FileNotFoundError("palmbook is not installed: run `pip install -e .` in the repository") from None


def source_url() -> str:
    """The repository this palmbook was installed from: the ``Source`` URL of the installed package's metadata."""
    try:
        for entry in metadata("palmbook").get_all("Project-URL") or []:
            label, _, url = entry.partition(",")
            if label.strip().lower() == "source":
                return url.strip().rstrip("/")
    except PackageNotFoundError:
        pass
    raise FileNotFoundError("palmbook's package metadata names no Source repository to fetch book data from")
