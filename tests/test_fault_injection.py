"""Fault injection: training killed at many points (SIGKILL, SIGTERM; during steps and inside checkpoint writes),
write failures (RLIMIT_FSIZE), and two runs on one directory. After every fault the run is resumed to the end and
must equal an uninterrupted run bit for bit (every logged loss, the final weights), with nothing left on disk.

Each run is a subprocess of ``palmbook train`` (palm-tiny, 12 steps); a driver wraps the CLI and kills or limits
itself at a chosen point: the Nth ``os.replace`` (every atomic rename of a checkpoint, best/, run.json, the
tokenizer), the Nth step, or after the first checkpoint. The points come from a seeded random schedule.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from palmbook.io import WEIGHTS_NAME, load_safetensors
from palmbook.rundir import load_metrics

pytestmark = pytest.mark.slow

DRIVER = r"""
import os, resource, signal, sys, time
fault = os.environ.get("PB_FAULT", "")
kind, _, arg = fault.partition(":")
if kind == "replace":  # SIGKILL at the Nth rename (inside atomic writes and checkpoint swaps)
    n, real = [int(arg)], os.replace
    def replace(*a, **k):
        n[0] -= 1
        if n[0] == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **k)
    os.replace = replace
if kind in ("kill", "term", "slow"):  # a signal to itself after step N (or a slow step, for concurrency)
    import palmbook.train; t = sys.modules["palmbook.train"]
    real_step, count = t.Trainer.train_step, [0]
    def step(self):
        count[0] += 1
        if kind == "slow":
            time.sleep(1.5)
        elif count[0] == int(arg):
            os.kill(os.getpid(), signal.SIGKILL if kind == "kill" else signal.SIGTERM)
        return real_step(self)
    t.Trainer.train_step = step
if kind == "fsize":  # after the first checkpoint, files may not grow past arg bytes
    import palmbook.train; t = sys.modules["palmbook.train"]
    real_write = t.write_training_checkpoint
    def write(*a, **k):
        out = real_write(*a, **k)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(arg), resource.RLIM_INFINITY))
        return out
    t.write_training_checkpoint = write
