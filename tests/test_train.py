"""The training engine: accumulation, bit-exact resume, atomic checkpoints, loss-spike rollback, DDP/FSDP, bf16."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from palmbook import PaLM, PaLMConfig
from palmbook.checkpoint import list_checkpoints, read_checkpoint, write_checkpoint
from palmbook.data import Batches
from palmbook.evaluate import evaluate_lm
from palmbook.io import load_safetensors
from palmbook.optim import LRSchedule
from palmbook.train import Callback, TrainConfig, Trainer, TrainingDiverged, load_metrics, train

TESTS = Path(__file__).parent
T = 16  # sequence length of these tests


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from a second thread, and on shared cores it makes every step many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(seed: int = 0) -> PaLM:
    torch.manual_seed(seed)
    return PaLM(PaLMConfig.preset("palm-tiny", max_seq_len=T))


def random_blocks(n: int = 48, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 1024, (n, T + 1), generator=torch.Generator().manual_seed(seed))


def quick(**overrides) -> TrainConfig:
    base = dict(steps=6, batch_size=4, precision="fp32", device="cpu", progress=False, log_every=1)
    return TrainConfig(**{**base, **overrides})


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class StopAt(Callback):
    """Send this process a real signal after a given step, as Ctrl-C or a cluster's SIGTERM would."""

    def __init__(self, step: int, signum: int = signal.SIGINT) -> None:
        self.step, self.signum = step, signum

    def on_step_end(self, trainer, record):
        if record["step"] == self.step:
            os.kill(os.getpid(), self.signum)


class SpikeAtBatch(Callback):
    """Multiply the loss of the n-th batch drawn (1-based) by a large factor: an injected loss spike."""

    def __init__(self, batch: int, factor: float = 50.0) -> None:
        self.batch, self.factor, self.fired = batch, factor, 0

    def on_loss(self, trainer, loss):
        if trainer.batches_seen == self.batch:
            self.fired += 1
            return loss * self.factor
        return loss


# --------------------------------------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("steps", 0, "steps must be an integer >= 1"),
        ("optimizer", "sgd", "palm, adamw"),
        ("precision", "fp8", "auto, fp32, bf16, fp16"),  # runtime.PRECISIONS, the one list
        ("micro_batch_size", 64, "exceeds batch_size"),
        ("spike_factor", 0.5, "spike_factor must be > 1"),
        ("device", "gpu0", "torch device"),
    ],
)
def test_config_rejects_bad_values_with_one_clear_error(field, value, words):
    with pytest.raises(ValueError, match=words):
        TrainConfig(**{field: value})


def test_config_round_trips_through_json(tmp_path):
    cfg = TrainConfig(steps=7, betas=(0.8, 0.9), out_dir=str(tmp_path), schedule="cosine")
    cfg.save(tmp_path / "train.json")
    assert TrainConfig.load(tmp_path / "train.json") == cfg
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({"stepz": 3})


def test_micro_batch_must_divide_the_local_batch():
    with pytest.raises(ValueError, match="multiple of micro_batch_size=3"):
        Trainer(tiny(), quick(micro_batch_size=3), random_blocks())


# --------------------------------------------------------------------------------------------- one step
class GradSnapshot(Callback):
    def __init__(self) -> None:
        self.grads: list[dict[str, torch.Tensor]] = []

    def on_before_optimizer_step(self, trainer):
        self.grads.append({n: p.grad.clone() for n, p in trainer.model.named_parameters()})


def test_accumulating_micro_batches_equals_one_big_batch():
    runs = []
    for micro in (8, 2):  # one batch of 8, then 4 micro-batches of 2
        snap = GradSnapshot()
        trainer = Trainer(tiny(), quick(steps=2, batch_size=8, micro_batch_size=micro, grad_clip=None),
                          random_blocks(), callbacks=[snap])  # fmt: skip
        result = trainer.fit()
        runs.append((snap.grads, result.losses, weights(trainer.model)))
    (g_big, loss_big, w_big), (g_acc, loss_acc, w_acc) = runs
    for step in range(2):
        for name in g_big[step]:
            torch.testing.assert_close(g_acc[step][name], g_big[step][name], rtol=1e-5, atol=1e-7)
    assert loss_acc == pytest.approx(loss_big, rel=1e-6)
    for name in w_big:
        torch.testing.assert_close(w_acc[name], w_big[name], rtol=1e-5, atol=1e-6)


