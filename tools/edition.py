"""Is this checkout a consistent edition of book and package? Run before tagging, and by the publish workflow.

    python tools/edition.py                          # while writing: everything in step with palmbook.__version__
    python tools/edition.py --tag v0.1.0             # publishing: also the tag, and a dated CHANGELOG entry
    python tools/edition.py --set-repository https://github.com/OWNER/REPO    # a fork: move every copy at once
    python tools/edition.py --sync                   # rewrite every copy from _config.yml and the version

An edition is the package ``palmbook X.Y.Z`` plus the book executed with it, published from the tag ``vX.Y.Z``.
It is consistent when:

* ``_config.yml``'s ``repository.branch`` is ``vX.Y.Z`` (the book's Colab links open that tag's notebooks);
* every chapter of ``_toc.yml`` has the install cell of this edition (``palmbook @ git+<url>@vX.Y.Z``) and its
  header says it was executed with ``palmbook X.Y.Z``;
* CHANGELOG.md has a section ``## X.Y.Z``; to publish, a dated one, ``## X.Y.Z (YYYY-MM-DD)``;
* pyproject.toml's project URLs and README.md's install line are ``_config.yml``'s repository (the address has one
  home; this checks the copies), the install line at this edition's tag;
* with ``--tag``: the tag is ``vX.Y.Z``; with ``--repository URL`` (the publish workflow passes the repository
  it runs in): ``_config.yml``'s repository is that URL, so a fork never publishes a book that installs, links
  to and downloads from the repository it was forked from.

**Where the book lives has one home.** The repository's address is ``_config.yml``'s ``repository.url``; the
edition's tag is ``v`` + ``palmbook.__version__``. Everything else is a copy that :func:`write_copies` derives and
rewrites: ``repository.branch`` (the tag), pyproject.toml's ``[project.urls]`` (and so the installed package's
``Source``, where :func:`palmbook.book.book_data` downloads from), README.md's install line and every chapter's
Colab install cell. ``--set-repository URL`` writes the address into its home and then rewrites the copies.

Prints one line per problem and exits 1 if there is any (0 and a one-line summary otherwise).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chapters  # tools/chapters.py: the header cells, the repository, the version


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


GITHUB_REPOSITORY = re.compile(r"https://github\.com/[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+")
# The copies of the address and the tag, as they appear in the files that hold them.
_README_INSTALL = re.compile(r"git\+https://github\.com/[^@\s\"']+@[^\s\"']+")
_PROJECT_URL = re.compile(r"https://github\.com/[^/\s\"']+/[^/\s\"']+")


def fix_command(url: str = "https://github.com/OWNER/REPO") -> str:
    """The one command that brings every copy of the address and the tag in step."""
    return f"python tools/edition.py --set-repository {url}"


def checked_repository(url: str) -> str:
    """``url`` without a trailing slash or ``.git``, or a ValueError: the book's links assume a GitHub repository."""
    url = url.strip().rstrip("/").removesuffix(".git")
    if not GITHUB_REPOSITORY.fullmatch(url):
        raise ValueError(f"{url!r} is not a GitHub repository address: give https://github.com/OWNER/REPO")
    return url


def _set_config_repository(text: str, url: str, branch: str) -> str:
    """``_config.yml``'s text with ``repository.url`` and ``repository.branch`` replaced, comments kept."""
    lines = text.splitlines(keepends=True)
    inside = False
    for i, line in enumerate(lines):
        if not line.startswith((" ", "\t", "#", "\n", "\r")) and line.strip():
            inside = line.rstrip() == "repository:"
            continue
        if inside:
            key = re.match(r"([ \t]+)(url|branch):[ \t]*\S+", line)
            if key:
                value = url if key.group(2) == "url" else branch
                lines[i] = f"{key.group(1)}{key.group(2)}: {value}{line[key.end() :]}"
    return "".join(lines)


def _set_project_urls(text: str, url: str) -> str:
    """pyproject.toml's text with the repository part of every project URL replaced by ``url``: the lines of a
    ``[project.urls]`` table, or an inline ``urls = {...}`` in ``[project]``; nothing else is touched."""
    lines = text.splitlines(keepends=True)
    section = ""
    for i, line in enumerate(lines):
        if line.startswith("["):
            section = line.strip()
        elif section == "[project.urls]" or (section == "[project]" and re.match(r"urls\s*=", line)):
            lines[i] = _PROJECT_URL.sub(url, line)
    return "".join(lines)


