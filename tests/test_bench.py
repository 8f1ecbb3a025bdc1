"""`palmbook bench`: it runs, prints every field, writes JSON, its arithmetic is right, and a bad command line gets
one line naming the fix. Nothing here is timed."""

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from palmbook import bench, cli
from palmbook.bench import QUICK, REFERENCE, BenchShape, paired_ratios, parse_shape
from palmbook.flops import flops_per_token, mfu

BOOK_DATA = Path(__file__).resolve().parents[1] / "book" / "data"


def hand_flops_per_token(V: int, d: int, L: int, H: int, h: int, f: int, T: int) -> int:
    """Appendix B by hand: N = embedding + per layer (fused in-projection + attention out + MLP out)."""
    n = V * d + L * (d * (H * h + 2 * h + 2 * f) + H * h * d + f * d)
    return 6 * n + 12 * L * H * h * T


def test_reference_shape_is_palm_small_at_batch_8():
    cfg = REFERENCE.palm_config()
    small = cfg.preset("palm-small")
    assert (cfg.vocab_size, cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.head_dim, cfg.d_ff) == (
        small.vocab_size, small.d_model, small.n_layers, small.n_heads, small.head_dim, small.d_ff,
    )  # fmt: skip
    assert (REFERENCE.seq_len, REFERENCE.batch_size, REFERENCE.prompt_len, REFERENCE.new_tokens) == (256, 8, 16, 128)


def test_flops_per_token_of_the_reference_shape_matches_a_hand_count():
    # 8192*384 + 6*(384*(384+128+3072) + 384*384 + 1536*384) = 15,826,944 parameters
    assert hand_flops_per_token(8192, 384, 6, 6, 64, 1536, 256) == 6 * 15_826_944 + 12 * 6 * 6 * 64 * 256
    assert flops_per_token(REFERENCE.palm_config(), seq_len=256) == 102_039_552


def test_mfu_is_tokens_per_second_times_flops_per_token_over_peak():
    # 2,000 tok/s at 102,039,552 FLOPs/token against a 300 GFLOP/s peak: 204.08 GFLOP/s used = 68.03%
    assert mfu(2000, 102_039_552, 300e9) == pytest.approx(0.6802637, rel=1e-6)


def test_quick_bench_prints_every_field_and_writes_consistent_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert cli.main(["bench", "--quick", "--threads", "1", "--out", str(out)]) == 0  # through the palmbook command
    text = capsys.readouterr().out
    for field in (
        "train tok/s", "forward tok/s", "generate tok/s", "peak train memory MiB", "params (dense)",
        "MFU vs measured peak", "matmul peak (float32", "palmbook/falcon: train", "forward", "generate", "memory",
        "load average", "weight reads (every weight matrix times one vector", "KV cache, bytes per token",
        "falcon multi-head", "PaLM 540B", "training activations",
    ):  # fmt: skip
        assert field in text, field
    res = json.loads(out.read_text())
    assert res["command"] == f"palmbook bench --quick --threads 1 --out {out}"
    assert res["shape"] == QUICK.__dict__ and res["precision"] == "fp32"
    loads = [res["machine"][f"load_average_at_{when}"] for when in ("start", "end")]
    assert all(x is None or x == round(x, 2) for x in loads)  # as /proc/loadavg shows them
    peak = res["matmul_peak"]["best_flops"]
    assert peak == max(res["matmul_peak"]["samples"]) > 0
    hand = hand_flops_per_token(512, 64, 2, 2, 32, 256, 64)
    palm = res["results"]["palmbook"]
    assert palm["flops_per_token"] == hand
    train = palm["train_tokens_per_s"]
    assert len(train["samples"]) == 3 and train["min"] <= train["median"] <= train["max"]
    assert palm["mfu_vs_measured_peak"] == pytest.approx(train["median"] * hand / peak, rel=1e-9)
    falcon = res["results"]["falcon"]
    for r in (palm, falcon):
        for key in ("train_tokens_per_s", "forward_tokens_per_s", "generate_tokens_per_s"):
            assert all(s > 0 for s in r[key]["samples"]), key
        assert r["peak_train_memory_bytes"] > 4 * 4 * r["params"]  # at least weights, grads and AdamW's 2 moments
    reads = res["weight_reads"]
    assert reads["bytes_per_token"] == 4 * (hand - 12 * 2 * 2 * 32 * 64) // 6  # every float32 weight once: 4 N
    assert len(reads["tokens_per_s"]["samples"]) == 3 and reads["tokens_per_s"]["min"] > 0
    ratio = res["ratios"]["palmbook/falcon"]
    expected = [a / b for a, b in zip(train["samples"], falcon["train_tokens_per_s"]["samples"], strict=True)]
    assert ratio["train"]["samples"] == pytest.approx(expected)
    assert ratio["peak_train_memory"] == pytest.approx(
        palm["peak_train_memory_bytes"] / falcon["peak_train_memory_bytes"]
    )
    kv = res["memory_facts"]["kv_bytes_per_token"]
    # one key head and one value head per layer, float32: 2 * L * h * 4 bytes; multi-head has H times more
    assert kv["palmbook (multi-query)"] == kv["falcon multi-query"] == 2 * 2 * 32 * 4
    assert kv["falcon multi-head"] == 2 * kv["falcon multi-query"]
    act = res["memory_facts"]["training_activations"]
    saved = [act[k]["saved_for_backward_bytes"] for k in ("without_checkpointing", "with_checkpointing")]
    assert 0 < saved[1] < saved[0] / 2  # checkpointing keeps block inputs only
    # the fused output layer + loss holds its float32 gradients for the hidden states (N, d) and the output
    # matrix (V, d) from the forward pass on, but never the (N, V) logits
    n, d, v = QUICK.batch_size * QUICK.seq_len, QUICK.d_model, QUICK.vocab_size
    assert 4 * (n * d + v * d) <= saved[1] < 4 * (n * d + v * d) + 4 * n * v
    big = res["memory_facts"]["palm_540b_kv_bytes_per_token_bf16"]
    assert big["multi-query"] == 2 * 118 * 256 * 2 and big["multi-head"] == 48 * big["multi-query"]


