"""Text in, training batches out: corpora through Hugging Face ``datasets``, packing, resumable batches.

    corpus (DatasetDict: train / validation / test, one row per document)     load_corpus
      -> token ids per document (datasets.map, batched, cached on disk)        tokenize
      -> one stream: doc1 </s> doc2 </s> ... cut into blocks of T + 1 tokens   pack          (§5: no padding)
      -> (x, y) = (block[:, :-1], block[:, 1:]), shuffled, seedable, resumable  Batches
    all of it for a training run (tokenizer trained on the train split too)     prepare_lm_data -> LMData

The default corpus is Shakespeare's 38 plays (:mod:`palmbook.shakespeare`, offline). Online readers can pass any
hub dataset as ``"hub:owner/name"``, or their own text files.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .shakespeare import shakespeare
from .tokenizer import Tokenizer

if TYPE_CHECKING:  # datasets (and pyarrow) cost seconds to import: loaded on first use, not by `import palmbook`
    import datasets

__all__ = [
    "Batches",
    "LMData",
    "as_batches",
    "hub_dataset_name",
    "lm_blocks",
    "load_corpus",
    "pack",
    "prepare_lm_data",
    "tokenize",
]


# ---- any corpus
def hub_dataset_name(source: str) -> str:
    """The dataset name of a ``"hub:owner/name"`` source, or one ValueError naming the form it must take."""
    name = source[len("hub:") :] if source.startswith("hub:") else source
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name):
        raise ValueError(f"{source!r} names no Hub dataset: write hub:owner/name, e.g. hub:roneneldan/TinyStories")
    return name


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
        dd = _load_hub(hub_dataset_name(source), cache_dir, hub_kwargs)
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


# ---- tokens
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


# ---- batches
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


def as_batches(
    data: Tensor | Batches, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1
) -> Batches:
    """Training batches from packed blocks (N, T + 1), shuffled with ``seed``, or ``data`` itself when it already
    is a :class:`Batches` of that (global) ``batch_size``."""
    if isinstance(data, Tensor):
        return Batches(data, batch_size, seed=seed, shuffle=True, rank=rank, world_size=world_size)
    if not isinstance(data, Batches):
        raise TypeError(
            "train_data must be packed blocks, a LongTensor (N, T + 1) from palmbook.data.lm_blocks, or a "
            f"palmbook.data.Batches; got {type(data).__name__}"
        )
    if data.batch_size != batch_size:
        raise ValueError(
            f"the Batches have batch_size={data.batch_size} but TrainConfig.batch_size={batch_size}; "
            "make them equal (both are the global batch)"
        )
    return data


# ---- data for a training run
@dataclass
class LMData:
    """What a training run reads: the tokenizer, train / validation blocks (N, T + 1), and the validation
    text's characters per token (for the per-character loss)."""

    tokenizer: Tokenizer
    train: Tensor
    validation: Tensor | None
    chars_per_token: float | None


def prepare_lm_data(
    source: Any = "shakespeare",
    *,
    seq_len: int,
    tokenizer: Tokenizer | None = None,
    vocab_size: int | None = None,
    sample_by: str = "document",
    cache_dir: str | os.PathLike | None = None,
) -> LMData:
    """Load a corpus, train a tokenizer on its train split unless one is given, and pack both splits into
    blocks of ``seq_len + 1`` tokens (documents joined by the end-of-document token, §5).

    ``source`` is :func:`load_corpus`'s ("shakespeare", a path, "hub:owner/name").
    ``chars_per_token`` = characters / tokens of the whole validation split (end-of-document tokens counted).
    """
    corpus = load_corpus(source, sample_by=sample_by)
    if tokenizer is None:
        if vocab_size is None:
            raise ValueError("give a tokenizer or the vocab_size of one to train")
        tokenizer = Tokenizer.train(corpus["train"]["text"], vocab_size=vocab_size)
    train_ids = tokenize(corpus["train"], tokenizer, cache_dir=cache_dir)
    train_blocks = pack(train_ids, seq_len + 1, tokenizer.eod_id)
    val_blocks, cpt = None, None
    if "validation" in corpus and len(corpus["validation"]):
        val_ids = tokenize(corpus["validation"], tokenizer, cache_dir=cache_dir)
        texts = [t for t in corpus["validation"]["text"] if t]
        n_tokens = sum(len(ids) + 1 for ids in val_ids["input_ids"] if len(ids))
        cpt = sum(len(t) for t in texts) / max(n_tokens, 1)
        try:
            val_blocks = pack(val_ids, seq_len + 1, tokenizer.eod_id)
        except ValueError as e:
            raise ValueError(f"validation split of {source!r}: {e}") from None
    return LMData(tokenizer, train_blocks, val_blocks, cpt)
