"""``palmbook bench``: palmbook against its peers on one shape, interleaved, with medians, ratios and spreads.

What one run measures, side by side (each round runs every contestant once, A B C A B C ..., the order reversed on
every other round so that a slow drift of the machine hits all of them alike):

- training tokens/s: forward, loss, backward and an AdamW step (the same optimiser for every contestant, so the
  models are compared, not the optimisers); each model uses its own loss (palmbook: cross-entropy + z-loss);
- forward tokens/s: logits for the whole batch, no gradients;
- generation tokens/s: batch 1, a 16-token prompt, 128 new tokens, greedy, each model's own ``generate``;
- peak training memory: every byte of tensors alive during one training step (weights, gradients, optimiser state,
  activations, temporaries), from the profiler's memory timeline on CPU or ``max_memory_allocated`` on CUDA;
- MFU with PaLM's Appendix B count (6 N + 12 L H Q T FLOPs per token, :func:`palmbook.flops.flops_per_token`)
  against the matmul peak measured in the same run (interleaved with the training rounds), and on a GPU also
  against the data-sheet bf16 peak (:data:`palmbook.flops.PEAK_FLOPS`).

The peer is Hugging Face's ``FalconForCausalLM`` set as close to PaLM as Falcon allows: parallel attention and MLP,
multi-query attention, rotary positions, no biases in dense layers, tied embeddings. Its MLP is GELU, so it gets a
6 d hidden width, which has the FLOPs and parameters of a 4 d SwiGLU. lucidrains' ``palm-rlhf-pytorch``
(``pip install palmbook[peers]``) joins when installed.

Other modes: ``--bf16-curve`` (float32 and bf16 autocast trained side by side from one initialisation on the same
batches: speed ratio and the two loss curves' deviation), ``--memory`` (KV-cache bytes per token measured for
multi-query and multi-head attention and computed at 540B; activation memory with and without checkpointing),
``--gpu-mfu`` (one GPU: a ~1B PaLM at sequence 2048 with bf16, torch.compile, flash attention and fused AdamW).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from .config import PaLMConfig
from .flops import PEAK_FLOPS, flops_per_token, measure_matmul_peak, mfu, peak_flops_for
from .model import PaLM

__all__ = ["BenchShape", "add_cli", "bf16_curve", "gpu_mfu", "main", "memory_facts", "run_bench", "run_cli"]

PALMBOOK = "palmbook"
COMPILED = "palmbook+compile"
FALCON = "falcon"
PALM_RLHF = "palm-rlhf-pytorch"
WEIGHT_READS = "weight reads"  # timed with the generations: every weight matrix times one vector, once per token


# --------------------------------------------------------------------------------------------- the shape
@dataclass(frozen=True)
class BenchShape:
    """The model shape and workload of one benchmark run."""

    vocab_size: int = 8192
    d_model: int = 384
    n_layers: int = 6
    n_heads: int = 6
    head_dim: int = 64
    seq_len: int = 256
    batch_size: int = 8
    prompt_len: int = 16
    new_tokens: int = 128

    def palm_config(self) -> PaLMConfig:
        return PaLMConfig(
            vocab_size=self.vocab_size,
            d_model=self.d_model,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            head_dim=self.head_dim,
            max_seq_len=max(self.seq_len, self.prompt_len + self.new_tokens),
            name="bench",
        )

    def describe(self) -> str:
        return (
            f"V{self.vocab_size} d{self.d_model} L{self.n_layers} H{self.n_heads}x{self.head_dim} "
            f"T{self.seq_len} B{self.batch_size}"
        )

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> BenchShape:
        c = PaLMConfig.preset(name)
        base = dict(
            vocab_size=c.vocab_size,
            d_model=c.d_model,
            n_layers=c.n_layers,
            n_heads=c.n_heads,
            head_dim=c.head_dim,
            seq_len=c.max_seq_len,
        )
        return cls(**{**base, **overrides})


REFERENCE = BenchShape()  # = PaLMConfig.preset("palm-small"), batch 8
QUICK = BenchShape(
    vocab_size=512, d_model=64, n_layers=2, n_heads=2, head_dim=32, seq_len=64, batch_size=4, prompt_len=8,
    new_tokens=16,
)  # fmt: skip


def parse_shape(text: str, base: BenchShape) -> BenchShape:
    """``"d_model=512,n_layers=8"`` -> ``base`` with those fields replaced; one clear error for a bad field."""
    fields = {f.name for f in dataclasses.fields(BenchShape)}
    changes: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            raise ValueError(f"--shape expects key=value pairs with keys from {sorted(fields)}; got {item!r}")
        try:
            changes[key] = int(value)
        except ValueError:
            raise ValueError(f"--shape {key} must be an integer; got {value!r}") from None
        if changes[key] <= 0:
            raise ValueError(f"--shape {key} must be positive; got {value!r}")
    return dataclasses.replace(base, **changes)


# --------------------------------------------------------------------------------------------- statistics
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


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.1f}" if abs(x) >= 10 else f"{x:.2f}"


# --------------------------------------------------------------------------------------------- contestants
@dataclass
class Contestant:
    """One implementation under test: its model and three callables, each doing one unit of work."""

    name: str
    model: nn.Module
    train_step: Callable[[], None]
    forward: Callable[[], None]
    generate: Callable[[], None] | None
    flops_per_token: float
    n_params: int
    note: str = ""


def _dense_params(model: nn.Module) -> int:
    """Parameters of the weight matrices and embeddings (LayerNorm scales and biases left out, as in Table 1)."""
    return sum(p.numel() for p in model.parameters() if p.dim() > 1)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _adamw(model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    # Fused AdamW (one kernel for all parameters) where torch has it; the same optimiser for every contestant.
    try:
        return torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=device.type == "cuda")


class _Data:
    """Fixed random token batches for every contestant (the same ids, so the work is identical)."""

    def __init__(self, shape: BenchShape, device: torch.device, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        # ids start at 1: palm-rlhf-pytorch ignores id 0 in its loss by default
        self.tokens = torch.randint(1, shape.vocab_size, (shape.batch_size, shape.seq_len + 1), generator=g).to(device)
        self.inputs, self.targets = self.tokens[:, :-1], self.tokens[:, 1:]
        self.prompt = self.tokens[:1, : shape.prompt_len].clone()


def palmbook_contestant(
    shape: BenchShape, data: _Data, device: torch.device, precision: str, compile_blocks: bool = False
) -> Contestant:
    torch.manual_seed(0)
    cfg = shape.palm_config()
    model = PaLM(cfg).to(device)
    if compile_blocks:
        model.compile_blocks().compile_decoding()
    opt = _adamw(model, device)

    def train_step() -> None:
        with _autocast(device, precision):
            loss = model(data.inputs, targets=data.targets).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def forward() -> None:
        with _autocast(device, precision):
            model(data.inputs)

    def generate() -> None:
        with _autocast(device, precision):
            model.generate(data.prompt, shape.new_tokens)

    return Contestant(
        COMPILED if compile_blocks else PALMBOOK,
        model,
        train_step,
        forward,
        generate,
        flops_per_token(cfg, seq_len=shape.seq_len),
        cfg.num_parameters(include_norms=False),
        "torch.compile on each block and on the decoding step" if compile_blocks else "",
    )


def falcon_contestant(shape: BenchShape, data: _Data, device: torch.device, precision: str) -> Contestant:
    """HF Falcon as close to PaLM as it goes; GELU MLP of width 6d = the FLOPs and parameters of a 4d SwiGLU."""
    import transformers
    from transformers import FalconConfig, FalconForCausalLM

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    fc = FalconConfig(
        vocab_size=shape.vocab_size,
        hidden_size=shape.d_model,
        num_hidden_layers=shape.n_layers,
        num_attention_heads=shape.n_heads,
        multi_query=True,
        parallel_attn=True,
        new_decoder_architecture=False,
        alibi=False,  # rotary positions instead
        bias=False,
        ffn_hidden_size=6 * shape.d_model,
        tie_word_embeddings=True,
        max_position_embeddings=max(shape.seq_len, shape.prompt_len + shape.new_tokens),
        attn_implementation="sdpa",
    )
    if fc.hidden_size // fc.num_attention_heads != shape.head_dim:
        raise ValueError(
            f"Falcon's head size is d_model / n_heads = {fc.hidden_size // fc.num_attention_heads}, not "
            f"head_dim={shape.head_dim}: choose a shape with d_model = n_heads * head_dim, or use --no-peers"
        )
    model = FalconForCausalLM(fc).to(device)
    opt = _adamw(model, device)
    attention_mask = torch.ones_like(data.prompt)

    def train_step() -> None:
        with _autocast(device, precision):
            # Falcon's own loss: labels are shifted inside, cross-entropy over the T-1 next-token predictions
            loss = model(input_ids=data.inputs, labels=data.inputs).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def forward() -> None:
        with _autocast(device, precision):
            model(input_ids=data.inputs)

    def generate() -> None:
        with _autocast(device, precision):
            model.generate(
                data.prompt,
                attention_mask=attention_mask,
                max_new_tokens=shape.new_tokens,
                min_new_tokens=shape.new_tokens,
                do_sample=False,
                use_cache=True,
                pad_token_id=0,
            )

    n = _dense_params(model)
    attn = 12.0 * shape.n_layers * shape.n_heads * shape.head_dim * shape.seq_len
    return Contestant(FALCON, model, train_step, forward, generate, 6.0 * n + attn, n, "transformers Falcon")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence palm-rlhf-pytorch's FutureWarning about ``torch.backends.cuda.sdp_kernel`` (its code, not ours)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def palm_rlhf_contestant(shape: BenchShape, data: _Data, device: torch.device, precision: str) -> Contestant | None:
    """lucidrains' PaLM (palm-rlhf-pytorch), or None when it is not installed."""
    try:
        from palm_rlhf_pytorch import PaLM as LucidPaLM
    except ImportError:
        return None
    torch.manual_seed(0)
    model = LucidPaLM(
        num_tokens=shape.vocab_size,
        dim=shape.d_model,
        depth=shape.n_layers,
        heads=shape.n_heads,
        dim_head=shape.head_dim,
        ff_mult=4,
        flash_attn=True,  # F.scaled_dot_product_attention, as palmbook and Falcon use
    ).to(device)
    opt = _adamw(model, device)

    def train_step() -> None:
        with _autocast(device, precision), _quiet():
            loss = model(data.tokens, return_loss=True)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def forward() -> None:
        with _autocast(device, precision), _quiet():
            model(data.inputs)

    def generate() -> None:  # no KV cache: every step reruns the whole sequence
        with _autocast(device, precision), _quiet():
            model.generate(shape.prompt_len + shape.new_tokens, prompt=data.prompt, temperature=0.0,
                           filter_logits_fn=None)  # fmt: skip

    n = _dense_params(model)
    attn = 12.0 * shape.n_layers * shape.n_heads * shape.head_dim * shape.seq_len
    return Contestant(PALM_RLHF, model, train_step, forward, generate, 6.0 * n + attn, n, "lucidrains")


