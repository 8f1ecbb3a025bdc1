"""Specifications of chapter 9's from-scratch data packing and its agreement with the package (palmbook.pack).
The optimisers and clipping are chapter 8's (tests/test_scratch_optimisers.py)."""

import pytest
import torch

from palmbook import pack
from palmbook.scratch import training as S


def test_packing_joins_documents_with_end_tokens_and_never_pads():
    docs = [[1, 2, 3], [], [4, 5], [6, 7, 8, 9]]
    rows = S.pack_documents(docs, block_size=4, eod_id=0)
    # stream: 1 2 3 0 4 5 0 6 7 8 9 0 -> three full rows; the empty document adds no end token
    assert rows == [[1, 2, 3, 0], [4, 5, 0, 6], [7, 8, 9, 0]]
    assert S.pack_documents(docs, block_size=5, eod_id=0) == [[1, 2, 3, 0, 4], [5, 0, 6, 7, 8]]  # tail dropped


def test_packing_equals_the_package():
    g = torch.Generator().manual_seed(0)
    docs = [torch.randint(1, 50, (int(n),), generator=g).tolist() for n in torch.randint(0, 40, (30,), generator=g)]
    assert pack(docs, 17, eod_id=0).tolist() == S.pack_documents(docs, 17, eod_id=0)


def test_padding_fraction_counts_the_unused_places_of_one_padded_row_per_document():
    # 3 tokens + end = 4 of 8 places; 10 + end = 11 of 16 places -> 24 places, 15 used
    assert S.padding_fraction([3, 10], seq_len=8) == pytest.approx(1 - 15 / 24)
    assert S.padding_fraction([7, 15], seq_len=8) == 0.0  # exact fits waste nothing
