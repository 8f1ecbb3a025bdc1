"""Timing and memory: interleaved rounds, medians and spreads, peak memory, and :func:`run_bench`.

Each round runs every contestant once, A B C A B C ..., the order reversed on every other round, so that a slow
drift of the machine hits all of them alike; ratios are taken round by round for the same reason.

    interleaved       seconds per call of each function, over interleaved rounds
    Stat              samples of a higher-is-better number: median, min, max
    paired_ratios     round-by-round ratios of two contestants
    trace_memory      live tensor bytes before, at the peak of, and after one call (CUDA counters or the profiler)
    read_every_weight every weight matrix times one vector: the memory-bandwidth bound of batch-1 decoding
    run_bench         every measurement of ``palmbook bench`` on one shape, as a JSON-ready dict
"""

from __future__ import annotations

import dataclasses
import datetime
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn
from tqdm.auto import tqdm

from ..flops import measure_matmul_peak, mfu, peak_flops_for
from ..runtime import load_average, machine_facts
from .contestants import COMPILED, PALMBOOK, Contestant, build_contestants
from .shapes import REFERENCE, BenchData, BenchShape

__all__ = [
    "PRECISIONS",
    "MemoryTrace",
    "Stat",
    "interleaved",
    "load_at_end",
    "machine_record",
    "paired_ratios",
    "peak_step_memory",
    "read_every_weight",
    "run_bench",
    "timestamp",
    "trace_memory",
    "weight_matrices",
]

PRECISIONS = ("fp32", "bf16")
WEIGHT_READS = "weight reads"  # timed with the generations: every weight matrix times one vector, once per token
_MATMUL_PEAK = "matmul peak"  # timed with the training steps, so that MFU compares like with like


# ---- statistics
@dataclass
class Stat:
    """A throughput (or other higher-is-better number) over the rounds of a run."""

    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def lo(self) -> float:
        return min(self.samples)

    @property
    def hi(self) -> float:
        return max(self.samples)

    def to_dict(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.lo, "max": self.hi, "samples": self.samples}


def paired_ratios(a: list[float], b: list[float]) -> Stat:
    """Round-by-round ratios a[i] / b[i]: each pair ran back to back, so the machine's drift mostly cancels."""
    return Stat([x / y for x, y in zip(a, b, strict=True) if y > 0])


# ---- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    fns: dict[str, Callable[[], Any]], rounds: int, device: torch.device, warmup: int = 1, progress: str | None = None
) -> dict[str, list[float]]:
    """Seconds per call of each function, A B C A B C ... with the order reversed every other round.

    ``progress``: a label for a tqdm bar over the rounds (None: no bar).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1 (a median needs a sample); got {rounds}")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in tqdm(range(rounds), desc=progress, unit="round", disable=progress is None, leave=False):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def _per_second(times: dict[str, list[float]], units: int) -> dict[str, Stat]:
    """Seconds per call -> units per second, for each function."""
    return {name: Stat([units / t for t in ts]) for name, ts in times.items()}


# ---- memory
class MemoryTrace(NamedTuple):
    """Bytes of live tensors around one call: before it, at its peak, and after it."""

    start: int
    peak: int
    end: int


def trace_memory(fn: Callable[[], Any], device: torch.device) -> MemoryTrace:
    """Live tensor bytes before, at the peak of, and after one call of ``fn``.

    CUDA: the caching allocator's counters. CPU: the profiler's memory timeline, which records every tensor
    allocation and free; tensors that existed before the call and were used in it count from the start (tensors the
    call never touches are not seen, and do not matter to it).
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return MemoryTrace(start, int(torch.cuda.max_memory_allocated(device)), torch.cuda.memory_allocated(device))
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as p:
        fn()
    start = live = peak = 0
    for _, action, _, size in p._memory_profile().timeline:
        if action == Action.PREEXISTING:
            start += size
            live += size
        elif action == Action.CREATE:
            live += size
        elif action == Action.DESTROY:
            live -= size
        peak = max(peak, live)
    return MemoryTrace(start, peak, live)


def peak_step_memory(step: Callable[[], None], device: torch.device) -> int:
    """Peak bytes of tensors alive during one training step (weights, gradients, optimiser state, activations)."""
    return trace_memory(step, device).peak


# ---- the memory-bandwidth bound of decoding
def weight_matrices(model: nn.Module) -> list[torch.Tensor]:
    """Every weight matrix a decoding step reads (the parameters :func:`~palmbook.bench.contestants.dense_params`
    counts; the shared embedding, read once as the output layer, is one tensor)."""
    return [p for p in model.parameters() if p.dim() > 1]


