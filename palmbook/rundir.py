"""A training run's directory: its layout, its one owner (an exclusive lock), and what may be deleted in it.

One ``out_dir`` holds one run, written by one process (rank 0) at a time::

    <out_dir>/
        run.lock            who owns the directory now: pid, host, start time, command (JSON, one line)
        run.json            model config, train config, data source, the command that started the run
        metrics.jsonl       one JSON record per logged step, evaluation and event
        tokenizer.model     the run's tokenizer
        best/               the weights with the lowest validation loss (a checkpoint-like directory)
        checkpoints/step_00001200/   one directory per checkpoint (see palmbook.checkpoint)

Interrupted writes leave temporaries behind: ``checkpoints/.step_N.tmp-PID`` (a checkpoint being built),
``checkpoints/.step_N.old-PID`` and ``.best.old-PID`` (the previous copy, moved aside for a swap),
``.best.tmp-PID`` and ``.<file>.<random>.tmp`` (atomic writes of the files above).

The rules this module enforces (the reasons are data loss seen in the 2026-12-07 reliability review):

- **One writer.** :meth:`RunDirectory.acquire` takes ``fcntl.flock`` on ``run.lock`` for the whole run; the kernel
  drops it when the process dies, so a lock can never outlive its holder on a local disk. A second run fails at
  once with :class:`RunDirectoryBusy` naming the holder. A record left by a holder that died is reported and
  taken over. Where ``flock`` is unavailable the pid record alone decides (a live pid on this host holds it).
- **No silent mixing.** :meth:`RunDirectory.prepare` with ``"fresh"`` refuses a directory that already holds
  something; ``"overwrite"`` deletes exactly the run's own files (and lists them) and nothing else;
  ``"resume"`` needs a valid checkpoint and deletes nothing when there is none.
- **Pruning keeps what it cannot vouch for.** :meth:`RunDirectory.prune` removes only checkpoints the caller
  vouches for (written by this run, or verified), so a newer checkpoint that fails verification stays for
  inspection and can never be pruned in favour of older ones.
- **Files honour the umask.** ``tempfile.mkstemp`` creates 0600 files; :func:`apply_umask` gives a temporary
  file the mode a plain ``open()`` would have (0666 & ~umask) before it is renamed into place.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

try:  # POSIX; elsewhere the pid record alone guards the directory
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from .io import TOKENIZER_NAME, apply_umask, umask_mode  # re-exported: a run directory's files honour the umask

__all__ = [
    "BEST_DIR",
    "CHECKPOINTS_DIR",
    "LOCK_FILE",
    "METRICS_FILE",
    "RUN_FILE",
    "TENSORBOARD_DIR",
    "TOKENIZER_FILE",
    "LockHolder",
    "NothingToResume",
    "Prepared",
    "RunDirectory",
    "RunDirectoryBusy",
    "RunDirectoryError",
    "RunDirectoryNotEmpty",
    "append_record",
    "apply_umask",
    "load_metrics",
    "pid_alive",
    "umask_mode",
]

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
TOKENIZER_FILE = TOKENIZER_NAME
CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"
LOCK_FILE = "run.lock"
TENSORBOARD_DIR = "tensorboard"  # palmbook train --tensorboard writes its event files here

Mode = Literal["fresh", "resume", "overwrite"]
MODES: tuple[str, ...] = ("fresh", "resume", "overwrite")

_STEP = re.compile(r"^step_(\d+)$")
_STEP_TEMP = re.compile(r"^\.step_(\d+)\.(tmp|old)-(\d+)$")  # write_checkpoint's build and swap directories
_BEST_TEMP = re.compile(r"^\.best\.(tmp|old)-(\d+)$")
_ATOMIC_NAMES = "|".join(map(re.escape, (RUN_FILE, METRICS_FILE, TOKENIZER_FILE)))
_ATOMIC_TEMP = re.compile(rf"^\.({_ATOMIC_NAMES})\..+\.tmp$")  # io.atomic_write's temporaries (no pid)
_ROOT_FILES = (RUN_FILE, METRICS_FILE, TOKENIZER_FILE, BEST_DIR, CHECKPOINTS_DIR, TENSORBOARD_DIR)


# ============================================================================================ errors
class RunDirectoryError(ValueError):
    """A run directory cannot be used as asked; the message names what was found and the fix (one line)."""


class RunDirectoryBusy(RunDirectoryError):
    """Another live process owns the run directory (``holder`` says which, when it recorded itself)."""

    def __init__(self, message: str, holder: LockHolder | None) -> None:
        super().__init__(message)
        self.holder = holder


class RunDirectoryNotEmpty(RunDirectoryError):
    """A fresh run was asked for in a directory that already holds files."""


class NothingToResume(RunDirectoryError):
    """``--resume`` found no valid checkpoint (nothing was deleted)."""


# ============================================================================================ the lock record
def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a zombie, exited but not yet reaped, counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    with contextlib.suppress(OSError, IndexError):
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]  # the command name in (...) may hold spaces
        return state not in ("Z", "X")
    return True


@dataclass(frozen=True)
class LockHolder:
    """What ``run.lock`` says about the process that owns (or owned) the directory."""

    pid: int
    host: str
    started: float
    command: tuple[str, ...] = ()

    @classmethod
    def me(cls, command: Sequence[str]) -> LockHolder:
        return cls(os.getpid(), socket.gethostname(), time.time(), tuple(str(c) for c in command))

    @classmethod
    def parse(cls, text: str) -> LockHolder | None:
        """The holder recorded in ``text``, or None (empty, or cut short while being written)."""
        try:
            data = json.loads(text)
            return cls(int(data["pid"]), str(data["host"]), float(data["started"]), tuple(data.get("command", ())))
        except (ValueError, KeyError, TypeError):
            return None

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "host": self.host, "started": self.started, "command": self.command})

    @property
    def on_this_host(self) -> bool:
        return self.host == socket.gethostname()

    def alive(self) -> bool | None:
        """True / False on this host; None when it ran on another machine (it cannot be checked from here)."""
        return pid_alive(self.pid) if self.on_this_host else None

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        command = " ".join(self.command) or "unknown command"
        return f"pid {self.pid} on {self.host}, started {started}, command: {command}"


# ============================================================================================ the directory
@dataclass
class Prepared:
    """What :meth:`RunDirectory.prepare` found and did.

    valid: (step, path) of the checkpoints that passed the validator, oldest first (``"resume"`` only).
    damaged: (step, path, reason) of those that did not; they are left in place.
    removed: paths deleted (``"overwrite"``, and leftover temporaries); restored: ``.old`` copies put back.
    """

    mode: str
    valid: list[tuple[int, Path]] = field(default_factory=list)
    damaged: list[tuple[int, Path, str]] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    restored: list[Path] = field(default_factory=list)

    @property
    def latest(self) -> Path | None:
        """The newest valid checkpoint, the one to resume from."""
        return self.valid[-1][1] if self.valid else None


class RunDirectory:
    """The one owner of a run directory's layout and safety. Use it as a context manager around the whole run::

        with RunDirectory(out_dir, command=sys.argv) as run_dir:      # acquire(): fails if another run owns it
            prepared = run_dir.prepare("resume", validate=read_checkpoint)
            ...train, writing under run_dir.checkpoints ...
            run_dir.prune(keep=3, valid_steps=steps_written)
        # released (also when the process dies: the kernel drops the lock)

    Only one process per run acquires it (rank 0 under torchrun); the other ranks wait at a barrier.

    Args:
        root: the run directory (created, with its parents, on :meth:`acquire`).
        command: recorded in the lock so a second run can name the holder (default: ``sys.argv``).
        say: where notices go (a stale lock taken over, files removed, temporaries cleaned); default stderr.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        command: Sequence[str] | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        if isinstance(root, str) and not root.strip():
            raise RunDirectoryError("the run directory must not be empty; give --out-dir DIR (e.g. runs/mini)")
        self.root = Path(root)
        self.command = tuple(str(c) for c in (sys.argv if command is None else command))
        self._say = say or (lambda message: print(message, file=sys.stderr))
        self._fd: int | None = None
        self._owner_pid: int | None = None
        self.took_over: LockHolder | None = None  # the dead holder whose stale lock acquire() took over

    # ------------------------------------------------------------------ layout
    @property
    def run_file(self) -> Path:
        return self.root / RUN_FILE

    @property
    def metrics_file(self) -> Path:
        return self.root / METRICS_FILE

    @property
    def tokenizer_file(self) -> Path:
        return self.root / TOKENIZER_FILE

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS_DIR

    @property
    def best(self) -> Path:
        return self.root / BEST_DIR

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_FILE

    def checkpoint_dir(self, step: int) -> Path:
        """``checkpoints/step_<step, 8 digits>``: names sort in step order."""
        return self.checkpoints / f"step_{step:08d}"

    def checkpoint_steps(self) -> list[tuple[int, Path]]:
        """(step, path) of every finished checkpoint directory, oldest first (temporaries are not listed)."""
        if not self.checkpoints.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.checkpoints.iterdir() if (m := _STEP.match(p.name)) and p.is_dir()]
        return sorted(found)

    def contents(self) -> list[Path]:
        """Everything in the directory but the lock file, sorted by name (empty if it does not exist)."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.name != LOCK_FILE)

    def run_paths(self) -> list[Path]:
        """The paths that belong to the run (what ``"overwrite"`` removes): run.json, metrics.jsonl, the
        tokenizer, best/, tensorboard/, every checkpoint and every leftover temporary. Other files are the user's."""
        if not self.root.is_dir():
            return []
        paths = [p for p in self.contents() if p.name in _ROOT_FILES and p.name != CHECKPOINTS_DIR]
        paths += [p for p in self.contents() if _BEST_TEMP.match(p.name) or _ATOMIC_TEMP.match(p.name)]
        if self.checkpoints.is_dir():
            paths += [p for p in self.checkpoints.iterdir() if _STEP.match(p.name) or _STEP_TEMP.match(p.name)]
        return sorted(paths)

    def describe(self) -> str:
        """A one-line summary of what is in the directory, for error messages."""
        parts = []
        for p in self.contents():
            if p == self.checkpoints and p.is_dir():
                steps = [s for s, _ in self.checkpoint_steps()]
                temps = sum(1 for q in p.iterdir() if _STEP_TEMP.match(q.name))
                what = f"{len(steps)} checkpoint(s)" + (f", steps {steps[0]}..{steps[-1]}" if steps else "")
                parts.append(f"{CHECKPOINTS_DIR}/ ({what}{f', {temps} unfinished' if temps else ''})")
            else:
                parts.append(p.name + ("/" if p.is_dir() else ""))
        if len(parts) > 8:
            parts = [*parts[:8], f"and {len(parts) - 8} more"]
        return ", ".join(parts) or "nothing"

    # ------------------------------------------------------------------ the lock
    @property
    def locked(self) -> bool:
        """Whether this object holds the lock (in this process)."""
        return self._fd is not None and self._owner_pid == os.getpid()

    def holder(self) -> LockHolder | None:
        """Who the lock file says owns the directory (it may be stale: see :meth:`acquire`)."""
        try:
            return LockHolder.parse(self.lock_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            return None

    def acquire(self) -> RunDirectory:
        """Own the directory until :meth:`release` (or the process's end). Creates it if needed.

        Raises :class:`RunDirectoryBusy` at once (never waits) when a live process holds it. A record left by a
        holder that is gone is taken over and reported (``self.took_over``).
        """
        if self.locked:
            return self
        if self.root.exists() and not self.root.is_dir():
            raise RunDirectoryError(f"{self.root} is a file, not a run directory; give another --out-dir")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as e:
            raise RunDirectoryError(
                f"cannot create the run directory's lock {self.lock_file} ({e.strerror}); "
                "check the permissions of --out-dir or pick another"
            ) from None
        try:
            state = _try_flock(fd)
            previous = LockHolder.parse(os.pread(fd, 1 << 16, 0).decode("utf-8", "replace"))
            if state == "busy":
                raise RunDirectoryBusy(self._busy_message(previous), previous)
            # Without flock, a recorded holder that is alive here (or on another host: unknowable) still owns it.
            unguarded = state == "unsupported" and previous is not None and previous.pid != os.getpid()
            if unguarded and previous.alive() is not False:
                raise RunDirectoryBusy(self._busy_message(previous, unsupported=True), previous)
            me = LockHolder.me(self.command)
            os.ftruncate(fd, 0)
            os.pwrite(fd, (me.to_json() + "\n").encode("utf-8"), 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)  # closing drops a flock taken above
            raise
        self._fd, self._owner_pid = fd, os.getpid()
        if previous is not None and previous.pid != os.getpid():
            self.took_over = previous
            self._say(f"{self.root}: took over a stale lock; its holder ({previous.describe()}) is no longer running")
        return self

    def _busy_message(self, holder: LockHolder | None, unsupported: bool = False) -> str:
        fix = "wait for that run to finish or stop it, or give another --out-dir"
        if holder is None:
            return (
                f"{self.root} is in use by another run that is just starting ({self.lock_file} names no one yet); {fix}"
            )
        if holder.alive() is None and unsupported:
            fix += f"; if that run is gone, delete {self.lock_file}"
        elif holder.on_this_host:
            fix = f"wait for it, stop it (kill {holder.pid}), or give another --out-dir"
        return f"{self.root} is in use by another run ({holder.describe()}); {fix}"

    def release(self) -> None:
        """Give the directory up (idempotent). A forked child that inherited the lock only closes its copy."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if self._owner_pid == os.getpid():
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)  # an empty record: released cleanly, nothing stale to report
                if fcntl is not None:
                    with contextlib.suppress(OSError):
                        fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
            self._owner_pid = None

    def __enter__(self) -> RunDirectory:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # a forgotten release must not leak the descriptor (the lock would go with it)
        with contextlib.suppress(Exception):
            self.release()

    def _require_lock(self, what: str) -> None:
        if not self.locked:
            raise RuntimeError(f"RunDirectory.{what}() needs the lock: call acquire() (or use `with`) first")

    # ------------------------------------------------------------------ starting a run
    def prepare(
        self,
        mode: Mode,
        *,
        validate: Callable[[Path], object] | None = None,
        required: Sequence[str] = (),
    ) -> Prepared:
        """Make the directory ready for a run started in ``mode`` (the lock must be held).

        ``"fresh"``: the directory must hold nothing (but the lock); raises :class:`RunDirectoryNotEmpty`
        naming what is there and the two ways on (``--resume``, ``--overwrite``).
        ``"overwrite"``: delete :meth:`run_paths` (listed through ``say``), leave every other file alone.
        ``"resume"``: ``validate(checkpoint_dir)`` must pass (return) for at least one checkpoint and every name in
        ``required`` (e.g. ``run.json``) must exist; otherwise :class:`NothingToResume` lists what was found and
        nothing is deleted. On success, leftover temporaries are cleaned.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        self._require_lock("prepare")
        prepared = Prepared(mode)
        if mode == "fresh":
            if self.contents():
                raise RunDirectoryNotEmpty(
                    f"{self.root} already holds {self.describe()}; continue that run with --resume, start over "
                    "with --overwrite (deletes the run's checkpoints, best/, logs and run.json; other files stay), "
                    "or give another --out-dir"
                )
            return prepared
        if mode == "overwrite":
            for path in self.run_paths():
                _remove(path)
                prepared.removed.append(path)
            with contextlib.suppress(OSError):  # only when empty and a real directory (a symlink stays)
                if not self.checkpoints.is_symlink():
                    self.checkpoints.rmdir()
            if prepared.removed:
                names = ", ".join(str(p.relative_to(self.root)) for p in prepared.removed)
                self._say(f"--overwrite: removed {names} from {self.root}")
            return prepared
        # resume: look, judge, and only then touch anything
        for step, path in self.checkpoint_steps():
            try:
                if validate is not None:
                    validate(path)
            except Exception as e:  # any failure means "cannot resume from this one": report it, keep the files
                prepared.damaged.append((step, path, f"{type(e).__name__}: {e}"))
            else:
                prepared.valid.append((step, path))
        missing = [name for name in required if not (self.root / name).exists()]
        if not prepared.valid or missing:
            raise NothingToResume(self._nothing_to_resume(prepared, missing))
        cleaned = self.clean_stale_temporaries()
        prepared.removed += cleaned.removed
        prepared.restored += cleaned.restored
        return prepared

    def _nothing_to_resume(self, prepared: Prepared, missing: list[str]) -> str:
        if not self.contents():
            found = "it is empty" if self.root.is_dir() else "it does not exist"
            return f"nothing to resume in {self.root}: {found}; drop --resume to start a new run"
        if prepared.damaged:
            found = (
                "no valid checkpoint ("
                + "; ".join(f"{p.name}: {(reason.splitlines() or [''])[0]}" for _, p, reason in prepared.damaged)
                + ")"
            )
        elif prepared.valid:
            found = f"{len(prepared.valid)} valid checkpoint(s)"
        else:
            found = f"no checkpoint (it holds {self.describe()})"
        if missing:
            found += f" and no {', '.join(missing)}"
        return (
            f"nothing to resume in {self.root}: {found}. Nothing was deleted. To start a new run there, use "
            "--overwrite instead of --resume (deletes the run's files), or give another --out-dir"
        )

    # ------------------------------------------------------------------ leftovers of interrupted writes
    def clean_stale_temporaries(self) -> Prepared:
        """Remove the temporaries of writes that were interrupted, and put back a swapped-out copy that lost its
        replacement (``.step_N.old-PID`` with no ``step_N``: a kill fell between the two renames of a swap).

        Holding the lock, every temporary is stale (this process owns the directory and has written nothing
        yet); without it, only those whose PID no longer runs here are touched.
        """
        done = Prepared("clean")
        owned = self.locked

        def stale(pid: str | None) -> bool:
            return owned or (pid is not None and not pid_alive(int(pid)))

        candidates: list[tuple[Path, str, str | None, Path | None]] = []  # path, kind, pid, final name
        if self.root.is_dir():
            for p in self.root.iterdir():
                if m := _BEST_TEMP.match(p.name):
                    candidates.append((p, m.group(1), m.group(2), self.best))
                elif _ATOMIC_TEMP.match(p.name):
                    candidates.append((p, "tmp", None, None))
        if self.checkpoints.is_dir():
            for p in self.checkpoints.iterdir():
                if m := _STEP_TEMP.match(p.name):
                    candidates.append((p, m.group(2), m.group(3), self.checkpoint_dir(int(m.group(1)))))
        for path, kind, pid, final in sorted(candidates):
            if not stale(pid):
                continue
            if kind == "old" and final is not None and not final.exists():
                os.replace(path, final)
                done.restored.append(final)
            else:
                _remove(path)
                done.removed.append(path)
        if done.removed or done.restored:
            names = [str(p.relative_to(self.root)) for p in done.removed]
            back = [str(p.relative_to(self.root)) for p in done.restored]
            self._say(
                f"{self.root}: cleaned up after an interrupted write"
                + (f"; removed {', '.join(names)}" if names else "")
                + (f"; restored {', '.join(back)}" if back else "")
            )
        return done

    # ------------------------------------------------------------------ pruning
    def prune(self, keep: int, valid_steps: Iterable[int], *, protect: Iterable[int] = ()) -> list[Path]:
        """Delete old checkpoints, keeping the newest ``keep`` valid ones and the steps in ``protect``.

        ``valid_steps``: the checkpoints the caller vouches for, the ones this run wrote or verified. Only those
        can be deleted; any other checkpoint (one that failed verification, newer or older) is kept for
        inspection, so a damaged newer checkpoint never pushes the valid ones out. Returns the deleted paths.
        """
        self._require_lock("prune")
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an integer >= 1 (at least the newest checkpoint stays); got {keep!r}")
        vouched = set(valid_steps)
        present = self.checkpoint_steps()
        valid = [s for s, _ in present if s in vouched]
        kept = set(valid[-keep:]) | set(protect)
        removed = []
        for step, path in present:
            if step in vouched and step not in kept:
                _remove(path)
                removed.append(path)
        return removed


# ============================================================================================ the metrics log
def append_record(path: str | os.PathLike, record: dict, *, repair: bool = False) -> None:
    """Append one JSON line to ``metrics.jsonl``. ``repair``: first end a line that a kill cut short, so the
    torn record stays one unreadable line and this one (often a "resume" event) is read intact."""
    path = Path(path)
    with open(path, "a+b") as f:
        if repair and f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.write((json.dumps(record) + "\n").encode("utf-8"))


def load_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a ``metrics.jsonl`` (or a run directory) as one timeline: step and evaluation records that
    a later resume or rollback superseded (steps after the checkpoint it went back to) are dropped; events stay."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no metrics log at {path}; it is written to <out_dir>/{METRICS_FILE}")
    out: list[dict] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill (or blank)
        if not isinstance(rec, dict):
            continue
        back_to = rec.get("to_step") if rec.get("event") == "rollback" else None
        if rec.get("event") == "resume":
            back_to = rec.get("step")
        if isinstance(back_to, int):
            out = [r for r in out if "event" in r or r.get("step", 0) <= back_to]
        out.append(rec)
    return out


# ============================================================================================ helpers
def _try_flock(fd: int) -> Literal["locked", "busy", "unsupported"]:
    if fcntl is None:  # pragma: no cover - Windows
        return "unsupported"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return "busy"
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):  # some network file systems
            return "unsupported"
        raise
    return "locked"


def _remove(path: Path) -> None:
    """Delete a file, a directory tree, or a symlink (the link only, never what it points at)."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path)
