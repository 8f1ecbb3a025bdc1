"""Fault injection: training killed at many points (SIGKILL, SIGTERM; during steps and inside checkpoint writes),
write failures (RLIMIT_FSIZE), and two runs on one directory. After every fault the run is resumed to the end and
must equal an uninterrupted run bit for bit (every logged loss, the final weights), with nothing left on disk.

Each run is ``palmbook train`` (palm-tiny, 12 steps, PaLM's growing batch: 8 sequences, then 16 from step 7) in a
forked child of this process, which runs :func:`palmbook.cli.main` as the console script does (minus the
interpreter start-up, which dominated the run time; tests/test_cli_errors.py runs the real entry point). The child
kills or limits itself at a chosen point: the Nth ``os.replace`` (every atomic rename of a checkpoint, best/,
run.json, the tokenizer), the Nth step, or after the first checkpoint. The points come from a seeded random
schedule. The uninterrupted reference run is shared by the module, and runs under umask 027.
"""

from __future__ import annotations

import os
import random
import re
import resource
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import pytest
import torch

from palmbook.io import WEIGHTS_NAME, load_safetensors
from palmbook.rundir import load_metrics

pytestmark = pytest.mark.slow


def _inject(fault: str) -> None:
    """Arm one fault in this (child) process: ``replace:N``, ``kill:N``, ``term:N``, ``gate:PATH``, ``fsize:N``."""
    import palmbook.train  # noqa: F401  (the package's train() shadows the module's name)

    t = sys.modules["palmbook.train"]
    kind, _, arg = fault.partition(":")
    if kind == "replace":  # SIGKILL at the Nth rename (inside atomic writes and checkpoint swaps)
        n, real = [int(arg)], os.replace

        def replace(*a, **k):
            n[0] -= 1
            if n[0] == 0:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*a, **k)

        os.replace = replace
    if kind in ("kill", "term", "gate"):  # a signal to itself before its Nth step, or wait for a file to appear
        real_step, count = t.Trainer.train_step, [0]

        def step(self):
            count[0] += 1
            if kind == "gate":
                deadline = time.time() + 60
                while not os.path.exists(arg) and time.time() < deadline:
                    time.sleep(0.05)
            elif count[0] == int(arg):
                os.kill(os.getpid(), signal.SIGKILL if kind == "kill" else signal.SIGTERM)
            return real_step(self)

        t.Trainer.train_step = step
    if kind == "fsize":  # after the first checkpoint, files may not grow past arg bytes
        real_write = t.write_training_checkpoint

        def write(*a, **k):
            out = real_write(*a, **k)
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (int(arg), resource.RLIM_INFINITY))
            return out

        t.write_training_checkpoint = write


class Child:
    """``palmbook train ARGS`` in a forked child: ``start()``, then ``wait()`` -> subprocess.CompletedProcess
    (returncode -9 for SIGKILL, as subprocess reports it)."""

    def __init__(self, args: list[str], fault: str = "", umask: int | None = None) -> None:
        self.args, self.fault, self.umask = args, fault, umask

    def start(self) -> Child:
        self.out, self.err = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # noqa: SIM115 (closed by wait)
        sys.stdout.flush(), sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns into pytest
            code = 70
            try:
                os.dup2(self.out.fileno(), 1), os.dup2(self.err.fileno(), 2)
                sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
                sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
                if self.umask is not None:
                    os.umask(self.umask)
                _inject(self.fault)
                from palmbook.cli import main

                code = main(["train", *self.args])
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush(), sys.stderr.flush()
                os._exit(code)
        return self

    def poll(self) -> int | None:
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return None
        self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float = 120) -> subprocess.CompletedProcess:
        deadline = time.time() + timeout
        while getattr(self, "returncode", None) is None and self.poll() is None:
            if time.time() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                pytest.fail(f"palmbook train {self.args} (fault {self.fault!r}) ran over {timeout} s")
            time.sleep(0.02)
        text = []
        for f in (self.out, self.err):
            f.seek(0)
            text.append(f.read().decode("utf-8", "replace"))
            f.close()
        return subprocess.CompletedProcess(self.args, self.returncode, *text)


def palmbook(args: list[str], fault: str = "", umask: int | None = None) -> subprocess.CompletedProcess:
    return Child(args, fault, umask).start().wait()


