"""Training from scratch: the teaching versions built in chapter 9 (``book/09_training.ipynb``).

    pack_documents          documents -> one stream with an end-of-document token after each -> rows of
                            ``block_size`` tokens, no padding (§5); the package's is ``palmbook.data.pack``
    padding_fraction        what the alternative, one padded row per document, would waste

The optimisers, schedules and gradient clipping the trainer uses are built from scratch in chapter 8
(:mod:`palmbook.scratch.optimisers`: ``adamw_step``, ``palm_step``, ``clip_global_norm``); chapter 9 points there
instead of building them twice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["pack_documents", "padding_fraction"]


# --------------------------------------------------------------------------------------------- data
def pack_documents(docs: Sequence[Sequence[int]], block_size: int, eod_id: int) -> list[list[int]]:
    """Join the documents into one stream, each followed by ``eod_id``, and cut it into rows of ``block_size``.

    Empty documents are dropped (no lone end token); the tail shorter than a row is dropped too, so every row is
    full: no padding, a row may end one document and start the next (PaLM §5).
    """
    if block_size < 2:
        raise ValueError(f"block_size must be >= 2 (max_seq_len + 1); got {block_size}")
    stream: list[int] = []
    for doc in docs:
        if len(doc):
            stream.extend(int(t) for t in doc)
            stream.append(eod_id)
    n_rows = len(stream) // block_size
    return [stream[i * block_size : (i + 1) * block_size] for i in range(n_rows)]


def padding_fraction(doc_lengths: Sequence[int], seq_len: int) -> float:
    """Fraction of a batch that would be padding if every document got its own rows of ``seq_len`` tokens.

    A document of n tokens (+1 end token) fills ceil((n + 1) / seq_len) rows; the unused places are padding.
    """
    used = rows = 0
    for n in doc_lengths:
        if n:
            used += n + 1
            rows += math.ceil((n + 1) / seq_len)
    return 1.0 - used / (rows * seq_len) if rows else 0.0
