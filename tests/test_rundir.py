"""RunDirectory: one run owns its directory; nothing of it is mixed, lost or pruned by mistake (issue 15)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from palmbook import rundir
from palmbook.rundir import (
    NothingToResume,
    RunDirectory,
    RunDirectoryBusy,
    RunDirectoryError,
    RunDirectoryNotEmpty,
    apply_umask,
    umask_mode,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX locks and modes")

# A second process that takes the lock, says so, then waits to be killed (or releases and exits on "release").
HOLDER = textwrap.dedent(
    """
    import sys
    from palmbook.rundir import RunDirectory

    d = RunDirectory(sys.argv[1], command=["palmbook", "train", "--out-dir", sys.argv[1]]).acquire()
    print("locked", flush=True)
    if sys.stdin.readline().strip() == "release":
        d.release()
        print("released", flush=True)
        sys.stdin.readline()
    """
)


class Holder:
    """A live process holding the lock of ``root``."""

    def __init__(self, root: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout.readline().strip() == "locked"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def say(self, line: str) -> str:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        for stream in (self.proc.stdin, self.proc.stdout):
            stream.close()


@pytest.fixture
def holder(tmp_path):
    h = Holder(tmp_path / "run")
    yield h
    h.kill()


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def quiet():
    """Notices RunDirectory would print, collected instead."""
    return []


def run_dir(root: Path, quiet: list[str]) -> RunDirectory:
    return RunDirectory(root, command=["palmbook", "train", "--out-dir", str(root)], say=quiet.append)


def tree(root: Path) -> dict[str, int]:
    """Every path under ``root`` with its size: a snapshot to prove nothing changed."""
    return {str(p.relative_to(root)): p.stat().st_size if p.is_file() else -1 for p in sorted(root.rglob("*"))}


def make_checkpoint(root: Path, step: int, ok: bool = True) -> Path:
    path = root / "checkpoints" / f"step_{step:08d}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights" * 10)
    (path / "trainer.json").write_text('{"ok": true}' if ok else "{trunc")
    return path


def validate(path: Path) -> None:
    """A stand-in for checkpoint.read_checkpoint: raises on a damaged checkpoint."""
    if (path / "trainer.json").read_text() != '{"ok": true}':
        raise ValueError(f"{path / 'trainer.json'} does not match its recorded sha256")


def make_run(root: Path) -> None:
    """The files a run leaves behind, including the leftovers of an interrupted write."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "run.json").write_text("{}")
    (root / "metrics.jsonl").write_text('{"step": 1}\n')
    (root / "tokenizer.model").write_bytes(b"tok")
    (root / "best").mkdir()
    (root / "best" / "model.safetensors").write_bytes(b"w")
    (root / ".best.old-12345").mkdir()
    (root / ".run.json.abc123.tmp").write_text("{")
    for step in (10, 20):
        make_checkpoint(root, step)
    (root / "checkpoints" / ".step_00000030.tmp-12345").mkdir()


# ============================================================================================ the lock
def test_second_process_fails_at_once_naming_the_holder(holder, tmp_path, quiet):
    start = time.monotonic()
    with pytest.raises(RunDirectoryBusy) as info:
        run_dir(tmp_path / "run", quiet).acquire()
    assert time.monotonic() - start < 5, "a busy directory must fail at once, not wait for the holder"
    message = str(info.value)
    assert f"pid {holder.pid}" in message and f"palmbook train --out-dir {tmp_path / 'run'}" in message
    assert f"kill {holder.pid}" in message and "--out-dir" in message
    assert info.value.holder.pid == holder.pid
    assert "\n" not in message  # the CLI prints one line


def test_a_busy_directory_is_refused_to_another_process_while_this_one_holds_it(tmp_path, quiet):
    root = tmp_path / "run"
    with run_dir(root, quiet):
        code = "import sys; from palmbook.rundir import RunDirectory; RunDirectory(sys.argv[1]).acquire()"
        proc = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "RunDirectoryBusy" in proc.stderr and f"pid {os.getpid()}" in proc.stderr


def test_a_released_lock_is_free_for_the_next_run_with_nothing_stale_reported(holder, tmp_path, quiet):
    assert holder.say("release") == "released"
    d = run_dir(tmp_path / "run", quiet).acquire()
    assert d.took_over is None and quiet == []
    assert d.holder().pid == os.getpid()
    d.release()


def test_lock_of_a_killed_run_is_taken_over_and_reported(holder, tmp_path, quiet):
    pid = holder.pid
    holder.kill()  # SIGKILL: no release, the record stays in run.lock
    with run_dir(tmp_path / "run", quiet) as d:
        assert d.took_over is not None and d.took_over.pid == pid
        assert d.holder().pid == os.getpid()
    assert len(quiet) == 1 and "stale lock" in quiet[0] and f"pid {pid}" in quiet[0]


