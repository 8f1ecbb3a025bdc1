"""``palmbook train``: a run from the command line, on one process or many under ``torchrun``.

    palmbook train --preset palm-mini --steps 2000 --out-dir runs/mini           # one process
    palmbook train --out-dir runs/mini --resume                                  # continue after a stop
    palmbook train --preset palm-mini --out-dir runs/mini --overwrite            # start that run again

An out-dir belongs to one run: it is locked while the run trains (a second ``palmbook train`` on it fails at once,
naming the first), a new run refuses a directory that holds files, and ``--resume`` resumes or fails, deleting
nothing. With ``--resume`` the run's model, data and tokenizer are fixed (``--preset``, ``--model-config``,
``--vocab-size``, ``--dropout``, ``--data``, ``--sample-by``, ``--seq-len``, ``--tokenizer``, and the
TrainConfig fields ``--optimizer``, ``--seed``, ``--batch-size``, ``--eval-batches``, ``--eval-batch-size`` are
refused if they differ); every other flag takes effect from the next step (``--steps``, ``--lr`` and the schedule
flags, ``--eval-every``, ``--checkpoint-every``, ``--keep``, spike handling, ``--batch-schedule`` entries after
the current step, precision, device, display).

Sizes default to the profile (``PALMBOOK_PROFILE``); every :class:`~palmbook.TrainConfig` field is a flag.
``<out_dir>/run.json`` records the model config, train config, data and the command, so ``--resume`` needs nothing
but the directory. Scaling out is ``torchrun`` around the same command (see :mod:`palmbook.train`)::

    torchrun --nproc_per_node 8 -m palmbook train --preset palm-1b --out-dir runs/1b                  # DDP
    torchrun --nproc_per_node 8 -m palmbook train --preset palm-1b --distributed fsdp --out-dir ...   # FSDP2
    # several machines: the same command on each, plus torchrun's rendezvous flags
    torchrun --nnodes 4 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST0:29500 --rdzv_id RUN \\
        -m palmbook train ... --out-dir /shared/runs/1b

The backend is NCCL on GPUs and gloo on CPUs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from ..book.profiles import profile
from ..checkpoint import read_training_checkpoint
from ..config import OPTIMIZERS, SCHEDULES, PaLMConfig, TrainConfig
from ..data import hub_dataset_name, prepare_lm_data
from ..flops import check_fits_in_memory
from ..io import atomic_write
from ..model import PaLM
from ..rundir import RUN_FILE, TENSORBOARD_DIR, TOKENIZER_FILE, RunDirectory
from ..runtime import DISTRIBUTED_MODES, PRECISIONS, cleanup_distributed, init_distributed
from ..tensorboard import TensorBoardLogger, require_tensorboard
from ..tokenizer import Tokenizer
from ..train import Trainer

__all__ = ["RUN_FILE", "add_cli", "run"]

_CHOICES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "precision": PRECISIONS, "distributed": DISTRIBUTED_MODES}
# Flags that describe the run's model and data (run.json): a resume may repeat them, never change them.
_RUN_FLAGS = ("preset", "model_config", "vocab_size", "dropout", "data", "sample_by", "seq_len", "tokenizer")


RESUME_HELP = """\
run directory: --out-dir holds ONE run (run.json, metrics.jsonl, tokenizer.model, best/, checkpoints/step_N/),
locked (run.lock) while a process trains in it. A new run refuses a directory that holds one: continue it with
--resume, or start again with --overwrite (deletes the run's files only).

what --resume may change (same value = no change):
  takes effect from the next step:
    --steps --lr --schedule --warmup-steps --constant-steps --min-lr --micro-batch-size --grad-clip --z-loss
    --weight-decay --betas --eval-every --checkpoint-every --keep --keep-best --early-stopping-patience
    --spike-* --max-rollbacks --log-every --progress --peak-flops --precision --compile --device
    --distributed; --batch-schedule entries AFTER the current step
  refused (they define what is trained; start a new run with another --out-dir):
    --preset --model-config --vocab-size --dropout --tokenizer --data --sample-by --seq-len --optimizer --seed
    --batch-size --eval-batches --eval-batch-size; --batch-schedule entries at or before the current step
"""


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``palmbook train`` (called by :mod:`palmbook.cli`); every TrainConfig field is a flag."""
    p = subparsers.add_parser(
        "train",
        help="train a PaLM on a corpus (one process, or many under torchrun)",
        description="Train a PaLM. Sizes default to the profile (PALMBOOK_PROFILE); every TrainConfig field is a "
        "flag. Under torchrun the same command trains with DDP (or --distributed fsdp).",
        epilog=RESUME_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--out-dir",
        dest="out_dir",
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="where checkpoints, metrics.jsonl, best/ and tokenizer.model go (required)",
    )
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard curves to <out-dir>/tensorboard (pip install 'palmbook[tensorboard]')",
    )
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out-dir from its newest valid checkpoint (fails, deleting nothing, if there is "
        "none); model/data flags are refused if they differ, training flags take effect from the next step",
    )
    how.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new run in a --out-dir that holds one: deletes its run.json, metrics.jsonl, tokenizer.model, "
        "best/ and checkpoints/step_*; other files stay",
    )
    p.add_argument("--preset", help=f"model size: {', '.join(PaLMConfig.presets())} (default: the profile's)")
    p.add_argument("--model-config", metavar="JSON", help="a PaLMConfig JSON file instead of --preset")
    p.add_argument("--seq-len", type=_positive, metavar="T", help="training sequence length (default: the profile's)")
    p.add_argument("--vocab-size", type=_positive, metavar="V", help="vocabulary size of the model and its tokenizer")
    p.add_argument("--dropout", type=float, help="residual dropout (0 in pre-training, §5)")
    p.add_argument("--config", metavar="JSON", help="a TrainConfig JSON file; explicit flags override it")
    p.add_argument(
        "--data",
        default="shakespeare",
        help="corpus: 'shakespeare' (default, offline), a text file or directory, or hub:owner/name",
    )
    p.add_argument(
        "--sample-by",
        default="document",
        choices=("document", "paragraph", "line"),
        help="for text files: one training document per file, paragraph or line",
    )
    p.add_argument("--tokenizer", metavar="PATH", help="a tokenizer.model to use (default: train one on the data)")
    g = p.add_argument_group("training options (TrainConfig fields; see help(palmbook.TrainConfig))")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "out_dir":  # its own flag above: its help says it is required
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type).replace(" | None", "")
        kw: dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS, help=f"(default: {f.default!r})")
        if f.name == "batch_schedule":
            kw["help"] = "PaLM's growing batch: START:SIZE,... e.g. 0:8,200:16 (sizes multiples of --batch-size)"
            g.add_argument(flag, type=_batch_schedule, metavar="STEP:SIZE,...", **kw)
        elif kind == "bool":
            g.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif kind.startswith("tuple"):
            g.add_argument(flag, type=float, nargs=2, metavar=("B1", "B2"), **kw)
        else:
            convert = {"int": int, "float": float, "str": str}[kind]
            if "None" in str(f.type):  # "--grad-clip none" turns a feature off
                convert = _or_none(convert)
                kw["help"] += "; 'none' to unset"
            g.add_argument(flag, type=convert, choices=_CHOICES.get(f.name), **kw)
    p.set_defaults(func=run)


