"""The benchmark's other modes: memory facts, float32 against bf16 on one curve, and MFU on one GPU.

memory_facts   KV-cache bytes per token (multi-query vs multi-head, measured; PaLM 540B, computed) and the
               activations training keeps, with and without checkpointing (``palmbook bench`` prints them too)
bf16_curve     the same model trained in float32 and under bf16 autocast on the same batches: speed, loss gap
               (``palmbook bench --bf16-curve``)
gpu_mfu        a ~1B PaLM on one CUDA GPU the fast way, its MFU against the data-sheet 16-bit peak
               (``palmbook bench --gpu-mfu``)
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..config import PaLMConfig
from ..flops import PEAK_FLOPS, PEAK_PRECISION, flops_per_token, measure_matmul_peak, mfu, peak_flops_for
from ..model import PaLM
from ..runtime import autocast
from .contestants import falcon_config, make_adamw
from .measure import load_at_end, machine_record, paired_ratios, peak_step_memory, timestamp, trace_memory
from .shapes import REFERENCE, BenchData, BenchShape

__all__ = ["bf16_curve", "gpu_mfu", "memory_facts"]


# ---- memory facts
def _cache_bytes(cache: Any) -> int:
    """Bytes of every key/value tensor held by a Hugging Face cache object."""
    total = 0
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


def _kv_bytes_per_token(shape: BenchShape, ids: torch.Tensor, device: torch.device) -> dict[str, Any]:
    """KV-cache bytes per token after a forward pass over ``ids`` (1, n): palmbook's multi-query cache, and two
    Falcon models that differ only in ``multi_query`` (a string saying why, where Falcon cannot run)."""
    n = ids.shape[1]
    model = PaLM(shape.palm_config()).to(device).eval()
    cache = model.new_kv_cache(1, n)
    with torch.no_grad():
        model(ids, kv_cache=cache)
    kv: dict[str, Any] = {"palmbook (multi-query)": cache.nbytes() / n}
    try:
        from transformers import FalconForCausalLM

        for multi_query, label in ((True, "falcon multi-query"), (False, "falcon multi-head")):
            with torch.no_grad():
                out = FalconForCausalLM(falcon_config(shape, multi_query)).to(device).eval()(ids, use_cache=True)
            kv[label] = _cache_bytes(out.past_key_values) / n
    except ImportError:
        kv["falcon"] = "transformers not installed (pip install palmbook[bench])"
    except ValueError as e:  # a shape Falcon cannot take (check_falcon_shape): palmbook's number still stands
        kv["falcon"] = f"skipped: {e}"
    return kv


def _palm_540b_kv_bytes() -> dict[str, int]:
    """PaLM 540B's KV cache in bf16, computed: one key and one value head per layer (multi-query) vs 48 heads."""
    big = PaLMConfig.preset("palm-540b")
    mq = 2 * big.n_layers * big.head_dim * 2  # keys + values, one head, bf16
    return {
        "multi-query": mq,
        "multi-head": mq * big.n_heads,
        "per 2048-token sequence, multi-query": mq * 2048,
        "per 2048-token sequence, multi-head": mq * big.n_heads * 2048,
    }


def _activation_bytes(shape: BenchShape, device: torch.device) -> dict[str, Any]:
    """What the forward pass (model + loss) leaves alive for the backward pass, with and without checkpointing.

    Activation bytes = peak training memory - (weights + gradients + AdamW's two moments).
    """
    torch.manual_seed(0)
    model = PaLM(shape.palm_config()).to(device)
    opt = make_adamw(model, device)
    data = BenchData(shape, device)

    def step() -> None:
        model(data.inputs, targets=data.targets).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # creates AdamW's moments
    static = sum(p.numel() * p.element_size() for p in model.parameters()) * 3  # weights + AdamW's 2 moments
    act: dict[str, Any] = {"tokens": shape.batch_size * shape.seq_len, "weights_and_optimizer_bytes": static}
    held: list[torch.Tensor] = []
    for remat in (False, True):
        model.gradient_checkpointing = remat
        fwd = trace_memory(lambda: held.append(model(data.inputs, targets=data.targets).loss), device)
        held.pop().backward()
        opt.zero_grad(set_to_none=True)
        act["with_checkpointing" if remat else "without_checkpointing"] = {
            "saved_for_backward_bytes": fwd.end - fwd.start,
            "step_peak_bytes": peak_step_memory(step, device),
        }
    without = act["without_checkpointing"]["saved_for_backward_bytes"]
    act["ratio"] = act["with_checkpointing"]["saved_for_backward_bytes"] / max(without, 1)
    return act


