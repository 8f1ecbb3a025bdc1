"""``palmbook doctor``: what this machine offers palmbook, in one screen (paste it into a bug report).

Versions of Python, torch, palmbook and the libraries it leans on; the device (CUDA and its bf16 support, MPS,
the CPU's vector units: AMX / AVX512-BF16 make bf16 autocast about twice as fast on a CPU); threads; the run
profile; and the precision and distributed backend a training run would pick here.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
from typing import Any

import torch

from .. import __version__
from ..book.profiles import PROFILES, profile
from ..runtime import cpu_has_fast_bf16, cuda_has_fast_bf16, resolve_precision

__all__ = ["add_cli", "colab_gpu_plan", "report", "run"]

LIBRARIES = (
    "numpy", "safetensors", "sentencepiece", "datasets", "tqdm", "plotly", "ipywidgets", "huggingface_hub",
    "transformers", "sacrebleu", "torchmetrics", "jupyter-book",
)  # fmt: skip


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def colab_gpu_plan(device: torch.device | None = None) -> str:
    """One line: what the book's ``gpu`` profile uses on ``device``'s GPU or, without a GPU, on Colab's T4 (sm75).

    Below compute capability 8 (T4, V100) there are no bf16 tensor cores and no flash-attention kernel: training
    runs fp16 + GradScaler and ``F.scaled_dot_product_attention`` picks its memory-efficient kernel.
    """
    if device is not None and device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        major, minor = torch.cuda.get_device_capability(device)
    else:
        name, (major, minor) = "Colab's Tesla T4", (7, 5)
    precision = "bf16" if major >= 8 else "fp16 + GradScaler"
    attention = "flash attention" if major >= 8 else "memory-efficient attention (flash needs sm80+)"
    p = PROFILES["gpu"]
    return (
        f"{name} (sm{major}{minor}): profile gpu ({p['preset']}, {p['batch_size']} x {p['seq_len']} tokens, "
        f"{p['train_steps']} steps), {precision}, SDPA {attention}; torch.compile opt-in"
    )


def report() -> dict[str, Any]:
    """The facts ``palmbook doctor`` prints, as a dict (JSON-able)."""
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "palmbook": __version__,
        "torch": torch.__version__,
        "libraries": {name: _version(name) for name in LIBRARIES},
    }
    cpu: dict[str, Any] = {
        "capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    for name, probe in (("amx", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported")):
        fn = getattr(torch.cpu, probe, None)
        cpu[name] = bool(fn()) if fn is not None else "unknown"
    cpu["fast_bf16"] = cpu_has_fast_bf16()
    info["cpu"] = cpu
    cuda: dict[str, Any] = {"available": torch.cuda.is_available(), "build": torch.version.cuda}
    if cuda["available"]:
        cuda["devices"] = [
            {
                "name": torch.cuda.get_device_name(i),
                "capability": ".".join(map(str, torch.cuda.get_device_capability(i))),
                "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1),
            }
            for i in range(torch.cuda.device_count())
        ]
        cuda["bf16"] = cuda_has_fast_bf16()  # bf16 tensor cores (sm80+), not emulated bf16
    info["cuda"] = cuda
    info["mps"] = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    device = torch.device("cuda" if cuda["available"] else "cpu")
    info["training_precision"] = resolve_precision("auto", device)
    info["gpu_plan"] = colab_gpu_plan(device if cuda["available"] else None)
    dist = torch.distributed
    info["distributed"] = {
        "available": dist.is_available(),
        "gloo": dist.is_available() and dist.is_gloo_available(),
        "nccl": dist.is_available() and dist.is_nccl_available(),
    }
    try:
        info["profile"] = str(profile())
    except ValueError as e:  # a bad PALMBOOK_PROFILE is worth reporting, not crashing on
        info["profile"] = f"invalid: {e}"
    return info


def _text(info: dict[str, Any]) -> str:
    lines = [
        f"palmbook   {info['palmbook']}",
        f"python     {info['python']}  ({info['platform']})",
        f"torch      {info['torch']}",
        "libraries  " + ", ".join(f"{k} {v}" for k, v in info["libraries"].items()),
    ]
    c = info["cpu"]
    lines.append(
        f"cpu        {c['cores']} cores, torch threads {c['torch_threads']}, vector unit {c['capability']}, "
        f"AMX {c['amx']}, AVX512-BF16 {c['avx512_bf16']}"
    )
    cu = info["cuda"]
    if cu["available"]:
        gpus = "; ".join(f"{d['name']} (sm {d['capability']}, {d['memory_gib']} GiB)" for d in cu["devices"])
        lines.append(f"cuda       {cu['build']}: {gpus}; bf16 {cu['bf16']}")
    else:
        lines.append(f"cuda       not available (torch built with CUDA {cu['build']})")
    lines.append(f"mps        {'available' if info['mps'] else 'not available'}")
    d = info["distributed"]
    lines.append(f"torch.distributed  available {d['available']}, gloo {d['gloo']}, nccl {d['nccl']}")
    lines.append(f"training   precision 'auto' -> {info['training_precision']}")
    lines.append(f"gpu plan   {info['gpu_plan']}")
    lines.append(f"profile    {info['profile']}  (PALMBOOK_PROFILE={os.environ.get('PALMBOOK_PROFILE', '')!r})")
    return "\n".join(lines)


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``palmbook doctor`` (called by :mod:`palmbook.cli`)."""
    p = subparsers.add_parser("doctor", help="versions, device and settings of this machine")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``palmbook doctor``: print the report (as JSON with ``--json``)."""
    info = report()
    print(json.dumps(info, indent=2) if args.json else _text(info))
    return 0
