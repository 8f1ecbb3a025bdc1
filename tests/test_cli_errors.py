"""Every bad ``palmbook train`` / ``generate`` input: exit code, exactly one stderr line, no traceback, and a
directory left exactly as it was when the command fails. Plus resume with corrupted or missing metadata.

Most rows run :func:`palmbook.cli.main` in this process (what the console script calls, minus interpreter start-up);
the rows in :data:`SUBPROCESS` run the real ``python -m palmbook`` to prove the entry point prints no traceback
either (and, for the surrogate row, that invalid UTF-8 bytes in argv reach the same one-line error).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from palmbook.checkpoint import META_NAME

pytestmark = pytest.mark.slow

T = ["--preset", "palm-tiny", "--batch-size", "8", "--seq-len", "32", "--vocab-size", "400", "--no-progress",
     "--sample-by", "paragraph", "--steps", "4", "--checkpoint-every", "2", "--eval-every", "2", "--eval-batches", "1",
     "--log-every", "1"]  # fmt: skip


ENV = {"OMP_NUM_THREADS": "1", "PALMBOOK_PROFILE": "smoke", "HF_DATASETS_OFFLINE": "1",
       "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}  # fmt: skip


def run(args: list, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m palmbook ARGS`` in ``cwd`` (args may hold bytes: argv as a shell passes it)."""
    env = {**os.environ, **ENV}
    env.pop("PALMBOOK_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "palmbook", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, errors="replace", timeout=120)  # fmt: skip


@pytest.fixture
def in_process(monkeypatch, capsys):
    """``run`` without a new interpreter: palmbook.cli.main(args) in ``cwd``; the same CompletedProcess back."""
    from palmbook.cli import main

    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("PALMBOOK_DEBUG", raising=False)

    def call(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        try:
            code = main(args)
        except SystemExit as e:  # argparse errors
            code = e.code if isinstance(e.code, int) else 1
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return call


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:  # a subprocess: module fixtures cannot use the function-scoped capsys
    """A finished 4-step run (checkpoints at 2 and 4) and its data, copied for each row."""
    root = tmp_path_factory.mktemp("cli")
    import random

    rng = random.Random(0)
    words = Path(__file__).read_text().split()
    (root / "text.txt").write_text("\n\n".join(" ".join(rng.choice(words) for _ in range(60)) for _ in range(500)))
    (root / "latin1.txt").write_bytes(("caf\xe9 au lait\n" * 5000).encode("latin-1"))
    r = run(["train", *T, "--data", "text.txt", "--out-dir", "run"], root)
    assert r.returncode == 0, r.stderr
    return root


def _truncate_all(d: Path) -> None:
    for p in (d / "run" / "checkpoints").glob("step_*/optimizer.safetensors"):
        p.write_bytes(p.read_bytes()[:1000])


def _edit_trainer_json(change):
    def edit(d: Path) -> None:
        for p in (d / "run" / "checkpoints").glob(f"step_*/{META_NAME}"):
            meta = json.loads(p.read_text())
            change(meta)
            p.write_text(json.dumps(meta))

    return edit


def _write(name: str, text: str):
    return lambda d: (d / "run" / name).write_text(text)


# (id, argv, set-up, exit code, a regex the single stderr line must match)
ROWS = [
    ("empty-out-dir", ["train", *T, "--data", "text.txt", "--out-dir", ""], None, 1, r"needs --out-dir"),
    ("fresh-in-used-dir", ["train", *T, "--data", "text.txt", "--out-dir", "run"], None, 1, r"--resume.*--overwrite"),
    ("resume-and-overwrite", ["train", "--out-dir", "run", "--resume", "--overwrite"], None, 2, r"not allowed with"),
    ("resume-missing-dir", ["train", "--out-dir", "nowhere", "--resume"], None, 1, r"nothing to resume"),
    (
        "resume-all-truncated",
        ["train", "--out-dir", "run", "--resume"],
        _truncate_all,
        1,
        r"no valid checkpoint.*Nothing was deleted",
    ),
    (
        "resume-no-scheduler",
        ["train", "--out-dir", "run", "--resume"],
        _edit_trainer_json(lambda m: m.pop("scheduler")),
        1,
        r"no valid checkpoint.*scheduler",
    ),
    (
        "resume-empty-rng",
        ["train", "--out-dir", "run", "--resume"],
        _edit_trainer_json(lambda m: m.update(rng=[])),
        1,
        r"no valid checkpoint.*rng",
    ),
    ("resume-run-json-list", ["train", "--out-dir", "run", "--resume"], _write("run.json", "[]"), 1, r"run\.json"),
    (
        "resume-run-json-invalid",
        ["train", "--out-dir", "run", "--resume"],
        _write("run.json", "{"),
        1,
        r"run\.json is not valid JSON",
    ),
    (
        "resume-no-run-json",
        ["train", "--out-dir", "run", "--resume"],
        lambda d: (d / "run/run.json").unlink(),
        1,
        r"no run\.json",
    ),
    (
        "resume-changes-seq-len",
        ["train", "--out-dir", "run", "--resume", "--seq-len", "16"],
        None,
        1,
        r"cannot change --seq-len",
    ),
    (
        "resume-changes-data",
        ["train", "--out-dir", "run", "--resume", "--data", "latin1.txt"],
        None,
        1,
        r"cannot change --data",
    ),
    (
        "resume-changes-preset",
        ["train", "--out-dir", "run", "--resume", "--preset", "palm-mini"],
        None,
        1,
        r"cannot change --preset",
    ),
    (
        "resume-changes-vocab",
        ["train", "--out-dir", "run", "--resume", "--vocab-size", "600"],
        None,
        1,
        r"cannot change --vocab-size",
    ),
    (
        "resume-changes-optimizer",
        ["train", "--out-dir", "run", "--resume", "--optimizer", "adamw"],
        None,
        1,
        r"cannot change optimizer",
    ),
    (
        "resume-changes-batch",
        ["train", "--out-dir", "run", "--resume", "--batch-size", "4"],
        None,
        1,
        r"cannot change batch_size",
    ),
    ("seq-len-zero", ["train", *T, "--seq-len", "0", "--out-dir", "new"], None, 2, r"positive integer"),
    (
        "preset-and-model-config",
        ["train", *T, "--model-config", "x.json", "--out-dir", "new"],
        None,
        1,
        r"--preset or --model-config",
    ),
    (
        "latin1-data",
        ["train", *T, "--data", "latin1.txt", "--sample-by", "line", "--out-dir", "new"],
        None,
        1,
        r"not UTF-8",
    ),
    (
        "bad-batch-schedule",
        ["train", *T, "--batch-schedule", "0:8,2:12", "--out-dir", "new"],
        None,
        1,
        r"multiple of batch_size",
    ),
    ("out-dir-is-a-file", ["train", *T, "--data", "text.txt", "--out-dir", "text.txt"], None, 1, r"text\.txt"),
    ("generate-bad-device", ["generate", "run/best", "--prompt", "a", "--device", "banana"], None, 1, r"device"),
    (
        "generate-surrogate-prompt",
        ["generate", "run/best", "--prompt", b"caf\xe9"],
        None,
        1,
        r"lone surrogate '\\udce9' at index 3 .*re-encode the input as UTF-8",
    ),
    ("generate-tiny-temperature", ["generate", "run/best", "--temperature", "inf"], None, 1, r"--temperature"),
    ("generate-top-k-zero", ["generate", "run/best", "--top-k", "0"], None, 1, r"--top-k must be >= 1"),
    ("generate-top-p", ["generate", "run/best", "--top-p", "1.5"], None, 1, r"--top-p must be in \(0, 1\]"),
    (
        "generate-prompt-too-long",
        ["generate", "run/best", "--prompt", "word " * 400],
        None,
        1,
        r"the prompt is \d+ tokens and this model's context is 128 tokens, so at most 0 new tokens fit: shorten",
    ),
    (
        "generate-too-many-new-tokens",
        ["generate", "run/best", "--max-new-tokens", "500"],
        None,
        1,
        r"at most 127 new tokens fit \(--max-new-tokens asks for 500\)",
    ),
    (
        "model-too-large-for-ram",
        ["train", *T[2:], "--data", "text.txt", "--model-config", "huge.json", "--out-dir", "new"],
        lambda d: (d / "huge.json").write_text(
            '{"d_model": 65536, "n_layers": 256, "n_heads": 256, "vocab_size": 512}'
        ),
        1,
        r"needs at least [\d,.]+ GiB of memory .* use a smaller model .* or a machine with more memory",
    ),
]
# Rows run through the real entry point (python -m palmbook) as well as in-process.
SUBPROCESS = {"fresh-in-used-dir", "resume-all-truncated", "latin1-data", "generate-surrogate-prompt"}


CASES = [r for r in ROWS if r[0] not in SUBPROCESS] + [
    (f"{r[0]}-subprocess", *r[1:]) for r in ROWS if r[0] in SUBPROCESS
]


@pytest.mark.parametrize("name, argv, setup, code, pattern", CASES, ids=[c[0] for c in CASES])
def test_a_bad_command_is_one_stderr_line_with_no_traceback_and_changes_nothing(
    base, tmp_path, in_process, name, argv, setup, code, pattern
):
    import re
    import shutil

    d = tmp_path / "w"
    shutil.copytree(base, d)
    if setup is not None:
        setup(d)
    before = tree(d)
    r = run(argv, d) if name.endswith("-subprocess") else in_process(argv, d)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code, r.stderr
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert re.search(pattern, lines[0]), lines[0]
    after = tree(d)
    after.pop("new/run.lock", None)
    after.pop("nowhere/run.lock", None)
    after.pop("run/run.lock", None), before.pop("run/run.lock", None)
    assert after == before, "a failed command must not change the directory"


def test_resume_with_a_new_lr_takes_effect_from_the_next_step(base, tmp_path, in_process):
    import shutil

    d = tmp_path / "w"
    shutil.copytree(base, d)
    r = in_process(["train", "--out-dir", "run", "--resume", "--steps", "6", "--lr", "0.5", "--schedule", "constant",
             "--log-every", "1"], d)  # fmt: skip
    assert r.returncode == 0, r.stderr
    from palmbook.rundir import load_metrics

    lrs = {rec["step"]: rec["lr"] for rec in load_metrics(d / "run") if "lr" in rec}
    assert lrs[5] == 0.5 and lrs[6] == 0.5
    assert lrs[4] != 0.5


def test_debug_shows_the_traceback(base, tmp_path):
    r = run(["--debug", "train", "--out-dir", "nowhere", "--resume"], tmp_path)
    assert r.returncode == 1 and "Traceback" in r.stderr