@pytest.mark.slow
def test_quick_bench_with_compile_times_the_compiled_model_in_every_metric():
    res = bench.run_bench(QUICK, rounds=2, compile_blocks=True, measure_memory=False, log=lambda _: None)
    compiled = res["results"]["palmbook+compile"]
    for key in ("train_tokens_per_s", "forward_tokens_per_s", "generate_tokens_per_s"):
        assert len(compiled[key]["samples"]) == 2 and all(s > 0 for s in compiled[key]["samples"]), key
    for pair in ("palmbook+compile/palmbook", "palmbook+compile/falcon", "palmbook/falcon"):
        assert set(res["ratios"][pair]) >= {"train", "forward", "generate"}, pair
    falcon = res["results"]["falcon"]["generate_tokens_per_s"]["samples"]
    expected = [a / b for a, b in zip(compiled["generate_tokens_per_s"]["samples"], falcon, strict=True)]
    assert res["ratios"]["palmbook+compile/falcon"]["generate"]["samples"] == pytest.approx(expected)
    assert "palmbook+compile/falcon: train" in bench.format_results(res)


def test_peak_step_memory_counts_a_known_temporary():
    keep = torch.zeros(1000, 1000)  # 4 MB that exist before the step and are used in it

    def step() -> None:
        tmp = keep + 1  # +4 MB
        (tmp * 2).sum()  # +4 MB at the peak

    peak = bench.peak_step_memory(step, torch.device("cpu"))
    assert 12e6 <= peak < 13e6


def test_paired_ratios_are_round_by_round():
    r = paired_ratios([2.0, 3.0, 9.0], [1.0, 3.0, 3.0])
    assert r.samples == [2.0, 1.0, 3.0] and r.median == 2.0 and (r.lo, r.hi) == (1.0, 3.0)


def test_shape_overrides_parse_and_bad_ones_name_the_fields():
    s = parse_shape("d_model=128, n_layers=3,batch-size=2", REFERENCE)
    assert (s.d_model, s.n_layers, s.batch_size, s.vocab_size) == (128, 3, 2, 8192)
    with pytest.raises(ValueError, match="keys from"):
        parse_shape("width=3", REFERENCE)
    with pytest.raises(ValueError, match="integer"):
        parse_shape("d_model=big", REFERENCE)
    assert BenchShape.from_preset("palm-mini", batch_size=4).d_model == 256


def test_shape_refuses_a_prompt_longer_than_the_training_rows_it_is_cut_from():
    with pytest.raises(ValueError, match="prompt_len <= seq_len"):
        dataclasses.replace(QUICK, prompt_len=QUICK.seq_len + 1)
    with pytest.raises(ValueError, match="positive integer"):
        dataclasses.replace(QUICK, n_layers=0)


def test_gpu_mfu_without_a_gpu_says_what_to_run(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="palmbook bench --gpu-mfu --preset palm-1b"):
        bench.gpu_mfu()


def test_gpu_mfu_line_names_the_data_sheet_peak_s_precision():
    r = {
        "preset": "palm-1b",
        "device": "Tesla T4",
        "tokens_per_s": 1e4,
        "mfu_vs_datasheet_peak": 0.1,
        "datasheet_peak_precision": "fp16",
        "mfu_vs_measured_peak": 0.2,
        "peak_memory_bytes": 2**30,
    }
    assert "data-sheet fp16 peak" in bench.format_gpu_mfu(r)
    r.pop("datasheet_peak_precision")  # a file written before the field existed
    assert "data-sheet 16-bit peak" in bench.format_gpu_mfu(r)


