"""``palmbook bench``: the command line of :mod:`palmbook.bench` (the measurements live there, argparse here).

Three modes, one per run:

    palmbook bench [--quick] [--preset P] [--shape k=v,...] [--rounds N] [--no-peers] ...   the comparison
    palmbook bench --bf16-curve [--steps N] [--tolerance NATS] ...                        float32 vs bf16
    palmbook bench --gpu-mfu [--preset palm-1b] [--batch-size B] [--seq-len T] ...        MFU on one GPU

A flag the chosen mode would ignore is an error, not a silent no-op: ``--rounds`` with ``--bf16-curve``, ``--preset``
with ``--quick`` (which has a tiny shape of its own), and so on.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from .. import bench
from ..bench.contestants import check_falcon_shape
from ..config import PaLMConfig
from ..runtime import pick_device
from . import UserError

__all__ = ["add_cli", "run"]

COMPARISON, BF16_CURVE, GPU_MFU = "the comparison", "--bf16-curve", "--gpu-mfu"
# Each mode-specific flag (its argparse dest) and the modes that read it; any other mode would ignore it.
_READ_BY: dict[str, tuple[str, ...]] = {
    "quick": (COMPARISON, BF16_CURVE),
    "shape": (COMPARISON, BF16_CURVE),
    "precision": (COMPARISON,),
    "rounds": (COMPARISON,),
    "no_peers": (COMPARISON,),
    "compile": (COMPARISON, GPU_MFU),
    "steps": (BF16_CURVE, GPU_MFU),
    "tolerance": (BF16_CURVE,),
    "batch_size": (GPU_MFU,),
    "seq_len": (GPU_MFU,),
    "checkpointing": (GPU_MFU,),
}


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``palmbook bench`` (called by :func:`palmbook.cli.build_parser`)."""
    p = subparsers.add_parser(
        "bench",
        help="benchmark palmbook against HF Falcon (training, forward, generation, memory, MFU)",
        description=(bench.__doc__ or "").split("\n\n")[0],
    )
    _add_arguments(p)
    p.set_defaults(func=run)
    return p


def _positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (a count of rounds, steps, threads, tokens)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1; got {text!r}")
    return value


def _add_arguments(p: argparse.ArgumentParser) -> None:
    presets = PaLMConfig.presets()
    p.add_argument("--quick", action="store_true", help="a tiny shape and 3 rounds: seconds, for tests")
    p.add_argument(
        "--preset", choices=presets, metavar="NAME",
        help=f"start from a PaLMConfig preset's shape (default: palm-small, batch 8); one of {', '.join(presets)}",
    )  # fmt: skip
    p.add_argument("--shape", default="", help="override shape fields, e.g. d_model=512,n_layers=8,batch_size=4")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), help="default auto: bf16 on CUDA, else fp32")
    p.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=None,
        help="also time palmbook with torch.compile on its blocks (default: on CUDA only)",
    )  # fmt: skip
    p.add_argument("--threads", type=_positive_int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--rounds", type=_positive_int, help="interleaved rounds per metric (default 7; 3 with --quick)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto: cuda if available)")
    p.add_argument("--no-peers", action="store_true", help="time palmbook alone")
    p.add_argument("--out", help="write the results as JSON here (e.g. book/data/benchmark.json)")
    p.add_argument("--bf16-curve", action="store_true", help="train fp32 and bf16 side by side; compare curves")
    p.add_argument("--steps", type=_positive_int, help="steps for --bf16-curve / --gpu-mfu (default 200 / 10)")
    p.add_argument("--tolerance", type=float, help="--bf16-curve: allowed gap in nats (default 0.05)")
    p.add_argument("--gpu-mfu", action="store_true", help="one CUDA GPU: MFU training --preset (default palm-1b)")
    p.add_argument("--batch-size", type=_positive_int, help="--gpu-mfu batch size (default 8)")
    p.add_argument("--seq-len", type=_positive_int, help="--gpu-mfu sequence length (default 2048)")
    p.add_argument("--checkpointing", action="store_true", help="--gpu-mfu: activation checkpointing on")