from palmbook.cli import main
sys.exit(main(sys.argv[1:]))
"""

STEPS = 12
FLAGS = ["--preset", "palm-tiny", "--batch-size", "8", "--seq-len", "32", "--vocab-size", "400", "--no-progress",
         "--sample-by", "paragraph", "--steps", str(STEPS), "--checkpoint-every", "2", "--eval-every", "4",
         "--eval-batches", "2", "--keep", "2", "--log-every", "1", "--spike-factor", "none"]  # fmt: skip
LEFTOVER = re.compile(r"\.(tmp|old)(-\d+)?$|\.tmp-")


def _env(fault: str = "") -> dict[str, str]:
    return {**os.environ, "PB_FAULT": fault, "OMP_NUM_THREADS": "1", "PALMBOOK_PROFILE": "smoke",
            "HF_DATASETS_OFFLINE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}  # fmt: skip


def palmbook(args: list[str], fault: str = "", **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", DRIVER, "train", *args], env=_env(fault), capture_output=True,
                          text=True, timeout=120, **kw)  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    """A text file and a tokenizer trained on it (so each run skips tokenizer training)."""
    root = tmp_path_factory.mktemp("corpus")
    words = Path(__file__).read_text().split()
    rng = random.Random(0)
    text = root / "text.txt"
    text.write_text("\n\n".join(" ".join(rng.choice(words) for _ in range(60)) for _ in range(500)))
    from palmbook.tokenizer import Tokenizer

    Tokenizer.train(text.read_text().split("\n\n"), vocab_size=400).save(root / "tok.model")
    return text, root / "tok.model"


def flags(corpus, out: Path) -> list[str]:
    return [*FLAGS, "--data", str(corpus[0]), "--tokenizer", str(corpus[1]), "--out-dir", str(out)]


def finished(out: Path) -> tuple[list[float], dict[str, torch.Tensor]]:
    """Per-step losses of the run's timeline and the final checkpoint's weights."""
    losses = {r["step"]: r["loss"] for r in load_metrics(out) if "loss" in r and "event" not in r}
    assert sorted(losses) == list(range(1, STEPS + 1)), sorted(losses)
    return [losses[s] for s in sorted(losses)], load_safetensors(
        out / "checkpoints" / f"step_{STEPS:08d}" / WEIGHTS_NAME
    )


def assert_clean(out: Path) -> None:
    left = [p for p in out.rglob("*") if LEFTOVER.search(p.name)]
    assert left == [], f"leftover temporaries: {left}"
    assert (out / "run.lock").read_text() == "", "the lock record must be cleared on exit"
    assert len(list((out / "checkpoints").glob("step_*"))) <= 3


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    r = palmbook(flags(corpus, out))
    assert r.returncode == 0, r.stderr
    return finished(out)


def resume_until_done(corpus, out: Path, faults: list[str]) -> list[int]:
    """Start, then resume after each fault; the last run has no fault. Returns the exit codes seen."""
    codes = []
    started = False
    for fault in [*faults, ""]:
        if not started:
            r = palmbook([*flags(corpus, out), *(["--overwrite"] if out.exists() else [])], fault)
        else:
            r = palmbook([*flags(corpus, out), "--resume"], fault)
            if r.returncode == 1 and "nothing to resume" in r.stderr:  # killed before the first checkpoint
                r = palmbook([*flags(corpus, out), "--overwrite"], fault)
        assert "Traceback" not in r.stderr, r.stderr
        codes.append(r.returncode)
        started = True
    assert codes[-1] == 0, r.stderr
    return codes


def assert_same(reference, out: Path) -> None:
    losses, weights = finished(out)
    ref_losses, ref_weights = reference
    assert losses == ref_losses
    assert weights.keys() == ref_weights.keys()
    assert all(torch.equal(weights[k], ref_weights[k]) for k in weights)
    assert_clean(out)


@pytest.mark.parametrize("seed", [0, 1])
def test_sigkill_inside_writes_at_random_renames_resumes_bit_exact_and_leaves_nothing(
    corpus, reference, tmp_path, seed
):
    rng = random.Random(seed)
    faults = [f"replace:{rng.randint(1, 30)}" for _ in range(4)]
    codes = resume_until_done(corpus, tmp_path / "run", faults)
    assert -signal.SIGKILL in codes
    assert_same(reference, tmp_path / "run")


def test_sigkill_and_sigterm_during_steps_resume_bit_exact(corpus, reference, tmp_path):
    rng = random.Random(7)
    faults = [f"{rng.choice(['kill', 'term'])}:{rng.randint(1, 5)}" for _ in range(4)] + ["term:2"]
    codes = resume_until_done(corpus, tmp_path / "run", faults)
    assert 143 in codes  # SIGTERM saves a checkpoint and exits 143
    assert_same(reference, tmp_path / "run")


def test_a_write_failure_is_one_line_keeps_earlier_checkpoints_and_the_run_resumes(corpus, reference, tmp_path):
    out = tmp_path / "run"
    r = palmbook(flags(corpus, out), "fsize:60000")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "could not write" in lines[0] and "--resume" in lines[0]
    from palmbook.checkpoint import read_checkpoint

    kept = sorted((out / "checkpoints").glob("step_*"))
    assert [p.name for p in kept] == ["step_00000002"]
    read_checkpoint(kept[0])  # intact
    assert [p for p in out.rglob("*") if LEFTOVER.search(p.name)] == []
    r = palmbook([*flags(corpus, out), "--resume"])
    assert r.returncode == 0, r.stderr
    assert_same(reference, out)


def test_a_second_run_on_a_locked_directory_fails_at_once_naming_the_holder(corpus, reference, tmp_path):
    out = tmp_path / "run"
    a = subprocess.Popen([sys.executable, "-c", DRIVER, "train", *flags(corpus, out)], env=_env("slow"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.time() + 60
        while not ((out / "run.lock").is_file() and str(a.pid) in (out / "run.lock").read_text()):
            assert time.time() < deadline and a.poll() is None
            time.sleep(0.1)
        for extra in ([], ["--resume"], ["--overwrite"]):
            start = time.time()
            b = palmbook([*flags(corpus, out), *extra, "--seed", "1"])
            assert b.returncode == 1 and time.time() - start < 30
            lines = b.stderr.strip().splitlines()
            assert len(lines) == 1 and f"pid {a.pid}" in lines[0] and "in use by another run" in lines[0], b.stderr
    finally:
        _, err = a.communicate(timeout=120)
    assert a.returncode == 0, err
    assert_same(reference, out)
