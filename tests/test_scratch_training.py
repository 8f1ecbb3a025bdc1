"""Specifications of chapter 9's from-scratch data packing and training loop, and their agreement with the package
(palmbook.pack, palmbook.Trainer).
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


def test_train_palm_equals_the_trainer_step_for_step():
    # Same weights, same batches (the trainer's seed), PaLM's optimiser and schedule, fp32, no dropout: the
    # from-scratch loop and palmbook.Trainer give the same losses and weights up to float rounding.
    from palmbook import Batches, PaLM, PaLMConfig, TrainConfig, Trainer

    cfg = PaLMConfig.preset("palm-tiny", vocab_size=256, max_seq_len=16)
    blocks = torch.randint(2, 256, (64, 17), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    init = PaLM(cfg).state_dict()
    ours, theirs = PaLM(cfg), PaLM(cfg)
    ours.load_state_dict(init)
    theirs.load_state_dict(init)
    config = TrainConfig(steps=5, batch_size=4, optimizer="palm", lr=1e-2, schedule="palm", constant_steps=2,
                         precision="fp32", spike_factor=None, progress=False, device="cpu", seed=3)  # fmt: skip
    trainer = Trainer(theirs, config, blocks)
    their_losses = [trainer.train_step()["loss"] for _ in range(5)]
    our_losses = S.train_palm(ours, Batches(blocks, 4, seed=3), 5, lr=1e-2, constant_steps=2)
    assert our_losses == pytest.approx(their_losses, rel=1e-5)
    for name, w in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], w, rtol=1e-4, atol=1e-5)
    assert not torch.equal(ours.state_dict()["embed.weight"], init["embed.weight"])  # it did train
