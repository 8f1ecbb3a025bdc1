"""What palmbook picks on the GPUs readers bring (Colab's T4, an L4, A100 or H100) and on CPUs, with no GPU here.

torch.cuda's answers are faked (is_available, get_device_capability, get_device_name), so these tests check the
choices; that the kernels then run on such a GPU is checked only on real hardware (`palmbook doctor` there).
"""

from __future__ import annotations

import importlib

import pytest
import torch

from palmbook import PaLM, PaLMConfig, TrainConfig, Trainer
from palmbook.cli.doctor import colab_gpu_plan
from palmbook.flops import peak_flops_for
from palmbook.runtime import cuda_has_fast_bf16, resolve_precision

CUDA = torch.device("cuda", 0)
# name as torch.cuda.get_device_name reports it, compute capability, what "auto" must pick
GPUS = [
    ("Tesla T4", (7, 5), "fp16"),  # Colab's free GPU: bf16 is emulated there, slower than fp16 + GradScaler
    ("Tesla V100-SXM2-16GB", (7, 0), "fp16"),
    ("NVIDIA L4", (8, 9), "bf16"),
    ("NVIDIA A100-SXM4-40GB", (8, 0), "bf16"),
    ("NVIDIA H100 80GB HBM3", (9, 0), "bf16"),
]


def fake_gpu(monkeypatch: pytest.MonkeyPatch, name: str, capability: tuple[int, int]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # true even where emulated (T4)


@pytest.mark.parametrize(("name", "capability", "expected"), GPUS, ids=[g[0] for g in GPUS])
def test_auto_precision_is_bf16_only_with_bf16_tensor_cores(
    monkeypatch: pytest.MonkeyPatch, name: str, capability: tuple[int, int], expected: str
) -> None:
    fake_gpu(monkeypatch, name, capability)
    assert resolve_precision("auto", CUDA) == expected
    assert cuda_has_fast_bf16(CUDA) == (expected == "bf16")
    assert peak_flops_for(name) is not None, f"{name}: MFU needs its peak FLOP/s in palmbook.flops.PEAK_FLOPS"


@pytest.mark.parametrize("amx", [True, False], ids=["cpu-with-amx", "cpu-without-bf16-units"])
def test_auto_precision_on_a_cpu_follows_its_bf16_matrix_units(monkeypatch: pytest.MonkeyPatch, amx: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if amx else "fp32")


def test_fp16_is_refused_off_cuda_with_the_fix() -> None:
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        resolve_precision("fp16", torch.device("cpu"))


@pytest.mark.parametrize(("precision", "scaled"), [("fp16", True), ("bf16", False), ("fp32", False)])
def test_the_trainer_scales_the_loss_exactly_when_it_trains_in_fp16(
    monkeypatch: pytest.MonkeyPatch, precision: str, scaled: bool
) -> None:
    # What "auto" resolves to on a T4 (fp16) or an A100 (bf16); the model stays on the CPU, so only the choice
    # of precision is faked, not the device.
    monkeypatch.setattr(importlib.import_module("palmbook.train"), "resolve_precision", lambda p, d: precision)
    model = PaLM(PaLMConfig.preset("palm-tiny").replace(max_seq_len=8))
    data = torch.randint(0, model.config.vocab_size, (4, 9))
    cfg = TrainConfig(device="cpu", batch_size=2, progress=False)
    trainer = Trainer(model, cfg, data)
    assert trainer.precision == precision and trainer.scaler.is_enabled() is scaled


def test_the_doctor_tells_what_a_colab_t4_will_use(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpu(monkeypatch, "Tesla T4", (7, 5))
    line = colab_gpu_plan(CUDA)
    assert "fp16 + GradScaler" in line and "gpu" in line and "memory-efficient" in line and "T4" in line


def test_the_doctor_names_bf16_and_flash_attention_on_an_a100(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpu(monkeypatch, "NVIDIA A100-SXM4-40GB", (8, 0))
    line = colab_gpu_plan(CUDA)
    assert "bf16" in line and "flash" in line and "GradScaler" not in line


def test_the_gpu_profile_fits_a_t4_with_room_to_spare() -> None:
    from palmbook.book.profiles import PROFILES, t4_plan

    plan = t4_plan()
    gpu = PROFILES["gpu"]
    assert plan["tokens"] == gpu["batch_size"] * gpu["seq_len"]
    assert plan["memory_bytes"] < 0.6 * 15e9, "the gpu profile must leave a T4's 15 GB usable memory half free"
    assert plan["seconds"] < 20 * 60, "a chapter's training must take minutes on a T4, not an hour"
