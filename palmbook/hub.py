"""Where a model directory comes from: a local folder, or a Hugging Face Hub repository (``owner/name``).

    PaLM.from_pretrained("runs/x/best")          -> that folder, read as is (no network)
    PaLM.from_pretrained("owner/palm-shakespeare") -> hf_hub_download of config.json + model.safetensors into the
                                                   Hub cache (offline: HF_HUB_OFFLINE=1 / local_files_only=True
                                                   read the cache only), then the same loader

Only the two safetensors-layout files are ever fetched (:data:`palmbook.io.CONFIG_NAME`,
:data:`palmbook.io.WEIGHTS_NAME`): nothing is unpickled, whatever else the repository holds.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .io import CONFIG_NAME, WEIGHTS_NAME

__all__ = ["HUB_FILES", "MODEL_CARD_TAGS", "is_repo_id", "resolve_model_dir"]

HUB_FILES = (CONFIG_NAME, WEIGHTS_NAME)
MODEL_CARD_TAGS = ["palmbook", "palm", "text-generation", "safetensors"]
# The Hub's repository ids: "name" or "owner/name", letters, digits, "-", "_", "." (not leading, no "..").
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")


def is_repo_id(name: str | os.PathLike) -> bool:
    """Whether ``name`` can only be a Hub repository id ("owner/name"), not a local path."""
    s = os.fspath(name)
    return isinstance(name, str) and "/" in s and ".." not in s and bool(_REPO_ID.match(s)) and not Path(s).exists()


def resolve_model_dir(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    force_download: bool = False,
) -> Path:
    """A local directory holding ``config.json`` and ``model.safetensors`` for ``name_or_path``.

    An existing path is returned as is; an ``owner/name`` that is not a local path is fetched from the Hub.
    """
    if not is_repo_id(name_or_path):
        path = Path(name_or_path)
        if not path.is_dir():
            raise FileNotFoundError(
                f"no model directory at {path}; expected one written by PaLM.save_pretrained (or a Hub repository "
                "id 'owner/name')"
            )
        return path
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import HfHubHTTPError, LocalEntryNotFoundError

    kwargs: dict[str, Any] = dict(
        repo_id=str(name_or_path),
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        token=token,
        force_download=force_download,
    )
    try:
        files = [Path(hf_hub_download(filename=f, **kwargs)) for f in HUB_FILES]
    except LocalEntryNotFoundError as e:
        raise FileNotFoundError(
            f"{name_or_path!r} is neither a local directory nor in the Hugging Face cache, and the Hub cannot be "
            f"reached (offline: HF_HUB_OFFLINE or local_files_only). Give a local directory written by "
            f"PaLM.save_pretrained, or go online once. ({e})"
        ) from None
    except HfHubHTTPError as e:
        raise FileNotFoundError(
            f"the Hub repository {name_or_path!r} has no {' + '.join(HUB_FILES)} (written by PaLM.save_pretrained / "
            f"push_to_hub), or it is private (log in: hf auth login): {e}"
        ) from None
    return files[0].parent