def test_without_flock_a_dead_pid_record_is_stale_and_a_live_one_is_busy(tmp_path, quiet, monkeypatch, dead_pid):
    monkeypatch.setattr(rundir, "_try_flock", lambda fd: "unsupported")  # e.g. an NFS mount without locks
    root = tmp_path / "run"
    root.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (root / "run.lock").write_text(rundir.LockHolder(live.pid, rundir.socket.gethostname(), 0.0).to_json())
        with pytest.raises(RunDirectoryBusy, match=f"pid {live.pid}"):
            run_dir(root, quiet).acquire()
    finally:
        live.kill()
        live.wait()
    (root / "run.lock").write_text(rundir.LockHolder(dead_pid, rundir.socket.gethostname(), 0.0).to_json())
    with run_dir(root, quiet) as d:
        assert d.took_over.pid == dead_pid


def test_a_forked_child_closing_its_copy_does_not_release_the_parents_lock(tmp_path, quiet):
    root = tmp_path / "run"
    with run_dir(root, quiet) as d:
        pid = os.fork()
        if pid == 0:  # e.g. a DataLoader worker that inherited the descriptor and cleans up on exit
            d.release()
            os._exit(0)
        os.waitpid(pid, 0)
        with pytest.raises(RunDirectoryBusy):
            run_dir(root, quiet).acquire()  # a new open file description: still locked by this process


def test_an_empty_out_dir_or_a_file_is_refused(tmp_path, quiet):
    with pytest.raises(RunDirectoryError, match="--out-dir"):
        RunDirectory("")
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunDirectoryError, match="is a file"):
        run_dir(tmp_path / "f", quiet).acquire()


def test_errors_are_value_errors_so_the_cli_prints_one_line():
    for cls in (RunDirectoryBusy, RunDirectoryNotEmpty, NothingToResume):
        assert issubclass(cls, RunDirectoryError) and issubclass(cls, ValueError)


def test_prepare_and_prune_need_the_lock(tmp_path, quiet):
    d = run_dir(tmp_path / "run", quiet)
    with pytest.raises(RuntimeError, match="acquire"):
        d.prepare("fresh")
    with pytest.raises(RuntimeError, match="acquire"):
        d.prune(1, [])


# ============================================================================================ fresh / overwrite
def test_fresh_run_refuses_a_non_empty_directory_and_names_both_ways_on(tmp_path, quiet):
    root = tmp_path / "run"
    make_run(root)
    before = tree(root)
    with run_dir(root, quiet) as d, pytest.raises(RunDirectoryNotEmpty) as info:
        d.prepare("fresh")
    message = str(info.value)
    assert "--resume" in message and "--overwrite" in message
    assert "run.json" in message and "checkpoints/ (2 checkpoint(s), steps 10..20, 1 unfinished)" in message
    before.pop("run.lock", None)
    after = tree(root)
    after.pop("run.lock")
    assert after == before


def test_fresh_run_accepts_a_new_or_empty_directory(tmp_path, quiet):
    with run_dir(tmp_path / "new" / "run", quiet) as d:
        assert d.prepare("fresh").removed == []
        assert [p.name for p in d.root.iterdir()] == ["run.lock"]


def test_overwrite_removes_exactly_the_runs_files_and_lists_them(tmp_path, quiet):
    root = tmp_path / "run"
    make_run(root)
    (root / "notes.txt").write_text("mine")
    (root / "data").mkdir()
    (root / "data" / "corpus.txt").write_text("text")
    (root / "checkpoints" / "README").write_text("mine too")
    with run_dir(root, quiet) as d:
        prepared = d.prepare("overwrite")
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    assert left == ["checkpoints", "checkpoints/README", "data", "data/corpus.txt", "notes.txt", "run.lock"]
    removed = {str(p.relative_to(root)) for p in prepared.removed}
    assert removed == {
        "run.json", "metrics.jsonl", "tokenizer.model", "best", ".best.old-12345", ".run.json.abc123.tmp",
        "checkpoints/step_00000010", "checkpoints/step_00000020", "checkpoints/.step_00000030.tmp-12345",
    }  # fmt: skip
    assert len(quiet) == 1 and "--overwrite: removed" in quiet[0] and "checkpoints/step_00000010" in quiet[0]


def test_overwrite_removes_a_symlink_never_what_it_points_at(tmp_path, quiet):
    root, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (elsewhere / "precious").write_text("x")
    (root / "best").symlink_to(elsewhere)
    with run_dir(root, quiet) as d:
        d.prepare("overwrite")
    assert not (root / "best").exists() and (elsewhere / "precious").read_text() == "x"