def _or_none(convert: Any) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() == "none" else convert(text)

    parse.__name__ = convert.__name__  # argparse names the type in its error message
    return parse


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {value}")
    return value


_positive.__name__ = "positive integer"


def _batch_schedule(text: str) -> tuple[tuple[int, int], ...] | None:
    if text.lower() == "none":
        return None
    try:
        return tuple((int(a), int(b)) for a, b in (item.split(":") for item in text.split(",")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:SIZE,... such as 0:8,200:16; got {text!r}") from None


def _read_run_file(path: Path) -> dict[str, Any]:
    """run.json of a run being resumed, checked field by field (a damaged one is named, never a KeyError)."""
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); restore it, or start a new run with --overwrite") from None
    fields = {"model_config": dict, "train_config": dict, "data": str, "seq_len": int}
    bad = [k for k, t in fields.items() if not isinstance(run, dict) or not isinstance(run.get(k), t)]
    if bad:
        raise ValueError(f"{path} has no valid {', '.join(bad)}: it is damaged; restore it, or start a new run "
                         "with --overwrite")  # fmt: skip
    try:
        run["model_config"] = PaLMConfig.from_dict(run["model_config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path} holds an invalid model_config ({e}); restore it, or use --overwrite") from None
    return run


def _check_resume_flags(args: argparse.Namespace, previous: dict[str, Any]) -> None:
    """Refuse model/data flags that differ from the run's (they would be silently ignored otherwise)."""
    config = previous["model_config"]
    recorded = {"vocab_size": config.vocab_size, "dropout": config.dropout, "data": previous["data"],
                "sample_by": previous.get("sample_by", "document"), "seq_len": previous["seq_len"]}  # fmt: skip
    defaults = {"data": "shakespeare", "sample_by": "document"}
    for name in _RUN_FLAGS:
        given = getattr(args, name, None)
        if given is None or (name in defaults and given == defaults[name] and not _typed(args, name)):
            continue
        if name in recorded and given == recorded[name]:
            continue
        if name in ("preset", "model_config"):  # the same model again is not a change
            same = PaLMConfig.preset(given) if name == "preset" else PaLMConfig.load(given)
            same = same.replace(vocab_size=config.vocab_size, dropout=config.dropout)
            if same == config:
                continue
        if (
            name == "tokenizer"
            and Path(given).is_file()
            and previous.get("tokenizer_bytes") == Path(given).read_bytes()
        ):
            continue
        flag = "--" + name.replace("_", "-")
        was = f"the run has {recorded[name]!r}, the command says {given!r}" if name in recorded else "set at start"
        raise ValueError(
            f"--resume cannot change {flag} ({was}): a run's model, data and tokenizer are fixed; drop {flag}, or "
            "start a new run with another --out-dir"
        )


def _typed(args: argparse.Namespace, name: str) -> bool:
    """Whether --NAME appears on the command line (argparse cannot tell a default from the same value typed)."""
    flag = "--" + name.replace("_", "-")
    return any(a == flag or a.startswith(flag + "=") for a in getattr(args, "argv", ()))


def _new_run(args: argparse.Namespace, flags: dict[str, Any]) -> tuple[PaLMConfig, dict[str, Any], int, Path | None]:
    """A new run's model config, TrainConfig fields (the profile's, then --config's), sequence length and
    tokenizer file (None: train one), from the flags and the profile (PALMBOOK_PROFILE)."""
    prof = profile()
    if args.model_config and args.preset:
        raise ValueError("give --preset or --model-config, not both (the JSON file is a whole model config)")
    if args.model_config:
        model_config = PaLMConfig.load(args.model_config)
    else:
        model_config = PaLMConfig.preset(args.preset or prof.preset)
    for name in ("vocab_size", "dropout"):
        if getattr(args, name) is not None:
            model_config = model_config.replace(**{name: getattr(args, name)})
    seq_len = args.seq_len or min(prof.seq_len, model_config.max_seq_len)
    if seq_len > model_config.max_seq_len:
        raise ValueError(f"--seq-len {seq_len} exceeds the model's max_seq_len={model_config.max_seq_len}")
    steps = flags.get("steps", prof.train_steps)
    base = dict(steps=steps, batch_size=prof.batch_size, eval_batches=prof.eval_batches, seed=prof.seed,
                eval_every=max(1, steps // 10), checkpoint_every=max(1, steps // 10))  # fmt: skip
    if args.config:
        base.update(TrainConfig.load(args.config).run_dict())
    tokenizer_path = Path(args.tokenizer) if args.tokenizer else None
    if tokenizer_path is not None and not tokenizer_path.exists():
        raise FileNotFoundError(f"no tokenizer at {tokenizer_path}")
    return model_config, base, seq_len, tokenizer_path


def run(args: argparse.Namespace) -> int:
    """``palmbook train``: build (or reload) the model, data and config, then train. Returns the exit code."""
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    if not flags.get("out_dir"):
        raise ValueError("palmbook train needs --out-dir DIR (checkpoints, logs and the tokenizer go there)")
    out = Path(flags["out_dir"])
    command = list(getattr(args, "argv", sys.argv))
    if args.tensorboard:
        require_tensorboard()  # before the run directory is touched
    mode = "resume" if args.resume else "overwrite" if args.overwrite else "fresh"
    run_dir, prepared = None, None
    if int(os.environ.get("RANK", "0")) == 0:  # rank 0 owns the directory: lock it before writing anything
        run_dir = RunDirectory(out, command=command, say=tqdm.write).acquire()
    try:
        if run_dir is not None:
            required = (RUN_FILE, TOKENIZER_FILE) if args.resume else ()
            prepared = run_dir.prepare(mode, validate=read_training_checkpoint, required=required)
        return _run(args, flags, out, command, run_dir, prepared)
    finally:
        if run_dir is not None:
            run_dir.release()


def _run(args: argparse.Namespace, flags: dict[str, Any], out: Path, command: list[str],
         run_dir: RunDirectory | None, prepared: Any) -> int:  # fmt: skip
    run_path = out / RUN_FILE
    previous: dict[str, Any] = {}
    if args.resume:
        previous = _read_run_file(run_path)
        with contextlib.suppress(OSError):
            previous["tokenizer_bytes"] = (out / TOKENIZER_FILE).read_bytes()
        _check_resume_flags(args, previous)
        model_config = previous["model_config"]
        base = previous["train_config"]
        if args.config:
            base = {**base, **TrainConfig.load(args.config).run_dict()}
        source, seq_len, sample_by = previous["data"], previous["seq_len"], previous.get("sample_by", "document")
        tokenizer_path: Path | None = out / TOKENIZER_FILE
    else:
        model_config, base, seq_len, tokenizer_path = _new_run(args, flags)
        source, sample_by = args.data, args.sample_by
    config = TrainConfig.from_dict({**base, **flags, "out_dir": str(out)})
    if args.resume and prepared is not None and prepared.latest is not None:  # refuse before run.json is touched
        step = int(prepared.latest.name.rsplit("_", 1)[1])
        conflicts = config.resume_conflicts(previous["train_config"], step)
        if conflicts:
            raise ValueError(f"--resume cannot change {'; '.join(conflicts)}: drop those flags, or start a new run "
                             "with another --out-dir")  # fmt: skip

    if isinstance(source, str) and source.startswith("hub:"):
        hub_dataset_name(source)  # a malformed name fails here, before anything is written
    # A model that cannot fit fails here, in one line, before the tokenizer or run.json is written.
    on_cpu = config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available())
    check_fits_in_memory(model_config, optimizer=config.optimizer, training=on_cpu)

    # Join the process group before the data: rank 0 trains the tokenizer while the others wait.
    rank, world, _ = init_distributed(config.distributed, config.device)
    try:
        data = None
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            tok = Tokenizer.load(tokenizer_path) if tokenizer_path is not None else None
            data = prepare_lm_data(source, seq_len=seq_len, tokenizer=tok, vocab_size=model_config.vocab_size,
                                   sample_by=sample_by)  # fmt: skip
            if not args.resume:  # a resumed run keeps its tokenizer file as it is
                atomic_write(out / TOKENIZER_FILE, data.tokenizer.save)
            if data.tokenizer.vocab_size > model_config.vocab_size:
                raise ValueError(
                    f"the tokenizer has {data.tokenizer.vocab_size} pieces but the model only "
                    f"{model_config.vocab_size}; use a model config with vocab_size >= {data.tokenizer.vocab_size}"
                )
            run = {"model_config": model_config.to_dict(), "train_config": config.run_dict(), "data": source,
                   "seq_len": seq_len, "sample_by": sample_by, "argv": command}  # fmt: skip
            if previous:  # a resume keeps the command that started the run and records each resume after it
                run["argv"] = previous.get("argv", [])
                run["resumed_with"] = [*previous.get("resumed_with", []), command]
            text = json.dumps(run, indent=2) + "\n"
            atomic_write(run_path, lambda p: Path(p).write_text(text, encoding="utf-8"))
        if world > 1:
            dist.barrier()
        if data is None:  # other ranks: the tokenizer and tokenized corpus are now on disk and in the cache
            data = prepare_lm_data(source, seq_len=seq_len, tokenizer=Tokenizer.load(out / TOKENIZER_FILE),
                                   sample_by=sample_by)  # fmt: skip
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        model = PaLM(model_config)
        # TensorBoard beside metrics.jsonl, on rank 0 only (the callback checks the rank itself)
        callbacks = [TensorBoardLogger(out / TENSORBOARD_DIR)] if args.tensorboard else []
        trainer = Trainer(model, config, data.train, data.validation, tokenizer=data.tokenizer,
                          chars_per_token=data.chars_per_token, callbacks=callbacks, run_dir=run_dir,
                          prepared=prepared)  # fmt: skip
        if rank == 0:
            n = model.num_parameters()
            tqdm.write(
                f"palmbook train: {model_config} ({n:,} parameters), {data.train.shape[0]:,} training blocks of "
                f"{seq_len} tokens, {world} process(es), {trainer.precision}, mode {trainer.mode} -> {out}"
            )
        result = trainer.fit(resume=args.resume)
        if rank == 0:
            summary = f"step {result.step}"
            if result.best_val_loss is not None:
                summary += f", best val loss {result.best_val_loss:.4f} at step {result.best_step}"
            if result.interrupted:
                tqdm.write(
                    f"stopped by {result.interrupted} at {summary}; continue with: palmbook train --out-dir {out} "
                    "--resume"
                )
            else:
                tqdm.write(f"done: {summary}; model in {out / 'best' if result.best_step else out / 'checkpoints'}")
        return {"SIGINT": 130, "SIGTERM": 143}.get(result.interrupted or "", 0)
    finally:
        cleanup_distributed()