# --------------------------------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    fns: dict[str, Callable[[], Any]], rounds: int, device: torch.device, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each function, A B C A B C ... with the order reversed every other round."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


# --------------------------------------------------------------------------------------------- memory
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


# --------------------------------------------------------------------------------------------- the run
def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on this platform
        return "n/a"


def _machine(device: torch.device) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {
        "device": str(device),
        "name": name,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_features": _cpu_features() if device.type == "cpu" else [],
        "load_average_at_start": _load(),
    }


def _cpu_features() -> list[str]:
    """The CPU's vector and matrix extensions that matter to torch here (AMX: bf16 matrix units), from /proc."""
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
    try:
        flags = next(
            (line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("flags")), [],
        )  # fmt: skip
    except OSError:
        return []
    return [f for f in wanted if f in flags]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def _weight_matrices(model: nn.Module) -> list[torch.Tensor]:
    """Every weight matrix a decoding step reads (the parameters :func:`_dense_params` counts; the shared
    embedding, read once as the output layer, is one tensor)."""
    return [p for p in model.parameters() if p.dim() > 1]


@torch.no_grad()
def read_every_weight(model: nn.Module, n: int) -> None:
    """Multiply every weight matrix by one vector, ``n`` times over: the part of batch-1 decoding no code can skip.

    A decoding step of one sequence reads every weight once and does two FLOPs per weight, so its speed is bound
    by memory bandwidth; this is that bound, measured (the ``weight reads`` line of ``palmbook bench``).
    """
    matrices = _weight_matrices(model)
    vectors = {w.shape[1]: torch.randn(1, w.shape[1], dtype=w.dtype, device=w.device) for w in matrices}
    for _ in range(n):
        for w in matrices:
            torch.nn.functional.linear(vectors[w.shape[1]], w)


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
) -> dict[str, Any]:
    """Run every measurement on one shape and return the results as a JSON-ready dict (see the module docstring)."""
    device = torch.device(device)
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16'; got {precision!r}")
    machine = _machine(device)
    data = _Data(shape, device)
    contestants = [palmbook_contestant(shape, data, device, precision)]
    if compile_blocks:
        contestants.append(palmbook_contestant(shape, data, device, precision, compile_blocks=True))
    skipped: dict[str, str] = {}
    if peers:
        contestants.append(falcon_contestant(shape, data, device, precision))
        lucid = palm_rlhf_contestant(shape, data, device, precision)
        if lucid is None:
            skipped[PALM_RLHF] = "not installed (pip install palmbook[peers])"
        else:
            contestants.append(lucid)
    by_name = {c.name: c for c in contestants}
    features = f" ({', '.join(machine['cpu_features'])})" if machine["cpu_features"] else ""
    log(f"palmbook bench: {shape.describe()}, {precision}, {machine['threads']} threads, {machine['name']}{features}")
    log(f"contestants: {', '.join(by_name)}" + "".join(f"; {k} skipped: {v}" for k, v in skipped.items()))

    matmul_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    peak_samples: list[float] = []

    def matmul_round() -> None:
        peak_samples.extend(measure_matmul_peak(matmul_n, matmul_dtype, device, repeats=2, warmup=1).samples)

    # ---- training (the matmul peak is sampled in the same rounds, so MFU compares like with like)
    train_fns: dict[str, Callable[[], Any]] = {c.name: c.train_step for c in contestants}
    train_fns["matmul peak"] = matmul_round
    log(f"training: {rounds} interleaved rounds ...")
    t_train = interleaved(train_fns, rounds, device, warmup=2 if compile_blocks else 1)
    del t_train["matmul peak"]
    tokens = shape.batch_size * shape.seq_len
    train = {n: Stat([tokens / t for t in ts]) for n, ts in t_train.items()}

    log("forward: ...")
    t_fwd = interleaved({c.name: c.forward for c in contestants}, rounds, device)
    fwd = {n: Stat([tokens / t for t in ts]) for n, ts in t_fwd.items()}

    log("generation: ...")
    gen_fns = {c.name: c.generate for c in contestants if c.generate is not None}
    floor_model = contestants[0].model
    gen_fns[WEIGHT_READS] = lambda: read_every_weight(floor_model, shape.new_tokens)  # type: ignore[assignment]
    t_gen = interleaved(gen_fns, gen_rounds or rounds, device)  # type: ignore[arg-type]
    gen = {n: Stat([shape.new_tokens / t for t in ts]) for n, ts in t_gen.items()}
    floor = gen.pop(WEIGHT_READS)

    peak_measured = max(peak_samples)
    table_peak = peak_flops_for(machine["name"]) if device.type == "cuda" else None
    memory: dict[str, int] = {}
    if measure_memory:
        log("peak training memory: ...")
        for c in contestants:
            if c.name != COMPILED:  # same tensors as eager; the profiler and compiled code do not mix well
                memory[c.name] = peak_step_memory(c.train_step, device)

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

    ratios: dict[str, Any] = {}
    pairs = [(COMPILED, PALMBOOK)] if COMPILED in by_name else []
    for peer in (n for n in by_name if n not in (PALMBOOK, COMPILED)):
        pairs += [(PALMBOOK, peer)] + ([(COMPILED, peer)] if COMPILED in by_name else [])
    for a, b in pairs:
        key = f"{a}/{b}"
        ratio = {
            "train": paired_ratios(train[a].samples, train[b].samples).to_dict(),
            "forward": paired_ratios(fwd[a].samples, fwd[b].samples).to_dict(),
        }
        if a in gen and b in gen:
            ratio["generate"] = paired_ratios(gen[a].samples, gen[b].samples).to_dict()
        if a in memory and b in memory:
            ratio["peak_train_memory"] = memory[a] / memory[b]
        ratios[key] = ratio

    out = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {**machine, "load_average_at_end": _load()},
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
        "results": results,
        "weight_reads": {
            "tokens_per_s": floor.to_dict(),
            "bytes_per_token": sum(w.numel() * w.element_size() for w in _weight_matrices(floor_model)),
        },
        "ratios": ratios,
        "skipped": skipped,
    }
    return out