def test_step_records_follow_the_schedule_and_clip():
    cfg = quick(steps=5, optimizer="adamw", lr=1e-3, schedule="cosine", warmup_steps=2, grad_clip=0.5)
    result = Trainer(tiny(), cfg, random_blocks()).fit()
    schedule = LRSchedule("cosine", 1e-3, warmup_steps=2, total_steps=5)
    assert [r["lr"] for r in result.history] == pytest.approx([schedule(s) for s in range(5)])
    assert [r["step"] for r in result.history] == [1, 2, 3, 4, 5]
    assert all(r["grad_norm"] > 0.5 for r in result.history)  # the norm before clipping is logged
    assert result.history[-1]["tokens"] == 5 * 4 * T


def test_bf16_autocast_trains_on_cpu():
    # A learnable stream (token i+1 follows token i), so a working model must drive the loss down quickly.
    stream = torch.arange(48 * (T + 1)) % 97
    blocks = stream.reshape(48, T + 1)
    result = train(tiny(), blocks, steps=25, batch_size=8, optimizer="adamw", lr=3e-3, precision="bf16",
                   device="cpu", progress=False, spike_factor=None)  # fmt: skip
    assert all(math.isfinite(v) for v in result.losses)
    assert sum(result.losses[-3:]) / 3 < result.losses[0] - 2.0


# --------------------------------------------------------------------------------------------- checkpoints
def test_resume_after_sigint_is_bit_exact(tmp_path):
    val = random_blocks(8, seed=2)
    straight = Trainer(tiny(), quick(), random_blocks(), val)
    uninterrupted = straight.fit()

    cfg = quick(out_dir=str(tmp_path), checkpoint_every=2)
    first = Trainer(tiny(), cfg, random_blocks(), val, callbacks=[StopAt(3)]).fit()
    assert first.interrupted == "SIGINT" and first.step == 3
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [2, 3]

    resumed_trainer = Trainer(tiny(seed=123), cfg, random_blocks(), val)  # other weights: all must come from disk
    second = resumed_trainer.fit(resume=True)
    assert second.step == 6
    assert first.losses + second.losses == uninterrupted.losses
    final, expected = weights(resumed_trainer.model), weights(straight.model)
    assert all(torch.equal(final[k], expected[k]) for k in expected)
    assert second.evals[-1]["val_loss"] == uninterrupted.evals[-1]["val_loss"]
    # a checkpoint directory is a complete model for PaLM.from_pretrained
    loaded = PaLM.from_pretrained(tmp_path / "checkpoints" / "step_00000006")
    assert all(torch.equal(loaded.state_dict()[k], expected[k]) for k in expected)


