"""The ``palmbook`` command: train -> resume -> generate end to end, doctor, and one-line user errors."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from palmbook import PaLM
from palmbook.checkpoint import list_checkpoints
from palmbook.cli import main

PALMBOOK = Path(sys.executable).with_name("palmbook")  # the console script installed next to this python


def _corpus(root: Path) -> Path:
    """Six small text documents of made-up words: enough for a 512-piece vocabulary and a train/val split."""
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 8))) for _ in range(300)]
    root.mkdir()
    for i in range(6):
        lines = (" ".join(rng.choice(words) for _ in range(10)).capitalize() + "." for _ in range(150))
        (root / f"doc{i}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


TRAIN = ["--preset", "palm-tiny", "--vocab-size", "512", "--seq-len", "32", "--batch-size", "4",
         "--precision", "fp32", "--device", "cpu", "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """One tiny `palmbook train` run (3 steps), shared by the tests below."""
    root = tmp_path_factory.mktemp("cli")
    torch.set_num_threads(1)
    out = root / "run"
    code = main(["train", "--data", str(_corpus(root / "corpus")), "--out-dir", str(out), "--steps", "3", *TRAIN])
    assert code == 0
    return out


def test_train_writes_a_complete_resumable_run(run_dir, capsys):
    assert {p.name for p in run_dir.iterdir()} >= {
        "checkpoints",
        "best",
        "metrics.jsonl",
        "run.json",
        "tokenizer.model",
    }
    step3 = run_dir / "checkpoints" / "step_00000003"
    assert {p.name for p in step3.iterdir()} == {
        "model.safetensors", "config.json", "optimizer.safetensors", "tokenizer.model", "trainer.json",
    }  # fmt: skip
    assert PaLM.from_pretrained(step3).config.vocab_size == 512

    resumed = run_dir.parent / "resumed"
    shutil.copytree(run_dir, resumed)
    assert main(["train", "--out-dir", str(resumed), "--resume", "--steps", "5", "--no-progress"]) == 0
    assert [s for s, _ in list_checkpoints(resumed / "checkpoints")][-1] == 5
    assert "[resume] step=3" in capsys.readouterr().out
    run = json.loads((resumed / "run.json").read_text())  # the command that started the run survives its resumes
    assert "--data" in run["argv"] and "--resume" not in run["argv"]
    assert [argv[-4:] for argv in run["resumed_with"]] == [["--resume", "--steps", "5", "--no-progress"]]


def test_generate_continues_a_prompt_reproducibly(run_dir, capsys):
    args = ["generate", str(run_dir), "--prompt", "The", "--max-new-tokens", "8", "--seed", "3"]
    first = subprocess.run([sys.executable, "-m", "palmbook", *args], capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("The") and len(first.stdout.strip()) > len("The")
    assert main(args) == 0  # the same seed in this process: the same text
    assert capsys.readouterr().out == first.stdout


def test_doctor_reports_versions_and_device(capsys):
    assert main(["doctor", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["torch"] == torch.__version__
    assert info["cuda"]["available"] == torch.cuda.is_available()
    assert info["training_precision"] in ("bf16", "fp16", "fp32")
    assert isinstance(info["cpu"]["amx"], bool) and info["cpu"]["torch_threads"] >= 1


def _user_error_cases(run_dir: Path, tmp_path: Path) -> dict[str, tuple[list[str], int, str]]:
    corrupt = tmp_path / "corrupt"
    shutil.copytree(run_dir / "checkpoints" / "step_00000003", corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    (tmp_path / "bad.json").write_text('{"stepz": 3}')
    return {
        "missing model": (["generate", str(tmp_path / "nope")], 1, "no model at"),
        "corrupt weights": (["generate", str(corrupt)], 1, "not a valid safetensors file"),
        "bad option": (["train", "--out-dir", str(tmp_path), "--optimizer", "sgd"], 2, "invalid choice: 'sgd'"),
        "bad config": (
            ["train", "--out-dir", str(tmp_path / "new"), "--config", str(tmp_path / "bad.json")],
            1,
            "stepz",
        ),
        "nothing to resume": (["train", "--out-dir", str(tmp_path / "empty"), "--resume"], 1, "nothing to resume"),
        "missing out dir": (["train", "--steps", "2"], 1, "needs --out-dir"),
    }


def _one_line(err: str, words: str) -> bool:
    lines = [line for line in err.splitlines() if line.strip()]
    return len(lines) == 1 and lines[0].startswith("palmbook") and words in lines[0]


def test_user_errors_print_one_line_and_exit_nonzero(run_dir, tmp_path):
    """Through the installed console script, as a user meets them (three cases, in parallel: start-up is slow)."""
    cases = _user_error_cases(run_dir, tmp_path)
    env = {**os.environ, "PALMBOOK_DEBUG": ""}
    procs = {
        name: subprocess.Popen(
            [str(PALMBOOK), *cases[name][0]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for name in ("missing model", "corrupt weights", "bad option")
    }
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=180)
        _, code, words = cases[name]
        assert proc.returncode == code and _one_line(err, words), (name, proc.returncode, err)
        assert "Traceback" not in err


def test_every_user_error_is_one_line_in_process(run_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PALMBOOK_DEBUG", raising=False)
    for name, (argv, code, words) in _user_error_cases(run_dir, tmp_path).items():
        try:
            got = main(argv)
        except SystemExit as e:  # argparse exits by itself
            got = e.code
        err = capsys.readouterr().err
        assert got == code and _one_line(err, words), (name, got, err)


def test_train_help_names_only_real_flags_in_its_resume_table():
    import re

    from palmbook.cli import build_parser
    from palmbook.cli.train import RESUME_HELP

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    real = {o for a in train._actions for o in a.option_strings}
    named = set(re.findall(r"--[a-z][a-z-]*[a-z]", RESUME_HELP)) - {"--out-dir"}
    assert named - {"--spike"} <= real, sorted(named - real)
    assert {"--spike-factor", "--spike-window", "--spike-rollback", "--spike-skip"} <= real
    assert "what --resume may change" in train.format_help()