def format_results(res: dict[str, Any]) -> str:
    """The results as a plain-text table: median [min - max] of each metric, and the paired ratios."""
    names = list(res["results"])
    rows: list[list[str]] = [["metric", *names]]

    def stat(d: dict[str, Any] | None) -> str:
        return "-" if d is None else f"{_fmt(d['median'])} [{_fmt(d['min'])}-{_fmt(d['max'])}]"

    for key, label in (
        ("train_tokens_per_s", "train tok/s"),
        ("forward_tokens_per_s", "forward tok/s"),
        ("generate_tokens_per_s", "generate tok/s"),
    ):
        rows.append([label, *(stat(res["results"][n].get(key)) for n in names)])
    rows.append(
        [
            "peak train memory MiB",
            *(
                f"{res['results'][n]['peak_train_memory_bytes'] / 2**20:,.0f}"
                if "peak_train_memory_bytes" in res["results"][n]
                else "-"
                for n in names
            ),
        ]
    )
    rows.append(["params (dense)", *(f"{res['results'][n]['params'] / 1e6:.2f}M" for n in names)])
    rows.append(["MFU vs measured peak", *(f"{100 * res['results'][n]['mfu_vs_measured_peak']:.1f}%" for n in names)])
    if any("mfu_vs_datasheet_peak" in r for r in res["results"].values()):
        rows.append(
            ["MFU vs data-sheet peak", *(f"{100 * res['results'][n]['mfu_vs_datasheet_peak']:.1f}%" for n in names)]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    mp = res["matmul_peak"]
    lines.append(
        f"matmul peak ({mp['dtype']}, n={mp['n']}): best {mp['best_flops'] / 1e9:,.0f} GFLOP/s, median "
        f"{mp['median_flops'] / 1e9:,.0f} GFLOP/s over {len(mp['samples'])} samples"
        + (f"; data sheet {mp['datasheet_flops'] / 1e12:,.0f} TFLOP/s" if mp.get("datasheet_flops") else "")
    )
    if "weight_reads" in res:
        wr = res["weight_reads"]
        tps = wr["tokens_per_s"]["median"]
        lines.append(
            f"weight reads (every weight matrix times one vector, per token): {1e3 / tps:.2f} ms = at most "
            f"{tps:,.0f} generated tok/s, {wr['bytes_per_token'] * tps / 1e9:,.0f} GB/s of "
            f"{wr['bytes_per_token'] / 1e6:,.1f} MB"
        )
    lines.append("ratios, round by round (median [min-max]):")
    for key, r in res["ratios"].items():
        metrics = [m for m in ("train", "forward", "generate") if m in r]
        parts = [f"{m} {r[m]['median']:.2f}x [{r[m]['min']:.2f}-{r[m]['max']:.2f}]" for m in metrics]
        if "peak_train_memory" in r:
            parts.append(f"memory {r['peak_train_memory']:.2f}x")
        lines.append(f"  {key}: " + ", ".join(parts))
    for k, v in res.get("skipped", {}).items():
        lines.append(f"{k} skipped: {v}")
    lines.append(
        f"load average {res['machine']['load_average_at_start']} at start, "
        f"{res['machine']['load_average_at_end']} at end; {res['date']}"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- memory facts
def _cache_bytes(cache: Any) -> int:
    """Bytes of every key/value tensor held by a Hugging Face cache object."""
    total = 0
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


def memory_facts(shape: BenchShape = REFERENCE, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Memory measured at ``shape``: KV-cache bytes per token (multi-query vs multi-head) and training activations
    with and without checkpointing; plus the KV cache of PaLM 540B, computed.

    The multi-query/multi-head comparison measures two Falcon models that differ only in ``multi_query``, next to
    palmbook's own cache. Activation bytes = peak training memory - (weights + gradients + AdamW's two moments).
    """
    device = torch.device(device)
    cfg = shape.palm_config()
    n = shape.prompt_len + shape.new_tokens
    ids = torch.randint(1, shape.vocab_size, (1, n), generator=torch.Generator().manual_seed(0)).to(device)
    facts: dict[str, Any] = {"tokens": n}

    model = PaLM(cfg).to(device).eval()
    cache = model.new_kv_cache(1, n)
    with torch.no_grad():
        model(ids, kv_cache=cache)
    facts["kv_bytes_per_token"] = {"palmbook (multi-query)": cache.nbytes() / n}
    try:
        import transformers
        from transformers import FalconConfig, FalconForCausalLM

        transformers.logging.set_verbosity_error()
        for multi_query, label in ((True, "falcon multi-query"), (False, "falcon multi-head")):
            fc = FalconConfig(
                vocab_size=shape.vocab_size, hidden_size=shape.d_model, num_hidden_layers=shape.n_layers,
                num_attention_heads=shape.n_heads, multi_query=multi_query, parallel_attn=True,
                new_decoder_architecture=False, alibi=False, bias=False, ffn_hidden_size=6 * shape.d_model,
                max_position_embeddings=n, attn_implementation="sdpa",
            )  # fmt: skip
            with torch.no_grad():
                out = FalconForCausalLM(fc).to(device).eval()(ids, use_cache=True)
            facts["kv_bytes_per_token"][label] = _cache_bytes(out.past_key_values) / n
    except ImportError:
        facts["kv_bytes_per_token"]["falcon"] = "transformers not installed"

    big = PaLMConfig.preset("palm-540b")
    mq = 2 * big.n_layers * big.head_dim * 2  # keys + values, one head, bf16
    facts["palm_540b_kv_bytes_per_token_bf16"] = {
        "multi-query": mq,
        "multi-head": mq * big.n_heads,
        "per 2048-token sequence, multi-query": mq * 2048,
        "per 2048-token sequence, multi-head": mq * big.n_heads * 2048,
    }

    torch.manual_seed(0)
    model = PaLM(cfg).to(device)
    opt = _adamw(model, device)
    data = _Data(shape, device)

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
        # what the forward pass (model + loss) leaves alive for the backward pass: the activations
        fwd = trace_memory(lambda: held.append(model(data.inputs, targets=data.targets).loss), device)
        held.pop().backward()
        opt.zero_grad(set_to_none=True)
        act["with_checkpointing" if remat else "without_checkpointing"] = {
            "saved_for_backward_bytes": fwd.end - fwd.start,
            "step_peak_bytes": peak_step_memory(step, device),
        }
    model.gradient_checkpointing = False
    without = act["without_checkpointing"]["saved_for_backward_bytes"]
    act["ratio"] = act["with_checkpointing"]["saved_for_backward_bytes"] / max(without, 1)
    facts["training_activations"] = act
    return facts


def format_memory_facts(facts: dict[str, Any]) -> str:
    lines = [f"KV cache, bytes per token (measured over {facts['tokens']} tokens, float32):"]
    for k, v in facts["kv_bytes_per_token"].items():
        lines.append(f"  {k}: {v:,.0f}" if isinstance(v, float) else f"  {k}: {v}")
    big = facts["palm_540b_kv_bytes_per_token_bf16"]
    lines.append(
        f"PaLM 540B (computed, bf16): {big['multi-query']:,} bytes/token multi-query vs {big['multi-head']:,} "
        f"multi-head; a 2048-token sequence holds {big['per 2048-token sequence, multi-query'] / 2**20:,.0f} MiB vs "
        f"{big['per 2048-token sequence, multi-head'] / 2**30:,.1f} GiB"
    )
    a = facts["training_activations"]
    w, c = a["without_checkpointing"], a["with_checkpointing"]
    mib = 2**20
    lines.append(
        f"training activations (saved by the forward pass for the backward pass, {a['tokens']:,} tokens): "
        f"{w['saved_for_backward_bytes'] / mib:,.0f} MiB without checkpointing, "
        f"{c['saved_for_backward_bytes'] / mib:,.0f} MiB with ({a['ratio']:.2f}x); whole-step peak "
        f"{w['step_peak_bytes'] / mib:,.0f} vs {c['step_peak_bytes'] / mib:,.0f} MiB (weights + AdamW state: "
        f"{a['weights_and_optimizer_bytes'] / mib:,.0f} MiB)"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- bf16 vs fp32 curve
def _byte_corpus() -> torch.Tensor:
    """Shakespeare's training plays as UTF-8 bytes (ids 0-255): real text, no tokenizer to train."""
    from .data import shakespeare

    text = "\n\n".join(shakespeare("play")["train"]["text"])
    return torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).long()


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
    device = torch.device(device)
    corpus = _byte_corpus().to(device)
    g = torch.Generator().manual_seed(0)
    T, B = shape.seq_len, shape.batch_size
    torch.manual_seed(0)
    models = {"fp32": PaLM(shape.palm_config()).to(device)}
    models["bf16"] = PaLM(shape.palm_config()).to(device)
    models["bf16"].load_state_dict(models["fp32"].state_dict())
    opts = {k: _adamw(m, device) for k, m in models.items()}
    for o in opts.values():
        for group in o.param_groups:
            group["lr"] = lr
    losses: dict[str, list[float]] = {"fp32": [], "bf16": []}
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    log(f"bf16 curve: {steps} steps of {shape.describe()} on Shakespeare bytes, lr {lr}, float32 and bf16 interleaved")
    for step in range(steps):
        starts = torch.randint(0, len(corpus) - T - 1, (B,), generator=g)
        batch = torch.stack([corpus[s : s + T + 1] for s in starts.tolist()])
        for name in ("fp32", "bf16") if step % 2 == 0 else ("bf16", "fp32"):
            model, opt = models[name], opts[name]
            start = time.perf_counter()
            with _autocast(device, name):
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

    def smooth(xs: list[float]) -> list[float]:
        return [statistics.fmean(xs[max(0, i - window + 1) : i + 1]) for i in range(len(xs))]

    raw_gap = max(abs(a - b) for a, b in zip(losses["fp32"], losses["bf16"], strict=True))
    s32, s16 = smooth(losses["fp32"]), smooth(losses["bf16"])
    gap = max(abs(a - b) for a, b in zip(s32, s16, strict=True))
    warm = times["fp32"][1:], times["bf16"][1:]  # the first step of each pays one-time costs
    speed = paired_ratios(warm[0], warm[1])  # fp32 time / bf16 time = bf16 speed-up
    return {
        "steps": steps,
        "lr": lr,
        "shape": dataclasses.asdict(shape),
        "losses": losses,
        "bf16_speedup": speed.to_dict(),
        "fp32_tokens_per_s": B * T / statistics.median(warm[0]),
        "bf16_tokens_per_s": B * T / statistics.median(warm[1]),
        "max_step_gap": raw_gap,
        "max_smoothed_gap": gap,
        "window": window,
        "tolerance": tolerance,
        "within_tolerance": gap <= tolerance,
        "final_loss": {"fp32": s32[-1], "bf16": s16[-1]},
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {**_machine(device), "load_average_at_end": _load()},
    }


def format_bf16_curve(r: dict[str, Any]) -> str:
    s = r["bf16_speedup"]
    return "\n".join(
        [
            f"bf16 autocast vs float32, {r['steps']} steps: bf16 trains {s['median']:.2f}x as fast "
            f"[{s['min']:.2f}-{s['max']:.2f}] ({_fmt(r['bf16_tokens_per_s'])} vs {_fmt(r['fp32_tokens_per_s'])} tok/s)",
            f"loss curves: largest gap {r['max_smoothed_gap']:.4f} nats ({r['window']}-step moving averages; single "
            f"steps {r['max_step_gap']:.4f}); tolerance {r['tolerance']} -> "
            + ("within" if r["within_tolerance"] else "OUTSIDE"),
            f"final loss ({r['window']}-step mean): fp32 {r['final_loss']['fp32']:.4f}, "
            f"bf16 {r['final_loss']['bf16']:.4f}",
        ]
    )


# --------------------------------------------------------------------------------------------- one GPU: MFU
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
    """Train a PaLM preset on one CUDA GPU the fast way and report its MFU against the data-sheet bf16 peak.

    bf16 autocast, flash attention (SDPA restricted to the fused kernels), ``torch.compile`` on the blocks, fused
    AdamW, TF32 for any float32 matmul left. MFU counts 6 N + 12 L H Q T FLOPs per token (Appendix B).
    """
    if not torch.cuda.is_available():
        raise RuntimeError(
            "--gpu-mfu needs a CUDA GPU and none is visible here; run `palmbook bench --gpu-mfu --preset palm-1b` "
            "on a machine with one (an H100/H200/A100-class card)"
        )
    from torch.nn.attention import SDPBackend, sdpa_kernel

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
    x, y = tokens[:, :-1], tokens[:, 1:]
    fused_kernels = [SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]
    backends = {"kernels": fused_kernels}

    def step() -> None:
        with sdpa_kernel(backends["kernels"]), torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(x, targets=y).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    try:  # the first step compiles; it also tells whether a fused attention kernel accepts these shapes
        step()
        attention = "fused SDPA kernels only (flash / cuDNN / memory-efficient)"
    except RuntimeError as e:
        if "kernel" not in str(e).lower():
            raise
        backends["kernels"] = [*fused_kernels, SDPBackend.MATH]
        attention = f"math fallback allowed (no fused kernel took the shapes: {str(e).splitlines()[0][:120]})"
        opt.zero_grad(set_to_none=True)
        step()

    log(f"gpu-mfu: {cfg} batch {batch_size} x {seq_len}, bf16 compile={compile_blocks}, {torch.cuda.get_device_name()}")
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
    tps = batch_size * seq_len / statistics.median(times)
    fpt = flops_per_token(cfg, seq_len=seq_len)
    name = torch.cuda.get_device_name()
    table = peak_flops_for(name)
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


# --------------------------------------------------------------------------------------------- command line
def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``palmbook bench`` (called by :mod:`palmbook.cli`)."""
    p = subparsers.add_parser(
        "bench",
        help="benchmark palmbook against HF Falcon (training, forward, generation, memory, MFU)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    _add_arguments(p)
    p.set_defaults(func=run_cli)
    return p


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="a tiny shape and 3 rounds: seconds, for tests")
    p.add_argument("--preset", help="start from a PaLMConfig preset's shape (default: palm-small, batch 8)")
    p.add_argument("--shape", default="", help="override shape fields, e.g. d_model=512,n_layers=8,batch_size=4")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto", help="auto: bf16 on CUDA")
    p.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=None,
        help="also time palmbook with torch.compile on its blocks (default: on CUDA only)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--rounds", type=int, help="interleaved rounds per metric (default 7; 3 with --quick)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--no-peers", action="store_true", help="time palmbook alone")
    p.add_argument("--out", help="write the results as JSON here (e.g. book/data/benchmark.json)")
    p.add_argument("--bf16-curve", action="store_true", help="train fp32 and bf16 side by side; compare curves")
    p.add_argument("--steps", type=int, default=200, help="steps for --bf16-curve / --gpu-mfu (default 200 / 10)")
    p.add_argument("--tolerance", type=float, default=0.05, help="--bf16-curve: allowed gap in nats (default 0.05)")
    p.add_argument("--gpu-mfu", action="store_true", help="one CUDA GPU: MFU training --preset (default palm-1b)")
    p.add_argument("--batch-size", type=int, default=8, help="--gpu-mfu batch size (default 8)")
    p.add_argument("--seq-len", type=int, default=2048, help="--gpu-mfu sequence length (default 2048)")
    p.add_argument("--checkpointing", action="store_true", help="--gpu-mfu: activation checkpointing on")


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces ``args``: ``palmbook bench`` plus every option not at its default."""
    parser = argparse.ArgumentParser()
    _add_arguments(parser)
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


def _write_json(path: str, payload: dict[str, Any], command: str) -> None:
    from .io import atomic_write

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"command": command, **payload}, indent=1) + "\n"
    atomic_write(target, lambda p: Path(p).write_text(text, encoding="utf-8"))
    print(f"wrote {target}")


