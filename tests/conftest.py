"""Shared fixtures. Tests never touch the network."""

import os

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PALMBOOK_PROFILE", "smoke")

import pytest
import torch

from palmbook import PaLM, PaLMConfig


@pytest.fixture
def tiny_config() -> PaLMConfig:
    return PaLMConfig.preset("palm-tiny")


@pytest.fixture
def tiny_model(tiny_config: PaLMConfig) -> PaLM:
    torch.manual_seed(0)
    return PaLM(tiny_config).eval()