def write_copies(url: str | None = None) -> list[Path]:
    """Write ``url`` into ``_config.yml`` (if given), then rewrite every copy of the address and of the edition's
    tag from there; return the files that changed.

    The copies: ``repository.branch`` (the tag), pyproject.toml's ``[project.urls]``, README.md's install line
    (``git+<url>@<tag>``) and the Colab install cell of every chapter (``tools/chapters.py sync``). A reinstall
    (``pip install -e .``) carries the new ``Source`` URL into the installed package's metadata.
    """
    root = chapters.ROOT
    config = root / "_config.yml"
    new_url = checked_repository(url if url is not None else chapters.repository()[0])
    edits = {
        config: lambda t: _set_config_repository(t, new_url, chapters.edition_tag()),
        root / "pyproject.toml": lambda t: _set_project_urls(t, new_url),
        root / "README.md": lambda t: _README_INSTALL.sub(f"git+{new_url}@{chapters.edition_tag()}", t),
    }
    changed = []
    for path, edit in edits.items():  # _config.yml first: the notebooks' install cells read it
        if not path.is_file():
            continue
        old = path.read_text(encoding="utf-8")
        new = edit(old)
        if new != old:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    changed += chapters.sync(toc_chapters())
    return changed


def problems(tag: str | None = None, release: bool = False, repository: str | None = None) -> list[str]:
    """Everything that keeps this checkout from being the edition ``v<palmbook.__version__>``.

    Args:
        tag: the git tag being published; it must be this edition's.
        release: also require a dated CHANGELOG section.
        repository: the repository this runs in (the publish workflow's ``github.repository``); ``_config.yml``
            must name it.
    """
    root = chapters.ROOT
    version = chapters.package_version()
    edition = chapters.edition_tag()
    found: list[str] = []
    if tag is not None and tag != edition:
        found.append(f"the tag is {tag}, but palmbook.__version__ is {version}: tag {edition} or bump the version")
    url, branch = chapters.repository()
    if repository is not None and checked_repository(repository) != url:
        here = checked_repository(repository)
        found.append(f"_config.yml names the repository {url}, but this is {here}: `{fix_command(here)}`")
    fix = f"`{fix_command(url)}` rewrites it"
    if branch != edition:
        found.append(f"_config.yml: repository.branch is {branch!r}, not this edition's tag {edition!r}: {fix}")
    changelog = (root / "CHANGELOG.md").read_text(encoding="utf-8") if (root / "CHANGELOG.md").is_file() else ""
    heading = re.search(rf"^## {re.escape(version)}\b(.*)$", changelog, re.M)
    if heading is None:
        found.append(f"CHANGELOG.md has no section '## {version}'")
    elif release and not re.fullmatch(r" \(\d{4}-\d{2}-\d{2}\)", heading.group(1)):
        found.append(f"CHANGELOG.md: date the section: '## {version} (YYYY-MM-DD)', not {heading.group(0)!r}")
    readme = (root / "README.md").read_text(encoding="utf-8") if (root / "README.md").is_file() else ""
    if f"git+{url}@{edition}" not in readme:
        found.append(f"README.md: the install line must install this edition: git+{url}@{edition}; {fix}")
    import tomllib  # Python >= 3.11, the oldest the package supports

    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for name, value in project.get("urls", {}).items():
        if not value.rstrip("/").startswith(url):
            found.append(f"pyproject.toml: [project.urls] {name} = {value!r} is not under _config.yml's {url}; {fix}")
    install = chapters.colab_install_source()
    for path in toc_chapters():
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        rel = path.relative_to(root).as_posix()
        if not code or code[0].source != install:
            found.append(f"{rel}: install cell of another edition or repository: {fix}")
        printed = "".join(o.get("text", "") for o in (code[1].outputs if len(code) > 1 else []))
        if f"palmbook {version} |" not in printed:
            found.append(f"{rel}: not executed with palmbook {version}: `make execute NB={rel}`")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edition.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", help="the git tag being published (e.g. $GITHUB_REF_NAME); implies --release")
    parser.add_argument("--release", action="store_true", help="also require a dated CHANGELOG section")
    parser.add_argument("--repository", help="the repository this runs in: _config.yml must name it (CI passes it)")
    parser.add_argument(
        "--set-repository", metavar="URL", help="move the book to https://github.com/OWNER/REPO: every copy follows"
    )
    parser.add_argument("--sync", action="store_true", help="rewrite every copy from _config.yml and the version")
    args = parser.parse_args(argv)
    if args.set_repository is not None or args.sync:
        try:
            changed = write_copies(args.set_repository)
        except ValueError as e:
            parser.error(str(e))
        for path in changed:
            print(f"edition: rewrote {path.relative_to(chapters.ROOT).as_posix()}")
        url, _ = chapters.repository()
        print(
            f"edition: every copy names {url} at {chapters.edition_tag()}; reinstall (pip install -e .) so that "
            "the installed package's Source URL follows"
        )
        return 0
    try:
        found = problems(args.tag, release=args.release or args.tag is not None, repository=args.repository)
    except ValueError as e:
        parser.error(str(e))
    for line in found:
        print(f"edition: {line}", file=sys.stderr)
    if not found:
        print(f"edition {chapters.edition_tag()}: book and package in step ({len(toc_chapters())} chapters)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
