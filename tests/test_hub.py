"""Hub interop through huggingface_hub's PyTorchModelHubMixin, all offline: local folders and a fake Hub cache."""

from __future__ import annotations

import pickle
import socket
from pathlib import Path

import pytest
import torch

import palmbook
from palmbook import PaLM, PaLMConfig
from palmbook.hub import is_repo_id
from palmbook.io import CONFIG_NAME, WEIGHTS_NAME


@pytest.fixture(scope="module")
def model() -> PaLM:
    torch.manual_seed(0)
    return PaLM(PaLMConfig.preset("palm-tiny")).eval()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a test of offline loading opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was unpickled")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)


def _same_weights(a: PaLM, b: PaLM) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _fake_hub_cache(cache: Path, repo_id: str, source: Path) -> None:
    """Lay out ``source``'s files as huggingface_hub's cache holds a downloaded repository (refs/main -> snapshot)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in source.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())


def test_palm_is_a_hub_mixin_model_carrying_its_config(model: PaLM) -> None:
    from huggingface_hub import PyTorchModelHubMixin

    assert isinstance(model, PyTorchModelHubMixin)
    assert model._hub_mixin_config == model.config  # what push_to_hub would describe


def test_save_pretrained_writes_exactly_the_safetensors_layout(model: PaLM, tmp_path: Path) -> None:
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME])
    assert PaLMConfig.load(tmp_path / CONFIG_NAME) == model.config  # PaLMConfig round-trips through config.json


def test_a_local_folder_round_trips_without_unpickling(model: PaLM, tmp_path: Path, no_unpickling: None) -> None:
    model.save_pretrained(tmp_path / "m")
    loaded = PaLM.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config and _same_weights(loaded, model)
    assert PaLM.from_pretrained(str(tmp_path / "m")).config == model.config  # str paths are paths, not repo ids


def test_a_hub_repository_id_loads_from_the_hub_cache_offline(
    model: PaLM, tmp_path: Path, no_network: None, no_unpickling: None
) -> None:
    model.save_pretrained(tmp_path / "src")
    (tmp_path / "src" / "pytorch_model.bin").write_bytes(b"not a pickle anyone should open")
    _fake_hub_cache(tmp_path / "cache", "someone/palm-tiny", tmp_path / "src")
    loaded = PaLM.from_pretrained("someone/palm-tiny", cache_dir=tmp_path / "cache", local_files_only=True)
    assert loaded.config == model.config and _same_weights(loaded, model)


def test_an_unreachable_repository_is_a_file_not_found_naming_the_fix(tmp_path: Path, no_network: None) -> None:
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        PaLM.from_pretrained("someone/absent", cache_dir=tmp_path)


def test_only_owner_slash_name_that_is_no_local_path_counts_as_a_repository(tmp_path: Path) -> None:
    assert is_repo_id("owner/name") and is_repo_id("google/palm-2.small")
    assert not is_repo_id("shakespeare-small") and not is_repo_id("../x/y") and not is_repo_id(str(tmp_path))
    assert not is_repo_id(Path("owner/name"))  # a Path object is always a path


def test_push_to_hub_uploads_config_weights_and_a_model_card(
    model: PaLM, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    import huggingface_hub.hub_mixin

    uploaded: dict[str, bytes] = {}

    class FakeApi:
        def __init__(self, token: object = None) -> None:
            pass

        def create_repo(self, repo_id: str, **kwargs: object) -> object:
            return type("RepoUrl", (), {"repo_id": repo_id})()

        def upload_folder(self, *, repo_id: str, folder_path: Path, **kwargs: object) -> str:
            uploaded.update({p.name: p.read_bytes() for p in Path(folder_path).iterdir()})
            return f"https://huggingface.co/{repo_id}/commit/1"

    monkeypatch.setattr(huggingface_hub.hub_mixin, "HfApi", FakeApi)
    assert model.push_to_hub("me/palm-tiny").endswith("/commit/1")
    assert sorted(uploaded) == sorted([CONFIG_NAME, WEIGHTS_NAME, "README.md"])
    assert b"library_name: palmbook" in uploaded["README.md"]
    assert PaLMConfig.from_dict(__import__("json").loads(uploaded[CONFIG_NAME])) == model.config


def test_save_pretrained_refuses_a_config_other_than_the_models(model: PaLM, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="own config"):
        model.save_pretrained(tmp_path, config=model.config.replace(n_layers=model.config.n_layers + 1))


def test_the_shipped_model_loads_offline_with_one_call(no_network: None, no_unpickling: None) -> None:
    model, tokenizer = palmbook.pretrained("shakespeare-small")
    assert isinstance(model, PaLM) and tokenizer.vocab_size == model.config.vocab_size