STEPS = 12
FLAGS = ["--preset", "palm-tiny", "--batch-size", "8", "--seq-len", "32", "--vocab-size", "400", "--no-progress",
         "--sample-by", "paragraph", "--steps", str(STEPS), "--checkpoint-every", "2", "--eval-every", "4",
         "--eval-batches", "2", "--keep", "2", "--log-every", "1", "--spike-factor", "none",
         "--batch-schedule", "0:8,6:16"]  # fmt: skip
LEFTOVER = re.compile(r"\.(tmp|old)(-\d+)?$|\.tmp-")


@pytest.fixture(scope="module", autouse=True)
def quiet_process(tmp_path_factory):
    """What the forked children inherit: one torch thread (an OpenMP pool does not survive fork) and the
    environment ``palmbook train`` runs with in CI."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    for k, v in {"PALMBOOK_PROFILE": "smoke", "HF_DATASETS_OFFLINE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
                 "TQDM_DISABLE": "1"}.items():  # fmt: skip
        mp.setenv(k, v)
    mp.delenv("PALMBOOK_DEBUG", raising=False)
    import palmbook.cli  # noqa: F401  (imported once here, not in every child)

    yield
    mp.undo()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    """A text file and a tokenizer trained on it (so each run skips tokenizer training)."""
    root = tmp_path_factory.mktemp("corpus")
    words = Path(__file__).read_text().split()
    rng = random.Random(0)
    text = root / "text.txt"
    text.write_text("\n\n".join(" ".join(rng.choice(words) for _ in range(60)) for _ in range(500)))
    from palmbook.tokenizer import Tokenizer

    Tokenizer.train(text.read_text().split("\n\n"), vocab_size=400, num_threads=1).save(root / "tok.model")
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
def reference_run(corpus, tmp_path_factory) -> Path:
    """The uninterrupted run every faulty one is compared with; umask 027 (a shared group, no others)."""
    out = tmp_path_factory.mktemp("ref") / "run"
    r = palmbook(flags(corpus, out), umask=0o027)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def reference(reference_run):
    return finished(reference_run)


def test_every_file_of_a_run_honours_the_umask(reference_run):
    modes = {p.relative_to(reference_run).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in reference_run.rglob("*")}
    assert {"run.json", "metrics.jsonl", "tokenizer.model", "best/model.safetensors"} <= modes.keys()
    assert any(name.startswith("checkpoints/step_") and name.endswith("trainer.json") for name in modes)
    wrong = {
        name: oct(mode) for name, mode in modes.items() if mode != (0o750 if (reference_run / name).is_dir() else 0o640)
    }
    assert wrong == {}, "umask 027 means files 0640 and directories 0750"


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
    gate = tmp_path / "go"  # run A holds the lock and waits at its first step until B has tried three times
    a = Child(flags(corpus, out), f"gate:{gate}").start()
    try:
        deadline = time.time() + 60
        while not ((out / "run.lock").is_file() and str(a.pid) in (out / "run.lock").read_text()):
            assert time.time() < deadline and a.poll() is None
            time.sleep(0.05)
        for extra in ([], ["--resume"], ["--overwrite"]):
            start = time.time()
            b = palmbook([*flags(corpus, out), *extra, "--seed", "1"])
            assert b.returncode == 1 and time.time() - start < 30
            lines = b.stderr.strip().splitlines()
            assert len(lines) == 1 and f"pid {a.pid}" in lines[0] and "in use by another run" in lines[0], b.stderr
    finally:
        gate.touch()
        r = a.wait()
    assert r.returncode == 0, r.stderr
    assert_same(reference, out)


def test_a_kill_right_after_the_batch_grows_resumes_bit_exact_and_refuses_to_rewrite_the_past(
    corpus, reference, tmp_path
):
    """--batch-schedule 0:8,6:16: step 7 is the first of 16 sequences. Killed before step 7 (checkpoint 6 on disk),
    then right after step 7 (its work lost), then after step 8 (checkpoint 8): every resume is bit-exact. A resume
    that changes an entry at or before its step is refused, naming it, and changes nothing."""
    out = tmp_path / "run"
    codes = resume_until_done(corpus, out, ["kill:7", "kill:2", "kill:3"])
    assert codes == [-signal.SIGKILL] * 3 + [0]
    assert_same(reference, out)
    before = sorted((p.as_posix(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.name != "run.lock")
    r = palmbook([*flags(corpus, out), "--resume", "--steps", "14", "--batch-schedule", "0:8,4:16"])
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "batch_schedule entries at or before step 12" in r.stderr
    assert sorted((p.as_posix(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.name != "run.lock") == before