@torch.no_grad()
def read_every_weight(model: nn.Module, n: int) -> None:
    """Multiply every weight matrix by one vector, ``n`` times over: the part of batch-1 decoding no code can skip.

    A decoding step of one sequence reads every weight once and does two FLOPs per weight, so its speed is bound
    by memory bandwidth; this is that bound, measured (the ``weight reads`` line of ``palmbook bench``).
    """
    matrices = weight_matrices(model)
    vectors = {w.shape[1]: torch.randn(1, w.shape[1], dtype=w.dtype, device=w.device) for w in matrices}
    for _ in range(n):
        for w in matrices:
            torch.nn.functional.linear(vectors[w.shape[1]], w)


# ---- what a run ran on
def machine_record(device: torch.device) -> dict[str, Any]:
    """:func:`palmbook.runtime.machine_facts`, with its load average renamed ``load_average_at_start``.

    The caller adds :func:`load_at_end` when the run is over: a load that rose during the run explains slow rounds.
    """
    facts = machine_facts(device)
    facts["load_average_at_start"] = _two_places(facts.pop("load_average"))
    return facts


def load_at_end() -> float | None:
    """The one-minute load average now, to two places as the kernel counts it (None where the OS has none)."""
    return _two_places(load_average())


def _two_places(load: float | None) -> float | None:
    # os.getloadavg can return the kernel's fixed-point value (2.08251953125); /proc/loadavg shows two places
    return None if load is None else round(load, 2)