# ============================================================================================ resume
def test_resume_without_a_valid_checkpoint_fails_and_deletes_nothing(tmp_path, quiet, dead_pid):
    root = tmp_path / "run"
    make_run(root)
    for step in (10, 20):
        (root / "checkpoints" / f"step_{step:08d}" / "trainer.json").write_text("{trunc")
    (root / "checkpoints" / f".step_00000030.tmp-{dead_pid}").mkdir()
    before = tree(root)
    with run_dir(root, quiet) as d, pytest.raises(NothingToResume) as info:
        d.prepare("resume", validate=validate, required=["run.json"])
    message = str(info.value)
    assert "step_00000010: ValueError" in message and "step_00000020: ValueError" in message
    assert "Nothing was deleted" in message and "--overwrite" in message and "\n" not in message
    after = tree(root)
    assert {k: v for k, v in after.items() if k != "run.lock"} == {k: v for k, v in before.items() if k != "run.lock"}
    assert quiet == []


@pytest.mark.parametrize("exists", [False, True])
def test_resume_of_an_empty_or_missing_directory_says_to_drop_resume(tmp_path, quiet, exists):
    root = tmp_path / "run"
    if exists:
        root.mkdir()
    with run_dir(root, quiet) as d, pytest.raises(NothingToResume, match="drop --resume"):
        d.prepare("resume", validate=validate)


def test_resume_needs_the_required_run_files(tmp_path, quiet):
    root = tmp_path / "run"
    make_checkpoint(root, 10)
    with run_dir(root, quiet) as d, pytest.raises(NothingToResume, match=r"1 valid checkpoint\(s\) and no run\.json"):
        d.prepare("resume", validate=validate, required=["run.json"])


def test_resume_picks_the_newest_valid_checkpoint_and_keeps_a_damaged_newer_one(tmp_path, quiet):
    root = tmp_path / "run"
    make_run(root)
    damaged = make_checkpoint(root, 30, ok=False)
    with run_dir(root, quiet) as d:
        prepared = d.prepare("resume", validate=validate, required=["run.json"])
    assert prepared.latest == root / "checkpoints" / "step_00000020"
    assert [s for s, _ in prepared.valid] == [10, 20] and [s for s, _, _ in prepared.damaged] == [30]
    assert damaged.is_dir()
    # the leftovers of the interrupted write are gone (the lock is held: every temporary is stale)
    assert not (root / "checkpoints" / ".step_00000030.tmp-12345").exists()
    assert not (root / ".best.old-12345").exists() and (root / "best").is_dir()


# ============================================================================================ temporaries
def test_unlocked_cleaning_removes_only_temporaries_of_dead_processes(tmp_path, quiet, dead_pid):
    root = tmp_path / "run"
    ck = root / "checkpoints"
    ck.mkdir(parents=True)
    (ck / f".step_00000005.tmp-{dead_pid}").mkdir()
    (ck / f".step_00000006.tmp-{os.getpid()}").mkdir()  # a write in progress in a live process
    (root / f".best.tmp-{dead_pid}").mkdir()
    (root / ".metrics.jsonl.x1.tmp").write_text("")  # no pid: cannot tell, so kept
    done = run_dir(root, quiet).clean_stale_temporaries()
    assert sorted(p.name for p in done.removed) == sorted([f".step_00000005.tmp-{dead_pid}", f".best.tmp-{dead_pid}"])
    assert (ck / f".step_00000006.tmp-{os.getpid()}").exists() and (root / ".metrics.jsonl.x1.tmp").exists()


def test_locked_cleaning_removes_every_temporary(tmp_path, quiet):
    root = tmp_path / "run"
    ck = root / "checkpoints"
    ck.mkdir(parents=True)
    (ck / f".step_00000006.tmp-{os.getpid()}").mkdir()
    (root / ".tokenizer.model.x1.tmp").write_text("")
    with run_dir(root, quiet) as d:
        done = d.clean_stale_temporaries()
    assert len(done.removed) == 2 and sorted(p.name for p in root.rglob("*")) == ["checkpoints", "run.lock"]


def test_a_swapped_out_copy_whose_replacement_never_landed_is_restored(tmp_path, quiet, dead_pid):
    root = tmp_path / "run"
    ck = root / "checkpoints"
    old = ck / f".step_00000040.old-{dead_pid}"  # killed between "move step_40 aside" and "rename tmp into place"
    old.mkdir(parents=True)
    (old / "model.safetensors").write_bytes(b"w")
    (ck / f".step_00000040.tmp-{dead_pid}").mkdir()
    (root / f".best.old-{dead_pid}").mkdir()
    (root / "best").mkdir()  # here the swap finished: the old copy is just garbage
    with run_dir(root, quiet) as d:
        done = d.clean_stale_temporaries()
    assert done.restored == [ck / "step_00000040"] and (ck / "step_00000040" / "model.safetensors").is_file()
    assert not (root / f".best.old-{dead_pid}").exists() and (root / "best").is_dir()
    assert "restored checkpoints/step_00000040" in quiet[0]