def memory_facts(shape: BenchShape = REFERENCE, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Memory measured at ``shape``: KV-cache bytes per token (multi-query vs multi-head) and training activations
    with and without checkpointing; plus the KV cache of PaLM 540B, computed.

    The multi-query/multi-head comparison measures two Falcon models that differ only in ``multi_query``, next to
    palmbook's own cache; it is skipped, with the reason, where transformers is missing or Falcon cannot take the
    shape.
    """
    device = torch.device(device)
    n = shape.prompt_len + shape.new_tokens
    ids = torch.randint(1, shape.vocab_size, (1, n), generator=torch.Generator().manual_seed(0)).to(device)
    return {
        "tokens": n,
        "kv_bytes_per_token": _kv_bytes_per_token(shape, ids, device),
        "palm_540b_kv_bytes_per_token_bf16": _palm_540b_kv_bytes(),
        "training_activations": _activation_bytes(shape, device),
    }


# ---- float32 against bf16 autocast
def _byte_corpus() -> torch.Tensor:
    """Shakespeare's training plays as UTF-8 bytes (ids 0-255): real text, no tokenizer to train."""
    from ..data import shakespeare

    text = "\n\n".join(shakespeare("play")["train"]["text"])
    return torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).long()


def _twins(shape: BenchShape, lr: float, device: torch.device) -> dict[str, tuple[nn.Module, torch.optim.Optimizer]]:
    """Two copies of one initial model, each with its AdamW at ``lr``: {"fp32": ..., "bf16": ...}."""
    torch.manual_seed(0)
    first = PaLM(shape.palm_config()).to(device)
    second = PaLM(shape.palm_config()).to(device)
    second.load_state_dict(first.state_dict())
    twins = {}
    for name, model in (("fp32", first), ("bf16", second)):
        opt = make_adamw(model, device)
        for group in opt.param_groups:
            group["lr"] = lr
        twins[name] = (model, opt)
    return twins


