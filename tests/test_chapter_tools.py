"""tools/chapters.py: the skeleton of a new chapter and `make execute`, which chapter authors rely on."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import chapters  # noqa: E402


def test_install_cell_installs_this_editions_package_from_the_configured_repository():
    import palmbook

    url, _ = chapters.repository()
    source = chapters.colab_install_source()
    assert f'"palmbook[colab] @ git+{url}@v{palmbook.__version__}"' in source
    assert 'if "google.colab" in sys.modules:' in source
    assert "torch" not in source.split("subprocess.run")[1].split("\n")[0]  # never installs or pins torch
    compile(source, "<install cell>", "exec")


def test_install_cell_warns_when_colab_has_no_gpu(monkeypatch, capsys):
    """Run the cell as Colab would (a fake google.colab module) with pip stubbed and no nvidia-smi on PATH."""
    import shutil
    import subprocess
    import types

    calls = []
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    exec(compile(chapters.colab_install_source(), "<install cell>", "exec"), {})
    assert calls == [[sys.executable, "-m", "pip", "install", "-q", chapters.install_spec()]]
    assert "no GPU" in capsys.readouterr().out
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    exec(compile(chapters.colab_install_source(), "<install cell>", "exec"), {})
    assert "no GPU" not in capsys.readouterr().out


def test_install_cell_does_nothing_outside_colab(monkeypatch, capsys):
    import subprocess

    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(subprocess, "run", lambda *a, **kw: pytest.fail("installed outside Colab"))
    exec(compile(chapters.colab_install_source(), "<install cell>", "exec"), {})
    assert capsys.readouterr().out == ""


def test_edition_tag_is_v_plus_the_package_version():
    import palmbook

    assert chapters.package_version() == palmbook.__version__
    assert chapters.edition_tag() == f"v{palmbook.__version__}"


def test_sync_rewrites_only_a_stale_install_cell(tmp_path):
    v4 = nbformat.v4
    stale = chapters.colab_install_source().replace(chapters.edition_tag(), "v0.0.1")
    nb = v4.new_notebook(cells=[v4.new_markdown_cell("# 9. T"), v4.new_code_cell(stale), v4.new_code_cell("1 + 1")])
    nb.cells[2].outputs = [v4.new_output("execute_result", {"text/plain": "2"}, execution_count=1)]
    path = tmp_path / "09_t.ipynb"
    nbformat.write(nb, path)

    assert chapters.sync([path]) == [path]
    done = nbformat.read(path, as_version=4)
    assert done.cells[1].source == chapters.colab_install_source()
    assert done.cells[1].metadata["tags"] == ["remove-cell"]
    assert done.cells[2].outputs == nb.cells[2].outputs  # nothing else changed
    assert chapters.sync([path]) == []  # already in step


def test_colab_url_points_at_the_notebook_on_the_configured_branch():
    url, branch = chapters.repository()
    org_repo = url.removeprefix("https://github.com/")
    assert chapters.colab_url(ROOT / "book" / "00_what_is_palm.ipynb") == (
        f"https://colab.research.google.com/github/{org_repo}/blob/{branch}/book/00_what_is_palm.ipynb"
    )


def test_new_chapter_writes_the_header_cells(tmp_path, monkeypatch):
    monkeypatch.setattr(chapters, "BOOK", tmp_path)
    path = chapters.new_chapter(tmp_path / "05_output_layer.ipynb", "5. Output layer and loss")
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert nb.cells[0].source.startswith("# 5. Output layer and loss")
    assert code[0].source == chapters.colab_install_source() and code[0].metadata["tags"] == ["remove-cell"]
    assert code[1].source == chapters.SETUP_SOURCE
    with pytest.raises(SystemExit, match="already exists"):
        chapters.new_chapter(path, "again")
    with pytest.raises(SystemExit, match="NN_topic"):
        chapters.new_chapter(tmp_path / "output_layer.ipynb", "no number")


def test_execute_saves_outputs_and_widget_state_and_syncs_the_install_cell(tmp_path, monkeypatch):
    monkeypatch.setenv("PALMBOOK_PROFILE", "cpu")  # execute() must override it with the profile it is given
    v4 = nbformat.v4
    stale = chapters.colab_install_source().replace(chapters.edition_tag(), "an-old-branch")
    nb = v4.new_notebook(
        cells=[
            v4.new_markdown_cell("# 9. A test chapter"),
            v4.new_code_cell(stale, metadata={"tags": ["remove-cell"]}),
            v4.new_code_cell(chapters.SETUP_SOURCE),
            v4.new_code_cell("import ipywidgets as w\nw.IntSlider(value=3)"),
            v4.new_code_cell("import plotly.graph_objects as go\ngo.Figure(go.Bar(y=[1, 2])).show()"),
        ]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "09_test.ipynb"
    nbformat.write(nb, path)

    chapters.execute([path], profile="smoke", timeout=120)

    done = nbformat.read(path, as_version=4)
    code = [c for c in done.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, 2, 3, 4]
    assert code[0].source == chapters.colab_install_source()
    assert "profile 'smoke'" in "".join(o.get("text", "") for o in code[1].outputs)
    view = next(o for o in code[2].outputs if "application/vnd.jupyter.widget-view+json" in o.data)
    state = done.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert view.data["application/vnd.jupyter.widget-view+json"]["model_id"] in state
    figure = next(o for o in code[3].outputs if "text/html" in o.get("data", {}))
    assert "Plotly.newPlot" in figure.data["text/html"]
    assert all("execution" not in c.metadata for c in code)  # no timestamps: re-running changes no metadata