# ============================================================================================ pruning
def test_prune_keeps_a_newer_damaged_checkpoint_and_the_newest_valid_ones(tmp_path, quiet):
    root = tmp_path / "run"
    for step in (10, 20, 30):
        make_checkpoint(root, step)
    make_checkpoint(root, 40, ok=False)  # newer but damaged: not vouched for
    with run_dir(root, quiet) as d:
        removed = d.prune(keep=2, valid_steps=[10, 20, 30])
        assert [p.name for p in removed] == ["step_00000010"]
        assert [s for s, _ in d.checkpoint_steps()] == [20, 30, 40]


def test_prune_never_removes_checkpoints_it_was_not_told_are_valid(tmp_path, quiet):
    root = tmp_path / "run"
    for step in (5, 10, 20, 30, 40):
        make_checkpoint(root, step)
    with run_dir(root, quiet) as d:
        removed = d.prune(keep=1, valid_steps=[20, 30, 40], protect=[20])  # 20: a spike's rollback target
        assert [p.name for p in removed] == ["step_00000030"]
        assert [s for s, _ in d.checkpoint_steps()] == [5, 10, 20, 40]
        with pytest.raises(ValueError, match="keep must be"):
            d.prune(keep=0, valid_steps=[])


# ============================================================================================ umask
@pytest.fixture
def umask():
    previous = os.umask(0o022)
    os.umask(previous)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_temporaries_get_the_mode_the_umask_allows(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    assert umask_mode() == mask and umask_mode() == mask  # reading it does not change it
    fd, name = tempfile.mkstemp(dir=tmp_path)  # always 0600
    os.close(fd)
    assert apply_umask(name) == file_mode and stat.S_IMODE(os.stat(name).st_mode) == file_mode
    folder = tempfile.mkdtemp(dir=tmp_path)  # always 0700
    assert apply_umask(folder) == dir_mode and stat.S_IMODE(os.stat(folder).st_mode) == dir_mode


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_the_run_directory_and_its_lock_honour_the_umask(tmp_path, umask, quiet, mask, file_mode, dir_mode):
    umask(mask)
    with run_dir(tmp_path / "a" / "run", quiet) as d:
        assert stat.S_IMODE(d.root.stat().st_mode) == dir_mode
        assert stat.S_IMODE(d.lock_file.stat().st_mode) == file_mode


# ---- a torn metrics line (reliability review, defect 17)
def test_a_torn_last_metrics_line_does_not_swallow_the_resume_event_after_it(tmp_path):
    from palmbook.rundir import append_record, load_metrics

    log = tmp_path / "metrics.jsonl"
    for step in range(1, 6):
        append_record(log, {"step": step, "loss": 10.0 - step})
    with open(log, "ab") as f:
        f.write(b'{"step": 6, "lo')  # killed mid-write
    append_record(log, {"event": "resume", "step": 3}, repair=True)
    for step in range(4, 8):
        append_record(log, {"step": step, "loss": 20.0 - step})
    records = load_metrics(log)
    assert [r for r in records if r.get("event") == "resume"] == [{"event": "resume", "step": 3}]
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6, 7]  # 4 and 5 of the killed session superseded, never twice
    assert [r["loss"] for r in records if "loss" in r][3:] == [16.0, 15.0, 14.0, 13.0]


def test_without_repair_the_torn_line_would_eat_the_event(tmp_path):
    """Why repair exists: appending straight after a torn line glues the event onto it."""
    from palmbook.rundir import append_record, load_metrics

    log = tmp_path / "metrics.jsonl"
    append_record(log, {"step": 1, "loss": 1.0})
    with open(log, "ab") as f:
        f.write(b'{"step": 2, "lo')
    append_record(log, {"event": "resume", "step": 1})
    assert not [r for r in load_metrics(log) if r.get("event") == "resume"]


def test_overwrite_removes_the_runs_tensorboard_curves_too(tmp_path, quiet):
    root = tmp_path / "run"
    make_run(root)
    (root / rundir.TENSORBOARD_DIR).mkdir()
    (root / rundir.TENSORBOARD_DIR / "events.out.tfevents.1").write_text("curves of the old run")
    with run_dir(root, quiet) as d:
        prepared = d.prepare("overwrite")
    assert not (root / rundir.TENSORBOARD_DIR).exists()
    assert root / rundir.TENSORBOARD_DIR in prepared.removed
