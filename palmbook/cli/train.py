"""``palmbook train``: a run from the command line, on one process or many under ``torchrun``.

    palmbook train --preset palm-mini --steps 2000 --out-dir runs/mini           # one process
    palmbook train --out-dir runs/mini --resume                                  # continue after a stop

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
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from ..book.profiles import profile
from ..config import OPTIMIZERS, SCHEDULES, PaLMConfig, TrainConfig
from ..data import prepare_lm_data
from ..io import TOKENIZER_NAME, atomic_write
from ..model import PaLM
from ..runtime import DISTRIBUTED_MODES, PRECISIONS, cleanup_distributed, init_distributed
from ..tokenizer import Tokenizer
from ..train import Trainer

__all__ = ["RUN_FILE", "add_cli", "run"]

_CHOICES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "precision": PRECISIONS, "distributed": DISTRIBUTED_MODES}
RUN_FILE = "run.json"


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``palmbook train`` (called by :mod:`palmbook.cli`); every TrainConfig field is a flag."""
    p = subparsers.add_parser(
        "train",
        help="train a PaLM on a corpus (one process, or many under torchrun)",
        description="Train a PaLM. Sizes default to the profile (PALMBOOK_PROFILE); every TrainConfig field is a "
        "flag. Under torchrun the same command trains with DDP (or --distributed fsdp).",
    )
    p.add_argument(
        "--out-dir",
        dest="out_dir",
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="where checkpoints, metrics.jsonl, best/ and tokenizer.model go (required)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out-dir from its newest valid checkpoint"
    )
    p.add_argument("--preset", help=f"model size: {', '.join(PaLMConfig.presets())} (default: the profile's)")
    p.add_argument("--model-config", metavar="JSON", help="a PaLMConfig JSON file instead of --preset")
    p.add_argument("--seq-len", type=int, metavar="T", help="training sequence length (default: the profile's)")
    p.add_argument("--vocab-size", type=int, metavar="V", help="vocabulary size of the model and its tokenizer")
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
        if kind == "bool":
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


def _new_run(args: argparse.Namespace, flags: dict[str, Any]) -> tuple[PaLMConfig, dict[str, Any], int, Path | None]:
    """A new run's model config, TrainConfig fields (the profile's, then --config's), sequence length and
    tokenizer file (None: train one), from the flags and the profile (PALMBOOK_PROFILE)."""
    prof = profile()
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
    if "out_dir" not in flags:
        raise ValueError("palmbook train needs --out-dir DIR (checkpoints, logs and the tokenizer go there)")
    out = Path(flags["out_dir"])
    run_path = out / RUN_FILE
    command = list(getattr(args, "argv", sys.argv))
    previous: dict[str, Any] = {}
    if args.resume and run_path.is_file():
        previous = json.loads(run_path.read_text(encoding="utf-8"))
        model_config = PaLMConfig.from_dict(previous["model_config"])
        base = previous["train_config"]
        source, seq_len, sample_by = previous["data"], previous["seq_len"], previous.get("sample_by", "document")
        tokenizer_path: Path | None = out / TOKENIZER_NAME
    elif args.resume:
        raise FileNotFoundError(f"nothing to resume: {run_path} does not exist; drop --resume to start a new run")
    else:
        model_config, base, seq_len, tokenizer_path = _new_run(args, flags)
        source, sample_by = args.data, args.sample_by
    config = TrainConfig.from_dict({**base, **flags, "out_dir": str(out)})

    # Join the process group before the data: rank 0 trains the tokenizer while the others wait.
    rank, world, _ = init_distributed(config.distributed, config.device)
    try:
        data = None
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            tok = Tokenizer.load(tokenizer_path) if tokenizer_path is not None else None
            data = prepare_lm_data(source, seq_len=seq_len, tokenizer=tok, vocab_size=model_config.vocab_size,
                                   sample_by=sample_by)  # fmt: skip
            data.tokenizer.save(out / TOKENIZER_NAME)
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
            data = prepare_lm_data(source, seq_len=seq_len, tokenizer=Tokenizer.load(out / TOKENIZER_NAME),
                                   sample_by=sample_by)  # fmt: skip
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        model = PaLM(model_config)
        trainer = Trainer(model, config, data.train, data.validation, tokenizer=data.tokenizer,
                          chars_per_token=data.chars_per_token)  # fmt: skip
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