def timestamp() -> str:
    """Now, in UTC, to the second (ISO 8601): when a measurement was taken."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# ---- the run, step by step
def _time_training(
    contestants: list[Contestant], rounds: int, device: torch.device, tokens: int, matmul: Callable[[], list[float]],
    warmup: int, progress: bool = False,
) -> tuple[dict[str, Stat], list[float]]:  # fmt: skip
    """Training tokens/s of each contestant, and the matmul-peak FLOP/s samples taken in the same rounds."""
    peak_samples: list[float] = []
    fns: dict[str, Callable[[], Any]] = {c.name: c.train_step for c in contestants}
    fns[_MATMUL_PEAK] = lambda: peak_samples.extend(matmul())
    times = interleaved(fns, rounds, device, warmup=warmup, progress="training" if progress else None)
    del times[_MATMUL_PEAK]
    return _per_second(times, tokens), peak_samples


def _time_generation(
    contestants: list[Contestant], shape: BenchShape, rounds: int, device: torch.device, progress: bool = False
) -> tuple[dict[str, Stat], Stat]:
    """Generated tokens/s of each contestant, and of the weight reads of the first (palmbook's) model."""
    fns: dict[str, Callable[[], Any]] = {c.name: c.generate for c in contestants if c.generate is not None}
    floor_model = contestants[0].model
    fns[WEIGHT_READS] = lambda: read_every_weight(floor_model, shape.new_tokens)
    gen = _per_second(interleaved(fns, rounds, device, progress="generation" if progress else None), shape.new_tokens)
    return gen, gen.pop(WEIGHT_READS)


def _peak_memories(contestants: list[Contestant], device: torch.device) -> dict[str, int]:
    # the compiled model holds the same tensors as the eager one, and the profiler and compiled code do not mix well
    return {c.name: peak_step_memory(c.train_step, device) for c in contestants if c.name != COMPILED}


def _results(
    contestants: list[Contestant], train: dict[str, Stat], fwd: dict[str, Stat], gen: dict[str, Stat],
    memory: dict[str, int], peak_measured: float, table_peak: float | None,
) -> dict[str, Any]:  # fmt: skip
    """Each contestant's numbers: throughputs, parameters, FLOPs per token, MFU, peak memory."""
    results: dict[str, Any] = {}
    for c in contestants:
        r: dict[str, Any] = {
            "train_tokens_per_s": train[c.name].to_dict(),
            "forward_tokens_per_s": fwd[c.name].to_dict(),
            "params": c.n_params,
            "flops_per_token": c.flops_per_token,
            "mfu_vs_measured_peak": mfu(train[c.name].median, c.flops_per_token, peak_measured),
            "note": c.note,
        }
        if c.name in gen:
            r["generate_tokens_per_s"] = gen[c.name].to_dict()
        if c.name in memory:
            r["peak_train_memory_bytes"] = memory[c.name]
        if table_peak:
            r["mfu_vs_datasheet_peak"] = mfu(train[c.name].median, c.flops_per_token, table_peak)
        results[c.name] = r
    return results


def _ratios(
    names: list[str], train: dict[str, Stat], fwd: dict[str, Stat], gen: dict[str, Stat], memory: dict[str, int]
) -> dict[str, Any]:
    """Round-by-round ratios: compiled over eager palmbook, and each palmbook over each peer ("a/b" keys)."""
    pairs = [(COMPILED, PALMBOOK)] if COMPILED in names else []
    for peer in (n for n in names if n not in (PALMBOOK, COMPILED)):
        pairs += [(PALMBOOK, peer)] + ([(COMPILED, peer)] if COMPILED in names else [])
    ratios: dict[str, Any] = {}
    for a, b in pairs:
        ratio = {
            "train": paired_ratios(train[a].samples, train[b].samples).to_dict(),
            "forward": paired_ratios(fwd[a].samples, fwd[b].samples).to_dict(),
        }
        if a in gen and b in gen:
            ratio["generate"] = paired_ratios(gen[a].samples, gen[b].samples).to_dict()
        if a in memory and b in memory:
            ratio["peak_train_memory"] = memory[a] / memory[b]
        ratios[f"{a}/{b}"] = ratio
    return ratios


def run_bench(
    shape: BenchShape = REFERENCE,
    *,
    rounds: int = 7,
    gen_rounds: int | None = None,
    precision: str = "fp32",
    compile_blocks: bool = False,
    peers: bool = True,
    device: str | torch.device = "cpu",
    matmul_n: int = 2048,
    measure_memory: bool = True,
    log: Callable[[str], None] = print,
    progress: bool = False,
) -> dict[str, Any]:
    """Run every measurement on one shape and return the results as a JSON-ready dict.

    Training (with the matmul peak sampled in the same rounds), forward and generation (with the weight reads)
    are each timed over ``rounds`` interleaved rounds (``gen_rounds`` for generation, if given); then one training
    step of each contestant is traced for its peak memory (``measure_memory``). ``progress``: tqdm bars over
    the rounds of each measurement.
    """
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    for name, value in (("rounds", rounds), ("gen_rounds", gen_rounds or rounds)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1 (a median needs a sample); got {value}")
    machine = machine_record(device)
    contestants, skipped = build_contestants(shape, BenchData(shape, device), device, precision, compile_blocks, peers)
    features = f" ({', '.join(machine['cpu_features'])})" if machine["cpu_features"] else ""
    log(f"palmbook bench: {shape.describe()}, {precision}, {machine['threads']} threads, {machine['name']}{features}")
    skips = "".join(f"; {k} skipped: {v}" for k, v in skipped.items())
    log(f"contestants: {', '.join(c.name for c in contestants)}{skips}")

    matmul_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    tokens = shape.batch_size * shape.seq_len
    log(f"training: {rounds} interleaved rounds ...")
    train, peak_samples = _time_training(
        contestants, rounds, device, tokens,
        lambda: measure_matmul_peak(matmul_n, matmul_dtype, device, repeats=2, warmup=1).samples,
        warmup=2 if compile_blocks else 1, progress=progress,
    )  # fmt: skip
    log("forward: ...")
    forwards = {c.name: c.forward for c in contestants}
    fwd = _per_second(interleaved(forwards, rounds, device, progress="forward" if progress else None), tokens)
    log("generation: ...")
    gen, floor = _time_generation(contestants, shape, gen_rounds or rounds, device, progress)
    memory: dict[str, int] = {}
    if measure_memory:
        log("peak training memory: ...")
        memory = _peak_memories(contestants, device)

    peak_measured = max(peak_samples)
    table_peak = peak_flops_for(machine["name"]) if device.type == "cuda" else None
    return {
        "date": timestamp(),
        "machine": {**machine, "load_average_at_end": load_at_end()},
        "shape": dataclasses.asdict(shape),
        "precision": precision,
        "compile": compile_blocks,
        "rounds": rounds,
        "optimizer": "torch.optim.AdamW (fused where available), the same for every contestant",
        "matmul_peak": {
            "n": matmul_n,
            "dtype": str(matmul_dtype).split(".")[-1],
            "best_flops": peak_measured,
            "median_flops": statistics.median(peak_samples),
            "samples": peak_samples,
            "datasheet_flops": table_peak,
        },
        "results": _results(contestants, train, fwd, gen, memory, peak_measured, table_peak),
        "weight_reads": {
            "tokens_per_s": floor.to_dict(),
            "bytes_per_token": sum(w.numel() * w.element_size() for w in weight_matrices(contestants[0].model)),
        },
        "ratios": _ratios([c.name for c in contestants], train, fwd, gen, memory),
        "skipped": skipped,
    }