def _train_twins(
    twins: dict[str, tuple[nn.Module, torch.optim.Optimizer]], corpus: torch.Tensor, shape: BenchShape, steps: int,
    device: torch.device, log: Callable[[str], None],
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:  # fmt: skip
    """Train both on the same random (batch_size, seq_len + 1) windows, steps interleaved: (losses, seconds)."""
    g = torch.Generator().manual_seed(0)
    T, B = shape.seq_len, shape.batch_size
    losses: dict[str, list[float]] = {"fp32": [], "bf16": []}
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for step in range(steps):
        starts = torch.randint(0, len(corpus) - T - 1, (B,), generator=g)
        batch = torch.stack([corpus[s : s + T + 1] for s in starts.tolist()])
        for name in ("fp32", "bf16") if step % 2 == 0 else ("bf16", "fp32"):
            model, opt = twins[name]
            start = time.perf_counter()
            with autocast(device, name):
                loss = model(batch[:, :-1], targets=batch[:, 1:]).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            value = loss.item()  # also waits for the device
            times[name].append(time.perf_counter() - start)
            losses[name].append(value)
        if (step + 1) % max(steps // 10, 1) == 0:
            log(f"  step {step + 1}: fp32 {losses['fp32'][-1]:.3f}  bf16 {losses['bf16'][-1]:.3f}")
    return losses, times


def bf16_curve(
    shape: BenchShape = REFERENCE,
    steps: int = 200,
    lr: float = 1e-3,
    tolerance: float = 0.05,
    window: int = 10,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train the same initial model in float32 and under bf16 autocast on the same batches, steps interleaved.

    Returns both loss curves, the paired speed ratio (bf16 tokens/s over float32 tokens/s, step by step) and how far
    the curves drift apart: the largest gap of single steps, and of ``window``-step moving averages, which is the
    number compared against ``tolerance`` (nats): single-step losses of two runs differ by the noise of rounding
    even when the training is the same.
    """
    if steps < 2:
        raise ValueError(f"steps must be at least 2 (each model's first step is left untimed); got {steps}")
    if window < 1:
        raise ValueError(f"window must be at least 1 step; got {window}")
    device = torch.device(device)
    machine = machine_record(device)
    corpus = _byte_corpus().to(device)
    log(f"bf16 curve: {steps} steps of {shape.describe()} on Shakespeare bytes, lr {lr}, float32 and bf16 interleaved")
    losses, times = _train_twins(_twins(shape, lr, device), corpus, shape, steps, device, log)

    def smooth(xs: list[float]) -> list[float]:
        return [statistics.fmean(xs[max(0, i - window + 1) : i + 1]) for i in range(len(xs))]

    raw_gap = max(abs(a - b) for a, b in zip(losses["fp32"], losses["bf16"], strict=True))
    s32, s16 = smooth(losses["fp32"]), smooth(losses["bf16"])
    gap = max(abs(a - b) for a, b in zip(s32, s16, strict=True))
    warm = times["fp32"][1:], times["bf16"][1:]  # the first step of each pays one-time costs
    tokens = shape.batch_size * shape.seq_len
    return {
        "steps": steps,
        "lr": lr,
        "shape": dataclasses.asdict(shape),
        "losses": losses,
        "bf16_speedup": paired_ratios(warm[0], warm[1]).to_dict(),  # fp32 time / bf16 time = bf16 speed-up
        "fp32_tokens_per_s": tokens / statistics.median(warm[0]),
        "bf16_tokens_per_s": tokens / statistics.median(warm[1]),
        "max_step_gap": raw_gap,
        "max_smoothed_gap": gap,
        "window": window,
        "tolerance": tolerance,
        "within_tolerance": gap <= tolerance,
        "final_loss": {"fp32": s32[-1], "bf16": s16[-1]},
        "date": timestamp(),
        "machine": {**machine, "load_average_at_end": load_at_end()},
    }


# ---- one GPU: MFU
def _gpu_step(
    model: PaLM, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, kernels: list[Any]
) -> Callable[[], None]:
    """One bf16 training step on (B, T) ids ``x`` and targets ``y``, attention restricted to ``kernels``."""
    from torch.nn.attention import sdpa_kernel

    def step() -> None:
        with sdpa_kernel(kernels), torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(x, targets=y).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def _first_step(
    make_step: Callable[[list[Any]], Callable[[], None]], opt: torch.optim.Optimizer
) -> tuple[Callable[[], None], str]:
    """Run the first step (it compiles) with fused attention kernels only, falling back to the math kernel if no
    fused one accepts the shapes: (the step to time, which attention it uses)."""
    from torch.nn.attention import SDPBackend

    fused = [SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]
    step = make_step(fused)
    try:
        step()
        return step, "fused SDPA kernels only (flash / cuDNN / memory-efficient)"
    except RuntimeError as e:
        if "kernel" not in str(e).lower():
            raise
        opt.zero_grad(set_to_none=True)  # whatever the failed step left behind
        step = make_step([*fused, SDPBackend.MATH])
        step()
        return step, f"math fallback allowed (no fused kernel took the shapes: {str(e).splitlines()[0][:120]})"


def _time_steps(step: Callable[[], None], steps: int, warmup: int) -> list[float]:
    """Seconds of each of ``steps`` steps after ``warmup - 1`` more (the first step has already run)."""
    for _ in range(warmup - 1):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def gpu_mfu(
    preset: str = "palm-1b",
    batch_size: int = 8,
    seq_len: int = 2048,
    steps: int = 10,
    warmup: int = 3,
    compile_blocks: bool = True,
    gradient_checkpointing: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train a PaLM preset on one CUDA GPU the fast way and report its MFU against the data-sheet 16-bit peak
    (:data:`~palmbook.flops.PEAK_FLOPS`: bf16, or fp16 on a V100 or T4, which have no bf16 tensor cores).

    bf16 autocast, flash attention (SDPA restricted to the fused kernels), ``torch.compile`` on the blocks, fused
    AdamW, TF32 for any float32 matmul left. MFU counts 6 N + 12 L H Q T FLOPs per token (Appendix B).
    """
    if not torch.cuda.is_available():
        raise ValueError(
            "--gpu-mfu needs a CUDA GPU and none is visible here; run `palmbook bench --gpu-mfu --preset palm-1b` "
            "on a machine with one (an H100/H200/A100-class card)"
        )
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len), ("steps", steps), ("warmup", warmup)):
        if value < 1:
            raise ValueError(f"gpu_mfu: {name} must be at least 1; got {value}")
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    cfg = PaLMConfig.preset(preset, max_seq_len=max(seq_len, PaLMConfig.preset(preset).max_seq_len))
    torch.manual_seed(0)
    model = PaLM(cfg).to(device)
    model.gradient_checkpointing = gradient_checkpointing
    if compile_blocks:
        model.compile_blocks()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    tokens = torch.randint(0, cfg.vocab_size, (batch_size, seq_len + 1), device=device)
    step, attention = _first_step(lambda kernels: _gpu_step(model, opt, tokens[:, :-1], tokens[:, 1:], kernels), opt)

    name = torch.cuda.get_device_name()
    log(f"gpu-mfu: {cfg} batch {batch_size} x {seq_len}, bf16 compile={compile_blocks}, {name}")
    times = _time_steps(step, steps, warmup)
    tps = batch_size * seq_len / statistics.median(times)
    fpt = flops_per_token(cfg, seq_len=seq_len)
    table = peak_flops_for(name)
    precision = next((PEAK_PRECISION[k] for k in PEAK_FLOPS if k.upper() in name.upper()), None) if table else None
    measured = measure_matmul_peak(8192, torch.bfloat16, device, repeats=10, warmup=3)
    return {
        "device": name,
        "preset": preset,
        "params": cfg.num_parameters(include_norms=False),
        "batch_size": batch_size,
        "seq_len": seq_len,
        "tokens_per_s": tps,
        "step_seconds": times,
        "flops_per_token": fpt,
        "datasheet_peak_flops": table,
        "datasheet_peak_precision": precision,
        "measured_bf16_matmul_peak_flops": measured.best,
        "mfu_vs_datasheet_peak": mfu(tps, fpt, table) if table else None,
        "mfu_vs_measured_peak": mfu(tps, fpt, measured.best),
        "peak_memory_bytes": torch.cuda.max_memory_allocated(),
        "compile": compile_blocks,
        "attention": attention,
        "gradient_checkpointing": gradient_checkpointing,
        "torch": torch.__version__,
        "known_peaks": PEAK_FLOPS,
    }
