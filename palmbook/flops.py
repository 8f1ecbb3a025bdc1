"""Parameter and FLOP counts, model FLOPs utilisation and training memory (PaLM §4.1 and Appendix B).

Appendix B counts the FLOPs of one training token (forward + backward) as

    FLOPs per token = 6 N + 12 L H Q T

N parameters, L layers, H heads, Q head size, T sequence length. 6N: each weight does one multiply-add (2 FLOPs)
per token forward and twice that backward. 12 L H Q T: the attention scores QK^T and the weighted sum over values,
which have no weights and grow with the context. The paper's Table 22 (0.0550 / 0.388 / 3.28 TFLOPs per token
for 8B / 62B / 540B) is reproduced with N = the FULL parameter count of Table 1, the 256k x d_model embedding
included (without it 8B would give 0.0487). :func:`flops_per_token` therefore takes the Table 1 count.

Model FLOPs utilisation (MFU) = tokens/s x FLOPs per token / peak FLOP/s: the fraction of the hardware's peak
that goes into the model's own arithmetic. Rematerialisation (recomputing activations in the backward pass) is
work the hardware does but the model does not need, so MFU leaves it out (hardware FLOPs utilisation counts it).
PaLM 540B: 238.3k tokens/s on 6144 TPU v4 chips of 275 TFLOP/s (bf16) -> 46.2% (45.7% without attention FLOPs).
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .config import PaLMConfig

__all__ = [
    "PEAK_FLOPS",
    "PEAK_PRECISION",
    "MatmulPeak",
    "MemoryEstimate",
    "available_memory",
    "check_fits_in_memory",
    "devices_peak_flops",
    "flops_per_token",
    "measure_matmul_peak",
    "memory_estimate",
    "mfu",
    "peak_flops_for",
    "training_time",
]


def flops_per_token(
    config: PaLMConfig, seq_len: int | None = None, attention: bool = True, n_params: int | None = None
) -> float:
    """Training FLOPs per token, forward + backward: 6 N + 12 L H Q T (Appendix B).

    Args:
        config: the model's shape (L = n_layers, H = n_heads, Q = head_dim).
        seq_len: T; defaults to ``config.max_seq_len`` (2048 in the paper).
        attention: include the 12 L H Q T attention term (False gives the 6N approximation).
        n_params: N; defaults to the Table 1 count: dense kernels + the shared embedding, without the LayerNorm
            scales (``config.num_parameters(include_norms=False)``); this N reproduces Table 22.
    """
    T = config.max_seq_len if seq_len is None else seq_len
    N = config.num_parameters(include_norms=False) if n_params is None else n_params
    flops = 6.0 * N
    if attention:
        flops += 12.0 * config.n_layers * config.n_heads * config.head_dim * T
    return flops


def mfu(tokens_per_second: float, flops_per_token: float, peak_flops: float) -> float:
    """Model FLOPs utilisation in [0, 1]: tokens/s x FLOPs per token / peak FLOP/s (all devices together).

    ``peak_flops`` is the summed peak of every chip, e.g. 6144 x 275e12 for PaLM 540B's TPU v4 pods.
    """
    if peak_flops <= 0:
        raise ValueError(f"peak_flops must be > 0 (FLOP/s of all devices together); got {peak_flops!r}")
    return tokens_per_second * flops_per_token / peak_flops


# Dense (no sparsity) peak of the 16-bit matrix units, from the vendors' data sheets, in FLOP/s per chip.
# MFU is quoted against this number; fp32 work reaches far less. The 16-bit format of each peak is in
# PEAK_PRECISION: bf16, except the V100 and T4, whose tensor cores have no bf16 (their peak is fp16).
PEAK_FLOPS: dict[str, float] = {
    "TPU v4": 275e12,  # PaLM §4.1
    "A100": 312e12,
    "H100": 989e12,  # SXM; the PCIe card is lower (756e12)
    "H200": 989e12,
    "V100": 125e12,  # fp16
    "T4": 65e12,  # fp16
    "L4": 121e12,
}
PEAK_PRECISION: dict[str, str] = {name: "fp16" if name in ("V100", "T4") else "bf16" for name in PEAK_FLOPS}


def peak_flops_for(device_name: str) -> float | None:
    """Look a device name (e.g. ``torch.cuda.get_device_name()``) up in :data:`PEAK_FLOPS`; None if unknown."""
    name = device_name.upper()
    if "H100" in name and "PCIE" in name:
        return 756e12
    for key, value in PEAK_FLOPS.items():
        if key.upper() in name:
            return value
    return None


def devices_peak_flops(device: torch.device, world_size: int = 1) -> float | None:
    """Summed peak FLOP/s of ``world_size`` devices like ``device`` (the MFU denominator of a run), or None where
    unknown: a CPU, or a GPU missing from :data:`PEAK_FLOPS`."""
    if device.type != "cuda":
        return None
    per_device = peak_flops_for(torch.cuda.get_device_name(device))
    return per_device * world_size if per_device else None


# ---- memory
@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes needed to train a model (see :func:`memory_estimate`). ``activations_per_token`` scales with the
    number of tokens a device holds at once (micro-batch x sequence length)."""

    weights: int
    gradients: int
    optimizer: int
    activations_per_token: int

    def static(self) -> int:
        """Weights + gradients + optimiser state: the part independent of the batch."""
        return self.weights + self.gradients + self.optimizer

    def total(self, tokens: int) -> int:
        """Everything, for ``tokens`` tokens in flight (micro_batch_size * seq_len)."""
        return self.static() + self.activations_per_token * tokens