def test_sigterm_saves_a_checkpoint_and_stops(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    result = Trainer(tiny(), quick(out_dir=str(tmp_path)), random_blocks(), callbacks=[StopAt(2, signal.SIGTERM)]).fit()
    assert result.interrupted == "SIGTERM" and result.step == 2
    assert read_checkpoint(tmp_path / "checkpoints" / "step_00000002")["step"] == 2
    assert signal.getsignal(signal.SIGTERM) == before  # the handlers are put back


def test_truncated_checkpoint_is_detected_and_the_previous_one_used(tmp_path):
    cfg = quick(steps=4, out_dir=str(tmp_path), checkpoint_every=2)
    reference = Trainer(tiny(), cfg, random_blocks()).fit()
    newest = tmp_path / "checkpoints" / "step_00000004" / "model.safetensors"
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # as if the machine died while this file was being written
    (tmp_path / "checkpoints" / ".step_00000006.tmp-999").mkdir()  # the debris of a write that never finished

    trainer = Trainer(tiny(seed=5), cfg, random_blocks())
    result = trainer.fit(resume=True)
    kinds = [e["event"] for e in result.events]
    assert "corrupt_checkpoint" in kinds
    resume = next(e for e in result.events if e["event"] == "resume")
    assert resume["step"] == 2 and resume["path"].endswith("step_00000002")
    assert result.losses == reference.losses[2:]  # steps 3 and 4 again, identically


def test_a_write_killed_midway_leaves_the_previous_checkpoint_intact(tmp_path):
    target = tmp_path / "step_00000001"
    write_checkpoint(target, {"a.txt": lambda p: Path(p).write_text("old")}, {"step": 1})

    def dies(path):
        Path(path).write_text("half")
        raise KeyboardInterrupt  # killed mid-write

    with pytest.raises(KeyboardInterrupt):
        write_checkpoint(target, {"a.txt": lambda p: Path(p).write_text("new"), "b.txt": dies}, {"step": 1})
    assert read_checkpoint(target)["step"] == 1
    assert (target / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["step_00000001"]  # no temporary directory left behind


# --------------------------------------------------------------------------------------------- loss spikes
def test_injected_loss_spike_rolls_back_and_skips_batches(tmp_path):
    spike = SpikeAtBatch(7)
    cfg = quick(steps=9, out_dir=str(tmp_path), checkpoint_every=2, keep=2, spike_factor=3.0, spike_window=3,
                spike_rollback=2, spike_skip=5)  # fmt: skip
    blocks = random_blocks()
    trainer = Trainer(tiny(), cfg, blocks, callbacks=[spike])
    result = trainer.fit()

    events = {e["event"]: e for e in result.events}
    assert events["spike"]["step"] == 7 and events["spike"]["loss"] > 3 * events["spike"]["median"]
    rollback = events["rollback"]
    assert rollback["to_step"] == 4  # newest checkpoint at least spike_rollback=2 steps before step 7
    # batches [5, 10) are skipped: batch 5 is replayed from the checkpoint (after batch 4), then the stream jumps
    assert rollback["skip_batches"] == [7 - 2, 7 - 2 + 5]
    assert spike.fired == 1  # batch 7 was skipped, never seen again
    assert [r["step"] for r in result.history] == [1, 2, 3, 4, 5, 6, 5, 6, 7, 8, 9]
    assert trainer.batches_seen == 14 and trainer.batches.state_dict() == _position(blocks, 14)
    # the log records both events, and the cleaned timeline has each step once, the post-rollback ones
    timeline = load_metrics(tmp_path)
    assert {"spike", "rollback"} <= {r.get("event") for r in timeline}
    steps = [r["step"] for r in timeline if "loss" in r and "event" not in r]
    assert steps == list(range(1, 10))
    assert [r["loss"] for r in timeline if "loss" in r and "event" not in r][4:] == result.losses[6:]


@pytest.mark.parametrize("checkpoint_every, rollback, skip", [(4, 2, 1), (3, 1, 0), (2, 4, 2), (5, 1, 1)])
def test_a_rollback_never_trains_on_the_spiking_batch_again(tmp_path, checkpoint_every, rollback, skip):
    spike = SpikeAtBatch(7)
    cfg = quick(steps=10, out_dir=str(tmp_path), checkpoint_every=checkpoint_every, keep=5, spike_factor=3.0,
                spike_window=3, spike_rollback=rollback, spike_skip=skip)  # fmt: skip
    result = Trainer(tiny(), cfg, random_blocks(), callbacks=[spike]).fit()
    assert spike.fired == 1 and result.step == 10
    assert [e["event"] for e in result.events].count("rollback") == 1


def test_a_stop_between_a_rollback_and_its_skip_resumes_exactly(tmp_path):
    class StopAfterRollback(SpikeAtBatch):
        def on_step_end(self, trainer, record):
            if self.fired and trainer.step == 5:
                trainer.request_stop()  # checkpoint at 5 holds the pending skip [6, 11)

    cfg = quick(steps=9, out_dir=str(tmp_path / "a"), checkpoint_every=4, keep=4, spike_factor=3.0, spike_window=3,
                spike_rollback=1, spike_skip=5)  # fmt: skip
    reference = Trainer(tiny(), cfg, random_blocks(), callbacks=[SpikeAtBatch(7)]).fit()
    cfg = cfg.replace(out_dir=str(tmp_path / "b"))
    first = Trainer(tiny(), cfg, random_blocks(), callbacks=[StopAfterRollback(7)]).fit()
    assert first.interrupted and first.step == 5
    rest = Trainer(tiny(), cfg, random_blocks(), callbacks=[SpikeAtBatch(7)]).fit(resume=True)
    assert rest.losses == reference.losses[-4:]


def _position(blocks: torch.Tensor, batches: int) -> dict:
    b = Batches(blocks, 4)
    b.skip(batches)
    return b.state_dict()


def test_spike_without_a_checkpoint_skips_that_update():
    trainer = Trainer(tiny(), quick(steps=5, spike_factor=3.0, spike_window=3), random_blocks(),
                      callbacks=[SpikeAtBatch(5)])  # fmt: skip
    result = trainer.fit()
    assert [e["event"] for e in result.events if e["event"] != "start"] == ["spike", "skip_update"]
    assert [r["step"] for r in result.history] == [1, 2, 3, 4, 5]  # step 5 taken on batch 6 instead
    assert trainer.batches_seen == 6


def test_endless_spikes_raise_training_diverged():
    class AlwaysSpike(Callback):
        def on_loss(self, trainer, loss):
            return loss * (1e3 if trainer.step >= 3 else 1.0)

    with pytest.raises(TrainingDiverged, match="spiked 3 times"):
        Trainer(tiny(), quick(spike_factor=3.0, spike_window=2, max_rollbacks=2), random_blocks(),
                callbacks=[AlwaysSpike()]).fit()  # fmt: skip


# --------------------------------------------------------------------------------------------- evaluation
def test_validation_loss_per_character(tmp_path):
    model, val = tiny(), random_blocks(8, seed=3)
    per_token = evaluate_lm(model, val, batch_size=4)
    per_char = evaluate_lm(model, val, batch_size=4, chars_per_token=2.5)
    table = evaluate_lm(model, val, batch_size=4, chars_per_token=torch.full((1024,), 2.5))
    assert per_char["val_loss"] == pytest.approx(per_token["val_loss"])
    assert per_char["val_nats_per_char"] == pytest.approx(per_token["val_loss"] / 2.5)
    assert table["val_nats_per_char"] == pytest.approx(per_char["val_nats_per_char"])
    assert per_char["val_bits_per_char"] == pytest.approx(per_char["val_nats_per_char"] / math.log(2))
    assert per_token["val_tokens"] == 8 * T and per_token["val_ppl"] == pytest.approx(math.exp(per_token["val_loss"]))


def test_best_checkpoint_and_early_stopping(tmp_path):
    scripted = iter([3.0, 2.0, 2.5, 2.6, 1.0])

    class Scripted(Trainer):
        def evaluate(self):
            return {"val_loss": next(scripted)}

    cfg = quick(steps=5, eval_every=1, early_stopping_patience=2, out_dir=str(tmp_path))
    trainer = Scripted(tiny(), cfg, random_blocks(), random_blocks(4))
    result = trainer.fit()
    assert result.stopped_early and result.step == 4  # evaluations 3 and 4 did not beat step 2's
    assert (result.best_step, result.best_val_loss) == (2, 2.0)
    best = read_checkpoint(tmp_path / "best")
    assert best["step"] == 2 and best["val_loss"] == 2.0
    assert PaLM.from_pretrained(tmp_path / "best").config == trainer.model.config


# --------------------------------------------------------------------------------------------- distributed
def test_two_process_gloo_run_matches_one_process(tmp_path):
    """torchrun --nproc_per_node 2 (gloo, CPU): DDP and FSDP2 give what one process gives for the same batch."""
    import dist_worker

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(TESTS / "dist_worker.py"), str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for mode, optimizer in dist_worker.RUNS:
        model, blocks = dist_worker.setup()
        cfg = dist_worker.config(mode, optimizer, tmp_path / f"single-{mode}").replace(distributed="none")
        single = Trainer(model, cfg, blocks).fit()
        losses = json.loads((tmp_path / mode / "losses.json").read_text())
        assert losses == pytest.approx(single.losses, rel=1e-5)
        saved = load_safetensors(tmp_path / mode / "checkpoints" / "step_00000003" / "model.safetensors")
        for name, value in model.state_dict().items():
            torch.testing.assert_close(saved[name], value, rtol=1e-4, atol=1e-5, msg=f"{mode}: {name}")
