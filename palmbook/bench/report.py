"""The benchmark's results as text and as a JSON file.

    format_results        the comparison: median [min-max] of each metric per contestant, the paired ratios
    format_memory_facts   KV-cache and activation memory
    format_bf16_curve     float32 against bf16 autocast: speed and the loss curves' gap
    format_gpu_mfu        one line: a preset's tokens/s, MFU and peak memory on one GPU
    write_json            the results plus the command that reproduces them, written atomically

Every function takes the JSON-ready dict a measurement returned, so appendix A formats the stored
``book/data/*.json`` files with the same code that printed them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..io import atomic_write

__all__ = ["format_bf16_curve", "format_gpu_mfu", "format_memory_facts", "format_results", "write_json"]

_MIB = 2**20


def _fmt(x: float) -> str:
    """A throughput with as many digits as it deserves: 12,345 / 56.7 / 8.90."""
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.1f}" if abs(x) >= 10 else f"{x:.2f}"


def _load(value: Any) -> str:
    """A recorded load average: a number, None (unknown on this OS), or in older files a string of three numbers."""
    if value is None:
        return "n/a"
    return f"{value:.2f}" if isinstance(value, float | int) else str(value)


def _stat(d: dict[str, Any] | None) -> str:
    return "-" if d is None else f"{_fmt(d['median'])} [{_fmt(d['min'])}-{_fmt(d['max'])}]"


def _table(res: dict[str, Any]) -> list[str]:
    """One row per metric, one column per contestant, padded to line up."""
    results = res["results"]
    names = list(results)
    rows: list[list[str]] = [["metric", *names]]
    for key, label in (
        ("train_tokens_per_s", "train tok/s"),
        ("forward_tokens_per_s", "forward tok/s"),
        ("generate_tokens_per_s", "generate tok/s"),
    ):
        rows.append([label, *(_stat(results[n].get(key)) for n in names)])
    memory = (results[n].get("peak_train_memory_bytes") for n in names)
    rows.append(["peak train memory MiB", *("-" if b is None else f"{b / _MIB:,.0f}" for b in memory)])
    rows.append(["params (dense)", *(f"{results[n]['params'] / 1e6:.2f}M" for n in names)])
    rows.append(["MFU vs measured peak", *(f"{100 * results[n]['mfu_vs_measured_peak']:.1f}%" for n in names)])
    if any("mfu_vs_datasheet_peak" in r for r in results.values()):
        rows.append(["MFU vs data-sheet peak", *(f"{100 * results[n]['mfu_vs_datasheet_peak']:.1f}%" for n in names)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _peaks(res: dict[str, Any]) -> list[str]:
    """The matmul peak MFU is measured against, and the weight-reads bound of generation."""
    mp = res["matmul_peak"]
    lines = [
        f"matmul peak ({mp['dtype']}, n={mp['n']}): best {mp['best_flops'] / 1e9:,.0f} GFLOP/s, median "
        f"{mp['median_flops'] / 1e9:,.0f} GFLOP/s over {len(mp['samples'])} samples"
        + (f"; data sheet {mp['datasheet_flops'] / 1e12:,.0f} TFLOP/s" if mp.get("datasheet_flops") else "")
    ]
    if "weight_reads" in res:
        wr = res["weight_reads"]
        tps = wr["tokens_per_s"]["median"]
        lines.append(
            f"weight reads (every weight matrix times one vector, per token): {1e3 / tps:.2f} ms = at most "
            f"{tps:,.0f} generated tok/s, {wr['bytes_per_token'] * tps / 1e9:,.0f} GB/s of "
            f"{wr['bytes_per_token'] / 1e6:,.1f} MB"
        )
    return lines


def _ratio_lines(res: dict[str, Any]) -> list[str]:
    lines = ["ratios, round by round (median [min-max]):"] if res["ratios"] else []
    for key, r in res["ratios"].items():
        metrics = [m for m in ("train", "forward", "generate") if m in r]
        parts = [f"{m} {r[m]['median']:.2f}x [{r[m]['min']:.2f}-{r[m]['max']:.2f}]" for m in metrics]
        if "peak_train_memory" in r:
            parts.append(f"memory {r['peak_train_memory']:.2f}x")
        lines.append(f"  {key}: " + ", ".join(parts))
    return lines


def format_results(res: dict[str, Any]) -> str:
    """The results of :func:`~palmbook.bench.run_bench` as a plain-text table, then the peaks and the ratios."""
    lines = _table(res) + _peaks(res) + _ratio_lines(res)
    lines += [f"{k} skipped: {v}" for k, v in res.get("skipped", {}).items()]
    m = res["machine"]
    lines.append(
        f"load average {_load(m['load_average_at_start'])} at start, {_load(m['load_average_at_end'])} at end; "
        f"{res['date']}"
    )
    return "\n".join(lines)


def format_memory_facts(facts: dict[str, Any]) -> str:
    """The results of :func:`~palmbook.bench.memory_facts`: KV cache per token, then training activations."""
    lines = [f"KV cache, bytes per token (measured over {facts['tokens']} tokens, float32):"]
    for k, v in facts["kv_bytes_per_token"].items():
        lines.append(f"  {k}: {v:,.0f}" if isinstance(v, float) else f"  {k}: {v}")
    big = facts["palm_540b_kv_bytes_per_token_bf16"]
    lines.append(
        f"PaLM 540B (computed, bf16): {big['multi-query']:,} bytes/token multi-query vs {big['multi-head']:,} "
        f"multi-head; a 2048-token sequence holds {big['per 2048-token sequence, multi-query'] / _MIB:,.0f} MiB vs "
        f"{big['per 2048-token sequence, multi-head'] / 2**30:,.1f} GiB"
    )
    a = facts["training_activations"]
    w, c = a["without_checkpointing"], a["with_checkpointing"]
    lines.append(
        f"training activations (saved by the forward pass for the backward pass, {a['tokens']:,} tokens): "
        f"{w['saved_for_backward_bytes'] / _MIB:,.0f} MiB without checkpointing, "
        f"{c['saved_for_backward_bytes'] / _MIB:,.0f} MiB with ({a['ratio']:.2f}x); whole-step peak "
        f"{w['step_peak_bytes'] / _MIB:,.0f} vs {c['step_peak_bytes'] / _MIB:,.0f} MiB (weights + AdamW state: "
        f"{a['weights_and_optimizer_bytes'] / _MIB:,.0f} MiB)"
    )
    return "\n".join(lines)


def format_bf16_curve(r: dict[str, Any]) -> str:
    """The results of :func:`~palmbook.bench.bf16_curve`: speed-up, the curves' largest gap, final losses."""
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


def format_gpu_mfu(r: dict[str, Any]) -> str:
    """The results of :func:`~palmbook.bench.gpu_mfu` in one line."""
    table = f"{r['mfu_vs_datasheet_peak']:.1%}" if r["mfu_vs_datasheet_peak"] else "n/a (unknown device)"
    precision = r.get("datasheet_peak_precision") or "16-bit"  # bf16, or fp16 on a V100 / T4
    return (
        f"{r['preset']} on {r['device']}: {r['tokens_per_s']:,.0f} tok/s, MFU {table} of the data-sheet "
        f"{precision} peak, {r['mfu_vs_measured_peak']:.1%} of the measured bf16 matmul peak, peak memory "
        f"{r['peak_memory_bytes'] / 2**30:.1f} GiB"
    )


def write_json(path: str | Path, payload: dict[str, Any], command: str) -> Path:
    """Write ``{"command": command, **payload}`` to ``path`` (folders made, the file replaced atomically)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"command": command, **payload}, indent=1) + "\n"
    atomic_write(target, lambda p: Path(p).write_text(text, encoding="utf-8"))
    return target
