"""Reliability attack: re-run every defect repro of the 2026-12-07 reliability review plus further bad inputs to
the API and the ``palmbook`` command, and count how each one ends.

    flock /tmp/heavy.lock env OMP_NUM_THREADS=1 .venv/bin/python tools/attack_reliability.py [WORKDIR]

Each case says what it expects: ``ok`` (works) or ``error`` (refused). Outcomes:
  ok          expected to work, and did
  clear       expected to fail, and failed with one clear line (API: ValueError/TypeError/OSError/... with a
              message; CLI: non-zero exit, one stderr line, not an "internal error")
  unclear     failed, but with a raw exception type (RuntimeError, IndexError, KeyError, ...) or a CLI
              "internal error" line, or a message over one line
  traceback   a CLI run printed a traceback
  silent      expected to fail, but succeeded (or produced NaN), or expected to work and failed
  data_lost   a failed CLI command changed its run directory
CLI cases run in-process through palmbook.cli.main (the console script's function) except those marked ``sub``,
which run ``python -m palmbook``. Prints one line per case and a table of counts; exit code 1 if any case is
traceback, silent or data_lost.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = ["main"]

TINY = [
    "--preset",
    "palm-tiny",
    "--batch-size",
    "8",
    "--seq-len",
    "32",
    "--vocab-size",
    "400",
    "--no-progress",
    "--sample-by",
    "paragraph",
    "--eval-batches",
    "1",
    "--log-every",
    "1",
]


def _api(fn: Callable[[], object], expect: str) -> tuple[str, str]:
    try:
        out = fn()
    except (ValueError, TypeError, OSError, ModuleNotFoundError) as e:
        msg = str(e)
        if expect == "ok":
            return "silent", f"{type(e).__name__}: {msg}"
        return ("clear" if msg and "\n" not in msg.strip() else "unclear"), f"{type(e).__name__}: {msg}"
    except Exception as e:
        return "unclear", f"{type(e).__name__}: {e}"
    if isinstance(out, torch.Tensor) and out.is_floating_point() and not torch.isfinite(out).all():
        return "silent", "NaN/inf result"
    return ("ok" if expect == "ok" else "silent"), repr(out)[:80]


def _tree(root: Path) -> dict[str, bytes]:
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "run.lock"
    }


def _cli(argv: list, cwd: Path, expect: str, sub: bool = False, watch: str | None = None) -> tuple[str, str]:
    before = _tree(cwd / watch) if watch else None
    if sub:
        env = {**os.environ, "PALMBOOK_PROFILE": "smoke", "TQDM_DISABLE": "1"}
        env.pop("PALMBOOK_DEBUG", None)
        r = subprocess.run(
            [sys.executable, "-m", "palmbook", *argv],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=300,
        )
        code, err = r.returncode, r.stderr
    else:
        from palmbook.cli import main

        err_buf, out_buf = io.StringIO(), io.StringIO()
        old = os.getcwd()
        os.chdir(cwd)
        try:
            with contextlib.redirect_stderr(err_buf), contextlib.redirect_stdout(out_buf):
                try:
                    code = main([a.decode("utf-8", "surrogateescape") if isinstance(a, bytes) else a for a in argv])
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else 1
                except BaseException as e:
                    import traceback

                    traceback.print_exc(file=err_buf)
                    code = 99
                    if isinstance(e, KeyboardInterrupt):
                        raise
        finally:
            os.chdir(old)
        err = err_buf.getvalue()
    lines = err.strip().splitlines()
    if "Traceback" in err:
        return "traceback", lines[-1] if lines else ""
    if watch and code != 0 and _tree(cwd / watch) != before:
        return "data_lost", f"rc {code} but {watch} changed"
    if expect == "ok":
        return ("ok" if code == 0 else "silent"), (lines[-1] if lines else f"rc {code}")
    if code == 0:
        return "silent", "rc 0"
    if len(lines) != 1 or "internal error" in lines[0]:
        return "unclear", " | ".join(lines)[:200]
    return "clear", lines[0]


def cases(work: Path) -> list[tuple[str, str, Callable[[], tuple[str, str]]]]:
    """(name, expect, run) for every attack."""
    from palmbook import PaLM, PaLMConfig, Tokenizer, TrainConfig
    from palmbook.generate import sample_next

    rng = random.Random(0)
    words = Path(__file__).read_text().split()
    (work / "text.txt").write_text("\n\n".join(" ".join(rng.choice(words) for _ in range(60)) for _ in range(300)))
    (work / "latin1.txt").write_bytes(("caf\xe9 au lait\n" * 3000).encode("latin-1"))
    (work / "binary.bin").write_bytes(bytes(range(256)) * 400)
    (work / "huge.json").write_text(json.dumps({"d_model": 16384, "n_layers": 48, "n_heads": 128, "vocab_size": 512}))
    (work / "bad.json").write_text("{")
    tok = Tokenizer.train((work / "text.txt").read_text().split("\n\n"), 400, num_threads=1)
    cfg = PaLMConfig.preset("palm-tiny")
    model = PaLM(cfg).eval()
    x = torch.zeros(1, 4, dtype=torch.long)

    def gen(**kw):
        return lambda: model.generate(x, 3, **kw)

    def fwd(**kw):
        return lambda: model(x, **kw).loss

    out: list[tuple[str, str, Callable[[], tuple[str, str]]]] = []

    def api(name, expect, fn):
        out.append((name, expect, lambda: _api(fn, expect)))

    def cli(name, expect, argv, sub=False, setup=None, watch=None):
        def go():
            if setup:
                setup()
            return _cli(argv, work, expect, sub, watch)

        out.append((name, expect, go))

    base = [*TINY, "--data", "text.txt"]
    # ---- the review's defects, 1-17
    cli("setup: run r1 (4 steps)", "ok", ["train", *base, "--steps", "4", "--checkpoint-every", "2", "--out-dir", "r1"])
    cli("d1 new run in a used out_dir", "error", ["train", *base, "--steps", "2", "--out-dir", "r1"], watch="r1")
    shutil_copy = lambda a, b: (
        lambda: (shutil.rmtree(work / b, ignore_errors=True), shutil.copytree(work / a, work / b))
    )
    trunc = lambda d: (
        lambda: [
            p.write_bytes(p.read_bytes()[:1000]) for p in (work / d).glob("checkpoints/step_*/optimizer.safetensors")
        ]
    )
    cli("setup: copy r1 -> r2", "ok", ["doctor"], setup=shutil_copy("r1", "r2"))
    cli(
        "d2 resume with every checkpoint truncated",
        "error",
        ["train", "--out-dir", "r2", "--resume"],
        setup=trunc("r2"),
        watch="r2",
    )
    cli("d2 resume in a missing dir", "error", ["train", "--out-dir", "nowhere", "--resume"])
    cli(
        "d3 resume --optimizer adamw",
        "error",
        ["train", "--out-dir", "r1", "--resume", "--optimizer", "adamw"],
        watch="r1",
    )
    cli("d3 resume --seq-len", "error", ["train", "--out-dir", "r1", "--resume", "--seq-len", "16"], watch="r1")
    cli("d3 resume --data", "error", ["train", "--out-dir", "r1", "--resume", "--data", "latin1.txt"], watch="r1")
    cli("d3 resume --vocab-size", "error", ["train", "--out-dir", "r1", "--resume", "--vocab-size", "600"], watch="r1")
    cli("d3 resume --dropout", "error", ["train", "--out-dir", "r1", "--resume", "--dropout", "0.3"], watch="r1")
    cli("d3 resume --seed", "error", ["train", "--out-dir", "r1", "--resume", "--seed", "9"], watch="r1")
    cli(
        "d3 resume --lr 0.5 (takes effect)",
        "ok",
        ["train", "--out-dir", "r2b", "--resume", "--steps", "5", "--lr", "0.5", "--schedule", "constant"],
        setup=shutil_copy("r1", "r2b"),
    )

    def lr_took_effect():
        from palmbook.rundir import load_metrics

        lrs = {r["step"]: r["lr"] for r in load_metrics(work / "r2b") if "lr" in r}
        return lrs.get(5)

    out.append(
        (
            "d3 resume --lr 0.5 is in metrics",
            "ok",
            lambda: ("ok", "lr 0.5") if lr_took_effect() == 0.5 else ("silent", f"lr {lr_took_effect()}"),
        )
    )
    # d4 (two writers) and d5 (SIGKILL temporaries) and d7 (EFBIG): tests/test_fault_injection.py
    cli(
        "d6 latin-1 data",
        "error",
        ["train", *TINY, "--data", "latin1.txt", "--sample-by", "line", "--steps", "2", "--out-dir", "r6"],
        sub=True,
    )
    cli(
        "d6 binary data",
        "error",
        ["train", *TINY, "--data", "binary.bin", "--sample-by", "line", "--steps", "2", "--out-dir", "r6b"],
    )
    cli("d8 generate --prompt caf\\xe9 (bytes)", "error", ["generate", "r1", "--prompt", b"caf\xe9"], sub=True)
    api("d8 encode lone surrogate", "error", lambda: tok.encode("\ud800"))
    api("d8 encode list with surrogate", "error", lambda: tok.encode(["a", "\ud800"]))
    api("d8 train on surrogates", "error", lambda: Tokenizer.train(["abc " * 100, "x\udce9"], 300))
    api("d8 is_byte(-1)", "error", lambda: tok.is_byte(-1))
    api("d8 is_byte(10**6)", "error", lambda: tok.is_byte(10**6))
    api("d8 id_to_piece(-1)", "error", lambda: tok.id_to_piece(-1))
    api("d8 unk decodes (documented)", "ok", lambda: tok.decode([tok.unk_id]))

    def edit_trainer(d, change):
        def go():
            shutil.rmtree(work / d, ignore_errors=True)
            shutil.copytree(work / "r1", work / d)
            for p in (work / d).glob("checkpoints/step_*/trainer.json"):
                meta = json.loads(p.read_text())
                change(meta)
                p.write_text(json.dumps(meta))

        return go

    cli(
        "d9 trainer.json without scheduler",
        "error",
        ["train", "--out-dir", "r9a", "--resume"],
        setup=edit_trainer("r9a", lambda m: m.pop("scheduler")),
        watch="r9a",
    )
    cli(
        "d9 trainer.json rng []",
        "error",
        ["train", "--out-dir", "r9b", "--resume"],
        setup=edit_trainer("r9b", lambda m: m.update(rng=[])),
        watch="r9b",
    )
    cli(
        "d9 trainer.json step 'x'",
        "error",
        ["train", "--out-dir", "r9c", "--resume"],
        setup=edit_trainer("r9c", lambda m: m.update(step="x")),
        watch="r9c",
    )
    for i, text in enumerate(["[]", "{", '{"train_config": {}}', '{"model_config": {"d_model": -1}}']):
        d = f"r9r{i}"

        def setup(d=d, text=text):
            shutil.rmtree(work / d, ignore_errors=True)
            shutil.copytree(work / "r1", work / d)
            (work / d / "run.json").write_text(text)

        cli(f"d9 run.json {text!r}", "error", ["train", "--out-dir", d, "--resume"], setup=setup, watch=d)
    cli("d10 generate --device banana", "error", ["generate", "r1", "--prompt", "a", "--device", "banana"])
    cli("d10 generate --device meta", "error", ["generate", "r1", "--prompt", "a", "--device", "meta"])
    if not torch.cuda.is_available():
        cli("d10 generate --device cuda (no CUDA)", "error", ["generate", "r1", "--prompt", "a", "--device", "cuda"])
    cli("d11 --temperature 1e-45 (greedy)", "ok", ["generate", "r1", "--temperature", "1e-45", "--max-new-tokens", "3"])
    cli("d11 --temperature inf", "error", ["generate", "r1", "--temperature", "inf"])
    cli("d11 --temperature nan", "error", ["generate", "r1", "--temperature", "nan"])
    cli("d11 --temperature -1", "error", ["generate", "r1", "--temperature", "-1"])
    cli("d11 prompt longer than the context", "error", ["generate", "r1", "--prompt", "word " * 400])
    cli("d11 --max-new-tokens 10000", "error", ["generate", "r1", "--max-new-tokens", "10000"])
    cli("d11 --max-new-tokens -1", "error", ["generate", "r1", "--max-new-tokens", "-1"])
    cli("d11 --top-k 0", "error", ["generate", "r1", "--top-k", "0"])
    cli("d11 --top-p 0", "error", ["generate", "r1", "--top-p", "0"])
    cli("d11 --top-p 2", "error", ["generate", "r1", "--top-p", "2"])
    cli("d11 --num-samples 0", "error", ["generate", "r1", "--num-samples", "0"])
    cli("d11 --seed abc", "error", ["generate", "r1", "--seed", "abc"])
    api("d11 temperature 1e-45 -> greedy", "ok", lambda: sample_next(torch.randn(4, 50) * 30, 1e-45).float())
    api("d11 temperature None", "error", gen(temperature=None))
    api("d11 temperature inf", "error", gen(temperature=math.inf))
    api("d11 top_k=True", "error", gen(temperature=1.0, top_k=True))
    api("d11 top_k=2.5", "error", gen(temperature=1.0, top_k=2.5))
    api("d11 top_p=1.5", "error", gen(temperature=1.0, top_p=1.5))
    api("d11 top_p=nan", "error", gen(temperature=1.0, top_p=math.nan))
    api("d11 stop_token=-1", "error", gen(stop_token=-1))
    api("d11 stop_token=vocab", "error", gen(stop_token=cfg.vocab_size))
    api("d11 stop_token=True", "error", gen(stop_token=True))
    api("d11 max_new_tokens=-1", "error", lambda: model.generate(x, -1))
    api("d11 max_new_tokens=True", "error", lambda: model.generate(x, True))
    api("d11 seed=2**70", "error", gen(temperature=1.0, seed=2**70))
    api("d11 prompt of max_seq_len + 1", "error", lambda: model.generate(torch.zeros(1, 129, dtype=torch.long), 1))
    api("d11 prompt float", "error", lambda: model.generate(x.float(), 1))
    api("d11 prompt 1-D", "error", lambda: model.generate(x[0], 1))
    api("d11 prompt id = vocab", "error", lambda: model.generate(x + cfg.vocab_size, 1))
    cli(
        "d12 model too large for RAM",
        "error",
        ["train", *TINY[2:], "--data", "text.txt", "--model-config", "huge.json", "--out-dir", "r12"],
    )
    # d13 bench: not this module's (bench owner); a few rows still check the CLI prints one line
    cli("d13 bench --threads -1", "error", ["bench", "--threads", "-1"])
    cli("d13 bench --rounds -2", "error", ["bench", "--quick", "--rounds", "-2"])
    cli("d14 --seq-len 0", "error", ["train", *base, "--seq-len", "0", "--out-dir", "r14"])
    cli("d14 --out-dir ''", "error", ["train", *base, "--out-dir", ""])
    cli(
        "d14 --preset with --model-config", "error", ["train", *base, "--model-config", "huge.json", "--out-dir", "r14"]
    )
    api(
        "d16 replace(d_model=128) re-derives",
        "ok",
        lambda: (lambda c: (c.d_ff, c.head_dim) == (512, 32) or 1 / 0)(
            PaLMConfig(d_model=64, n_layers=2, n_heads=4, vocab_size=256).replace(d_model=128)
        ),
    )
    api("d16 rope_base=inf", "error", lambda: cfg.replace(rope_base=math.inf))
    # ---- forward
    api("fwd targets = vocab", "error", lambda: model(x, targets=x + cfg.vocab_size))
    api("fwd targets -5", "error", lambda: model(x, targets=x - 5))
    api("fwd targets float", "error", lambda: model(x, targets=x.float()))
    api("fwd targets wrong shape", "error", lambda: model(x, targets=x[:, :2]))
    api("fwd z_loss -1", "error", fwd(targets=x, z_loss=-1.0))
    api("fwd z_loss nan", "error", fwd(targets=x, z_loss=math.nan))
    api("fwd z_loss inf", "error", fwd(targets=x, z_loss=math.inf))
    api("fwd targets all ignored", "ok", fwd(targets=torch.full_like(x, -100)))
    api("fwd start_pos -1", "error", lambda: model(x, start_pos=-1))
    api("fwd empty idx", "error", lambda: model(torch.zeros(1, 0, dtype=torch.long)))
    # ---- configs
    for field, value in [
        ("d_model", 0),
        ("n_layers", -1),
        ("n_heads", 0),
        ("vocab_size", 0),
        ("dropout", 1.5),
        ("max_seq_len", 0),
        ("d_model", 2.5),
        ("n_heads", True),
    ]:
        api(f"PaLMConfig {field}={value!r}", "error", lambda f=field, v=value: cfg.replace(**{f: v}))
    for field, value in [
        ("lr", math.inf),
        ("lr", -1.0),
        ("steps", 0),
        ("batch_size", 0),
        ("z_loss", math.inf),
        ("spike_factor", math.inf),
        ("seed", 2**70),
        ("min_lr", 1.0),
        ("warmup_steps", -1),
        ("grad_clip", -1.0),
        ("optimizer", "sgd"),
        ("schedule", "wat"),
        ("precision", "fp8"),
        ("device", "banana"),
        ("micro_batch_size", 999),
    ]:
        api(f"TrainConfig {field}={value!r}", "error", lambda f=field, v=value: TrainConfig(**{f: v}))
    # ---- tokenizer
    api("Tokenizer.train vocab 10", "error", lambda: Tokenizer.train(["abc"], 10))
    api("Tokenizer.train str not list", "error", lambda: Tokenizer.train("abc", 400))
    api("Tokenizer.train empty", "error", lambda: Tokenizer.train([], 400))
    api("Tokenizer.train bytes items", "error", lambda: Tokenizer.train([b"abc"], 400))
    api("Tokenizer(b'junk')", "error", lambda: Tokenizer(b"junk"))
    api("Tokenizer.load missing", "error", lambda: Tokenizer.load(work / "missing.model"))
    api("Tokenizer.load text file", "error", lambda: Tokenizer.load(work / "text.txt"))
    api("encode bytes", "error", lambda: tok.encode(b"abc"))
    api("encode int", "error", lambda: tok.encode(5))
    api("encode [1, 2]", "error", lambda: tok.encode([1, 2]))
    api("encode 1M chars", "ok", lambda: len(tok.encode("ab " * 333_334)))
    api("encode NUL, RTL, emoji, ZWJ", "ok", lambda: tok.decode(tok.encode("\0\u202e\U0001f468\u200d\U0001f469")))
    api("decode [-1]", "error", lambda: tok.decode([-1]))
    api("decode [1.5]", "error", lambda: tok.decode([1.5]))
    api("decode 5", "error", lambda: tok.decode(5))
    api("is_byte('a')", "error", lambda: tok.is_byte("a"))
    api("piece_to_id(5)", "error", lambda: tok.piece_to_id(5))
    # ---- more CLI
    cli("train no --out-dir", "error", ["train", *base])
    cli("train missing data file", "error", ["train", *TINY, "--data", "missing.txt", "--out-dir", "r20"])
    cli("train --data a directory without text", "error", ["train", *TINY, "--data", "r1/best", "--out-dir", "r21"])
    cli(
        "train --model-config bad json",
        "error",
        ["train", *TINY[2:], "--data", "text.txt", "--model-config", "bad.json", "--out-dir", "r22"],
    )
    cli(
        "train --model-config missing",
        "error",
        ["train", *TINY[2:], "--data", "text.txt", "--model-config", "no.json", "--out-dir", "r22"],
    )
    cli("train --config bad json", "error", ["train", *base, "--config", "bad.json", "--out-dir", "r23"])
    cli("train --preset bogus", "error", ["train", *base, "--preset", "bogus", "--out-dir", "r24"])
    cli("train --steps -3", "error", ["train", *base, "--steps", "-3", "--out-dir", "r25a"])
    cli("train --lr nan", "error", ["train", *base, "--lr", "nan", "--out-dir", "r25b"])
    cli("train --lr inf", "error", ["train", *base, "--lr", "inf", "--out-dir", "r25c"])
    cli("train --batch-size 0", "error", ["train", *base, "--batch-size", "0", "--out-dir", "r25d"])
    cli(
        "train --micro-batch-size 3 (not a divisor)",
        "error",
        ["train", *base, "--micro-batch-size", "3", "--out-dir", "r25e"],
    )
    cli("train --seq-len 100000", "error", ["train", *base, "--seq-len", "100000", "--out-dir", "r25f"])
    cli("train --vocab-size 5", "error", ["train", *base, "--vocab-size", "5", "--out-dir", "r25g"])
    cli("train --tokenizer missing", "error", ["train", *base, "--tokenizer", "no.model", "--out-dir", "r25h"])
    cli("train --tokenizer not a model", "error", ["train", *base, "--tokenizer", "text.txt", "--out-dir", "r25i"])
    cli("train --device banana", "error", ["train", *base, "--device", "banana", "--out-dir", "r25j"])
    cli("train --precision fp8", "error", ["train", *base, "--precision", "fp8", "--out-dir", "r25k"])
    cli(
        "train --batch-schedule 0:8,2:12",
        "error",
        ["train", *base, "--batch-schedule", "0:8,2:12", "--out-dir", "r25l"],
    )
    cli("train --batch-schedule 5:8", "error", ["train", *base, "--batch-schedule", "5:8", "--out-dir", "r25m"])
    cli("train --batch-schedule junk", "error", ["train", *base, "--batch-schedule", "junk", "--out-dir", "r25n"])
    cli("train --out-dir is a file", "error", ["train", *base, "--out-dir", "text.txt"])
    cli("train --resume --overwrite", "error", ["train", "--out-dir", "r1", "--resume", "--overwrite"])
    cli("train --sample-by wat", "error", ["train", *base, "--sample-by", "wat", "--out-dir", "r25o"])
    cli("train --data hub: offline", "error", ["train", *TINY, "--data", "hub:", "--out-dir", "r26"])
    cli("train --resume --steps 2 (already past)", "ok", ["train", "--out-dir", "r1", "--resume", "--steps", "2"])
    cli("generate missing model", "error", ["generate", "no-such-model"])
    cli("generate a text file as model", "error", ["generate", "text.txt"])
    cli("generate --tokenizer text file", "error", ["generate", "r1", "--tokenizer", "text.txt"])
    cli("generate ok", "ok", ["generate", "r1", "--prompt", "the", "--max-new-tokens", "3", "--seed", "0"])
    cli("doctor", "ok", ["doctor"])
    cli("book", "ok", ["book"])
    cli("no subcommand", "error", [])
    cli("unknown subcommand", "error", ["wat"])
    cli("train --help", "ok", ["train", "--help"])
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    work = Path(args[0]) if args else Path(tempfile.mkdtemp(prefix="attack-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PALMBOOK_PROFILE", "smoke")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # as in CI: only palmbook's own lines count
    os.environ.pop("PALMBOOK_DEBUG", None)
    counts: Counter[str] = Counter()
    bad = []
    for name, _expect, run in cases(work):
        try:
            outcome, detail = run()
        except SystemExit as e:  # --help
            outcome, detail = ("ok", "exit 0") if e.code in (0, None) else ("unclear", f"exit {e.code}")
        counts[outcome] += 1
        if not name.startswith("setup"):
            print(f"{outcome:10s} {name}: {detail[:160]}", flush=True)
        if outcome in ("traceback", "silent", "data_lost", "unclear"):
            bad.append((outcome, name, detail))
    total = sum(counts.values())
    print(
        f"\nattempts {total}: "
        + ", ".join(f"{k} {counts[k]}" for k in ("ok", "clear", "unclear", "traceback", "silent", "data_lost"))
    )
    for outcome, name, detail in bad:
        print(f"  {outcome}: {name}: {detail[:200]}")
    if not args:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if any(o in ("traceback", "silent", "data_lost") for o, _, _ in bad) else 0


if __name__ == "__main__":
    sys.exit(main())
