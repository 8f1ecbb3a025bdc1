"""Where the code runs: device, precision, autocast, torchrun set-up and machine facts, written once.

Training (:mod:`palmbook.train`), the benchmark (:mod:`palmbook.bench`), ``palmbook doctor`` and the chapters all
ask the same questions of the machine; this module is the single place that answers them.

    pick_device("auto")                 -> cuda (this process's GPU) if there is one, else cpu
    resolve_precision("auto", device)   -> bf16 on GPUs with bf16 tensor cores (compute capability >= 8) and on
                                           CPUs with bf16 matrix units (AMX / AVX512-BF16); fp16 + GradScaler on
                                           older GPUs (a Colab T4 is sm75); fp32 elsewhere
    autocast(device, precision)         -> the matching torch.autocast context (or none for fp32)
    init_distributed(mode, device)      -> (rank, world_size, local_rank), joining the group torchrun describes
    machine_facts(device) / describe_machine(device)  -> what a measurement ran on (dict / one line)
"""

from __future__ import annotations

import contextlib
import os
import platform
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DISTRIBUTED_MODES",
    "PRECISIONS",
    "autocast",
    "cleanup_distributed",
    "cpu_features",
    "cpu_has_fast_bf16",
    "cpu_name",
    "cuda_has_fast_bf16",
    "describe_machine",
    "init_distributed",
    "load_average",
    "machine_facts",
    "pick_device",
    "resolve_distributed_mode",
    "resolve_precision",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DISTRIBUTED_MODES = ("auto", "none", "ddp", "fsdp")
# The CPU extensions that matter to torch here: AMX and AVX512-BF16 make bf16 matrix products ~2x faster.
_CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


# ---- device
def pick_device(name: str | torch.device = "auto", local_rank: int = 0, world_size: int = 1) -> torch.device:
    """The ``torch.device`` for ``name`` ("auto", "cpu", "cuda", "cuda:1", "mps"), checked to exist here.

    Under torchrun (``world_size > 1``) a bare "cuda" means this process's GPU, ``cuda:<local_rank>``.
    Raises ValueError naming the fix for a string torch does not know or a device this machine lacks.
    """
    if isinstance(name, torch.device):
        device = name
    elif name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
        return torch.device("cpu")
    else:
        try:
            device = torch.device(name)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"device {name!r} is not a device torch knows; use auto, cpu, cuda, cuda:N or mps") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(name)!r} needs CUDA, which is not available here; use 'cpu' or 'auto'")
        if device.index is None:
            device = torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
        elif device.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(name)!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"device {str(name)!r} needs Apple's MPS, which is not available here; use 'cpu'")
        warnings.warn("MPS is opt-in and less tested: some kernels fall back to the CPU", stacklevel=2)
    elif device.type not in ("cpu", "meta"):
        raise ValueError(f"device {str(name)!r} is not supported by palmbook; use auto, cpu, cuda, cuda:N or mps")
    return device


# ---- precision
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has bf16 matrix units (AVX512-BF16 or AMX): there bf16 autocast trains ~2x faster."""
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(torch.cpu, probe, None)
        if fn is not None and fn():
            return True
    return False


def cuda_has_fast_bf16(device: torch.device | int | None = None) -> bool:
    """True when the GPU has bf16 tensor cores: compute capability 8.0 or newer (A100, L4, H100, RTX 30xx on).

    ``torch.cuda.is_bf16_supported()`` is not the question: it is also true where bf16 is *emulated* (a T4, sm75),
    which runs slower than fp16 + GradScaler there.
    """
    if not torch.cuda.is_available():
        return False
    index = device.index if isinstance(device, torch.device) else device
    major, _ = torch.cuda.get_device_capability(index)
    return major >= 8


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a run uses: ``precision`` itself, or for "auto" the fastest safe one on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision='fp16' (with a GradScaler) needs a CUDA GPU; use 'bf16' or 'fp32' here")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if cuda_has_fast_bf16(device) else "fp16"
    if device.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision for a forward pass: bf16 or fp16 autocast on ``device``, nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device_type=device.type, dtype=torch.float16)
    return contextlib.nullcontext()


# ---- torchrun
def resolve_distributed_mode(mode: str, world_size: int) -> str:
    """What a run of ``world_size`` processes does with ``mode``: "none", "ddp" or "fsdp" ("auto": DDP if > 1)."""
    if mode not in DISTRIBUTED_MODES:
        raise ValueError(f"distributed must be one of {', '.join(DISTRIBUTED_MODES)}; got {mode!r}")
    if mode == "auto":
        return "ddp" if world_size > 1 else "none"
    return mode if world_size > 1 else "none"


def init_distributed(mode: str = "auto", device: str = "auto") -> tuple[int, int, int]:
    """(rank, world_size, local_rank); joins the process group torchrun describes in the environment.

    NCCL when this process uses a GPU, gloo on CPUs. ``mode="none"``: every process trains alone.
    """
    if mode == "none":
        return 0, 1, 0
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if mode in ("ddp", "fsdp") and world < 2 and not dist.is_initialized():
        raise ValueError(
            f"distributed={mode!r} needs several processes: launch with "
            "torchrun --nproc_per_node N ... (or use distributed='auto')"
        )
    if world > 1 and not dist.is_initialized():
        use_cuda = torch.cuda.is_available() if device == "auto" else str(device).startswith("cuda")
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def cleanup_distributed() -> None:
    """Leave the process group (call once at the end of a torchrun script)."""
    if dist.is_initialized():
        dist.destroy_process_group()


# ---- machine facts
def _cpuinfo_lines() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:  # not Linux
        return []


def cpu_name() -> str:
    """The CPU's model name ("AMD EPYC 9B14", "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", ...)."""
    for line in _cpuinfo_lines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


def cpu_features() -> list[str]:
    """The CPU's vector and matrix extensions that matter to torch (AMX: bf16 matrix units), from /proc/cpuinfo."""
    flags = next((line.split(":", 1)[1].split() for line in _cpuinfo_lines() if line.startswith("flags")), [])
    return [f for f in _CPU_FEATURES if f in flags]


def load_average() -> float | None:
    """Runnable processes over the last minute (a busy machine times slower); None where the OS has no such figure."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def machine_facts(device: torch.device | str = "cpu") -> dict[str, Any]:
    """What a measurement ran on, as a JSON-able dict: device, its name, threads, versions, CPU extensions, load."""
    device = torch.device(device)
    return {
        "device": str(device),
        "name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_features": cpu_features() if device.type == "cpu" else [],
        "load_average": load_average(),
    }


def describe_machine(device: torch.device | str = "cpu") -> str:
    """One line for a chapter to print beside a timing: the GPU, or the CPU with threads, cores and load."""
    facts = machine_facts(device)
    if facts["device"].startswith("cuda"):
        return f"{facts['name']} ({facts['device']})"
    load = facts["load_average"]
    busy = f", load average {load:.1f}" if load is not None else ""
    return f"{facts['name']}, {facts['threads']} torch threads on {facts['cores']} cores{busy}"