def test_memory_facts_skip_falcon_with_the_reason_when_it_cannot_take_the_shape():
    odd = dataclasses.replace(QUICK, n_heads=3)  # Falcon's head size would be 64 / 3; palmbook's stays 32
    kv = bench.memory_facts(odd)["kv_bytes_per_token"]
    assert kv["palmbook (multi-query)"] == 2 * 2 * 32 * 4
    assert kv["falcon"].startswith("skipped: Falcon's head size is d_model / n_heads")


def test_the_stored_benchmark_file_still_formats():
    # appendix A prints book/data/benchmark.json with format_results; its load averages are strings of three numbers
    res = json.loads((BOOK_DATA / "benchmark.json").read_text())
    text = bench.format_results(res)
    assert f"load average {res['machine']['load_average_at_start']} at start" in text
    assert "palmbook/falcon: train" in text


def run_palmbook(argv: list[str], capsys) -> tuple[int, str]:
    """(exit code, stderr) of ``palmbook <argv>`` in this process, argparse's exits included."""
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


# Every bad command: (arguments, words the one error line must contain). Each fails before any model is built.
BAD_BENCH_COMMANDS = [
    (["--quick", "--device", "cuda"], "use 'cpu' or 'auto'"),
    (["--quick", "--threads", "-1"], "--threads: must be a whole number of at least 1"),
    (["--gpu-mfu"], "--gpu-mfu needs a CUDA GPU"),
    (["--quick", "--shape", "n_heads=3"], "or use --no-peers"),
    (["--quick", "--preset", "bogus"], "invalid choice: 'bogus'"),
    (["--quick", "--preset", "palm-mini"], "drop one of them"),
    (["--quick", "--rounds", "0"], "--rounds: must be a whole number of at least 1"),
    (["--rounds", "-2"], "--rounds: must be a whole number of at least 1"),
    (["--bf16-curve", "--rounds", "3"], "--rounds is read only by the comparison"),
    (["--quick", "--tolerance", "0.1"], "--tolerance is read only by --bf16-curve"),
    (["--gpu-mfu", "--quick"], "--quick is read only by the comparison and --bf16-curve"),
    (["--bf16-curve", "--gpu-mfu"], "choose one"),
    (["--bf16-curve", "--steps", "1"], "--steps 2 or more"),
]


@pytest.mark.parametrize(("argv", "words"), BAD_BENCH_COMMANDS, ids=[" ".join(a) for a, _ in BAD_BENCH_COMMANDS])
def test_a_bad_bench_command_exits_with_one_line_naming_the_fix(argv, words, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same answers on a GPU machine
    code, err = run_palmbook(["bench", *argv], capsys)
    assert code != 0
    assert len(err.splitlines()) == 1 and err.startswith("palmbook bench: error: ") and "Traceback" not in err
    assert words in err


def test_a_bad_bench_command_from_the_shell_prints_no_traceback():
    done = subprocess.run(
        [sys.executable, "-m", "palmbook", "bench", "--quick", "--rounds", "0"], capture_output=True, text=True
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "palmbook bench: error: argument --rounds: must be a whole number of at least 1; got '0' "
        "(see palmbook bench --help)"
    ]


def test_bf16_curve_quick_reports_speed_and_gap(capsys, tmp_path):
    out = tmp_path / "c.json"
    assert cli.main(["bench", "--quick", "--bf16-curve", "--threads", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "bf16 autocast vs float32" in text and "largest gap" in text
    stored = json.loads(out.read_text())
    assert stored["command"] == f"palmbook bench --quick --threads 1 --out {out} --bf16-curve"
    res = stored["bf16_curve"]
    assert len(res["losses"]["fp32"]) == len(res["losses"]["bf16"]) == 6
    gaps = [abs(a - b) for a, b in zip(res["losses"]["fp32"], res["losses"]["bf16"], strict=True)]
    assert res["max_step_gap"] == pytest.approx(max(gaps))
    assert res["losses"]["fp32"][0] == pytest.approx(res["losses"]["bf16"][0], abs=0.1)  # same init, same batch
    assert all(math.isfinite(x) for x in res["losses"]["bf16"])


def test_interleaved_rounds_show_a_progress_bar_only_when_asked(capsys):
    from palmbook.bench.measure import interleaved

    calls = []
    times = interleaved({"a": lambda: calls.append("a")}, 3, torch.device("cpu"), warmup=0)
    assert len(times["a"]) == 3 and "round" not in capsys.readouterr().err
    interleaved({"a": lambda: calls.append("a")}, 3, torch.device("cpu"), warmup=0, progress="training")
    assert "training" in capsys.readouterr().err