def run_cli(args: argparse.Namespace) -> int:
    """``palmbook bench``: run the chosen mode, print its table and optionally write JSON."""
    command = _command(args)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _run(args, command)
    finally:
        torch.set_num_threads(threads)  # a caller in the same process (a test, a notebook) gets its setting back


def _run(args: argparse.Namespace, command: str) -> int:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.gpu_mfu:
        steps = args.steps if args.steps != 200 else 10
        res = gpu_mfu(args.preset or "palm-1b", args.batch_size, args.seq_len, steps,
                      compile_blocks=args.compile is not False, gradient_checkpointing=args.checkpointing)  # fmt: skip
        table = f"{res['mfu_vs_datasheet_peak']:.1%}" if res["mfu_vs_datasheet_peak"] else "n/a (unknown device)"
        print(
            f"{res['preset']} on {res['device']}: {res['tokens_per_s']:,.0f} tok/s, MFU {table} of the data-sheet "
            f"bf16 peak, {res['mfu_vs_measured_peak']:.1%} of the measured bf16 matmul peak, peak memory "
            f"{res['peak_memory_bytes'] / 2**30:.1f} GiB"
        )
        if args.out:
            _write_json(args.out, {"gpu_mfu": res}, command)
        return 0

    base = QUICK if args.quick else BenchShape.from_preset(args.preset, batch_size=8) if args.preset else REFERENCE
    shape = parse_shape(args.shape, base)
    if args.bf16_curve:
        steps = 6 if args.quick else args.steps
        res = bf16_curve(shape, steps, tolerance=args.tolerance, device=device)
        print(format_bf16_curve(res))
        if args.out:
            _write_json(args.out, {"bf16_curve": res}, command)
        return 0

    precision = args.precision if args.precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    compile_blocks = args.compile if args.compile is not None else device.type == "cuda"
    rounds = args.rounds or (3 if args.quick else 7)
    res = run_bench(
        shape,
        rounds=rounds,
        precision=precision,
        compile_blocks=compile_blocks,
        peers=not args.no_peers,
        device=device,
        matmul_n=256 if args.quick else 2048,
    )
    print(format_results(res))
    facts = memory_facts(shape, device)
    print(format_memory_facts(facts))
    res["memory_facts"] = facts
    if args.out:
        _write_json(args.out, res, command)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m palmbook.bench [options]``: the same as ``palmbook bench [options]``."""
    parser = argparse.ArgumentParser(prog="palmbook bench", description=__doc__.split("\n\n")[0] if __doc__ else None)
    _add_arguments(parser)
    return run_cli(parser.parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    raise SystemExit(main())
