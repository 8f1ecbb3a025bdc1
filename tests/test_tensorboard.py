"""palmbook.tensorboard: a training callback that writes the loss curves TensorBoard draws."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch

import palmbook.tensorboard as tb
from palmbook import PaLM, PaLMConfig, TrainConfig, Trainer


class FakeWriter:
    def __init__(self) -> None:
        self.scalars: list[tuple[str, float, int]] = []
        self.texts: list[tuple[str, str, int]] = []
        self.closed = False

    def add_scalar(self, name: str, value: float, global_step: int) -> None:
        self.scalars.append((name, value, global_step))

    def add_text(self, name: str, text: str, global_step: int) -> None:
        self.texts.append((name, text, global_step))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _train(callback: Any, steps: int = 4) -> Trainer:
    torch.manual_seed(0)
    model = PaLM(PaLMConfig.preset("palm-tiny").replace(max_seq_len=8))
    data = torch.randint(0, model.config.vocab_size, (16, 9))
    cfg = TrainConfig(
        device="cpu", batch_size=2, progress=False, eval_every=2, eval_batches=1, steps=steps, log_every=1
    )
    trainer = Trainer(model, cfg, data, val_data=data[:4], callbacks=[callback])
    trainer.fit()
    return trainer


def test_every_step_writes_its_loss_and_every_evaluation_its_val_loss_then_the_writer_closes() -> None:
    writer = FakeWriter()
    _train(tb.TensorBoardLogger(writer=writer), steps=4)
    losses = [(step, v) for name, v, step in writer.scalars if name == "train/loss"]
    assert [s for s, _ in losses] == [1, 2, 3, 4] and all(v > 0 for _, v in losses)
    assert any(name == "val/loss" for name, _, _ in writer.scalars)
    assert writer.closed


def test_only_rank_zero_writes() -> None:
    writer = FakeWriter()
    logger = tb.TensorBoardLogger(writer=writer)
    other = type("T", (), {"rank": 1, "step": 3})()
    logger.on_step_end(other, {"step": 3, "loss": 1.0})  # type: ignore[arg-type]
    assert writer.scalars == []


def test_a_missing_tensorboard_is_an_import_error_naming_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ImportError, match="pip install tensorboard"):
        tb.TensorBoardLogger("runs/x")


def test_the_real_summary_writer_leaves_an_event_file(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="pip install tensorboard")
    _train(tb.TensorBoardLogger(tmp_path / "tb"), steps=2)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="tensorboard is installed here")
def test_palmbook_train_tensorboard_without_tensorboard_is_one_line_naming_the_install_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from palmbook.cli import main

    out = tmp_path / "run"
    code = main(["train", "--preset", "palm-tiny", "--steps", "1", "--out-dir", str(out), "--tensorboard"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "pip install" in err[0] and "tensorboard" in err[0]
    assert not out.exists()  # refused before the run directory was made
