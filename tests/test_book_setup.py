"""palmbook.book.setup() and palmbook.profile(): what every chapter's first code cell relies on."""

from __future__ import annotations

import io
import random
import re
import sys
import types
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest
import torch
import yaml

import palmbook
from palmbook.book import BOOK_RENDERER, book_data, setup, use_book_renderer
from palmbook.book.profiles import PROFILES

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("PALMBOOK_PROFILE", raising=False)
    monkeypatch.delenv("PALMBOOK_DEVICE", raising=False)
    old = pio.renderers.default
    yield monkeypatch
    pio.renderers.default = old


def test_default_profile_is_gpu_with_cuda_and_cpu_without(clean_env):
    clean_env.setattr(torch.cuda, "is_available", lambda: False)
    assert palmbook.profile().name == "cpu"
    assert palmbook.profile().device == "cpu"
    clean_env.setattr(torch.cuda, "is_available", lambda: True)
    assert palmbook.profile().name == "gpu"
    assert palmbook.profile().device == "cuda"


def test_env_variable_picks_the_profile_and_smoke_stays_on_cpu(clean_env):
    clean_env.setattr(torch.cuda, "is_available", lambda: True)
    clean_env.setenv("PALMBOOK_PROFILE", "Smoke")
    p = palmbook.profile()
    assert (p.name, p.device) == ("smoke", "cpu")  # smoke results must not depend on the machine


def test_device_override_and_bad_device(clean_env):
    clean_env.setenv("PALMBOOK_DEVICE", "cpu")
    assert palmbook.profile("gpu").device == "cpu"
    clean_env.setenv("PALMBOOK_DEVICE", "tpu-please")
    with pytest.raises(ValueError, match="PALMBOOK_DEVICE"):
        palmbook.profile("cpu")


def test_unknown_profile_names_the_valid_ones(clean_env):
    clean_env.setenv("PALMBOOK_PROFILE", "fast")
    with pytest.raises(ValueError, match="smoke, cpu, gpu"):
        palmbook.profile()


@pytest.mark.parametrize("name", list(PROFILES))
def test_profile_sequence_length_fits_its_model(name):
    p = palmbook.profile(name)
    assert 0 < p.seq_len <= p.config().max_seq_len
    assert p.tokens_per_step == p.batch_size * p.seq_len


def test_profiles_grow_from_smoke_to_cpu_to_gpu():
    s, c, g = (palmbook.profile(n) for n in ("smoke", "cpu", "gpu"))
    for knob in ("train_steps", "eval_batches", "n_samples", "max_new_tokens"):
        assert getattr(s, knob) < getattr(c, knob) < getattr(g, knob), knob
    assert s.tokens_per_step < c.tokens_per_step < g.tokens_per_step
    assert s.config().num_parameters() < c.config().num_parameters() < g.config().num_parameters()


def test_profile_is_frozen():
    with pytest.raises(AttributeError):
        palmbook.profile("smoke").train_steps = 10**6


def test_setup_seeds_torch_numpy_and_random(clean_env):
    def draw():
        return torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random()

    setup("smoke", verbose=False)
    first = draw()
    setup("smoke", verbose=False)
    assert draw() == first
    setup("smoke", seed=1, verbose=False)
    assert draw() != first


def test_setup_prints_versions_device_and_profile(clean_env, capsys):
    p = setup("smoke")
    out = capsys.readouterr().out
    for needle in (palmbook.__version__, torch.__version__, "device cpu", "'smoke'", p.preset):
        assert needle in out


def test_setup_selects_the_book_renderer_outside_colab(clean_env):
    pio.renderers.default = "json"
    setup("smoke", verbose=False)
    assert pio.renderers.default == BOOK_RENDERER


def test_setup_leaves_colabs_renderer_alone(clean_env):
    pio.renderers.default = "colab"
    clean_env.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    setup("smoke", verbose=False)
    assert pio.renderers.default == "colab"


def test_book_renderer_emits_html_without_plotlyjs_or_any_url(clean_env):
    use_book_renderer()
    fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2]))
    bundle = fig._repr_mimebundle_()  # what IPython asks a figure for when it displays it
    assert "application/vnd.plotly.v1+json" in bundle  # JupyterLab / VS Code draw this one
    html = bundle["text/html"]
    assert "Plotly.newPlot" in html and 'id="palmbook-fig-' in html
    assert len(html) < 20_000  # plotly.js (4.8 MB) is not inlined: the page loads it once
    assert "http" not in html  # no CDN script, no MathJax URL


