"""Run by tests/test_train.py under torchrun (2 processes, gloo): the same tiny run with DDP, then FSDP2.

Not a test module itself (pytest collects test_*.py only). ``setup()`` is shared with the single-process run the
test compares against, so both start from the same weights and data.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from palmbook import PaLM, PaLMConfig
from palmbook.runtime import cleanup_distributed
from palmbook.train import TrainConfig, Trainer

RUNS = (("ddp", "adamw"), ("fsdp", "palm"))


def setup() -> tuple[PaLM, torch.Tensor]:
    """A fresh tiny model (seed 0) and 32 random blocks of 17 tokens."""
    blocks = torch.randint(0, 1024, (32, 17), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    return PaLM(PaLMConfig.preset("palm-tiny", max_seq_len=16)), blocks


def config(mode: str, optimizer: str, out_dir: Path) -> TrainConfig:
    return TrainConfig(
        steps=3, batch_size=8, micro_batch_size=2, optimizer=optimizer, lr=1e-3 if optimizer == "adamw" else None,
        distributed=mode, precision="fp32", device="cpu", out_dir=str(out_dir), progress=False, log_every=1,
    )  # fmt: skip


def main(out: Path) -> None:
    torch.set_num_threads(1)  # two processes share the cores
    for mode, optimizer in RUNS:
        model, blocks = setup()
        result = Trainer(model, config(mode, optimizer, out / mode), blocks).fit()
        if torch.distributed.get_rank() == 0:
            (out / mode / "losses.json").write_text(json.dumps(result.losses))
    cleanup_distributed()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