def memory_estimate(
    config: PaLMConfig,
    optimizer: str = "adamw",
    weight_bytes: int = 4,
    activation_bytes: int = 2,
    rematerialize: bool = False,
) -> MemoryEstimate:
    """An estimate of training memory, before any sharding (divide the static part by the FSDP world size).

    - weights: N x ``weight_bytes`` (fp32 master weights by default); gradients the same.
    - optimiser: two float32 moments per parameter for both ``"adamw"`` and ``"palm"`` (PaLM's optimiser is
      Adafactor *without* factorisation, so it keeps a full second moment too).
    - activations per token: the tensors a parallel block saves for its backward pass, assuming an
      attention kernel that never stores the T x T matrix (flash attention): the block input and its
      normalised copy (2d), the fused projection output (H*Q + 2Q + 2 d_ff), the attention output (H*Q) and
      the SwiGLU product (d_ff), in ``activation_bytes`` each (2 under bf16 autocast); plus what
      :func:`~palmbook.loss.lm_loss` saves for its backward pass: one float32 log-softmax of the logits (V numbers),
      which its backward turns into the gradient in place. The logits themselves are not saved (the output layer's
      backward needs its input and weight, not its output); they exist during the loss's forward pass, which this
      estimate of what is *kept* leaves out. The model's own training path, ``model(idx, targets=...)``
      (:func:`~palmbook.loss.fused_lm_loss`), keeps no V-sized tensor at all, so for it this part is an overestimate.
      With ``rematerialize=True`` only each block's input is kept (PaLM rematerialises, §4.1), and one block's worth
      is recomputed at a time.
    """
    if optimizer not in ("adamw", "palm"):
        raise ValueError(f"unknown optimizer {optimizer!r}; choose 'adamw' or 'palm'")
    c = config
    n = c.num_parameters()
    per_block = 2 * c.d_model + c.fused_dim + c.n_heads * c.head_dim + c.d_ff
    # rematerialising keeps each block's input and recomputes one block at a time
    acts = c.n_layers * c.d_model + per_block if rematerialize else c.n_layers * per_block
    per_token = acts * activation_bytes + c.vocab_size * 4  # + lm_loss's float32 log-softmax
    return MemoryEstimate(
        weights=n * weight_bytes,
        gradients=n * weight_bytes,
        optimizer=2 * n * 4,
        activations_per_token=per_token,
    )


def available_memory() -> int | None:
    """Bytes of RAM a new allocation can get without swapping (Linux MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # other Unixes: free physical pages (an underestimate where caches could be dropped)
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def check_fits_in_memory(config: PaLMConfig, *, optimizer: str = "adamw", training: bool = True) -> None:
    """Raise one ValueError, before anything is allocated, if the model clearly cannot fit in this machine's RAM.

    The model is always built in RAM first (float32 weights: 4 bytes per parameter); training on the CPU also
    needs the gradients and the optimiser's two moments (:meth:`MemoryEstimate.static`, 16 bytes per parameter;
    activations come on top). Only the part that is certainly needed is compared with the available memory, so
    the check never refuses a model that could fit. Where the available memory is unknown nothing is checked.
    """
    free = available_memory()
    if free is None:
        return
    est = memory_estimate(config, optimizer=optimizer if optimizer in ("adamw", "palm") else "adamw")
    need = est.static() if training else est.weights
    if need > free:
        what = "its weights, gradients and optimiser state" if training else "its float32 weights"
        raise ValueError(
            f"this model ({config.num_parameters():,} parameters) needs at least {_gib(need)} of memory for {what}, "
            f"but this machine has {_gib(free)} available: use a smaller model (--preset or --model-config) or a "
            "machine with more memory"
        )


# ---- measured peak
class MatmulPeak(NamedTuple):
    """What :func:`measure_matmul_peak` saw: FLOP/s of the best and the median timing, and every sample."""

    best: float
    median: float
    samples: list[float]
    n: int
    dtype: str
    device: str


def measure_matmul_peak(
    n: int = 2048,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    repeats: int = 10,
    warmup: int = 2,
) -> MatmulPeak:
    """Time ``repeats`` (n x n) @ (n x n) products on ``device`` (default: CUDA if present, else CPU).

    Each product is 2 n^3 FLOPs. ``best`` is the practical peak to quote MFU against when no data-sheet
    number exists (a CPU); ``median`` and ``samples`` show how noisy the machine is.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elif device.type == "mps":
            torch.mps.synchronize()

    for _ in range(warmup):
        a @ b
    sync()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync()
        samples.append(2 * n**3 / max(time.perf_counter() - start, 1e-12))
    return MatmulPeak(max(samples), statistics.median(samples), samples, n, str(dtype).split(".")[-1], str(device))


def training_time(total_tokens: float, flops_per_token: float, peak_flops: float, mfu: float) -> float:
    """Seconds to train on ``total_tokens`` at a given MFU: tokens x FLOPs/token / (peak x MFU)."""
    return total_tokens * flops_per_token / (peak_flops * mfu)