def test_each_figure_gets_its_own_div_id(clean_env):
    use_book_renderer()
    ids = [
        re.search(r'id="(palmbook-fig-\d+)"', go.Figure(go.Bar(y=[i]))._repr_mimebundle_()["text/html"]).group(1)
        for i in range(3)
    ]
    assert len(set(ids)) == 3


def test_cli_lists_the_profiles_and_marks_the_one_that_runs_here(clean_env, capsys):
    from palmbook.cli import main

    clean_env.setenv("PALMBOOK_PROFILE", "smoke")
    assert main(["book"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line[:2] for line in lines[:3]] == ["* ", "  ", "  "]
    assert [str(palmbook.profile(n)) for n in PROFILES] == [line[2:] for line in lines[:3]]


def test_book_data_is_found_from_the_repository_root_and_from_book(tmp_path, monkeypatch):
    (tmp_path / "book" / "data").mkdir(parents=True)
    (tmp_path / "book" / "data" / "x.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert book_data("x.json") == Path("book") / "data" / "x.json"
    monkeypatch.chdir(tmp_path / "book")
    assert book_data("x.json") == Path("data") / "x.json"


def test_book_data_outside_colab_names_the_fix_instead_of_downloading(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def no_network(url):
        raise AssertionError(f"tried to download {url}")

    with pytest.raises(FileNotFoundError, match="fetch=True"):
        book_data("benchmark.json", opener=no_network)


def test_book_data_in_colab_downloads_this_editions_copy_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    asked = []

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def opener(url):
        asked.append(url)
        return Response(b'{"ok": 1}')

    path = book_data("benchmark.json", opener=opener)
    assert path.read_bytes() == b'{"ok": 1}' and f"v{palmbook.__version__}" in str(path)
    # the repository _config.yml names (tools/edition.py keeps pyproject's Source URL, read here, equal to it)
    url = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]["url"].rstrip("/")
    assert asked == [f"{url}/raw/v{palmbook.__version__}/book/data/benchmark.json"], "reinstall: pip install -e ."
    assert book_data("benchmark.json", opener=opener) == path and len(asked) == 1  # cached: no second download


def test_book_data_that_this_edition_lacks_is_a_file_not_found_error(tmp_path, monkeypatch):
    import urllib.error

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    def not_there(url):
        raise urllib.error.HTTPError(url, 404, "Not Found", None, None)

    with pytest.raises(FileNotFoundError, match="could not be downloaded"):
        book_data("gpu_mfu.json", fetch=True, opener=not_there)  # appendix A shows "not measured" on this error


@pytest.mark.parametrize(
    "name", ["../../../TRAVERSED", "/tmp/TRAVERSED", "a/../../TRAVERSED", "..\\TRAVERSED", "C:TRAVERSED", "", "."]
)
def test_book_data_refuses_names_outside_its_folder_before_reading_or_writing(name, tmp_path, monkeypatch):
    """The reliability review's case: a name with '..' once made book_data write outside its cache folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "TRAVERSED").write_text("a file that must not be returned")

    def no_network(url):
        raise AssertionError(f"tried to download {url}")

    with pytest.raises(ValueError, match="inside book/data/"):
        book_data(name, fetch=True, opener=no_network)
    assert not (tmp_path / "home").exists()  # nothing written anywhere


def test_book_data_keeps_subfolders_inside_the_cache(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    path = book_data("runs/a b.json", fetch=True, opener=lambda url: Response(url.encode()))
    assert path.resolve().is_relative_to((tmp_path / "home" / ".cache" / "palmbook").resolve())
    assert path.read_text().endswith("/book/data/runs/a%20b.json")  # the name is quoted in the URL


def test_importing_the_book_helpers_loads_neither_plotly_renderers_nor_ipywidgets():
    """`import palmbook` imports palmbook.book (the run profiles live there): it must stay light."""
    import subprocess

    code = "import sys, palmbook.book; print(sorted(m for m in ('plotly.io', 'ipywidgets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