def _parser() -> argparse.ArgumentParser:
    """A stand-alone parser with bench's flags, to read their defaults."""
    parser = argparse.ArgumentParser()
    _add_arguments(parser)
    return parser


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces ``args``: ``palmbook bench`` plus every option not at its default."""
    parser = _parser()
    defaults = vars(parser.parse_args([]))
    words = ["palmbook", "bench"]
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if not action.option_strings or action.dest not in defaults or value == defaults[action.dest]:
            continue
        flag = action.option_strings[0]
        if isinstance(value, bool):  # store_true, or --compile / --no-compile
            words.append(flag if value else f"--no-{flag[2:]}")
        else:
            words += [flag, str(value)]
    return " ".join(words)


def _mode(args: argparse.Namespace) -> str:
    """The mode ``args`` asks for; UserError naming the flag to drop for a flag that mode would ignore."""
    if args.bf16_curve and args.gpu_mfu:
        raise UserError("--bf16-curve and --gpu-mfu are two separate runs: choose one")
    mode = BF16_CURVE if args.bf16_curve else GPU_MFU if args.gpu_mfu else COMPARISON
    defaults = vars(_parser().parse_args([]))
    for dest, modes in _READ_BY.items():
        if mode not in modes and getattr(args, dest) != defaults[dest]:
            flag = "--" + dest.replace("_", "-")
            raise UserError(f"{flag} is read only by {' and '.join(modes)}, so {mode} would ignore it: drop it")
    if args.quick and args.preset:
        raise UserError("--quick has a tiny shape of its own, so --preset would be ignored: drop one of them")
    return mode


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """``n`` torch CPU threads for the run, then the caller's setting back (a test, a notebook)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _write(path: str | None, payload: dict[str, Any], command: str) -> None:
    if path:
        print(f"wrote {bench.write_json(path, payload, command)}")


def _shape(args: argparse.Namespace) -> bench.BenchShape:
    if args.quick:
        base = bench.QUICK
    elif args.preset:
        base = bench.BenchShape.from_preset(args.preset, batch_size=8)
    else:
        base = bench.REFERENCE
    return bench.parse_shape(args.shape, base)


def _run_gpu_mfu(args: argparse.Namespace, device: torch.device, command: str) -> int:
    if device.type != "cuda":
        raise UserError(
            f"--gpu-mfu needs a CUDA GPU and this run's device is {device}; run `palmbook bench --gpu-mfu --preset "
            "palm-1b` on a machine with one (an H100/H200/A100-class card)"
        )
    res = bench.gpu_mfu(
        args.preset or "palm-1b", args.batch_size or 8, args.seq_len or 2048, args.steps or 10,
        compile_blocks=args.compile is not False, gradient_checkpointing=args.checkpointing,
    )  # fmt: skip
    print(bench.format_gpu_mfu(res))
    _write(args.out, {"gpu_mfu": res}, command)
    return 0


def _run_bf16_curve(args: argparse.Namespace, device: torch.device, command: str) -> int:
    steps = args.steps or (6 if args.quick else 200)
    if steps < 2:
        raise UserError(f"--bf16-curve needs --steps 2 or more (each model's first step is left untimed); got {steps}")
    tolerance = 0.05 if args.tolerance is None else args.tolerance
    if tolerance < 0:
        raise UserError(f"--tolerance is a gap in nats, 0 or more; got {tolerance}")
    res = bench.bf16_curve(_shape(args), steps, tolerance=tolerance, device=device)
    print(bench.format_bf16_curve(res))
    _write(args.out, {"bf16_curve": res}, command)
    return 0


def _run_comparison(args: argparse.Namespace, device: torch.device, command: str) -> int:
    shape = _shape(args)
    if not args.no_peers:
        check_falcon_shape(shape)  # before a minute of palmbook's rounds, not after
    # auto is bf16 on CUDA only: on a CPU float32 is the common case, and the book's CPU numbers are float32
    precision = args.precision if args.precision not in (None, "auto") else "bf16" if device.type == "cuda" else "fp32"
    res = bench.run_bench(
        shape,
        progress=True,
        rounds=args.rounds or (3 if args.quick else 7),
        precision=precision,
        compile_blocks=args.compile if args.compile is not None else device.type == "cuda",
        peers=not args.no_peers,
        device=device,
        matmul_n=256 if args.quick else 2048,
    )
    print(bench.format_results(res))
    res["memory_facts"] = bench.memory_facts(shape, device)
    print(bench.format_memory_facts(res["memory_facts"]))
    _write(args.out, res, command)
    return 0


def run(args: argparse.Namespace) -> int:
    """``palmbook bench``: check the flags, run the chosen mode, print its table and optionally write JSON."""
    mode = _mode(args)
    device = pick_device(args.device or "auto")
    command = _command(args)
    with _torch_threads(args.threads):
        if mode == GPU_MFU:
            return _run_gpu_mfu(args, device, command)
        if mode == BF16_CURVE:
            return _run_bf16_curve(args, device, command)
        return _run_comparison(args, device, command)
